// Package crashfs is a power-loss model of a directory tree for tests: the
// Go stand-in for LazyFS (docs/failure-model.md A8, A12), which is not packaged
// here.
//
// An FS passes every call through to the real files below its root and
// keeps, beside them, the model a crash-consistent file system promises and
// nothing more: a file's bytes are durable once the file was fsynced, and a
// directory entry (create, rename, link, unlink) is durable once its
// directory was fsynced. At a power cut the tree is rewritten to its durable
// image: unsynced data is dropped (a new file whose entry is durable but
// whose data is not comes back empty, as on ext4 after a crash), and entry
// changes not followed by a directory fsync are undone. That is the worst
// case POSIX allows, and what LazyFS's clear-cache produces.
//
// Torn mode keeps, instead, a random prefix of each file's unsynced
// appended bytes, the way a write cut by a power loss leaves part of an
// append on disk (LazyFS's torn-write faults). NoDirSync turns directory
// fsyncs into no-ops for the model: a build that forgot them, the negative
// control a power-loss test must fail on.
//
// SyncFS models syncfs(2) (and sync(2)): it makes the whole tree durable at
// once, every file's data and every directory's entries. NoSyncFS turns it
// into a no-op, the negative control for code that relies on it.
//
// Calls the code under test makes around the FS (os.* directly) reach the
// disk but not the model, so they do not survive a cut: route every write
// whose durability is being tested through the FS.
package crashfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// ErrPowerLost is returned by every call from the cut on, as if the process
// had died with the machine. It is fatal (mail.Fatal), so the engine stops
// at once instead of failing message after message.
var ErrPowerLost = mail.MakeFatal(errors.New("crashfs: power lost"))

// node is a file or directory as the model knows it.
type node struct {
	dir    bool
	perm   os.FileMode
	data   []byte // current content
	synced []byte // durable content; nil = never synced (empty after a cut)
}

// FS is a durability model of the tree at Root. It is safe for concurrent
// use.
type FS struct {
	root string

	// NoDirSync makes SyncDir fsync nothing in the model: entry changes are
	// never durable. It is the negative control.
	NoDirSync bool
	// Torn keeps a random prefix of unsynced appended bytes at a cut.
	Torn bool
	// NoSyncFS makes SyncFS sync nothing in the model. It is the negative
	// control for a syncfs-based durability path. SyncFS is not a
	// directory fsync: NoDirSync leaves it alone.
	NoSyncFS bool

	mu    sync.Mutex
	rnd   *rand.Rand
	cur   map[string]map[string]*node // directory -> entries, as on disk now
	dur   map[string]map[string]*node // directory -> durable entries
	ops   int
	cutAt int
	image *image // captured at the cut; nil while powered
}

// New models the tree at root (which must exist), taking what is there now
// as durable. seed drives the torn-write choices.
func New(root string, seed uint64) (*FS, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	f := &FS{root: abs, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if err := f.baseline(); err != nil {
		return nil, err
	}
	return f, nil
}

// Root returns the modelled directory.
func (f *FS) Root() string { return f.root }

// baseline takes the tree on disk as the durable state.
func (f *FS) baseline() error {
	f.cur, f.dur = map[string]map[string]*node{}, map[string]map[string]*node{}
	return filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			f.cur[p], f.dur[p] = map[string]*node{}, map[string]*node{}
		}
		if p == f.root {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n := &node{dir: d.IsDir(), perm: fi.Mode().Perm()}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.data, n.synced = b, append([]byte{}, b...)
		} else if !d.IsDir() {
			return nil // sockets, symlinks: not modelled
		}
		dir, base := filepath.Split(p)
		dir = filepath.Clean(dir)
		f.cur[dir][base], f.dur[dir][base] = n, n
		return nil
	})
}

// CutAt arms a power cut: operation n (counting from 1 since New or the
// last Recover) and every later one fail with ErrPowerLost, and the durable
// image is the one before operation n. n <= 0 disarms.
func (f *FS) CutAt(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutAt = n
}

// Ops returns the number of operations so far: a run's total bounds the
// cut points worth trying.
func (f *FS) Ops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

// Cut reports whether the power is off.
func (f *FS) Cut() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.image != nil
}

// PowerOff cuts the power now.
func (f *FS) PowerOff() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.image == nil {
		f.image = f.capture()
	}
}

// Recover brings the power back: the tree on disk is replaced by its
// durable image as of the cut (cutting now if the power is still on), and
// the model starts again from it, all durable. Call it after the code under
// test stopped using the FS.
func (f *FS) Recover() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.image == nil {
		f.image = f.capture()
	}
	img := f.image
	ents, err := os.ReadDir(f.root)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(f.root, e.Name())); err != nil {
			return err
		}
	}
	if err := img.write(f.root); err != nil {
		return fmt.Errorf("crashfs: recover: %w", err)
	}
	f.image, f.ops, f.cutAt = nil, 0, 0
	return f.baseline()
}

// Trial runs run until one completes with the power on: in each of the
// first cuts runs the power is cut at a random operation (1 to opsPerRun,
// drawn from rnd), and after each cut the file system is recovered and
// check(false) lists what the crash broke; the run that completes is
// followed by check(true). It returns every violation, a run that failed
// without a cut, and a sequence that does not converge (invariant I5),
// as lines; the error is Recover's.
func (f *FS) Trial(rnd *rand.Rand, cuts, opsPerRun int, run func() error, check func(final bool) []string) ([]string, error) {
	var bad []string
	for i := 0; ; i++ {
		if i > cuts+3 {
			return append(bad, "I5: no convergence: the runs after the last cut keep failing"), nil
		}
		if i < cuts {
			f.CutAt(1 + rnd.IntN(opsPerRun))
		}
		err := run()
		if f.Cut() {
			if err := f.Recover(); err != nil {
				return bad, err
			}
			for _, b := range check(false) {
				bad = append(bad, fmt.Sprintf("after cut %d: %s", i+1, b))
			}
			continue
		}
		f.CutAt(0)
		if err != nil {
			bad = append(bad, fmt.Sprintf("run %d without a cut: %v", i+1, err))
			continue
		}
		return append(bad, check(true)...), nil
	}
}

// op counts an operation, cutting the power when it is the armed one. It
// returns ErrPowerLost when the power is off. Called with mu held.
func (f *FS) op() error {
	if f.image != nil {
		return ErrPowerLost
	}
	f.ops++
	if f.cutAt > 0 && f.ops >= f.cutAt {
		f.image = f.capture()
		return ErrPowerLost
	}
	return nil
}

// image is the durable state of the tree: what a reboot finds.
type image struct {
	dirs  []string               // relative, parents first
	files []imageFile            // links after their target
	perms map[string]os.FileMode // of dirs
}

type imageFile struct {
	rel    string
	linkTo string // non-empty: a hard link to this earlier file
	perm   os.FileMode
	data   []byte
}

// capture builds the image: the durable entries reachable from the root,
// each file with its durable bytes (plus a torn prefix of its unsynced
// appended bytes in Torn mode). Called with mu held.
func (f *FS) capture() *image {
	img := &image{perms: map[string]os.FileMode{}}
	seen := map[*node]string{}
	var walk func(dir, rel string)
	walk = func(dir, rel string) {
		ents := f.dur[dir]
		names := make([]string, 0, len(ents))
		for n := range ents {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			n := ents[name]
			r := filepath.Join(rel, name)
			if n.dir {
				img.dirs = append(img.dirs, r)
				img.perms[r] = n.perm
				walk(filepath.Join(dir, name), r)
				continue
			}
			if first, ok := seen[n]; ok {
				img.files = append(img.files, imageFile{rel: r, linkTo: first})
				continue
			}
			seen[n] = r
			img.files = append(img.files, imageFile{rel: r, perm: n.perm, data: f.durableData(n)})
		}
	}
	walk(f.root, "")
	return img
}

// durableData is what a reboot finds in n. Called with mu held.
func (f *FS) durableData(n *node) []byte {
	d := append([]byte{}, n.synced...)
	if f.Torn && len(n.data) > len(n.synced) && string(n.data[:len(n.synced)]) == string(n.synced) {
		extra := n.data[len(n.synced):]
		d = append(d, extra[:f.rnd.IntN(len(extra)+1)]...)
	}
	return d
}

func (img *image) write(root string) error {
	for _, d := range img.dirs {
		if err := os.Mkdir(filepath.Join(root, d), img.perms[d]|0o700); err != nil {
			return err
		}
	}
	for _, fl := range img.files {
		p := filepath.Join(root, fl.rel)
		if fl.linkTo != "" {
			if err := os.Link(filepath.Join(root, fl.linkTo), p); err != nil {
				return err
			}
			continue
		}
		if err := os.WriteFile(p, fl.data, fl.perm|0o600); err != nil {
			return err
		}
	}
	return nil
}

// split returns the cleaned directory and base name of p, and whether p is
// inside the root (paths outside are passed through unmodelled).
func (f *FS) split(p string) (dir, base string, inside bool) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", "", false
	}
	if abs != f.root && !strings.HasPrefix(abs, f.root+string(filepath.Separator)) {
		return "", "", false
	}
	return filepath.Dir(abs), filepath.Base(abs), true
}

// entry returns the current node at p, or nil. Called with mu held.
func (f *FS) entry(p string) *node {
	dir, base, ok := f.split(p)
	if !ok {
		return nil
	}
	return f.cur[dir][base]
}

// setEntry makes p name n now (n nil: removes p). Called with mu held.
func (f *FS) setEntry(p string, n *node) {
	dir, base, ok := f.split(p)
	if !ok {
		return
	}
	ents := f.adopt(dir)
	if ents == nil {
		return
	}
	if n == nil {
		delete(ents, base)
	} else {
		ents[base] = n
	}
}

// adopt returns the current entries of dir, first modelling it (and its
// missing parents) if it was made around the FS: such a directory exists
// now, and its entry is durable once its parent is fsynced. It returns nil
// for a directory outside the root or missing. Called with mu held.
func (f *FS) adopt(dir string) map[string]*node {
	if ents, ok := f.cur[dir]; ok {
		return ents
	}
	if _, _, inside := f.split(dir); !inside || dir == f.root {
		return nil
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return nil
	}
	parent := f.adopt(filepath.Dir(dir))
	if parent == nil {
		return nil
	}
	parent[filepath.Base(dir)] = &node{dir: true, perm: fi.Mode().Perm()}
	f.cur[dir], f.dur[dir] = map[string]*node{}, map[string]*node{}
	return f.cur[dir]
}

// OpenFile is os.OpenFile. A file created by it has a non-durable entry
// until its directory is fsynced.
func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (*File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op(); err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	osf, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	n := f.entry(name)
	if n == nil {
		// New, or made around the FS: model what is there now as unsynced.
		n = &node{perm: perm}
		if fi, err := osf.Stat(); err == nil && fi.Size() > 0 {
			n.data, _ = os.ReadFile(name)
		}
		f.setEntry(name, n)
	}
	if flag&os.O_TRUNC != 0 {
		n.data = n.data[:0:0]
	}
	return &File{fs: f, f: osf, n: n, appendOnly: flag&os.O_APPEND != 0}, nil
}

// Create makes a new file exclusively for writing (O_EXCL).
func (f *FS) Create(name string, perm os.FileMode) (*File, error) {
	return f.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
}

// Mkdir is os.Mkdir: the new directory's entry is durable once its parent
// is fsynced.
func (f *FS) Mkdir(name string, perm os.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op(); err != nil {
		return &os.PathError{Op: "mkdir", Path: name, Err: err}
	}
	if err := os.Mkdir(name, perm); err != nil {
		return err
	}
	if abs, err := filepath.Abs(name); err == nil {
		if _, _, ok := f.split(abs); ok {
			f.cur[abs], f.dur[abs] = map[string]*node{}, map[string]*node{}
			f.setEntry(abs, &node{dir: true, perm: perm})
		}
	}
	return nil
}

// MkdirAll is os.MkdirAll through Mkdir.
func (f *FS) MkdirAll(name string, perm os.FileMode) error {
	if fi, err := f.Stat(name); err == nil {
		if fi.IsDir() {
			return nil
		}
		return &os.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
	}
	if parent := filepath.Dir(filepath.Clean(name)); parent != name {
		if err := f.MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := f.Mkdir(name, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// Rename is os.Rename (replacing newpath). Directories cannot be renamed.
func (f *FS) Rename(oldpath, newpath string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op(); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	n := f.entry(oldpath)
	if n != nil && n.dir {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errors.New("crashfs: directory renames are not modelled")}
	}
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	f.setEntry(oldpath, nil)
	if n != nil {
		f.setEntry(newpath, n)
	}
	return nil
}

// RenameNoReplace renames without replacing: an existing newpath gives an
// error matching fs.ErrExist. It is done as link + unlink on disk and
// modelled as one rename.
func (f *FS) RenameNoReplace(oldpath, newpath string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op(); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	if err := os.Link(oldpath, newpath); err != nil {
		return err
	}
	if err := os.Remove(oldpath); err != nil {
		return err
	}
	n := f.entry(oldpath)
	f.setEntry(oldpath, nil)
	if n != nil {
		f.setEntry(newpath, n)
	}
	return nil
}

// Link is os.Link.
func (f *FS) Link(oldpath, newpath string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op(); err != nil {
		return &os.LinkError{Op: "link", Old: oldpath, New: newpath, Err: err}
	}
	if err := os.Link(oldpath, newpath); err != nil {
		return err
	}
	if n := f.entry(oldpath); n != nil {
		f.setEntry(newpath, n)
	}
	return nil
}

// Remove is os.Remove (files only).
func (f *FS) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op(); err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	if err := os.Remove(name); err != nil {
		return err
	}
	f.setEntry(name, nil)
	return nil
}

// SyncDir fsyncs the directory name: its current entries become durable
// (unless NoDirSync).
func (f *FS) SyncDir(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op(); err != nil {
		return &os.PathError{Op: "fsync", Path: name, Err: err}
	}
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	_ = d.Close() // the real fsync buys nothing here: the model decides what survives
	abs, err := filepath.Abs(name)
	if err != nil || f.NoDirSync {
		return nil
	}
	if ents := f.adopt(abs); ents != nil {
		durable := make(map[string]*node, len(ents))
		for k, v := range ents {
			durable[k] = v
		}
		f.dur[abs] = durable
	}
	return nil
}

// SyncFS is syncfs(2) of the file system the tree is on: everything
// written, created, renamed or removed in the tree before the call becomes
// durable, file data and directory entries alike (unless NoSyncFS). A real
// syncfs also writes what was done around the FS; the model cannot see
// that, so it stays unsynced.
func (f *FS) SyncFS() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op(); err != nil {
		return &os.PathError{Op: "syncfs", Path: f.root, Err: err}
	}
	if f.NoSyncFS {
		return nil
	}
	// Only what is reachable from the root matters at a cut (capture walks
	// it); an unlinked directory's map is left as it is.
	var walk func(dir string)
	walk = func(dir string) {
		ents := f.cur[dir]
		durable := make(map[string]*node, len(ents))
		for name, n := range ents {
			durable[name] = n
			if n.dir {
				walk(filepath.Join(dir, name))
			} else {
				n.synced = append([]byte{}, n.data...)
			}
		}
		f.dur[dir] = durable
	}
	walk(f.root)
	return nil
}

// Chtimes sets name's modification time (the access time is left alone).
// Times are not modelled: a cut keeps whatever is on disk.
func (f *FS) Chtimes(name string, mtime time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op(); err != nil {
		return &os.PathError{Op: "chtimes", Path: name, Err: err}
	}
	return os.Chtimes(name, time.Time{}, mtime)
}

// Stat is os.Stat; it fails once the power is off.
func (f *FS) Stat(name string) (os.FileInfo, error) {
	if f.Cut() {
		return nil, &os.PathError{Op: "stat", Path: name, Err: ErrPowerLost}
	}
	return os.Stat(name)
}

// Lstat is os.Lstat; it fails once the power is off.
func (f *FS) Lstat(name string) (os.FileInfo, error) {
	if f.Cut() {
		return nil, &os.PathError{Op: "lstat", Path: name, Err: ErrPowerLost}
	}
	return os.Lstat(name)
}

// ReadDirNames lists dir; it fails once the power is off.
func (f *FS) ReadDirNames(dir string) ([]string, error) {
	if f.Cut() {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: ErrPowerLost}
	}
	ents, err := os.ReadDir(dir)
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, err
}

// File is an open file of an FS. Its methods mirror *os.File's.
type File struct {
	fs         *FS
	f          *os.File
	n          *node
	appendOnly bool
}

// Name returns the name the file was opened as.
func (fl *File) Name() string { return fl.f.Name() }

// Fd returns the descriptor (for locks).
func (fl *File) Fd() uintptr { return fl.f.Fd() }

// Stat is (*os.File).Stat.
func (fl *File) Stat() (os.FileInfo, error) { return fl.f.Stat() }

// Read is (*os.File).Read.
func (fl *File) Read(p []byte) (int, error) {
	if fl.fs.Cut() {
		return 0, ErrPowerLost
	}
	return fl.f.Read(p)
}

// ReadAt is (*os.File).ReadAt.
func (fl *File) ReadAt(p []byte, off int64) (int, error) {
	if fl.fs.Cut() {
		return 0, ErrPowerLost
	}
	return fl.f.ReadAt(p, off)
}

// Seek is (*os.File).Seek.
func (fl *File) Seek(off int64, whence int) (int64, error) {
	if fl.fs.Cut() {
		return 0, ErrPowerLost
	}
	return fl.f.Seek(off, whence)
}

// Write is (*os.File).Write; the bytes are not durable until Sync.
func (fl *File) Write(p []byte) (int, error) {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.fs.op(); err != nil {
		return 0, err
	}
	off := int64(len(fl.n.data))
	if !fl.appendOnly {
		var err error
		if off, err = fl.f.Seek(0, io.SeekCurrent); err != nil {
			return 0, err
		}
	}
	k, err := fl.f.Write(p)
	fl.n.put(p[:k], off)
	return k, err
}

// WriteAt is (*os.File).WriteAt.
func (fl *File) WriteAt(p []byte, off int64) (int, error) {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.fs.op(); err != nil {
		return 0, err
	}
	k, err := fl.f.WriteAt(p, off)
	fl.n.put(p[:k], off)
	return k, err
}

// Truncate is (*os.File).Truncate.
func (fl *File) Truncate(size int64) error {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.fs.op(); err != nil {
		return err
	}
	if err := fl.f.Truncate(size); err != nil {
		return err
	}
	if size <= int64(len(fl.n.data)) {
		fl.n.data = fl.n.data[:size]
	} else {
		fl.n.data = append(fl.n.data, make([]byte, size-int64(len(fl.n.data)))...)
	}
	return nil
}

// Sync is (*os.File).Sync: the file's current bytes become durable.
func (fl *File) Sync() error {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.fs.op(); err != nil {
		return err
	}
	fl.n.synced = append([]byte{}, fl.n.data...)
	return nil
}

// Close closes the descriptor, also after a cut (a dead process's
// descriptors and locks are released too).
func (fl *File) Close() error { return fl.f.Close() }

// put writes p at off into the node's current content.
func (n *node) put(p []byte, off int64) {
	if end := off + int64(len(p)); end > int64(len(n.data)) {
		n.data = append(n.data, make([]byte, end-int64(len(n.data)))...)
	}
	copy(n.data[off:], p)
}
