package twoway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// readCounter is the real file system, counting the opens of each folder
// log for reading.
type readCounter struct {
	mu    gosync.Mutex
	reads map[string]int
}

func (c *readCounter) OpenFile(name string, flag int, perm os.FileMode) (checkpoint.FSFile, error) {
	if strings.HasSuffix(name, ".log") && flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		c.mu.Lock()
		c.reads[filepath.Base(name)]++
		c.mu.Unlock()
	}
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (c *readCounter) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (c *readCounter) Stat(name string) (os.FileInfo, error)        { return os.Stat(name) }
func (c *readCounter) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (c *readCounter) Remove(name string) error                     { return os.Remove(name) }
func (c *readCounter) SyncDir(dir string) error                     { return mail.SyncDir(dir) }
func (c *readCounter) ReadDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, err
}

// Within the held-records budget, a changed folder's log is read at
// listing and not again at its apply; beyond it, each apply reads it again.
// The outcome is the same either way. The scenario's two folders (INBOX,
// Archive) both change, and a move reads one folder after its own apply
// released it: 2 listing reads + 1 within budget, + 2 beyond.
func TestFolderLogReadOnceWithinBudget(t *testing.T) {
	for _, tc := range []struct {
		name      string
		budget    int
		wantReads int
	}{
		{"within budget", 0, 3},
		{"over budget", 1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := firstSyncStores()
			dir := t.TempDir()
			if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
				t.Fatal(err)
			}
			changeBothSides(a, b)
			rc := &readCounter{reads: map[string]int{}}
			st, err := state.Open(dir, "mem:a", "mem:b", state.Options{FS: rc})
			if err != nil {
				t.Fatal(err)
			}
			_, err = Run(context.Background(), memStores(a, b), st, RunOptions{heldBudget: tc.budget})
			if cerr := st.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			checkStores(t, "second sync", a, b, afterChanges)
			total := 0
			for _, n := range rc.reads {
				total += n
			}
			if total != tc.wantReads {
				t.Errorf("folder logs read %d times (%v), want %d", total, rc.reads, tc.wantReads)
			}
		})
	}
}
