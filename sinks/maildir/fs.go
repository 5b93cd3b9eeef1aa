package maildir

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// fileSystem is the part of the OS the sink's delivery path uses. Tests wrap
// it to record the order of fsyncs and renames (docs/failure-model.md A8) and to
// inject errors (D1, D2).
type fileSystem interface {
	// Create makes a new file exclusively (O_EXCL: never reuses or follows
	// an existing name).
	Create(name string, perm os.FileMode) (file, error)
	Mkdir(name string, perm os.FileMode) error
	Lstat(name string) (os.FileInfo, error)
	ReadDirNames(dir string) ([]string, error)
	// RenameNoReplace moves oldpath to newpath and fails with an error
	// matching os.ErrExist when newpath exists: a name collision must never
	// overwrite a message (D3).
	RenameNoReplace(oldpath, newpath string) error
	Remove(name string) error
	Chtimes(name string, mtime time.Time) error
	// SyncDir fsyncs a directory, making the entries created or renamed in
	// it durable.
	SyncDir(name string) error
	// OpenSyncFS opens the file system root is on for batch syncs (see
	// enableSyncFS) and returns its device number, matched against the
	// folders' Lstat to tell which messages a sync covers. Any error (the
	// OS has no syncfs, or it drops write-back errors) means: fsync each
	// file instead.
	OpenSyncFS(root string) (fsSyncer, uint64, error)
}

// fsSyncer syncs a whole file system: syncfs(2).
type fsSyncer interface {
	// SyncAll makes durable everything written, created or renamed on the
	// file system before the call: file data and directory entries alike.
	// An error means some of it may be lost, and which is unknown.
	SyncAll() error
	Close() error
}

// file is an open message file in tmp/.
type file interface {
	io.Writer
	Sync() error
	Close() error
}

// osFS is the real file system.
type osFS struct{}

func (osFS) Create(name string, perm os.FileMode) (file, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_CLOEXEC, perm)
}

func (osFS) Mkdir(name string, perm os.FileMode) error { return os.Mkdir(name, perm) }

func (osFS) Lstat(name string) (os.FileInfo, error) { return os.Lstat(name) }

func (osFS) ReadDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return f.Readdirnames(-1)
}

// WalkNames reads dir's names 1,024 at a time (nameWalker).
func (osFS) WalkNames(dir string, fn func(name string) bool) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	for {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			if !fn(n) {
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (osFS) RenameNoReplace(oldpath, newpath string) error { return renameNoReplace(oldpath, newpath) }

func (osFS) Remove(name string) error { return os.Remove(name) }

// Chtimes sets the modification time and leaves the access time alone (a
// zero time.Time means "unchanged" to os.Chtimes).
func (osFS) Chtimes(name string, mtime time.Time) error {
	return os.Chtimes(name, time.Time{}, mtime)
}

func (osFS) SyncDir(dir string) error { return mail.SyncDir(dir) }

func (osFS) OpenSyncFS(root string) (fsSyncer, uint64, error) {
	f, dev, err := openSyncRoot(root)
	if err != nil {
		return nil, 0, err
	}
	return rootSyncer{f}, dev, nil
}

// rootSyncer is the root directory, open for syncfs(2).
type rootSyncer struct{ f *os.File }

func (r rootSyncer) SyncAll() error { return syncFS(r.f) }
func (r rootSyncer) Close() error   { return r.f.Close() }

// linkRename is the portable no-replace rename: link(2) fails with EEXIST
// instead of overwriting, then the old name is removed.
func linkRename(oldpath, newpath string) error {
	if err := os.Link(oldpath, newpath); err != nil {
		return err
	}
	if err := os.Remove(oldpath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
