//go:build !linux

package fsevidence

import (
	"io/fs"
	"time"
)

// identity has no portable device, inode or ctime outside Linux: the
// evidence there is size and mtime, with the settle rule.
func identity(fi fs.FileInfo) (dev, ino uint64, ctime time.Time) {
	return 0, 0, fi.ModTime()
}
