//go:build unix

package mbox

import (
	"errors"
	"syscall"
)

// lockFile takes an exclusive fcntl write lock on all of f without waiting.
// On Linux it is an open file description lock (F_OFD_SETLK): it belongs to
// this descriptor, so two sinks in one process exclude each other too, and it
// conflicts with the classic POSIX locks that mail clients such as mutt take.
// A file held by someone else gives errBusy.
func lockFile(f interface{ Fd() uintptr }) error {
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	err := syscall.FcntlFlock(f.Fd(), fOFDSetLk, &lk)
	if errors.Is(err, syscall.EINVAL) && fOFDSetLk != syscall.F_SETLK {
		// A kernel without OFD locks: fall back to a process lock.
		err = syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return errBusy
	}
	return err
}

// processAlive reports whether pid names a running process (kill -0; EPERM
// means it exists under another user).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// unlockFile releases the fcntl lock; closing the descriptor would too, but
// the file stays open between attempts.
func unlockFile(f interface{ Fd() uintptr }) {
	lk := syscall.Flock_t{Type: syscall.F_UNLCK}
	_ = syscall.FcntlFlock(f.Fd(), fOFDSetLk, &lk)
}
