package maildir

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openSyncRoot opens root for syncfs(2) and returns it with the device
// number of its file system. Before Linux 5.8 syncfs did not report
// write-back errors (an EIO while writing a message out would be lost, and
// the message recorded as stored: docs/failure-model.md D2), so older kernels
// get ENOTSUP and Commit fsyncs each file.
func openSyncRoot(root string) (*os.File, uint64, error) {
	if !syncfsReportsErrors(kernelRelease()) {
		return nil, 0, syscall.ENOTSUP
	}
	f, err := os.OpenFile(root, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	dev, ok := devOf(fi)
	if !ok {
		_ = f.Close()
		return nil, 0, syscall.ENOTSUP
	}
	return f, dev, nil
}

// syncFS writes back every dirty file, inode and directory block of the file
// system f is on and flushes the disk cache: syncfs(2). Since Linux 5.8 it
// also reports write-back errors of any file on it since the last call
// through f (errseq), so a failed background write-back of a message is not
// missed.
func syncFS(f *os.File) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "syncfs", Path: f.Name(), Err: serr}
	}
	return nil
}

// devOf returns the device number of a file's file system.
func devOf(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Dev), true
}

// setMtimeFD sets the modification time of the open file f and leaves its
// access time alone: utimensat(fd, NULL, ...), which needs no path lookup
// (os.Chtimes resolves the path again).
func setMtimeFD(f *os.File, mtime time.Time) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())}}
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := raw.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_UTIMENSAT, fd, 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return &os.PathError{Op: "futimens", Path: f.Name(), Err: errno}
	}
	return nil
}

// kernelRelease is uname -r ("6.1.0-18-amd64"), or "" if unknown.
func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// syncfsReportsErrors says whether a kernel of this release reports
// write-back errors from syncfs(2): 5.8 and later (errseq on the super
// block). An unparsable release counts as old.
func syncfsReportsErrors(release string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 5 || (major == 5 && minor >= 8)
}
