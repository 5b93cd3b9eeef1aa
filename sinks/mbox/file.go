package mbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// ErrLocked is wrapped by the error Put returns when another writer kept a
// mailbox file locked for longer than the lock wait.
var ErrLocked = errors.New("mbox: mailbox file locked by another writer")

// errBusy is a lock attempt that found the lock taken.
var errBusy = errors.New("held by another writer")

// staleDotlockAge is the age after which a dotlock without a readable pid
// is taken over.
const staleDotlockAge = 10 * time.Minute

// mfile is one mailbox file being written. mu serialises Puts and guards
// every field but the journal; cmu serialises Commit and Close, so an fsync
// runs without blocking Puts.
type mfile struct {
	path    string
	mailbox string

	cmu sync.Mutex
	mu  sync.Mutex

	f         osFile // nil until the first Put; holds the fcntl lock
	journal   osFile // opened for append
	end       int64  // length after the last complete entry
	committed int64  // length recorded durable in the journal
	needLF    bool   // the file does not end in LF (a foreign last entry)
	keys      map[string]int64
	pending   []keyAt // keys Put since the last commit
	broken    error   // a failed fsync or truncate: the file takes no more writes
	closed    bool
}

type keyAt struct {
	key string
	off int64
}

// open opens, locks and recovers the file: called with mu held, before the
// first write. It cuts a torn tail left by a crash back to the journal's
// committed length (docs/failure-model.md A12) and loads the keys of committed
// messages (A3).
func (m *mfile) open(ctx context.Context, s *Sink) error {
	if m.f != nil {
		return nil
	}
	if err := mkdirs(s.fs, s.root, filepath.Dir(m.path)); err != nil {
		return fmt.Errorf("mbox: create folder for %s: %w", m.mailbox, err)
	}
	f, created, err := openMbox(s.fs, m.path)
	if err != nil {
		return fmt.Errorf("mbox: open %s: %w", m.mailbox, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
		}
	}()
	if created {
		if err := s.fs.SyncDir(filepath.Dir(m.path)); err != nil {
			return fmt.Errorf("mbox: open %s: %w", m.mailbox, err)
		}
	}
	if err := s.lock(ctx, f, m.path); err != nil {
		return err
	}
	defer func() {
		if !ok {
			_ = os.Remove(m.path + mboxfmt.LockSuffix)
		}
	}()
	if err := m.recover(s, f); err != nil {
		return fmt.Errorf("mbox: recover %s: %w", m.mailbox, err)
	}
	jf, err := s.fs.OpenFile(m.path+mboxfmt.JournalSuffix, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mbox: open journal of %s: %w", m.mailbox, err)
	}
	m.f, m.journal, ok = f, jf, true
	return nil
}

// recover decides the committed length from the journal and the file, cuts
// what lies past it when the last writer did not close cleanly, and rewrites
// the journal compactly with an "open" record, fsynced before any append.
func (m *mfile) recover(s *Sink, f osFile) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	log := s.log.With("mailbox", m.mailbox)
	j, err := mboxfmt.ReadJournal(m.path + mboxfmt.JournalSuffix)
	switch {
	case err != nil:
		// Never cut on the word of a damaged journal: keep the file, lose
		// the dedupe keys.
		log.Warn("journal damaged: keeping the whole file, rerun dedupe for it is lost", "err", err)
		j = &mboxfmt.Journal{Committed: size, Keys: map[string]int64{}}
	case j == nil:
		j = &mboxfmt.Journal{Committed: size, Keys: map[string]int64{}}
	case j.Dirty && size > j.Committed:
		if !tailIsOurs(f, j.Committed, size) {
			log.Warn("file does not match its journal: keeping it whole", "size", size, "bytes", j.Committed)
			j.Committed = size
			break
		}
		// The last run crashed (or was killed) after appending past its
		// last commit: those bytes were never reported durable.
		log.Warn("cutting a torn or uncommitted tail left by an interrupted run", "size", size, "bytes", size-j.Committed)
		if err := f.Truncate(j.Committed); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	case size > j.Committed:
		log.Info("mailbox file grew since mailferry closed it: keeping the new entries", "bytes", size-j.Committed)
		j.Committed = size
	case size < j.Committed:
		log.Warn("mailbox file shrank since mailferry wrote it (changed by another program)", "size", size, "bytes", j.Committed)
		j.Committed = size
		for k, off := range j.Keys {
			if off >= size {
				delete(j.Keys, k)
			}
		}
	}
	pruneKeys(j.Keys, maxKeys)
	m.end, m.committed, m.keys = j.Committed, j.Committed, j.Keys
	if m.end > 0 {
		var b [1]byte
		if _, err := f.ReadAt(b[:], m.end-1); err != nil {
			return err
		}
		m.needLF = b[0] != '\n'
	}
	rec := mboxfmt.JournalRecord(j.Compact(), "open", strconv.FormatInt(j.Committed, 10))
	return writeAtomic(s.fs, m.path+mboxfmt.JournalSuffix, rec)
}

// maxKeys bounds the dedupe keys a journal keeps across runs. Keys only
// matter for messages committed but not yet in the engine's checkpoint
// (flushed every 100 records or 5 s), so the most recent ones suffice and
// the journal and memory stay bounded.
const maxKeys = 100_000

// pruneKeys drops all but the n keys with the highest offsets (the newest).
func pruneKeys(keys map[string]int64, n int) {
	if len(keys) <= n {
		return
	}
	offs := make([]int64, 0, len(keys))
	for _, off := range keys {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	cut := offs[len(offs)-n]
	for k, off := range keys {
		if off < cut {
			delete(keys, k)
		}
	}
}

// tailIsOurs reports whether the size-off bytes after off look like an
// append of ours: a From_ line at a line start, or the LF put ends a
// foreign last line with and then one. A power cut may keep only a few
// bytes of that append ("F", "\nFro"): a tail that is, whole, a prefix of
// it is ours too, else the stub would stay glued to the last message.
func tailIsOurs(f io.ReaderAt, off, size int64) bool {
	var b [6]byte
	n, _ := f.ReadAt(b[:min(int64(len(b)), size-off)], off)
	tail := string(b[:n])
	whole := int64(n) == size-off
	prevLF := off == 0
	if off > 0 {
		var p [1]byte
		if _, err := f.ReadAt(p[:], off-1); err == nil {
			prevLF = p[0] == '\n'
		}
	}
	if prevLF && (strings.HasPrefix(tail, "From ") || whole && strings.HasPrefix("From ", tail)) {
		return true
	}
	return off > 0 && (strings.HasPrefix(tail, "\nFrom ") || whole && strings.HasPrefix("\nFrom ", tail))
}

// put appends one entry; called with mu held and the file open. On any
// error the file is cut back to where it was.
func (m *mfile) put(date time.Time, body io.Reader) (int64, error) {
	start := m.end
	w := io.NewOffsetWriter(m.f, start)
	off := start
	if m.needLF {
		// A foreign last entry without its LF: the LF our format drops as
		// the terminator gives that message back unchanged.
		if _, err := w.Write([]byte{'\n'}); err != nil {
			return 0, m.cut(start, err)
		}
		off++
	}
	n, err := mboxfmt.WriteEntry(w, "", date, body)
	if err != nil {
		return 0, m.cut(start, err)
	}
	m.end, m.needLF = off+n, false
	return off, nil
}

// cut truncates the file back to start after a failed append and returns
// err. If even that fails the file is marked broken: the journal still has
// it dirty, so the next run cuts it.
func (m *mfile) cut(start int64, err error) error {
	if terr := m.f.Truncate(start); terr != nil {
		m.broken = mail.MakeFatal(fmt.Errorf("mbox: %s: truncate after a failed write: %w", m.mailbox, terr))
	}
	return err
}

// commit makes every entry appended so far durable: fsync the file, then
// append the new keys and a commit record to the journal and fsync it. A
// failed fsync is never retried (the kernel may have dropped the dirty
// pages): the file is marked broken and the error is fatal.
func (m *mfile) commit() error {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	m.mu.Lock()
	if m.f == nil || m.closed {
		m.mu.Unlock()
		return nil
	}
	if m.broken != nil {
		m.mu.Unlock()
		return m.broken
	}
	end, committed, keys := m.end, m.committed, m.pending
	m.pending = nil
	m.mu.Unlock()
	if end == committed && len(keys) == 0 {
		return nil
	}
	if err := m.f.Sync(); err != nil {
		return m.setBroken(fmt.Errorf("mbox: fsync %s: %w", m.mailbox, err))
	}
	var rec []byte
	for _, k := range keys {
		rec = mboxfmt.JournalRecord(rec, "key", strconv.FormatInt(k.off, 10), k.key)
	}
	rec = mboxfmt.JournalRecord(rec, "commit", strconv.FormatInt(end, 10))
	if _, err := m.journal.Write(rec); err != nil {
		return m.setBroken(fmt.Errorf("mbox: write journal of %s: %w", m.mailbox, err))
	}
	if err := m.journal.Sync(); err != nil {
		return m.setBroken(fmt.Errorf("mbox: fsync journal of %s: %w", m.mailbox, err))
	}
	m.mu.Lock()
	m.committed = end
	m.mu.Unlock()
	return nil
}

func (m *mfile) setBroken(err error) error {
	err = mail.MakeFatal(err)
	m.mu.Lock()
	if m.broken == nil {
		m.broken = err
	}
	m.mu.Unlock()
	return err
}

// close discards what was not committed (the Sink contract), records a
// clean close and releases the locks. A broken file keeps its journal dirty
// so the next run cuts it back to the last commit.
func (m *mfile) close() error {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.f == nil {
		return nil
	}
	var errs []error
	if m.broken == nil {
		if m.end != m.committed {
			if err := m.f.Truncate(m.committed); err != nil {
				errs = append(errs, err)
			} else if err := m.f.Sync(); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			rec := mboxfmt.JournalRecord(nil, "close", strconv.FormatInt(m.committed, 10))
			if _, err := m.journal.Write(rec); err != nil {
				errs = append(errs, err)
			} else if err := m.journal.Sync(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, m.journal.Close())
	if err := os.Remove(m.path + mboxfmt.LockSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	errs = append(errs, m.f.Close()) // releases the fcntl lock
	m.f, m.journal = nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mbox: close %s: %w", m.mailbox, err)
	}
	return nil
}

// abandon drops the file as a crash would: no truncate, no close record,
// the dotlock left behind. Tests use it.
func (m *mfile) abandon() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.f != nil {
		_ = m.journal.Close()
		_ = m.f.Close()
		m.f, m.journal = nil, nil
	}
}

// lock takes the fcntl lock on f and the dotlock beside path, waiting up to
// the sink's lock wait. The fcntl lock comes first: with it held no other
// mailferry can be racing for the dotlock, so taking over a stale one is
// safe.
func (s *Sink) lock(ctx context.Context, f osFile, path string) error {
	wait := s.lockWait
	if wait == 0 {
		wait = DefaultLockWait
	}
	deadline := time.Now().Add(wait)
	delay := 10 * time.Millisecond
	for {
		err := lockFile(f)
		if err == nil {
			if err = s.dotlock(path + mboxfmt.LockSuffix); err != nil {
				unlockFile(f)
			}
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, errBusy) {
			return fmt.Errorf("mbox: lock %s: %w", path, err)
		}
		if s.onBusy != nil {
			s.onBusy()
		}
		if wait < 0 || time.Now().After(deadline) {
			return mail.MakeFatal(fmt.Errorf("%w: %s: %v (close the program using it, or raise lockwait)", ErrLocked, path, err))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
}

// createDotlock makes the dotlock at path holding our pid, in one step: the
// pid goes into a temporary file beside it, which is then hard-linked to
// path (link fails when path exists, as O_EXCL does). A kill at any moment
// so never leaves an empty lock, which would look held until
// staleDotlockAge. It fails wrapping fs.ErrExist when the lock is taken.
// Where hard links are not supported it creates path with O_EXCL and writes
// the pid after, as before.
func createDotlock(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*"+mboxfmt.TempSuffix)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	_, err = fmt.Fprintf(tmp, "%d\n", os.Getpid())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	err = os.Link(tmp.Name(), path)
	if err == nil || errors.Is(err, fs.ErrExist) || !linkUnsupported(err) {
		return err
	}
	return createDotlockExcl(path)
}

// linkUnsupported reports whether err says the file system has no hard links.
func linkUnsupported(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS)
}

// createDotlockExcl creates the dotlock at path with O_EXCL, then writes our
// pid into it.
func createDotlockExcl(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// dotlock creates path exclusively with our pid in it, the convention of
// mail clients and MDAs that do not use fcntl. A dotlock whose pid is dead
// (or is ours: a leftover, since our fcntl lock is held) is stale and taken
// over, as is one with no pid older than staleDotlockAge.
func (s *Sink) dotlock(path string) error {
	for attempt := 0; attempt < 3; attempt++ {
		err := createDotlock(path)
		if err == nil || !errors.Is(err, fs.ErrExist) {
			return err
		}
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		var pid int
		if fi.Mode().IsRegular() && fi.Size() < 64 {
			b, _ := os.ReadFile(path)
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		switch {
		case pid > 0 && pid != os.Getpid() && processAlive(pid):
			return fmt.Errorf("%w (dotlock %s, pid %d)", errBusy, path, pid)
		case pid <= 0 && time.Since(fi.ModTime()) < staleDotlockAge:
			return fmt.Errorf("%w (dotlock %s)", errBusy, path)
		}
		s.log.Warn("taking over a stale dotlock", "path", path, "pid", pid)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return fmt.Errorf("%w (dotlock %s keeps coming back)", errBusy, path)
}

// openMbox opens (creating if needed) a mailbox file for writing, refusing
// a symlink or anything but a regular file.
func openMbox(fsys fileSystem, path string) (f osFile, created bool, err error) {
	const flags = os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	f, err = fsys.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		f, err = fsys.OpenFile(path, flags, 0)
	} else {
		created = err == nil
	}
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, false, fmt.Errorf("%s is a symlink (not followed): %w", path, err)
		}
		return nil, false, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		_ = f.Close()
		return nil, false, err
	}
	return f, created, nil
}

// mkdirs creates dir and its parents below root, refusing symlinks, and
// fsyncs the parent of each directory it creates.
func mkdirs(fsys fileSystem, root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." {
		return err
	}
	p := root
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		parent := p
		p = filepath.Join(p, c)
		err := fsys.Mkdir(p, 0o700)
		if err == nil {
			if err := fsys.SyncDir(parent); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		fi, err := fsys.Lstat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (symlinks are not followed)", p)
		}
	}
	return nil
}

// writeAtomic replaces path with b: write a temp file, fsync, rename, fsync
// the directory.
func writeAtomic(fsys fileSystem, path string, b []byte) error {
	tmp := path + mboxfmt.TempSuffix
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, bytes.NewReader(b))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		_ = fsys.Remove(tmp)
		return err
	}
	return fsys.SyncDir(filepath.Dir(path))
}
