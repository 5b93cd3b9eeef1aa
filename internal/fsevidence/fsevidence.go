// Package fsevidence stamps files and directories as change evidence for
// the local sources (sources/maildir, sources/mbox), which have no UIDs
// and no mod-sequences: a rerun compares the stamps with the ones kept at
// the end of the last complete pass and skips a folder whose stamps did
// not move (issue 11).
//
// A stamp is device, inode, size, and mtime and ctime in nanoseconds. The
// inode catches a file or directory deleted and made again; ctime, which
// no program can set back (utimes sets it to now), catches a tool that
// restores an mtime (rsync -t, touch -r).
//
// Times alone are not enough: a file system's clock ticks coarsely (ext4
// stamps with the kernel's tick, a few milliseconds; FAT keeps 2 s; some
// network file systems 1 s), so a second change in the same tick as the
// one just before the stamps were taken leaves every time the same.
// Evidence whose newest time is within SettleWindow of now is therefore
// not trusted (git's "racy git" rule for its index): the source marks it
// Unsettled, the engine lists the folder and does not keep that evidence,
// and a later run, once the times are old enough, takes evidence it can
// trust. Evidence is taken before the listing, so a change during the
// listing shows as other evidence on the next run.
package fsevidence

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// SettleWindow is how close to now a stamp's time makes evidence
// unsettled: the coarsest common timestamp granularity (FAT's 2 s) with a
// margin for a network file server's clock running behind ours.
const SettleWindow = 3 * time.Second

// Stamp is what the evidence keeps of one file or directory.
type Stamp struct {
	Missing      bool
	Dev, Ino     uint64
	Size         int64
	MTime, CTime time.Time
}

// String is the stamp's form in an evidence string.
func (st Stamp) String() string {
	if st.Missing {
		return "-"
	}
	return fmt.Sprintf("%d.%d.%d.%d.%d", st.Dev, st.Ino, st.Size, st.MTime.UnixNano(), st.CTime.UnixNano())
}

// Of stamps p without following a symlink; a missing p is a stamp too.
func Of(p string) (Stamp, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Stamp{Missing: true}, nil
	}
	if err != nil {
		return Stamp{}, err
	}
	return FromInfo(fi), nil
}

// FromInfo stamps what fi describes.
func FromInfo(fi fs.FileInfo) Stamp {
	st := Stamp{Size: fi.Size(), MTime: fi.ModTime()}
	st.Dev, st.Ino, st.CTime = identity(fi)
	return st
}

// Settled reports whether evidence made of stamps can be trusted at now:
// every time is older than SettleWindow (a time in the future, from a
// clock that runs ahead, is not).
func Settled(now time.Time, stamps ...Stamp) bool {
	limit := now.Add(-SettleWindow)
	for _, st := range stamps {
		if st.Missing {
			continue
		}
		if !st.MTime.Before(limit) || !st.CTime.Before(limit) {
			return false
		}
	}
	return true
}

// Clock is what a source judges the age of its evidence by: the time now,
// or a clock a test sets (a tree made a moment ago is otherwise Unsettled).
// The zero Clock reads time.Now; it is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now func() time.Time
}

// Set replaces the clock; nil goes back to time.Now.
func (c *Clock) Set(now func() time.Time) {
	c.mu.Lock()
	c.now = now
	c.mu.Unlock()
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	now := c.now
	c.mu.Unlock()
	if now == nil {
		return time.Now()
	}
	return now()
}
