// Package maildir delivers messages into a Maildir++ tree (the layout Dovecot
// and Courier read as is) with batched durability: Put writes a message to
// tmp/, and Commit makes every message Put before it durable at once: one
// syncfs(2) of the file system on Linux (elsewhere, and for a folder on
// another file system, an fsync per file, a few in parallel), then rename
// them into cur/ or new/, then fsync each touched directory once. Batching
// the syncs is what makes durable delivery fast (docs/performance.md: about half
// of mbsync's time, which fsyncs per message; BENCHMARKS.md for syncfs).
//
// go-maildir is used only for its flag letters. Its delivery path cannot be
// used: Dir.Create never fsyncs the file or the directory, and the writer's
// Close renames whatever was written into cur/, so a body that fails midway
// becomes a visible, truncated message (docs/library-notes.md §4; proven by
// TestGoMaildirRenamesPartialFile). It also renames at once, which rules out
// batching, and its names cannot carry our idempotence key.
//
// File names are "<unix time>.M<usec>P<pid>Q<seq>R<random>.<host>,MF=<key>,S=<size>"
// followed by ":2,<flags>" in cur/. The ",MF=<key>" field holds
// mail.Envelope.Key, which makes Put idempotent: a key already present in the
// folder is not written again, so a crash between the durable rename and the
// checkpoint record causes no duplicate (docs/failure-model.md A3). ",S=" is the
// size field Dovecot reads instead of stat.
//
// Flags: \Seen S, \Answered R, \Flagged F, \Deleted T, \Draft D and the
// keyword $Forwarded P (maildirfmt.FlagLetters, which sources/maildir reads
// back; Dovecot keeps P but does not show it over IMAP). Other keywords take
// the letters a-z of the folder's dovecot-keywords file, as Dovecot stores
// them (maildirfmt.AddKeywords, under Dovecot's own lock for that file); past
// 26 keywords in a folder, a new one is dropped with a warning. A message
// with at least one stored flag goes to cur/; one without goes to new/,
// which Dovecot reports as \Recent, as a fresh delivery. SetFlags (flags.go)
// changes the flags of a stored message by renaming its file, so flag
// changes on the source follow on a rerun.
// The file's mtime is set to Envelope.Date (Dovecot's received date).
package maildir

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/internal/fsevidence"
	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

var (
	_ mail.Sink         = (*Sink)(nil)
	_ mail.Committer    = (*Sink)(nil)
	_ mail.Indexer      = (*Sink)(nil)
	_ mail.StoredReader = (*Sink)(nil)
	_ mail.FlagSetter   = (*Sink)(nil)
)

const (
	// tmpSuffix marks our files in tmp/: "<run>.<seq>.mailferry-tmp". Only
	// such files whose run is dead are ever removed by a later run.
	tmpSuffix = ".mailferry-tmp"
	// lockSuffix names a run's lock file in the root's tmp/, flock(2)ed for
	// the sink's lifetime: "<run>.mailferry-lock". The lock dies with the
	// process, so kill -9 leaves a run that the next New recognises as dead.
	lockSuffix = ".mailferry-lock"
	// keyField precedes Envelope.Key in a file name.
	keyField = ",MF="
	// syncWorkers is how many files Commit fsyncs at once. A few keep the
	// disk's queue busy; more adds nothing on a 2-core machine.
	syncWorkers = 4
	// maxOpenPending bounds the files kept open between Put and Commit. Past
	// it Put closes the file and Commit reopens it to fsync: the data is the
	// inode's, so an fsync through any descriptor makes it durable.
	maxOpenPending = 256
	// fewFiles is the largest batch Commit fsyncs file by file (with
	// their directories) even where it has syncfs. A syncfs writes out
	// every dirty page of the file system, other programs' too: for a
	// nightly rerun's one new message on a machine with other writers
	// it cost 8.4 ms against 1.9 ms for the file's fsync (medians; one
	// fsync per file, four at a time, stays within one fsync's time up to
	// syncWorkers files, and syncfs wins from about 8 on: see
	// docs/performance.md).
	fewFiles = syncWorkers
)

// Sink writes into a Maildir++ tree. It is safe for concurrent use: Puts may
// run in parallel with each other and with Commit.
type Sink struct {
	root     string
	log      *slog.Logger
	fs       fileSystem
	now      func() time.Time
	pid      int
	host     string
	run      string // this sink's run id, the prefix of its tmp files
	filePerm os.FileMode
	dirPerm  os.FileMode
	seq      atomic.Uint64
	// tmpLeft says a file of this run's could not be removed from a tmp/:
	// Close then keeps the run's lock file (removeTmp).
	tmpLeft  atomic.Bool
	lock     *os.File
	lockPath string
	// syncRoot syncs the root's file system when Commit makes a batch
	// durable with one syncfs instead of one fsync per file (New, on
	// Linux); syncDev is that file system. nil: an fsync per file.
	syncRoot fsSyncer
	syncDev  uint64
	// syncfsOver is the most files a batch fsyncs one by one although
	// syncRoot is set: see fewFiles.
	syncfsOver int

	commitMu sync.Mutex // serialises Commit and Close

	// prep counts PreparePuts reads in flight (Close waits for them);
	// hashSeed seeds their key hashes.
	prep     sync.WaitGroup
	hashSeed maphash.Seed

	mu        sync.Mutex // guards everything below
	closed    bool
	folders   map[string]*folder // by directory
	pending   []*pending
	open      int                 // pending entries holding an open file
	dirty     map[string]struct{} // directories with entries not yet fsynced
	rootNames map[string]bool     // cached names in the root (case check)

	// tree reads the root back, as the Maildir source does, for Index and
	// OpenStored.
	tree *maildirfmt.Tree
	// clock judges the age of HoldsSince's evidence (SetClock).
	clock fsevidence.Clock
}

// folder is one mailbox directory the sink has touched.
type folder struct {
	dir string
	// dev is the file system of the folder's tmp/ (devOK: known). Only
	// folders on the root's file system are covered by its syncfs.
	dev   uint64
	devOK bool

	init  sync.Mutex // held while the directories are made
	ready bool       // the directories are made

	mu   sync.Mutex
	keys map[string]*keyState // Envelope.Key -> message: all stored ones once indexed
	// indexed says keys holds every key stored in the folder. Until then it
	// holds the keys this run put or looked up, and a Put of another key
	// looks for it on disk (lookupKey): a rerun that adds one message to a
	// 50,000-message folder reads its names once, without indexing them.
	indexed bool
	scans   int // lookups by scan so far (keyScans)
	// stored holds a hash of every key stored in the folder when
	// PreparePuts read its names (nil: it did not): a key whose hash is
	// absent is not stored, a Put of it needs no scan.
	stored map[uint64]struct{}

	// kwMu guards the folder's keyword table, read from its dovecot-keywords
	// on first use (kwRead) and extended by AddKeywords, and the keywords
	// already warned about as not fitting.
	kwMu     sync.Mutex
	kw       maildirfmt.Keywords
	kwRead   bool
	kwWarned map[string]bool
}

// keyState is a key present in a folder, or being written.
type keyState struct {
	id   string
	done chan struct{} // non-nil while a Put of this key is writing
}

// pending is a message written to tmp/ and not yet committed.
type pending struct {
	folder *folder
	f      file // nil once closed early (maxOpenPending)
	tmp    string
	sub    string // "cur" or "new"
	id     string // unique part of the final name: the ID; changed only by Commit, under folder.mu
	info   string // ":2,<flags>" or ""
	key    string
	size   int64
	date   time.Time
}

// New opens (creating if needed) the Maildir++ tree at root for delivery.
// It creates root with cur/, new/ and tmp/, takes a run lock, and removes
// stale files a killed earlier run left in any tmp/ (only files carrying our
// tmp marker whose run holds no lock; other programs' files are never
// touched). A root that exists but is not a directory is a *mail.ConfigError.
func New(ctx context.Context, root string, o *mail.OpenOptions) (*Sink, error) {
	s, err := newSink(ctx, root, o, osFS{}, time.Now)
	if err != nil {
		return nil, err
	}
	s.enableSyncFS()
	return s, nil
}

// enableSyncFS makes Commit use one syncfs(2) of the root's file system per
// batch instead of one fsync per file, where the OS has it. On this ext4
// (no journal) each fsync writes the file's data and its inode block and
// flushes the disk cache, one message at a time; one syncfs writes all the
// batch's blocks in merged requests and flushes once. It cost about half
// the kernel CPU of IMAP -> Maildir (BENCHMARKS.md). The guarantee is the
// same: every file and its tmp/ entry are on disk before any rename, and
// the renames' directories are fsynced before Commit returns. A batch of
// fewFiles or fewer keeps the fsync per file. Sinks made
// by newSink (tests with an injected file system) keep the per-file fsync
// unless the test calls enableSyncFS, which goes through the injected
// fileSystem's OpenSyncFS (the power-loss test models syncfs there).
func (s *Sink) enableSyncFS() {
	r, dev, err := s.fs.OpenSyncFS(s.root)
	if err != nil {
		s.log.Debug("maildir: no syncfs; fsyncing each file", "err", err)
		return
	}
	s.syncRoot, s.syncDev, s.syncfsOver = r, dev, fewFiles
}

func newSink(ctx context.Context, root string, o *mail.OpenOptions, fsys fileSystem, now func() time.Time) (*Sink, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	side := "dst"
	if o != nil && o.Side != "" {
		side = o.Side
	}
	root = filepath.Clean(root)
	s := &Sink{
		root:    root,
		log:     o.Log().With("side", side, "scheme", "maildir"),
		fs:      fsys,
		now:     now,
		pid:     os.Getpid(),
		host:    hostname(),
		folders: map[string]*folder{},
		dirty:   map[string]struct{}{},
		tree:    maildirfmt.NewTree(root, nil),

		hashSeed: maphash.MakeSeed(),
	}
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, fmt.Errorf("maildir: create %s: %w", root, err)
		}
		s.dirty[filepath.Dir(root)] = struct{}{}
		if fi, err = os.Stat(root); err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("maildir: open %s: %w", root, err)
	case !fi.IsDir():
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("maildir: %s is not a directory", root), Hint: "point maildir: at a Maildir root directory"}
	}
	// Mail is private: 0700 directories and 0600 files, even in a 0755
	// root. A root the group may write (0770, a shared mailbox) shares them
	// with the group, as Dovecot would.
	s.dirPerm, s.filePerm = 0o700, 0o600
	if fi.Mode().Perm()&0o070 == 0o070 {
		s.dirPerm, s.filePerm = 0o770, 0o660
	}
	if _, err := s.folder(ctx, "INBOX"); err != nil {
		return nil, err
	}
	if err := s.lockRun(); err != nil {
		return nil, err
	}
	s.cleanStale()
	return s, nil
}

// hostname returns the host name as a Maildir name may hold it: '/' and ':'
// escaped as the Maildir description says, and ',' too since it separates
// our fields.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return strings.NewReplacer("/", `\057`, ":", `\072`, ",", `\054`).Replace(h)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lockRun creates and flocks this run's lock file. It checks after locking
// that the path still names the locked file: a concurrent New may have found
// the fresh file unlocked and removed it as stale, and then we retry.
func (s *Sink) lockRun() error {
	var last error
	for range 5 {
		run := randomHex(8)
		p := filepath.Join(s.root, "tmp", run+lockSuffix)
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				last = err
				continue
			}
			return fmt.Errorf("maildir: lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			last = err
			continue
		}
		a, err1 := f.Stat()
		b, err2 := os.Lstat(p)
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			_ = f.Close()
			last = errors.Join(err1, err2, errors.New("lock file replaced"))
			continue
		}
		s.run, s.lock, s.lockPath = run, f, p
		return nil
	}
	return fmt.Errorf("maildir: lock %s: %w", s.root, last)
}

// cleanStale removes our tmp files left by dead runs in the root's and
// every folder's tmp/, then the dead runs' lock files. A run is dead when
// its lock file is gone or can be flocked; it stays locked by us until its
// lock file is removed, so a starting run cannot adopt it meanwhile.
//
// A run's lock file outlives every tmp file of its: a killed run leaves it,
// Close removes it only once the run's tmp files are gone (closeLock), and
// this removes a dead run's lock only after all its files. So when the
// root's tmp/ (where the locks are) names no dead run, no folder can hold
// a file to clean, and the folders' tmp/ are not read: a no-op rerun over
// a tree of many folders reads one directory here, not one per folder.
func (s *Sink) cleanStale() {
	c := &staleCleaner{s: s, dead: map[string]*os.File{}, live: map[string]bool{s.run: true}, failed: map[string]bool{}}
	rootTmp := filepath.Join(s.root, "tmp")
	names, err := s.fs.ReadDirNames(rootTmp)
	if err != nil {
		return
	}
	for _, n := range names {
		run, _, _ := strings.Cut(n, ".")
		if (strings.HasSuffix(n, tmpSuffix) || n == run+lockSuffix) && c.isDead(run) {
			break // one dead run is enough to clean everywhere
		}
	}
	if len(c.dead) == 0 {
		return
	}
	c.clean(rootTmp, names)
	if ents, err := os.ReadDir(s.root); err == nil {
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), ".") {
				c.cleanDir(filepath.Join(s.root, e.Name(), "tmp"))
			}
		}
	}
	c.finish()
}

// staleCleaner is one cleanStale pass: the runs found dead (their locks
// held while we clean) or live, and the dead runs whose files could not all
// be removed (their locks stay, so the next run tries again).
type staleCleaner struct {
	s       *Sink
	dead    map[string]*os.File // run -> its lock, held; nil if no lock file
	live    map[string]bool
	failed  map[string]bool
	removed int
}

func (c *staleCleaner) isDead(run string) bool {
	if c.live[run] {
		return false
	}
	if _, ok := c.dead[run]; ok {
		return true
	}
	f, err := os.OpenFile(filepath.Join(c.s.root, "tmp", run+lockSuffix), os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		c.dead[run] = nil
		return true
	}
	if err != nil || syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		if f != nil {
			_ = f.Close()
		}
		c.live[run] = true
		return false
	}
	c.dead[run] = f
	return true
}

// cleanDir removes the dead runs' files in the tmp/ directory d.
func (c *staleCleaner) cleanDir(d string) {
	fi, err := os.Lstat(d)
	if err != nil || !fi.IsDir() {
		return
	}
	names, err := c.s.fs.ReadDirNames(d)
	if err != nil {
		return
	}
	c.clean(d, names)
}

func (c *staleCleaner) clean(d string, names []string) {
	for _, n := range names {
		run, _, _ := strings.Cut(n, ".")
		if !strings.HasSuffix(n, tmpSuffix) || !c.isDead(run) {
			continue
		}
		if err := c.s.fs.Remove(filepath.Join(d, n)); err == nil || errors.Is(err, fs.ErrNotExist) {
			c.removed++
		} else {
			c.failed[run] = true
		}
	}
}

// finish removes the locks of the dead runs cleaned up and releases them.
func (c *staleCleaner) finish() {
	for run, f := range c.dead {
		if f == nil {
			continue
		}
		if !c.failed[run] {
			_ = os.Remove(filepath.Join(c.s.root, "tmp", run+lockSuffix))
		}
		_ = f.Close()
	}
	if c.removed > 0 {
		c.s.log.Info("maildir: removed files a killed run left in tmp/", "count", c.removed)
	}
}

// removeTmp removes one of this run's files in a tmp/. A failure makes
// Close leave the run's lock file behind (unlocked), so that the next run
// finds this one dead and removes what it left (cleanStale only reads the
// folders' tmp/ when a dead run's lock is there).
func (s *Sink) removeTmp(p string) error {
	err := s.fs.Remove(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.tmpLeft.Store(true)
	}
	return err
}

// live returns ErrClosed after Close, else ctx's error.
func (s *Sink) live(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return mail.ErrClosed
	}
	return ctx.Err()
}

// folder returns the folder of mailbox, making its directories on first
// use. Its keys are looked up only when a Put needs them (claim), so a run
// that stores nothing in the folder (a no-op rerun, a flag change) never
// reads its names.
func (s *Sink) folder(ctx context.Context, mailbox string) (*folder, error) {
	dir, err := maildirfmt.FolderDir(s.root, mailbox)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	f := s.folders[dir]
	if f == nil {
		f = &folder{dir: dir}
		s.folders[dir] = f
	}
	s.mu.Unlock()
	f.init.Lock()
	defer f.init.Unlock()
	if f.ready {
		return f, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fresh, err := s.prepare(f.dir)
	if err != nil {
		return nil, fmt.Errorf("maildir: mailbox %q: %w", mailbox, err)
	}
	// A folder directory may be a mount point: its messages are then not
	// covered by a syncfs of the root's file system.
	if fi, err := s.fs.Lstat(filepath.Join(f.dir, "tmp")); err == nil {
		f.dev, f.devOK = devOf(fi)
	}
	// A folder just made holds no key; another is looked up on the first
	// Put (claim), not here: SetFlags and CreateMailbox need no keys.
	f.keys, f.indexed, f.ready = map[string]*keyState{}, fresh, true
	return f, nil
}

// prepare makes dir a Maildir folder: the directory, cur/ new/ tmp/, and a
// maildirfolder marker below the root (as Courier and Dovecot do). Entries it
// creates are recorded as dirty for the next Commit. It reports whether cur/
// and new/ were just created (so there is nothing to index). Symlinks are
// refused, never followed.
func (s *Sink) prepare(dir string) (fresh bool, err error) {
	var dirty []string
	isRoot := dir == s.root
	if !isRoot {
		created, err := s.mkdir(dir)
		if err != nil {
			return false, err
		}
		if created {
			dirty = append(dirty, s.root)
		} else if err := s.checkExactName(filepath.Base(dir)); err != nil {
			return false, err
		}
	}
	fresh = true
	for _, sub := range []string{"cur", "new", "tmp"} {
		created, err := s.mkdir(filepath.Join(dir, sub))
		if err != nil {
			return false, err
		}
		if created {
			dirty = append(dirty, dir)
		} else if sub != "tmp" {
			fresh = false
		}
	}
	if !isRoot {
		f, err := s.fs.Create(filepath.Join(dir, "maildirfolder"), s.filePerm)
		switch {
		case err == nil:
			if err := f.Close(); err != nil {
				return false, err
			}
			dirty = append(dirty, dir)
		case !errors.Is(err, fs.ErrExist):
			return false, err
		}
	}
	s.mu.Lock()
	for _, d := range dirty {
		s.dirty[d] = struct{}{}
	}
	s.mu.Unlock()
	return fresh, nil
}

// mkdir creates p and reports whether it did. An existing p must be a real
// directory: a symlink is refused with a *mail.ConfigError.
func (s *Sink) mkdir(p string) (bool, error) {
	err := s.fs.Mkdir(p, s.dirPerm)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, err
	}
	fi, err := s.fs.Lstat(p)
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, &mail.ConfigError{Msg: fmt.Sprintf("maildir: %s exists and is not a directory (symlinks are not followed)", p)}
	}
	return false, nil
}

// checkExactName makes sure the existing folder directory base is spelt
// exactly so in the root. On a case-insensitive file system ".foo" "exists"
// when ".Foo" does; merging two mailboxes that way is refused.
func (s *Sink) checkExactName(base string) error {
	s.mu.Lock()
	ok := s.rootNames[base]
	s.mu.Unlock()
	if ok {
		return nil
	}
	names, err := s.fs.ReadDirNames(s.root)
	if err != nil {
		return err
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	s.mu.Lock()
	s.rootNames = set
	s.mu.Unlock()
	if !set[base] {
		return &mail.ConfigError{
			Msg:  fmt.Sprintf("maildir: folder %s collides with a folder named in another case", base),
			Hint: "the file system is case-insensitive; rename one of the mailboxes",
		}
	}
	return nil
}

// keyScans is how many keys a folder looks up by scanning its names before
// it indexes them all: a scan reads as many names as the index does (the
// kernel's readdir is most of either's cost) but keeps none, so a rerun
// that puts a message or two into a big folder builds no index, and one
// that puts many pays for at most keyScans scans more than before.
const keyScans = 2

// lookupKey finds key among the messages stored in f, which is not indexed
// yet, by one scan of its names while it has scans left, else by indexing
// them all (f.indexed); it records what it finds in f.keys. Called with
// f.mu held: Puts into f wait for the scan, so none misses another's key.
func (s *Sink) lookupKey(f *folder, key string) (*keyState, error) {
	if f.scans < keyScans {
		f.scans++
		var found *keyState
		err := s.eachKey(f.dir, func(k, id string) bool {
			if k == key {
				found = &keyState{id: id}
			}
			return found == nil
		})
		if err != nil || found == nil {
			return nil, err
		}
		f.keys[key] = found
		return found, nil
	}
	err := s.eachKey(f.dir, func(k, id string) bool {
		if f.keys[k] == nil { // a key this run claimed or found stays as it is
			f.keys[k] = &keyState{id: id}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	f.indexed = true
	return f.keys[key], nil
}

// eachKey calls fn with the key and ID of every message in dir's cur/ and
// new/ that carries a key, until fn returns false: one readdir each, no
// stat, the names read in chunks (namesIn).
func (s *Sink) eachKey(dir string, fn func(key, id string) bool) error {
	for _, sub := range []string{"cur", "new"} {
		more := true
		err := s.namesIn(filepath.Join(dir, sub), func(n string) bool {
			if !strings.Contains(n, keyField) {
				return true
			}
			id, _, _ := strings.Cut(n, ":")
			if k := keyOf(id); k != "" {
				more = fn(k, id)
			}
			return more
		})
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// nameWalker is a fileSystem that reads a directory's names a chunk at a
// time (osFS), so a scan of a big folder holds one chunk, not every name.
type nameWalker interface {
	WalkNames(dir string, fn func(name string) bool) error
}

// namesIn calls fn with each name in dir until it returns false.
func (s *Sink) namesIn(dir string, fn func(string) bool) error {
	if w, ok := s.fs.(nameWalker); ok {
		return w.WalkNames(dir, fn)
	}
	names, err := s.fs.ReadDirNames(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if !fn(n) {
			return nil
		}
	}
	return nil
}

// keyOf extracts the ",MF=<key>" field of a file name's unique part.
func keyOf(id string) string {
	_, rest, ok := strings.Cut(id, keyField)
	if !ok {
		return ""
	}
	k, _, _ := strings.Cut(rest, ",")
	return k
}

// safeKey returns key as it goes into a file name: as is when it is short
// and made of [0-9A-Za-z_-] (the engine's hex keys), else a digest of it, so
// a hostile key can never change the path.
func safeKey(key string) string {
	ok := len(key) <= 64
	for i := 0; ok && i < len(key); i++ {
		c := key[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-'
	}
	if ok {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "x" + hex.EncodeToString(sum[:16])
}

// claim returns the ID of key if the folder holds it, or takes ownership of
// writing it. A Put of the same key already writing is waited for.
func (s *Sink) claim(ctx context.Context, f *folder, key string) (string, *keyState, error) {
	for {
		f.mu.Lock()
		st := f.keys[key]
		if st == nil && !f.indexed && !s.storedNot(f, key) {
			var err error
			if st, err = s.lookupKey(f, key); err != nil {
				f.mu.Unlock()
				return "", nil, fmt.Errorf("maildir: %s: look for a stored copy: %w", f.dir, err)
			}
		}
		if st == nil {
			st = &keyState{done: make(chan struct{})}
			f.keys[key] = st
			f.mu.Unlock()
			return "", st, nil
		}
		if st.done == nil {
			id := st.id
			f.mu.Unlock()
			return id, nil, nil
		}
		ch := st.done
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return "", nil, ctx.Err()
		}
	}
}

// settle ends a claim: the key now names p's message, or (p == nil) is free
// again. It returns p's ID, read under the lock that Commit's renames take.
func (f *folder) settle(key string, st *keyState, p *pending) string {
	id := ""
	f.mu.Lock()
	if p != nil {
		id = p.id
		st.id = id
	} else if f.keys[key] == st {
		delete(f.keys, key)
	}
	close(st.done)
	st.done = nil
	f.mu.Unlock()
	return id
}

// forget drops key if it still names id (its Commit failed).
func (f *folder) forget(key, id string) {
	if key == "" {
		return
	}
	f.mu.Lock()
	if st := f.keys[key]; st != nil && st.done == nil && st.id == id {
		delete(f.keys, key)
	}
	f.mu.Unlock()
}

// renamed gives p the ID id after a name collision, and moves p's key to it.
// A Put still settling p reads the new ID in settle.
func (f *folder) renamed(p *pending, id string) {
	f.mu.Lock()
	old := p.id
	p.id = id
	if st := f.keys[p.key]; p.key != "" && st != nil && st.done == nil && st.id == old {
		st.id = id
	}
	f.mu.Unlock()
}

// CreateMailbox makes name and its parents exist (in Maildir++ a parent is
// just another folder directory) and makes the new directories durable at
// once. An invalid name gives a *mail.ConfigError.
func (s *Sink) CreateMailbox(ctx context.Context, name string) error {
	if err := s.live(ctx); err != nil {
		return err
	}
	if _, err := maildirfmt.FolderDir(s.root, name); err != nil {
		return err
	}
	comps := strings.Split(name, "/")
	for i := range comps {
		if _, err := s.folder(ctx, strings.Join(comps[:i+1], "/")); err != nil {
			return err
		}
	}
	s.mu.Lock()
	dirs := sortedDirs(s.dirty)
	s.dirty = map[string]struct{}{}
	s.mu.Unlock()
	if err := s.syncDirs(dirs); err != nil {
		return fmt.Errorf("maildir: create %q: %w", name, err)
	}
	return nil
}

// Put writes body to tmp/ of env.Mailbox's folder (created if needed) and
// returns the ID (the final file name without its ":2,..." info). The message
// becomes visible and durable only at the next Commit. If env.Key is already
// stored in the folder, or being stored, Put reads body to EOF, writes
// nothing and returns the existing message's ID. If body fails or ctx is
// cancelled, the tmp file is removed and the error returned (errors.Is
// context.Canceled for a cancel). Disk errors keep their errno, so
// mail.Fatal sees ENOSPC, EDQUOT, EROFS and EACCES. After Close: ErrClosed.
func (s *Sink) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	if err := s.live(ctx); err != nil {
		return "", err
	}
	f, err := s.folder(ctx, env.Mailbox)
	if err != nil {
		return "", err
	}
	key := safeKey(env.Key)
	if key == "" {
		id, _, err := s.write(ctx, f, env, key, body)
		return mail.ID(id), err
	}
	id, st, err := s.claim(ctx, f, key)
	if err != nil {
		return "", err
	}
	if st == nil {
		if _, err := mail.CopyBody(ctx, io.Discard, body); err != nil {
			return "", fmt.Errorf("maildir: put %q: %w", env.Mailbox, err)
		}
		s.log.Debug("maildir: already stored", "mailbox", env.Mailbox, "id", id)
		return mail.ID(id), nil
	}
	_, p, err := s.write(ctx, f, env, key, body)
	if err != nil {
		f.settle(key, st, nil)
		return "", err
	}
	return mail.ID(f.settle(key, st, p)), nil
}

// keywordLetters returns the dovecot-keywords letters of the keywords among
// flags in folder f, and the folder's table, adding the keywords the folder's file lacks (see
// maildirfmt.AddKeywords: the file is durable before any message names its
// letter). A keyword past the 26 letters is dropped with a warning, once per
// folder.
func (s *Sink) keywordLetters(ctx context.Context, f *folder, mailbox string, flags []mail.Flag) (string, maildirfmt.Keywords, error) {
	f.kwMu.Lock()
	defer f.kwMu.Unlock()
	if !f.kwRead {
		f.kw, f.kwRead = maildirfmt.ReadKeywords(f.dir), true
	}
	letters, missing := f.kw.Letters(flags)
	if len(missing) == 0 {
		return letters, f.kw, nil
	}
	kw, err := maildirfmt.AddKeywords(ctx, f.dir, missing, s.filePerm)
	if err != nil {
		return "", nil, fmt.Errorf("keywords: %w", err)
	}
	f.kw = kw
	letters, missing = kw.Letters(flags)
	for _, name := range missing {
		if f.kwWarned == nil {
			f.kwWarned = map[string]bool{}
		}
		if !f.kwWarned[strings.ToLower(name)] {
			f.kwWarned[strings.ToLower(name)] = true
			s.log.Warn("maildir: keyword not stored: the folder's 26 keyword letters are taken", "mailbox", mailbox, "keyword", name)
		}
	}
	return letters, kw, nil
}

// write streams body into a new tmp file and queues it for Commit. It returns
// the message's ID as named when queued (a Commit may rename it later: see
// settle) and the queued message.
func (s *Sink) write(ctx context.Context, f *folder, env mail.Envelope, key string, body io.Reader) (string, *pending, error) {
	kwLetters, _, err := s.keywordLetters(ctx, f, env.Mailbox, env.Flags)
	if err != nil {
		return "", nil, fmt.Errorf("maildir: put %q: %w", env.Mailbox, err)
	}
	tmp := filepath.Join(f.dir, "tmp", s.run+"."+strconv.FormatUint(s.seq.Add(1), 10)+tmpSuffix)
	fh, err := s.fs.Create(tmp, s.filePerm)
	if err != nil {
		return "", nil, fmt.Errorf("maildir: put %q: %w", env.Mailbox, err)
	}
	n, err := mail.CopyBody(ctx, fh, body)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = fh.Close()
		_ = s.removeTmp(tmp)
		return "", nil, fmt.Errorf("maildir: put %q: %w", env.Mailbox, err)
	}
	p := &pending{folder: f, f: fh, tmp: tmp, sub: "new", key: key, size: n, date: env.Date}
	if l := maildirfmt.FlagLetters(env.Flags) + kwLetters; l != "" {
		p.sub, p.info = "cur", ":2,"+l
	}
	p.id = s.uniqueName(key, n)
	id := p.id
	s.mu.Lock()
	early := s.open >= maxOpenPending
	s.mu.Unlock()
	if early {
		// Too many files open: close this one now, Commit reopens it. This
		// happens before p is queued, so Commit never sees a closing file.
		p.f = nil
		if err := fh.Close(); err != nil {
			_ = s.removeTmp(tmp)
			return "", nil, fmt.Errorf("maildir: put %q: %w", env.Mailbox, err)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		if !early {
			_ = fh.Close()
		}
		_ = s.removeTmp(tmp)
		return "", nil, mail.ErrClosed
	}
	s.pending = append(s.pending, p)
	if !early {
		s.open++
	}
	s.mu.Unlock()
	return id, p, nil
}

// uniqueName returns a fresh Maildir unique name carrying key and size.
func (s *Sink) uniqueName(key string, size int64) string {
	t := s.now()
	var b strings.Builder
	fmt.Fprintf(&b, "%d.M%dP%dQ%dR%s.%s", t.Unix(), t.Nanosecond()/1000, s.pid, s.seq.Add(1), randomHex(4), s.host)
	if key != "" {
		b.WriteString(keyField)
		b.WriteString(key)
	}
	b.WriteString(",S=")
	b.WriteString(strconv.FormatInt(size, 10))
	return b.String()
}

// Commit makes every message Put before it durable and visible: it sets each
// file's mtime to its Envelope.Date, makes the files durable (one syncfs
// for a batch of more than fewFiles, see enableSyncFS; else an fsync
// each, syncWorkers at a time), renames them from tmp/ into cur/ or new/ (never over an existing
// file: a taken name gets a fresh one, so that message's ID changes), then
// fsyncs each touched directory once. Only when Commit returns nil are the
// messages on disk. ctx is checked before the batch starts; a started batch
// runs to the end, since stopping halfway gains nothing.
//
// A message whose fsync or rename failed is removed from tmp/ and forgotten
// (fsync is never retried: after a failure the data may be lost even though a
// second fsync succeeds); re-Put it. A failed syncfs fails every message it
// covered. Messages already renamed stay, and their
// directories are fsynced again by the next Commit if that failed. Any
// failure makes Commit return an error. Commit may run concurrently with
// Put; concurrent Commits run one after the other.
func (s *Sink) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return mail.ErrClosed
	}
	batch := s.pending
	s.pending = nil
	s.open = 0
	dirty := s.dirty
	s.dirty = map[string]struct{}{}
	s.mu.Unlock()
	if len(batch) == 0 && len(dirty) == 0 {
		return nil
	}

	errs := make([]error, len(batch))
	if s.syncRoot != nil && len(batch) > s.syncfsOver {
		s.syncBatch(batch, errs)
	} else {
		parallel(len(batch), syncWorkers, func(i int) {
			errs[i] = s.syncFile(batch[i])
		})
	}

	var firstErr error
	failed := 0
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
		failed++
	}
	for i, p := range batch {
		err := errs[i]
		if err == nil {
			err = s.publish(p)
		}
		if err != nil {
			_ = s.removeTmp(p.tmp)
			p.folder.forget(p.key, p.id)
			fail(err)
			continue
		}
		dirty[filepath.Join(p.folder.dir, p.sub)] = struct{}{}
	}

	if err := s.syncDirs(sortedDirs(dirty)); err != nil {
		fail(err)
	}
	if firstErr != nil {
		return fmt.Errorf("maildir: commit (%d of %d messages, or their directories, failed): %w", failed, len(batch), firstErr)
	}
	return nil
}

// syncBatch makes batch durable with one syncfs(2) (see enableSyncFS): it
// sets each file's mtime and closes it, then syncs the root's file system
// once. A syncfs error fails every message it covered: which file it came
// from is unknown. Files in folders on another file system get their own
// fsync (syncFile).
func (s *Sink) syncBatch(batch []*pending, errs []error) {
	covered := func(p *pending) bool { return p.folder.devOK && p.folder.dev == s.syncDev }
	anyClosed := false
	for i, p := range batch {
		if !covered(p) {
			continue // below, in parallel
		}
		errs[i] = s.closeFile(p)
		anyClosed = anyClosed || errs[i] == nil
	}
	parallel(len(batch), syncWorkers, func(i int) {
		if !covered(batch[i]) {
			errs[i] = s.syncFile(batch[i])
		}
	})
	if !anyClosed {
		return
	}
	if err := s.syncRoot.SyncAll(); err != nil {
		err = fmt.Errorf("maildir: commit: %w", err)
		for i, p := range batch {
			if errs[i] == nil && covered(p) {
				errs[i] = err
			}
		}
	}
}

// closeFile sets p's mtime and closes it, without fsync: a syncfs follows.
func (s *Sink) closeFile(p *pending) error {
	err := s.setMtime(p)
	if p.f != nil {
		if cerr := p.f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("maildir: commit %s: %w", p.tmp, err)
	}
	return nil
}

// setMtime sets p's mtime to its Envelope.Date: through the open file where
// it can (no path lookup), else by path.
func (s *Sink) setMtime(p *pending) error {
	if p.date.IsZero() {
		return nil
	}
	if f, ok := p.f.(*os.File); ok {
		if err := setMtimeFD(f, p.date); !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
	}
	return s.fs.Chtimes(p.tmp, p.date)
}

// syncFile sets p's mtime and fsyncs and closes it.
func (s *Sink) syncFile(p *pending) error {
	err := s.setMtime(p)
	fh := p.f
	if fh == nil {
		if fh, err = s.reopen(p.tmp, err); fh == nil {
			return fmt.Errorf("maildir: commit %s: %w", p.tmp, err)
		}
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("maildir: commit %s: %w", p.tmp, err)
	}
	return nil
}

// reopen opens tmp again for its fsync; prior is an earlier error to keep.
func (s *Sink) reopen(tmp string, prior error) (file, error) {
	f, err := os.OpenFile(tmp, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, errors.Join(prior, err)
	}
	return f, prior
}

// publish renames p into place without overwriting anything.
func (s *Sink) publish(p *pending) error {
	for attempt := 0; ; attempt++ {
		final := filepath.Join(p.folder.dir, p.sub, p.id+p.info)
		err := s.fs.RenameNoReplace(p.tmp, final)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrExist) || attempt == 4 {
			return fmt.Errorf("maildir: commit %s: %w", final, err)
		}
		old := p.id
		p.folder.renamed(p, s.uniqueName(p.key, p.size))
		s.log.Warn("maildir: file name already taken, using a new one", "id", old)
	}
}

// syncDirs fsyncs dirs in parallel. A directory that fails stays dirty for
// the next Commit.
func (s *Sink) syncDirs(dirs []string) error {
	errs := make([]error, len(dirs))
	parallel(len(dirs), syncWorkers, func(i int) {
		errs[i] = s.fs.SyncDir(dirs[i])
	})
	var first error
	for i, err := range errs {
		if err == nil {
			continue
		}
		s.mu.Lock()
		s.dirty[dirs[i]] = struct{}{}
		s.mu.Unlock()
		if first == nil {
			first = fmt.Errorf("maildir: fsync %s: %w", dirs[i], err)
		}
	}
	return first
}

func sortedDirs(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for d := range m {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// parallel calls fn(0..n-1) on at most workers goroutines and waits.
func parallel(n, workers int, fn func(i int)) {
	workers = min(workers, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// OpenStored implements mail.StoredReader: it opens the message id (as
// Index names it) in mailbox.
func (s *Sink) OpenStored(ctx context.Context, mailbox string, id mail.ID) (io.ReadCloser, error) {
	if err := s.live(ctx); err != nil {
		return nil, err
	}
	return s.tree.Open(ctx, mail.Envelope{Mailbox: mailbox, ID: id})
}

// Index lists the messages the tree holds in mailbox, as the Maildir source
// reads them, with Key set from the ",MF=" field of names the sink wrote. A
// mailbox that does not exist holds nothing. Uncommitted messages are not
// listed.
func (s *Sink) Index(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	if err := s.live(ctx); err != nil {
		return err
	}
	err := s.tree.List(ctx, mailbox, func(env mail.Envelope) error {
		env.Key = keyOf(string(env.ID))
		return fn(env)
	})
	if errors.Is(err, mail.ErrMailboxNotFound) {
		return nil
	}
	return err
}

// Limits reports no limit: Puts into local files scale with the disk.
func (s *Sink) Limits() mail.Limits { return mail.Limits{} }

// Close discards the messages Put since the last Commit (their tmp files are
// removed), waits for a running Commit and PreparePuts read, and releases
// the run lock. It is
// idempotent; later calls get mail.ErrClosed.
func (s *Sink) Close() error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()
	s.prep.Wait() // a PreparePuts read must not outlive the sink
	var errs []error
	for _, p := range batch {
		if p.f != nil {
			_ = p.f.Close()
		}
		if err := s.removeTmp(p.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(batch) > 0 {
		s.log.Debug("maildir: discarded uncommitted messages", "count", len(batch))
	}
	s.tree.Forget()
	if s.lock != nil {
		if !s.tmpLeft.Load() { // else the next run finds this one dead and cleans up
			_ = os.Remove(s.lockPath)
		}
		_ = s.lock.Close()
	}
	if s.syncRoot != nil {
		_ = s.syncRoot.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("maildir: close: %w", err)
	}
	return nil
}
