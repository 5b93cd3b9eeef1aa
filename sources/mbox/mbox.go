package mbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/mailferry/mailferry/internal/fsevidence"
	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.Source = (*Source)(nil)

// Source reads a folder of mbox files, one per mailbox (see mboxfmt.FilePath and the
// package documentation for the format). IDs are the decimal byte offsets of
// the entries' From_ lines: stable while the file is only appended to.
//
// It is safe for concurrent use. It takes no lock: it reads the committed
// part of each file (up to the journal's committed length while a
// mailferry sink is writing it, or after one crashed), so appends by a
// running writer are not seen half-written.
type Source struct {
	root string
	log  *slog.Logger

	mu       sync.Mutex
	closed   bool
	clock    fsevidence.Clock        // FolderStatuses' clock (SetClock)
	journals map[string]journalState // by journal path: parsing it per Open was 80% of a copy's CPU
}

// journalState is what extent needs from a journal, with the file
// identity it was read from.
type journalState struct {
	size    int64
	modTime time.Time
	j       *mboxfmt.Journal
	err     error
}

// journal returns the parsed journal at path, reusing the last parse while
// the file is unchanged (same size and modification time).
func (s *Source) journal(path string) (*mboxfmt.Journal, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return mboxfmt.ReadJournal(path)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	st, ok := s.journals[path]
	s.mu.Unlock()
	if ok && st.size == fi.Size() && st.modTime.Equal(fi.ModTime()) {
		return st.j, st.err
	}
	j, err := mboxfmt.ReadJournal(path)
	s.mu.Lock()
	if s.journals == nil {
		s.journals = map[string]journalState{}
	}
	s.journals[path] = journalState{size: fi.Size(), modTime: fi.ModTime(), j: j, err: err}
	s.mu.Unlock()
	return j, err
}

// New opens the mbox folder root for reading. root must be an existing
// directory; anything else is a *mail.ConfigError.
// Only o's Logger is used.
func New(ctx context.Context, root string, o *mail.OpenOptions) (*Source, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("mbox: %v", err), Hint: "an mbox endpoint is a folder holding one <mailbox>.mbox file per mailbox"}
	}
	if !fi.IsDir() {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("mbox: %s is not a directory", root), Hint: "an mbox endpoint is a folder holding one <mailbox>.mbox file per mailbox: to read a single file, move it into a folder as INBOX.mbox"}
	}
	return &Source{root: root, log: o.Log().With("side", "src", "scheme", "mbox")}, nil
}

func (s *Source) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return mail.ErrClosed
	}
	return nil
}

// Mailboxes lists the mailbox files under root, sorted. Symlinks are not
// followed, and files mboxfmt.FilePath would not produce are skipped.
func (s *Source) Mailboxes(ctx context.Context) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []string
	err := filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() || filepath.Ext(path) != mboxfmt.Ext {
			return nil
		}
		if name, ok := mboxfmt.MailboxName(s.root, path); ok {
			out = append(out, name)
		} else {
			s.log.Debug("skipping a file that is not a mailbox name", "path", path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mbox: list mailboxes: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// extent opens mailbox's file and says how much of it to read, and whether
// a last entry without its final LF is accepted.
func (s *Source) extent(mailbox string) (f *os.File, limit int64, lenient bool, err error) {
	path, err := mboxfmt.FilePath(s.root, mailbox)
	if err != nil {
		return nil, 0, false, fmt.Errorf("mbox: %w: %v", mail.ErrMailboxNotFound, err)
	}
	f, err = mboxfmt.OpenFile(s.root, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, false, fmt.Errorf("mbox: %s: %w", mailbox, mail.ErrMailboxNotFound)
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("mbox: open %s: %w", mailbox, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, false, fmt.Errorf("mbox: stat %s: %w", mailbox, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, 0, false, fmt.Errorf("mbox: %s is not a regular file: %w", path, mail.ErrMailboxNotFound)
	}
	limit = fi.Size()
	j, err := s.journal(path + mboxfmt.JournalSuffix)
	switch {
	case err != nil:
		s.log.Warn("ignoring a damaged journal: reading the whole file", "mailbox", mailbox, "err", err)
	case j == nil:
	case j.Committed > limit:
		// The file lost committed bytes (cut by another program): its last
		// entry may be cut too, and must not read as complete.
		return f, limit, false, nil
	case j.Dirty && j.Committed < limit && (mboxfmt.StartsEntry(f, j.Committed) || mboxfmt.StartsEntry(f, j.Committed+1)):
		// A writer is appending, or crashed while appending: only the
		// committed part is ours to read. (The second form is an append
		// that first ended a foreign last line with LF.)
		limit = j.Committed
	}
	// A last entry without its LF is a foreign one (ours always end in LF
	// and the committed length is at an entry's end): take it as it is, as
	// other mbox readers do.
	return f, limit, true, nil
}

// List calls fn for every entry of mailbox, in file order. Size is the exact
// unquoted length, Date comes from the From_ line, and MessageID from the
// header when present. Listing reads the whole file (the sizes need it).
func (s *Source) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	f, limit, lenient, err := s.extent(mailbox)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	rd := mboxfmt.NewReader(io.NewSectionReader(f, 0, limit))
	rd.Lenient = lenient
	buf := make([]byte, 32<<10)
	head := make([]byte, 0, headLimit)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mbox: list %s: %w", mailbox, err)
		}
		var size int64
		head = head[:0]
		for {
			n, err := rd.Read(buf)
			if len(head) < headLimit {
				head = append(head, buf[:min(n, headLimit-len(head))]...)
			}
			size += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("mbox: list %s: entry at %d: %w", mailbox, e.Offset, err)
			}
			if size&(1<<20-1) < int64(n) {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		env := mail.Envelope{Mailbox: mailbox, ID: mail.ID(strconv.FormatInt(e.Offset, 10)), Size: size, Date: e.Date, MessageID: messageID(head)}
		if err := fn(env); err != nil {
			return err
		}
	}
}

// Open streams the entry env.ID of env.Mailbox, unquoted, without reading
// it into memory. An ID that is not the offset of an entry gives
// mail.ErrNotFound. A file cut short inside the entry (shorter than its
// journal says was committed) gives an error from Read, never a silent
// io.EOF; a last entry merely missing its final LF is taken as it is, as
// other mbox readers do.
func (s *Source) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	off, err := strconv.ParseInt(string(env.ID), 10, 64)
	if err != nil || off < 0 || strconv.FormatInt(off, 10) != string(env.ID) {
		return nil, fmt.Errorf("mbox: open %s/%s: %w", env.Mailbox, env.ID, mail.ErrNotFound)
	}
	f, limit, lenient, err := s.extent(env.Mailbox)
	if err != nil {
		return nil, err
	}
	if off >= limit || !mboxfmt.StartsEntry(f, off) {
		_ = f.Close()
		return nil, fmt.Errorf("mbox: open %s/%s: %w", env.Mailbox, env.ID, mail.ErrNotFound)
	}
	rd := mboxfmt.NewReaderAt(io.NewSectionReader(f, off, limit-off), off)
	rd.Lenient = lenient
	if e, err := rd.Next(); err != nil || e.Offset != off {
		_ = f.Close()
		return nil, fmt.Errorf("mbox: open %s/%s: %w", env.Mailbox, env.ID, mail.ErrNotFound)
	}
	return &entryReader{rd: rd, f: f}, nil
}

type entryReader struct {
	rd *mboxfmt.Reader
	f  *os.File
}

func (e *entryReader) Read(p []byte) (int, error) { return e.rd.Read(p) }
func (e *entryReader) Close() error               { return e.f.Close() }

// Limits reports no limit: every Open reads its own file descriptor.
func (s *Source) Limits() mail.Limits { return mail.Limits{} }

// Close marks the source closed; later calls get mail.ErrClosed. It is
// idempotent.
func (s *Source) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// headLimit bounds how much of a message List looks at for its Message-ID.
const headLimit = 16 << 10

// messageID returns the Message-ID header's value from the start of a
// message, or "" when it is not in head (RFC 5322 §3.6.4).
func messageID(head []byte) string {
	const name = "message-id:"
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			return "" // the header may go on past head
		}
		line := bytes.TrimRight(head[:i], "\r")
		head = head[i+1:]
		if len(line) == 0 {
			return "" // end of the header section
		}
		if len(line) < len(name) || !bytes.EqualFold(line[:len(name)], []byte(name)) {
			continue
		}
		v := bytes.TrimSpace(line[len(name):])
		for len(head) > 0 && (head[0] == ' ' || head[0] == '\t') { // folded
			j := bytes.IndexByte(head, '\n')
			if j < 0 {
				return ""
			}
			v = append(append(v[:len(v):len(v)], ' '), bytes.TrimSpace(head[:j])...)
			head = head[j+1:]
		}
		return string(bytes.TrimSpace(v))
	}
	return ""
}
