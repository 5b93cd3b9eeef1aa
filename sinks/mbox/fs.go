package mbox

import (
	"io"
	"os"
	"path/filepath"

	"github.com/mailferry/mailferry/sync/mail"
)

// fileSystem is the part of the OS the sink writes mailbox files, journals
// and folders through. Tests substitute a power-loss model that drops what
// was not fsynced (docs/failure-model.md A8, A12; package crashfs). Locks and
// dotlocks stay on the real OS: a power cut releases them anyway.
type fileSystem interface {
	OpenFile(name string, flag int, perm os.FileMode) (osFile, error)
	Mkdir(name string, perm os.FileMode) error
	Stat(name string) (os.FileInfo, error)
	Lstat(name string) (os.FileInfo, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// SyncDir fsyncs a directory, making the entries created or renamed in
	// it durable.
	SyncDir(name string) error
}

// osFile is an open mailbox or journal file; *os.File is one.
type osFile interface {
	io.Writer
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Close() error
	Stat() (os.FileInfo, error)
	Fd() uintptr
}

// osFS is the real file system.
type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (osFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) Mkdir(name string, perm os.FileMode) error { return os.Mkdir(name, perm) }
func (osFS) Stat(name string) (os.FileInfo, error)     { return os.Stat(name) }
func (osFS) Lstat(name string) (os.FileInfo, error)    { return os.Lstat(name) }
func (osFS) Rename(oldpath, newpath string) error      { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                  { return os.Remove(name) }

func (osFS) SyncDir(dir string) error { return mail.SyncDir(dir) }

// existingParent returns the nearest ancestor of dir that exists.
func existingParent(fsys fileSystem, dir string) string {
	p := filepath.Clean(dir)
	for {
		parent := filepath.Dir(p)
		if parent == p {
			return p
		}
		if _, err := fsys.Stat(parent); err == nil {
			return parent
		}
		p = parent
	}
}
