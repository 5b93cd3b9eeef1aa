package mbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

var (
	_ mail.Sink      = (*Sink)(nil)
	_ mail.Committer = (*Sink)(nil)
)

// Sink appends messages to a folder of mbox files, one per mailbox, in the
// exact mboxrd variant of package internal/mboxfmt: every message reads back
// byte for byte.
//
// Put appends without fsync and returns the entry's ID (the decimal byte
// offset of its From_ line); Commit makes every Put before it durable. Close
// discards Puts not yet committed. Puts into one file are serialised; a Put
// that finds its file busy first spools its body to a temporary file, so
// slow downloads proceed in parallel and only the local copy waits. Each
// file is locked against other writers (fcntl and a dotlock) from its first
// Put to Close.
//
// A Sink is safe for concurrent use.
type Sink struct {
	root     string
	lockWait time.Duration
	log      *slog.Logger
	now      func() time.Time // the From_ date of messages without one
	fs       fileSystem
	onBusy   func() // tests: called when a lock attempt finds the file busy

	mu     sync.Mutex
	closed bool
	files  map[string]*mfile // by path
}

// New opens the mbox folder c.Root for writing, creating it if missing.
// A path that exists but is not a directory is a *mail.ConfigError. Only
// o's Logger is used.
func New(ctx context.Context, c Config, o *mail.OpenOptions) (*Sink, error) {
	return openSink(ctx, c, o, osFS{})
}

func openSink(ctx context.Context, c Config, o *mail.OpenOptions, fsys fileSystem) (*Sink, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.Root == "" {
		return nil, &mail.ConfigError{Msg: "mbox: no folder given", Hint: "write mbox:/path/to/folder"}
	}
	fi, err := fsys.Stat(c.Root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Each new directory's entry is fsynced in its parent: a folder
		// whose entry a power cut loses is every message in it lost (A8).
		if err := mkdirs(fsys, existingParent(fsys, c.Root), c.Root); err != nil {
			return nil, fmt.Errorf("mbox: create %s: %w", c.Root, err)
		}
	case err != nil:
		return nil, fmt.Errorf("mbox: %w", err)
	case !fi.IsDir():
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("mbox: %s is not a directory", c.Root), Hint: "an mbox destination is a folder that gets one <mailbox>.mbox file per mailbox"}
	}
	return &Sink{
		root:     c.Root,
		lockWait: c.LockWait,
		log:      o.Log().With("side", "dst", "scheme", "mbox"),
		now:      time.Now,
		fs:       fsys,
		files:    map[string]*mfile{},
	}, nil
}

// file returns the state of mailbox's file, creating it on first use.
func (s *Sink) file(mailbox string) (*mfile, error) {
	path, err := mboxfmt.FilePath(s.root, mailbox)
	if err != nil {
		return nil, badName(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, mail.ErrClosed
	}
	m := s.files[path]
	if m == nil {
		m = &mfile{path: path, mailbox: mailbox}
		s.files[path] = m
	}
	return m, nil
}

// badName turns FilePath's refusal into a per-mailbox error: a source's odd
// folder name must not stop the whole run the way a *mail.ConfigError does.
func badName(err error) error {
	var ce *mail.ConfigError
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", ce.Msg, mail.ErrUnsupported)
	}
	return err
}

// CreateMailbox creates name's file (empty) and its folders. An existing
// mailbox is not an error; one an interrupted run left with a torn tail is
// locked and repaired, as by the first Put.
func (s *Sink) CreateMailbox(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m, err := s.file(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return mail.ErrClosed
	}
	if m.f != nil {
		return nil
	}
	if err := mkdirs(s.fs, s.root, filepath.Dir(m.path)); err != nil {
		return fmt.Errorf("mbox: create %s: %w", name, err)
	}
	f, created, err := openMbox(s.fs, m.path)
	if err != nil {
		return fmt.Errorf("mbox: create %s: %w", name, err)
	}
	_ = f.Close()
	if created {
		if err := s.fs.SyncDir(filepath.Dir(m.path)); err != nil {
			return fmt.Errorf("mbox: create %s: %w", name, err)
		}
		return nil
	}
	// A file an interrupted run left dirty may end in a torn tail. Repair
	// it now (lock, cut to the committed length, and a clean close at
	// Close), even if this run puts nothing into it: other readers do not
	// read our journal (docs/failure-model.md A12).
	if j, err := mboxfmt.ReadJournal(m.path + mboxfmt.JournalSuffix); err == nil && j != nil && j.Dirty {
		if err := m.open(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// Put appends body to env.Mailbox's file. A message whose env.Key was
// already stored (committed by an earlier run, or Put in this one) is not
// stored again: Put reads the body and returns the first copy's ID, so a
// crash between Commit and the checkpoint record cannot duplicate
// (docs/failure-model.md A3). If the body fails or ctx is cancelled, the file is
// cut back and Put returns the error (context.Canceled for a cancel).
func (s *Sink) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	m, err := s.file(env.Mailbox)
	if err != nil {
		return "", err
	}
	body = mail.ContextReader(ctx, body)
	if !m.mu.TryLock() {
		// Another Put is appending to this file. Download meanwhile, so a
		// slow source connection is not left waiting on the lock.
		sp, _, err := mail.Spool(ctx, s.root, body)
		if err != nil {
			return "", s.putErr(ctx, env, err)
		}
		defer func() { _ = sp.Close() }()
		body = mail.ContextReader(ctx, sp)
		m.mu.Lock()
	}
	id, dup, err := s.putLocked(ctx, m, env, body)
	m.mu.Unlock()
	if err != nil {
		return "", s.putErr(ctx, env, err)
	}
	if dup {
		if _, err := io.Copy(io.Discard, body); err != nil {
			return "", s.putErr(ctx, env, err)
		}
		s.log.Debug("already stored: skipped", "mailbox", env.Mailbox, "id", string(env.ID))
		return id, nil
	}
	s.log.Debug("appended", "mailbox", env.Mailbox, "id", string(env.ID))
	return id, nil
}

// putLocked does Put's work with m.mu held. dup reports a message already
// stored under env.Key.
func (s *Sink) putLocked(ctx context.Context, m *mfile, env mail.Envelope, body io.Reader) (id mail.ID, dup bool, err error) {
	if m.closed {
		return "", false, mail.ErrClosed
	}
	if err := m.open(ctx, s); err != nil {
		return "", false, err
	}
	if m.broken != nil {
		return "", false, m.broken
	}
	keyed := mboxfmt.ValidKey(env.Key)
	if keyed {
		if off, ok := m.keys[env.Key]; ok {
			return mail.ID(strconv.FormatInt(off, 10)), true, nil
		}
	}
	date := env.Date
	if date.IsZero() {
		date = s.now()
	}
	off, err := m.put(date, body)
	if err != nil {
		return "", false, err
	}
	if keyed {
		m.keys[env.Key] = off
		m.pending = append(m.pending, keyAt{env.Key, off})
	}
	return mail.ID(strconv.FormatInt(off, 10)), false, nil
}

// putErr wraps a Put failure, reporting a cancelled context as such.
func (s *Sink) putErr(ctx context.Context, env mail.Envelope, err error) error {
	if errors.Is(err, mail.ErrClosed) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%v)", cerr, err)
	}
	return fmt.Errorf("mbox: put %s/%s: %w", env.Mailbox, env.ID, err)
}

// Commit makes every message Put before it durable: for each file written
// since the last Commit, fsync it, then record the new length and keys in
// its journal and fsync that. It may run concurrently with Put. A failed
// fsync is fatal and the file takes no more writes.
func (s *Sink) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return mail.ErrClosed
	}
	files := make([]*mfile, 0, len(s.files))
	for _, m := range s.files {
		files = append(files, m)
	}
	s.mu.Unlock()
	var errs []error
	for _, m := range files {
		if err := m.commit(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Limits reports no limit: Puts into different files run in parallel, and
// Puts into one file spool and queue.
func (s *Sink) Limits() mail.Limits { return mail.Limits{} }

// Close discards messages Put since the last Commit (cutting each file back
// to its committed length), records a clean close in each journal and
// releases the locks. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	files := s.files
	s.mu.Unlock()
	var errs []error
	for _, m := range files {
		errs = append(errs, m.close())
	}
	return errors.Join(errs...)
}

// abandon simulates a crash for tests: files are dropped without cutting
// uncommitted bytes or recording a close.
func (s *Sink) abandon() {
	s.mu.Lock()
	s.closed = true
	files := s.files
	s.mu.Unlock()
	for _, m := range files {
		m.abandon()
	}
}
