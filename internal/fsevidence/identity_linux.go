package fsevidence

import (
	"io/fs"
	"syscall"
	"time"
)

// identity returns fi's device, inode and ctime.
func identity(fi fs.FileInfo) (dev, ino uint64, ctime time.Time) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fi.ModTime()
	}
	return st.Dev, st.Ino, time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
}
