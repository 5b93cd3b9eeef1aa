package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/mailferry/mailferry/sync/checkpoint"
)

// lockRun takes the run's lock: an flock on CHECKPOINT.lock, held until
// release. The kernel drops an flock when its process dies, however it
// dies, so a lock left by a killed run is never stale: the next run simply
// gets it (scenario E3). The file is never renamed or removed, unlike the
// checkpoint, which is rewritten by rename and so cannot by itself exclude
// two runs that start together on a new checkpoint. It holds the owner's
// pid, for the message a second run prints.
func lockRun(checkpointPath string) (release func(), err error) {
	path := checkpointPath + ".lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer func() { _ = f.Close() }()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			owner := ""
			buf := make([]byte, 32)
			if n, _ := f.ReadAt(buf, 0); n > 0 {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil {
					owner = fmt.Sprintf(" (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("%w%s: %s; this run does nothing", checkpoint.ErrLocked, owner, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid is only informative: a failure to write it changes nothing.
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = f.Truncate(0) // still locked: no one reads a pid that is gone
		_ = f.Close()
	}, nil
}
