package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// tmpFS is the real file system, counting the listings of tmp/
// directories and failing the removal of the files fail names.
type tmpFS struct {
	osFS
	mu    stdsync.Mutex
	reads []string
	fail  func(name string) bool
}

func (f *tmpFS) ReadDirNames(dir string) ([]string, error) {
	if filepath.Base(dir) == "tmp" {
		f.mu.Lock()
		f.reads = append(f.reads, dir)
		f.mu.Unlock()
	}
	return f.osFS.ReadDirNames(dir)
}

func (f *tmpFS) Remove(name string) error {
	if f.fail != nil && f.fail(name) {
		return errors.New("injected: remove refused")
	}
	return f.osFS.Remove(name)
}

func (f *tmpFS) tmpReads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.reads)
	f.reads = nil
	return out
}

// TestOpenReadsOneTmpWithoutDeadRuns: with no dead run's lock in the
// root's tmp/, opening the sink reads that one directory and no folder's
// tmp/ (a no-op rerun over many folders); with a dead run's lock there
// (the control), every folder's tmp/ is read and its files removed.
func TestOpenReadsOneTmpWithoutDeadRuns(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, nil)
	boxes := []string{"A", "B", "C"}
	for _, mb := range boxes {
		put(t, s, mail.Envelope{Mailbox: mb, Key: "k" + mb}, "body")
	}
	commit(t, s)
	s.Close()

	fsys := &tmpFS{}
	newTestSink(t, root, fsys).Close()
	if got, want := fsys.tmpReads(), []string{filepath.Join(root, "tmp")}; !slices.Equal(got, want) {
		t.Errorf("open without dead runs read %q, want only %q", got, want)
	}

	// A dead run: its lock file, unlocked, and a file of its in folder B.
	dead := filepath.Join(root, "tmp", "0123456789abcdef"+lockSuffix)
	stale := filepath.Join(root, ".B", "tmp", "0123456789abcdef.1"+tmpSuffix)
	for _, p := range []string{dead, stale} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newTestSink(t, root, fsys).Close()
	if got := fsys.tmpReads(); len(got) != 1+len(boxes) {
		t.Errorf("open with a dead run read %q, want the root's and every folder's tmp/", got)
	}
	for _, p := range []string{dead, stale} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after the dead run was cleaned: %v", p, err)
		}
	}
}

// TestTmpLeftKeepsLock: a run that could not remove a tmp file of its own
// (a failed Put's, an uncommitted one at Close) leaves its lock file, so
// the next run finds it dead and removes the file; a run that removed all
// (the control) leaves no lock.
func TestTmpLeftKeepsLock(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		root := t.TempDir()
		fsys := &tmpFS{fail: func(name string) bool { return refuse && strings.HasSuffix(name, tmpSuffix) }}
		s := newTestSink(t, root, fsys)
		put(t, s, mail.Envelope{Mailbox: "Sub", Key: "k"}, "uncommitted")
		if err := s.Close(); (err != nil) != refuse {
			t.Fatalf("refuse %v: Close = %v", refuse, err)
		}
		locks := 0
		for _, n := range files(t, root, "tmp") {
			if strings.HasSuffix(n, lockSuffix) {
				locks++
			}
		}
		if want := map[bool]int{false: 0, true: 1}[refuse]; locks != want {
			t.Fatalf("refuse %v: %d lock files after Close, want %d", refuse, locks, want)
		}
		newTestSink(t, root, nil).Close() // the next run
		if got := tmpFiles(t, filepath.Join(root, ".Sub")); len(got) != 0 {
			t.Errorf("refuse %v: .Sub tmp/ after the next run = %q, want empty", refuse, got)
		}
	}
}

// TestHoldsSince: the evidence of new/ and cur/ answers without reading
// while they are as they were, and every way of losing the messages moves
// it; evidence too recent to trust is not given.
func TestHoldsSince(t *testing.T) {
	later := func() time.Time { return time.Now().Add(time.Hour) }
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, dir string)
		want bool
	}{
		{"unchanged", func(*testing.T, string) {}, true},
		{"emptied", func(t *testing.T, dir string) {
			for _, sub := range []string{"cur", "new"} {
				for _, n := range files(t, dir, sub) {
					if err := os.Remove(filepath.Join(dir, sub, n)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}, false},
		{"removed", func(t *testing.T, dir string) { os.RemoveAll(dir) }, false},
		{"replaced by an empty folder", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
			for _, sub := range []string{"cur", "new", "tmp"} {
				if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
					t.Fatal(err)
				}
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := newTestSink(t, root, nil)
			put(t, s, mail.Envelope{Mailbox: "Sub", Key: "k1"}, "one")
			put(t, s, mail.Envelope{Mailbox: "Sub", Key: "k2", Flags: []mail.Flag{mail.FlagSeen}}, "two")
			commit(t, s)
			held, ev, err := s.HoldsSince(ctx, "Sub", "")
			if !held || ev != "" || err != nil {
				t.Fatalf("HoldsSince just after the writes = %v, %q, %v; want true without evidence (too recent)", held, ev, err)
			}
			s.SetClock(later)
			if held, ev, err = s.HoldsSince(ctx, "Sub", ""); !held || ev == "" || err != nil {
				t.Fatalf("HoldsSince, settled = %v, %q, %v; want true with evidence", held, ev, err)
			}
			tc.lose(t, filepath.Join(root, ".Sub"))
			held, ev2, err := s.HoldsSince(ctx, "Sub", ev)
			if held != tc.want || err != nil {
				t.Fatalf("HoldsSince(evidence) after %s = %v, %v; want %v", tc.name, held, err, tc.want)
			}
			if tc.want && ev2 != ev || !tc.want && ev2 != "" {
				t.Errorf("evidence after %s = %q, want %q", tc.name, ev2, map[bool]string{true: ev}[tc.want])
			}
		})
	}
}
