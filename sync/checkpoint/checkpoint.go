package checkpoint

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// Version is the file format version written in the header.
const Version = 1

// ErrUnusable is wrapped by every error that makes a checkpoint file unusable:
// corrupt, written for other endpoints, or of an unknown version. The CLI
// exits 6 on it.
var ErrUnusable = errors.New("checkpoint: unusable")

// ErrLocked means another process holds the checkpoint: a run of the same
// copy is already active.
var ErrLocked = errors.New("checkpoint: in use by another mailferry run")

// Key identifies a source message.
type Key struct {
	Mailbox string
	ID      mail.ID
}

// Record is what the checkpoint knows about a stored message.
type Record struct {
	Mailbox string  `json:"m"`
	ID      mail.ID `json:"id"`
	Dst     mail.ID `json:"d,omitempty"` // the sink's ID
	Size    int64   `json:"n"`           // the source's size hint
	SHA256  string  `json:"h,omitempty"` // hex SHA-256 of the bytes copied
	// MsgID is a short hash (hex of the first 8 bytes of SHA-256) of the
	// message's Message-ID (from the listing, or read from the body as it
	// was copied when the listing has none: POP3), and Date the internal
	// date the source listed (Unix seconds; 0 for POP3). "" and 0 in
	// records of older versions. With Size they let a folder whose
	// identifiers were reset be re-mapped without downloading it again
	// (sync/reset.go).
	MsgID string `json:"i,omitempty"`
	Date  int64  `json:"t,omitempty"`
	// Flags are the source flags last given to the destination, space
	// separated; nil when not known (records of sinks that cannot change
	// flags later).
	Flags *string `json:"f,omitempty"`
	// Stored is when the run recorded the message as durable in the
	// destination (Unix seconds): what --delete-after measures. 0 in
	// records of older versions until StampStored gives them a time.
	Stored int64 `json:"s,omitempty"`
	// Vanished says the source reported the message expunged after it was
	// copied (its copy stays): the record is kept, to re-map the message
	// should it come back, but a change listing no longer counts it as a
	// message the source holds (Folders.IDs).
	Vanished bool `json:"v,omitempty"`
}

type header struct {
	Magic   string `json:"mailferry"`
	Version int    `json:"v"`
	Src     string `json:"src"`
	Dst     string `json:"dst"`
}

// Store is the checkpoint as the engine uses it. Methods are safe for
// concurrent use.
type Store interface {
	// Has reports whether k was recorded.
	Has(k Key) bool
	// Add records r (buffered until Flush).
	Add(r Record) error
	// Flush writes buffered records and fsyncs them.
	Flush() error
	// Records returns the records of mailbox (in no particular order).
	Records(mailbox string) []Record
	// StampStored gives every record without a store time the time at
	// (buffered until Flush) and returns how many it changed.
	StampStored(at int64) (int, error)
	// Close flushes and releases the store.
	Close() error
}

// File is a Store kept in a JSON Lines file.
type File struct {
	mu      sync.Mutex
	path    string
	fs      FS
	f       FSFile
	buf     bytes.Buffer
	recs    map[Key]Record
	byBox   map[string][]Key
	closed  bool
	Dropped string // a torn last line dropped while loading, for a warning
}

var _ Store = (*File)(nil)

// DefaultPath returns the checkpoint path for the endpoint pair under the
// user's state directory ($XDG_STATE_HOME/mailferry, else
// ~/.local/state/mailferry), named by a hash of the pair.
func DefaultPath(src, dst string) (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("checkpoint: no state directory (set XDG_STATE_HOME or --checkpoint): %w", err)
		}
		dir = filepath.Join(home, ".local", "state")
	}
	sum := sha256.Sum256([]byte(src + "\x00" + dst))
	return filepath.Join(dir, "mailferry", hex.EncodeToString(sum[:8])+".jsonl"), nil
}

// FS is the part of the file system a File uses. Open uses the real one;
// power-loss tests pass a model that drops what was not made durable
// (docs/failure-model.md A8, package crashfs).
type FS interface {
	MkdirAll(path string, perm os.FileMode) error
	OpenFile(name string, flag int, perm os.FileMode) (FSFile, error)
	Stat(name string) (os.FileInfo, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// SyncDir fsyncs a directory, making the entries renamed into it
	// durable.
	SyncDir(name string) error
}

// FSFile is an open file of an FS; *os.File is one. Fd is for flock.
type FSFile interface {
	io.Reader
	io.Writer
	io.Seeker
	Truncate(size int64) error
	Sync() error
	Close() error
	Stat() (os.FileInfo, error)
	Fd() uintptr
}

// osFS is the real file system.
type osFS struct{}

func (osFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (osFS) OpenFile(name string, flag int, perm os.FileMode) (FSFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}
func (osFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }
func (osFS) Rename(oldpath, newpath string) error  { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error              { return os.Remove(name) }
func (osFS) SyncDir(dir string) error              { return mail.SyncDir(dir) }

// Open opens or creates the checkpoint at path for the endpoints src and
// dst. A file for other endpoints, or an unreadable one, is refused
// (ErrUnusable) unless reset is true. With reset the file is always started
// afresh: every record is forgotten. The file is locked (flock) for
// the life of the File; a second Open elsewhere gets ErrLocked.
func Open(path, src, dst string, reset bool) (*File, error) {
	return OpenFS(nil, path, src, dst, reset)
}

// OpenFS is Open on fsys (nil: the real file system).
func OpenFS(fsys FS, path, src, dst string, reset bool) (*File, error) {
	if fsys == nil {
		fsys = osFS{}
	}
	if err := MkdirAll(fsys, filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	f, err := lockedOpen(fsys, path)
	if err != nil {
		return nil, err
	}
	c := &File{path: path, fs: fsys, f: f, recs: map[Key]Record{}, byBox: map[string][]Key{}}
	want := header{Magic: "checkpoint", Version: Version, Src: src, Dst: dst}
	end, got, err := c.load()
	if err == nil && got != nil && (got.Src != src || got.Dst != dst) {
		err = fmt.Errorf("%w: %s was written for %s -> %s, not %s -> %s (pass --reset to start it afresh, or --checkpoint another file)",
			ErrUnusable, path, got.Src, got.Dst, src, dst)
	}
	if err != nil && !reset {
		_ = f.Close()
		return nil, err
	}
	if err != nil || got == nil || reset { // new, empty, or reset: write a fresh header
		c.recs, c.byBox, c.Dropped = map[Key]Record{}, map[string][]Key{}, ""
		line, _ := json.Marshal(want)
		if err := c.rewrite(append(line, '\n')); err != nil {
			_ = f.Close()
			return nil, err
		}
		return c, nil
	}
	// Cut a torn last line; only then, so that opening a whole file (a dry
	// run, a rerun with nothing new) leaves even its mtime alone (H1, H2).
	if fi, err := f.Stat(); err != nil || fi.Size() > end {
		if err := f.Truncate(end); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return c, nil
}

// lockedOpen opens path and takes its exclusive lock. Because rewrite
// replaces the file by rename (moving the lock to the new inode), a lock
// won on an inode that is no longer at path is worthless: then it tries
// again on the current file.
func lockedOpen(fsys FS, path string) (FSFile, error) {
	for range 10 {
		f, err := fsys.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: %s", ErrLocked, path)
			}
			return nil, fmt.Errorf("checkpoint: lock %s: %w", path, err)
		}
		held, err1 := f.Stat()
		now, err2 := fsys.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return f, nil
		}
		_ = f.Close() // renamed away under us: lock the file that is there now
	}
	return nil, fmt.Errorf("%w: %s keeps being replaced", ErrLocked, path)
}

// load reads the file; it returns the offset after the last good line and
// the header (nil for an empty file).
func (c *File) load() (int64, *header, error) {
	r := bufio.NewReaderSize(c.f, 64<<10)
	var (
		off int64
		hdr *header
		n   int
	)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 { // torn last line: the process died mid-write
				c.Dropped = string(line)
			}
			return off, hdr, nil
		}
		if err != nil {
			return 0, nil, fmt.Errorf("checkpoint: read %s: %w", c.path, err)
		}
		n++
		if hdr == nil {
			var h header
			if json.Unmarshal(line, &h) != nil || h.Magic != "checkpoint" {
				return 0, nil, fmt.Errorf("%w: %s is not a mailferry checkpoint (line 1; pass --rebuild-state to rebuild it from the destination, or --reset to start afresh)", ErrUnusable, c.path)
			}
			if h.Version != Version {
				return 0, nil, fmt.Errorf("%w: %s has format version %d, this mailferry reads %d", ErrUnusable, c.path, h.Version, Version)
			}
			hdr = &h
		} else {
			var rec Record
			if err := json.Unmarshal(line, &rec); err != nil || rec.ID == "" {
				if _, perr := r.Peek(1); perr == io.EOF { // a bad last line is torn, not corrupt
					c.Dropped = string(line)
					return off, hdr, nil
				}
				return 0, nil, fmt.Errorf("%w: %s line %d is corrupt (pass --rebuild-state to rebuild it from the destination, or --reset to start afresh)", ErrUnusable, c.path, n)
			}
			c.put(rec)
		}
		off += int64(len(line))
	}
}

func (c *File) put(r Record) {
	k := Key{r.Mailbox, r.ID}
	if _, dup := c.recs[k]; !dup {
		c.byBox[r.Mailbox] = append(c.byBox[r.Mailbox], k)
	}
	c.recs[k] = r
}

// rewrite replaces the file's content with data via a temp file, fsync and
// rename, then fsyncs the directory; the lock moves to the new file.
func (c *File) rewrite(data []byte) error {
	tmp := c.path + ".tmp"
	t, err := c.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := syscall.Flock(int(t.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = t.Close()
		return fmt.Errorf("checkpoint: lock %s: %w", tmp, err)
	}
	if _, err = t.Write(data); err == nil {
		err = t.Sync()
	}
	if err == nil {
		err = c.fs.Rename(tmp, c.path)
	}
	if err == nil {
		err = c.fs.SyncDir(filepath.Dir(c.path))
	}
	if err != nil {
		_ = t.Close()
		_ = c.fs.Remove(tmp)
		return fmt.Errorf("checkpoint: write %s: %w", c.path, err)
	}
	_ = c.f.Close()
	c.f = t
	return nil
}

// MkdirAll creates dir and its missing parents on fsys, fsyncing the parent
// of each directory it creates: a checkpoint (or a sync/state directory)
// whose directory entry is lost in a power cut is lost itself (A8).
func MkdirAll(fsys FS, dir string) error {
	if fi, err := fsys.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent == dir {
		return nil
	}
	if err := MkdirAll(fsys, parent); err != nil {
		return err
	}
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return fsys.SyncDir(parent)
}

// Path returns the file's path.
func (c *File) Path() string { return c.path }

// Len returns the number of records.
func (c *File) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

// Has reports whether k was recorded.
func (c *File) Has(k Key) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.recs[k]
	return ok
}

// Records returns the records of mailbox.
func (c *File) Records(mailbox string) []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Record, 0, len(c.byBox[mailbox]))
	for _, k := range c.byBox[mailbox] {
		out = append(out, c.recs[k])
	}
	return out
}

// Mailboxes returns the mailboxes that have records, sorted.
func (c *File) Mailboxes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sortedKeys(c.byBox)
}

// Add records r; it reaches the disk with the next Flush.
func (c *File) Add(r Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("checkpoint: add: %w", mail.ErrClosed)
	}
	c.put(r)
	c.buf.Write(line)
	c.buf.WriteByte('\n')
	return nil
}

// StampStored gives every record written without a store time (by a
// mailferry older than --delete-after) the time at, once: such messages
// count as stored at the first run that records store times, never as
// old. The stamped records are appended again (a later line replaces an
// earlier one of the same key, so older readers still load the file);
// they reach the disk with the next Flush. It returns how many it stamped.
func (c *File) StampStored(at int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, fmt.Errorf("checkpoint: stamp: %w", mail.ErrClosed)
	}
	n := 0
	for _, mb := range sortedKeys(c.byBox) {
		for _, k := range c.byBox[mb] {
			r := c.recs[k]
			if r.Stored != 0 {
				continue
			}
			r.Stored = at
			line, err := json.Marshal(r)
			if err != nil {
				return n, fmt.Errorf("checkpoint: %w", err)
			}
			c.recs[k] = r
			c.buf.Write(line)
			c.buf.WriteByte('\n')
			n++
		}
	}
	return n, nil
}

// sortedKeys returns m's keys in order, so a stamp writes its lines in the
// same order every time.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Flush appends buffered records to the file and fsyncs it. A failure is
// fatal for the run: the records stay buffered, and nothing may be deleted
// on the source.
func (c *File) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flush()
}

func (c *File) flush() error {
	if c.buf.Len() == 0 || c.closed {
		return nil
	}
	end, err := c.f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = c.f.Write(c.buf.Bytes())
		if err != nil { // e.g. ENOSPC: leave no partial line for the next load to trip over
			_ = c.f.Truncate(end) // best effort: the write error is what we report
			_, _ = c.f.Seek(end, io.SeekStart)
		}
	}
	if err != nil {
		return mail.MakeFatal(fmt.Errorf("checkpoint: write %s: %w", c.path, err))
	}
	if err := c.f.Sync(); err != nil {
		return mail.MakeFatal(fmt.Errorf("checkpoint: fsync %s: %w", c.path, err))
	}
	c.buf.Reset()
	return nil
}

// Close flushes and releases the file and its lock. It is idempotent.
func (c *File) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	err := c.flush()
	c.closed = true
	if cerr := c.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("checkpoint: %w", cerr)
	}
	return err
}

// FlagString is the canonical form of a flag set kept in Record.Flags:
// lowercase (IMAP flags are case-insensitive), sorted, space-separated.
func FlagString(flags []mail.Flag) string {
	s := make([]string, len(flags))
	for i, f := range flags {
		s[i] = strings.ToLower(string(f))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// MsgIDSum is the short hash of a Message-ID kept in Record.MsgID: 64 bits
// are plenty next to size and date, and keep the header value (which may
// name people and hosts) out of the checkpoint.
func MsgIDSum(id string) string {
	if id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8])
}

// UnixDate is a date as kept in Record.Date: Unix seconds, 0 when unknown.
func UnixDate(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// Folders is what a Store that keeps each mailbox's records apart (the
// state-backed one, sync/state.Store) adds, so that a run reads only the
// mailboxes it works on and holds only those in memory. The engine asks
// for it with a type assertion; a Store without it (File) holds
// everything from the start.
type Folders interface {
	// Load reads mailbox's records now, reporting a damaged record log
	// (ErrUnusable) before the run acts on the mailbox.
	Load(mailbox string) error
	// Release writes mailbox's buffered records and drops them from
	// memory: the run is done with the mailbox. A later use reads them
	// again.
	Release(mailbox string) error
	// Len returns the number of records of mailbox.
	Len(mailbox string) int
	// Get returns the record of k without building the mailbox's others
	// (Records does: a change listing asks about a few of 50,000).
	Get(k Key) (Record, bool)
	// IDs returns the IDs recorded for mailbox whose messages the source
	// still holds (not Vanished), in no particular order.
	IDs(mailbox string) []mail.ID
}
