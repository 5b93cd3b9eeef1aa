package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// Version is the format version written in the summary and every folder log.
const Version = 1

// DefaultFullEvery is how often a folder is listed in full although its
// status says nothing moved (every Nth complete pass), so that a server bug
// cannot hide a change forever.
const DefaultFullEvery = 7

// ErrUnusable and ErrLocked are the checkpoint's: the CLI maps them to exit
// 6 and 7 already, and a state is the checkpoint's successor.
var (
	ErrUnusable = checkpoint.ErrUnusable
	ErrLocked   = checkpoint.ErrLocked
)

// damagedHint is what a refusal of a damaged state tells the user to do.
const damagedHint = "pass --rebuild-state to rebuild it from the destination, or --reset to start afresh"

const (
	summaryName = "summary.json"
	lockName    = "lock"
	summaryMark = "state"
)

// FS is the part of the file system a State uses: the checkpoint's, plus
// listing a directory. Power-loss tests pass the crash model (crashfs).
type FS interface {
	checkpoint.FS
	ReadDirNames(dir string) ([]string, error)
}

type osFS struct{}

func (osFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (osFS) OpenFile(name string, flag int, perm os.FileMode) (checkpoint.FSFile, error) {
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
func (osFS) ReadDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, err
}

// Options tune Open. The zero value is the real file system, no reset.
type Options struct {
	FS     FS           // nil: the real file system
	Reset  bool         // forget everything, also a state for other endpoints or a garbled one
	Logger *slog.Logger // warnings (a torn tail dropped); nil: none
	Now    func() time.Time
	// ReadOnly is for a dry run (docs/failure-model.md H2): nothing is
	// created or written (but the lock's pid, as for every run), a folder
	// the state does not know reads as empty, and every write fails with
	// ErrReadOnly. A missing state opens empty, without a lock.
	ReadOnly bool
}

// ErrReadOnly is returned by writes to a State opened with ReadOnly.
var ErrReadOnly = errors.New("state: opened read-only (dry run)")

// SideStatus is what one side's server said about a folder at the end of
// the last complete pass (IMAP STATUS / SELECT), zero where not known.
type SideStatus struct {
	UIDValidity   uint32 `json:"uv,omitempty"`
	UIDNext       uint32 `json:"un,omitempty"`
	Messages      uint32 `json:"n,omitempty"`
	HighestModSeq uint64 `json:"ms,omitempty"`
	// HighestUID is the highest UID the pass saw (two-way sync: a UID above
	// it is new on that side, one at or below it and unknown was deleted).
	HighestUID uint32 `json:"hu,omitempty"`
	// Evidence is opaque change evidence for sides without STATUS (a
	// Maildir's or mbox's), compared for equality only.
	Evidence string `json:"ev,omitempty"`
	// MailboxID is the folder's RFC 8474 MAILBOXID on that side, "" none
	// (two-way sync follows a rename by it).
	MailboxID string `json:"id,omitempty"`
	// Keeps is what that side keeps of flags in the folder (an IMAP
	// server's PERMANENTFLAGS) as the pass learnt it, at UIDValidity: "*"
	// every flag, else the flags, space-separated; "" not known. Two-way
	// sync's next incremental pass reads it here instead of selecting the
	// folder for it.
	Keeps string `json:"kf,omitempty"`
}

// Summary is a folder's pass state: read for every folder on every run,
// without reading its messages.
type Summary struct {
	A SideStatus `json:"a"`
	B SideStatus `json:"b"`
	// Complete is when the last complete pass over the folder ended (Unix
	// seconds); 0: never, the next pass must list in full.
	Complete int64 `json:"c,omitempty"`
	// SinceFull counts complete incremental passes since the last full
	// listing.
	SinceFull int `json:"s,omitempty"`
	// Len is the number of message records the folder held at Complete,
	// a check on the log next to the server's counts.
	Len int `json:"l,omitempty"`
	// Held is the evidence, opaque, that the folder's destination held a
	// message when it was last read (mail.HoldEvidencer): a run that finds
	// the same evidence need not read the destination again.
	Held string `json:"h,omitempty"`
}

// FullDue reports whether the next pass should list the folder in full:
// never completed, or the incremental passes since the last full listing
// reached every-1 (every <= 0: only when never completed).
func (s Summary) FullDue(every int) bool {
	return s.Complete == 0 || every > 0 && s.SinceFull >= every-1
}

// summaryFile is summary.json: the header of the whole state and every
// folder's summary. It is small (about 150 bytes a folder) and replaced
// whole, by rename.
type summaryFile struct {
	Magic    string `json:"mailferry"`
	Version  int    `json:"v"`
	A        string `json:"a"`
	B        string `json:"b"`
	NextGen  uint64 `json:"gen"`
	Migrated string `json:"migrated,omitempty"`
	IDA      string `json:"ida,omitempty"`
	IDB      string `json:"idb,omitempty"`
	// Epoch counts the writes of summary.json: the passes file is read
	// only while it carries the same (passes.go).
	Epoch   uint64                 `json:"ep,omitempty"`
	Folders map[string]*folderItem `json:"folders"`
}

type folderItem struct {
	Gen uint64 `json:"g"`
	Summary
	// evSet marks side evidence set by SetEvidence since summary.json was
	// last written: the passes file carries it until then (passes.go).
	evSet bool
}

// State is the incremental state of one endpoint pair: a directory holding
// summary.json, one log per folder (<gen>.log) and a lock file. Methods are
// safe for concurrent use.
type State struct {
	mu       sync.Mutex
	dir      string
	fs       FS
	readOnly bool
	lock     checkpoint.FSFile // nil: a read-only state that does not exist
	sum      summaryFile
	folders  map[string]*Folder // loaded folder logs
	// released remembers the record count of each folder Release dropped
	// from memory, so that CompletePass need not read its log again.
	released map[string]int
	// passesDirty says the summary in memory holds skipped passes or
	// evidence that neither summary.json nor the passes file has yet.
	passesDirty bool
	log         *slog.Logger
	now         func() time.Time
	closed      bool
}

// Open opens or creates the state directory dir for the endpoints a and b
// (redacted URLs, as the checkpoint's). It reads summary.json only; folder
// logs are read by Folder, so a run that skips a folder never parses its
// messages. A state for other endpoints, of another version or garbled is
// refused (ErrUnusable) unless opt.Reset; a second Open of the same
// directory gets ErrLocked while the first is open.
func Open(dir, a, b string, opt Options) (*State, error) {
	s := &State{dir: dir, fs: opt.FS, log: opt.Logger, now: opt.Now, readOnly: opt.ReadOnly, folders: map[string]*Folder{}, released: map[string]int{}}
	if s.fs == nil {
		s.fs = osFS{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.readOnly {
		return s, s.openReadOnly(a, b, opt.Reset)
	}
	if err := checkpoint.MkdirAll(s.fs, dir); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := s.takeLock(); err != nil {
		return nil, err
	}
	if err := s.loadOrCreate(a, b, opt.Reset); err != nil {
		_ = s.lock.Close()
		return nil, err
	}
	return s, nil
}

// openReadOnly opens an existing state for reading, or an empty one in
// memory when there is none.
func (s *State) openReadOnly(a, b string, reset bool) error {
	s.sum = summaryFile{Magic: summaryMark, Version: Version, A: a, B: b, NextGen: 1, Folders: map[string]*folderItem{}}
	if reset {
		return fmt.Errorf("state: a reset is a write: %w", ErrReadOnly)
	}
	if _, err := s.fs.Stat(s.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := s.takeLock(); err != nil {
		return err
	}
	old, err := s.readSummary()
	if err == nil && old != nil && (old.A != a || old.B != b) {
		err = fmt.Errorf("%w: %s was written for %s <-> %s, not %s <-> %s (pass --reset to start it afresh, or choose another state)",
			ErrUnusable, s.dir, old.A, old.B, a, b)
	}
	if err != nil {
		_ = s.lock.Close()
		return err
	}
	if old != nil {
		s.sum = *old
		s.readPasses()
	}
	return nil
}

// takeLock takes an exclusive flock on dir/lock, a file never renamed or
// removed (so, unlike a file replaced by rename, its lock means what it
// says), and writes the pid into it for the message a second run prints,
// as cmd/mailferry's lockRun does for the checkpoint. The kernel drops the
// lock when the process dies, however it dies.
func (s *State) takeLock() error {
	path := filepath.Join(s.dir, lockName)
	f, err := s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("state: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer func() { _ = f.Close() }()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w%s: %s; this run does nothing", ErrLocked, lockOwner(f), path)
		}
		return fmt.Errorf("state: lock %s: %w", path, err)
	}
	// The pid is only informative: a failure to write it changes nothing.
	if _, err := f.Seek(0, io.SeekStart); err == nil && f.Truncate(0) == nil {
		_, _ = f.Write([]byte(strconv.Itoa(os.Getpid()) + "\n"))
	}
	s.lock = f
	return nil
}

func lockOwner(f checkpoint.FSFile) string {
	buf := make([]byte, 32)
	n, _ := f.Read(buf)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil {
		return fmt.Sprintf(" (pid %d)", pid)
	}
	return ""
}

// loadOrCreate reads summary.json, or writes a fresh one for a new state
// or a reset.
func (s *State) loadOrCreate(a, b string, reset bool) error {
	old, err := s.readSummary()
	if err == nil && old != nil && (old.A != a || old.B != b) {
		err = fmt.Errorf("%w: %s was written for %s <-> %s, not %s <-> %s (pass --reset to start it afresh, or choose another state)",
			ErrUnusable, s.dir, old.A, old.B, a, b)
	}
	if err != nil && !reset {
		return err
	}
	if err == nil && old != nil && !reset {
		s.sum = *old
		s.readPasses()
		return nil
	}
	s.sum = summaryFile{Magic: summaryMark, Version: Version, A: a, B: b, NextGen: 1, Folders: map[string]*folderItem{}}
	if old != nil {
		s.sum.NextGen = old.NextGen // a new log never reuses an old one's name
		s.sum.Epoch = old.Epoch
	}
	if err := s.removePasses(); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := s.writeSummary(); err != nil {
		return err
	}
	if old != nil { // after the new summary no longer names them
		for _, it := range old.Folders {
			_ = s.fs.Remove(s.logPath(it.Gen))
		}
	}
	return nil
}

// readSummary returns the summary, nil for a new state. A missing summary
// beside folder logs is a garbled state, not a new one.
func (s *State) readSummary() (*summaryFile, error) {
	path := filepath.Join(s.dir, summaryName)
	f, err := s.fs.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, s.checkEmpty()
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("state: read %s: %w", path, err)
	}
	var sum summaryFile
	if json.Unmarshal(data, &sum) != nil || sum.Magic != summaryMark || sum.Folders == nil {
		return nil, fmt.Errorf("%w: %s is not a mailferry state summary (%s)", ErrUnusable, path, damagedHint)
	}
	if sum.Version != Version {
		return nil, fmt.Errorf("%w: %s has format version %d, this mailferry reads %d", ErrUnusable, path, sum.Version, Version)
	}
	for name, it := range sum.Folders {
		if it == nil || it.Gen == 0 || it.Gen >= sum.NextGen {
			return nil, fmt.Errorf("%w: %s: folder %q has a bad generation (%s)", ErrUnusable, path, name, damagedHint)
		}
	}
	return &sum, nil
}

// checkEmpty refuses a directory without summary.json that holds folder
// logs: their summary was lost, and starting afresh would forget them.
func (s *State) checkEmpty() error {
	names, err := s.fs.ReadDirNames(s.dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, ".log") {
			return fmt.Errorf("%w: %s has folder logs but no %s (%s)", ErrUnusable, s.dir, summaryName, damagedHint)
		}
	}
	return nil
}

// writeSummary replaces summary.json: temp file, fsync, rename, directory
// fsync. It holds the skipped passes and evidence too, and a new epoch
// that makes the passes file stale. Called with mu held (or before s is
// shared).
func (s *State) writeSummary() error {
	s.sum.Epoch++
	data, err := json.Marshal(&s.sum)
	if err != nil {
		s.sum.Epoch--
		return fmt.Errorf("state: %w", err)
	}
	if err := replaceFile(s.fs, filepath.Join(s.dir, summaryName), append(data, '\n')); err != nil {
		// Fatal for the run. Whichever summary is on disk, the passes file
		// goes with it or is ignored: no count is applied twice.
		s.sum.Epoch--
		return mail.MakeFatal(fmt.Errorf("state: %w", err))
	}
	s.passesDirty = false
	for _, it := range s.sum.Folders {
		it.evSet = false // summary.json holds it now
	}
	return nil
}

// replaceFile makes data the content of path: written to path.tmp,
// fsynced, renamed over path, and the directory fsynced, so a crash leaves
// the old content or the new, never a mix or nothing.
func replaceFile(fsys FS, path string, data []byte) error {
	tmp := path + ".tmp"
	t, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err = t.Write(data); err == nil {
		err = t.Sync()
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err == nil {
		err = fsys.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = fsys.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (s *State) logPath(gen uint64) string {
	return filepath.Join(s.dir, strconv.FormatUint(gen, 10)+".log")
}

// Dir returns the state's directory.
func (s *State) Dir() string { return s.dir }

// Folders returns the names of the folders the state knows, sorted.
func (s *State) Folders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.sum.Folders))
	for n := range s.sum.Folders {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Summary returns a folder's pass state; false when the state does not know
// the folder.
func (s *State) Summary(name string) (Summary, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.sum.Folders[name]
	if !ok {
		return Summary{}, false
	}
	return it.Summary, true
}

// Migrated returns the checkpoint path this state was migrated from, "" if
// none.
func (s *State) Migrated() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum.Migrated
}

// Identities returns each side's identity as last recorded ("" unknown).
func (s *State) Identities() (a, b string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum.IDA, s.sum.IDB
}

// SetIdentities records each side's identity (two-way sync: IMAP
// host+user+INBOX UIDVALIDITY, a Maildir's marker), so that a later run
// can refuse to infer deletions from a side that is not the one it synced.
func (s *State) SetIdentities(a, b string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readOnly {
		return ErrReadOnly
	}
	if s.sum.IDA == a && s.sum.IDB == b {
		return nil
	}
	s.sum.IDA, s.sum.IDB = a, b
	return s.writeSummary()
}

// CompletePass records the end of a complete pass over folder name: each
// side's status, and whether the pass listed in full. Buffered records of
// every folder are flushed first, so a summary never promises a pass whose
// records a crash could lose.
func (s *State) CompletePass(name string, a, b SideStatus, full bool) error {
	return s.CompletePasses([]Pass{{Name: name, A: a, B: b, Full: full}})
}

// Pass is the end of a complete pass over one folder (CompletePasses).
type Pass struct {
	Name string
	A, B SideStatus
	Full bool // the pass listed the folder in full
}

// CompletePasses records the end of complete passes over several folders
// with one write of summary.json (two fsyncs), not one per folder: a run
// that listed seven folders records their passes together. The buffered
// records of every folder are flushed first, so the summary never promises
// a pass whose records a crash could lose; a crash before the summary's
// rename leaves every one of these passes unrecorded, and the next run
// lists those folders again from their previous passes.
func (s *State) CompletePasses(passes []Pass) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readOnly {
		return ErrReadOnly
	}
	if len(passes) == 0 {
		return nil
	}
	lens := make([]int, len(passes))
	for i, p := range passes {
		n, err := s.passLen(p.Name)
		if err != nil {
			return err
		}
		lens[i] = n
	}
	if err := s.flush(); err != nil {
		return err
	}
	for _, p := range passes {
		if f := s.folders[p.Name]; f != nil && f.worthCompacting() {
			if err := s.rewriteFolder(f, f.recs); err != nil {
				return err
			}
		}
	}
	now := s.now().Unix()
	for i, p := range passes {
		it := s.sum.Folders[p.Name]
		it.A, it.B, it.Complete, it.Len = p.A, p.B, now, lens[i]
		if p.Full {
			it.SinceFull = 0
		} else {
			it.SinceFull++
		}
	}
	return s.writeSummary()
}

// SkipPasses counts a run that found folders names unchanged (each side's
// status equal to the summary's) and did not list them: a pass over each
// that reads no log, so FullDue still comes round every Nth run however
// long a folder stays unchanged. Complete and the statuses stay those of
// the last listing. The counts go to the passes file (one write without
// fsync for all of them, passes.go), and into summary.json with its next
// write.
func (s *State) SkipPasses(names []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readOnly {
		return ErrReadOnly
	}
	n := 0
	for _, name := range names {
		if it, ok := s.sum.Folders[name]; ok && it.Complete != 0 {
			it.SinceFull++
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return s.writePasses()
}

// passLen returns the record count of folder name for CompletePass: from
// memory, from when Release dropped it (without reading its log again), or
// else from its log. Called with mu held.
func (s *State) passLen(name string) (int, error) {
	if f := s.folders[name]; f != nil {
		return len(f.recs), nil
	}
	if n, ok := s.released[name]; ok && s.sum.Folders[name] != nil {
		return n, nil
	}
	f, err := s.folder(name)
	if err != nil {
		return 0, err
	}
	return len(f.recs), nil
}

// Empty reports whether no folder holds a record, without reading any
// log: a log no longer than its header line holds none. (A log of puts
// all forgotten again counts as not empty; so does one with a torn tail.)
func (s *State) Empty() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, it := range s.sum.Folders {
		if f := s.folders[name]; f != nil {
			if len(f.recs) > 0 {
				return false, nil
			}
			continue
		}
		fi, err := s.fs.Stat(s.logPath(it.Gen))
		if err != nil {
			return false, fmt.Errorf("%w: %s: the log of folder %q: %v (%s)", ErrUnusable, s.logPath(it.Gen), name, err, damagedHint)
		}
		if fi.Size() > int64(headerLen(it.Gen, name)) {
			return false, nil
		}
	}
	return true, nil
}

// RemoveFolder forgets a folder: its summary entry, then its log.
func (s *State) RemoveFolder(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readOnly {
		return ErrReadOnly
	}
	it, ok := s.sum.Folders[name]
	if !ok {
		return nil
	}
	delete(s.sum.Folders, name)
	delete(s.folders, name)
	delete(s.released, name)
	if err := s.writeSummary(); err != nil {
		return err
	}
	_ = s.fs.Remove(s.logPath(it.Gen)) // an orphan left by a failure is never read
	return nil
}

// Flush writes the buffered records of every folder to its log and fsyncs
// it. A failure is fatal for the run (mail.Fatal): the records stay
// buffered and the log is cut back to its last whole line.
func (s *State) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flush()
}

func (s *State) flush() error {
	if s.closed {
		return nil
	}
	for _, f := range s.folders {
		if err := s.flushFolder(f); err != nil {
			return err
		}
	}
	return nil
}

// Close flushes and releases the state and its lock. It is idempotent.
func (s *State) Close() error {
	return s.close(true)
}

// Abandon releases the state and its lock without writing what was not
// flushed yet, as a killed process leaves it (the two-way sync's journal
// and settle make that safe): for a run that must record nothing more (a
// batch worker whose hold on the account lapsed, twoway.RunOptions.Fence).
// Close after it does nothing.
func (s *State) Abandon() error {
	return s.close(false)
}

func (s *State) close(flush bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var err error
	if flush {
		err = s.flush()
		if s.passesDirty && !s.readOnly {
			// Only evidence is left unwritten here (SkipPasses writes its
			// counts at once): losing it costs the next run a read.
			_ = s.writePasses()
		}
	}
	s.closed = true
	s.folders = nil
	if s.lock == nil {
		return err
	}
	_ = s.lock.Truncate(0) // still locked: no one reads a pid that is gone
	if cerr := s.lock.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("state: %w", cerr)
	}
	return err
}
