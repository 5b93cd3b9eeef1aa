package maildir

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestD4TmpDirElsewhere covers D4 (b): with TMPDIR missing, or on another
// file system (/dev/shm, tmpfs, when it is one), a whole copy into a
// Maildir with a checkpoint in a new directory works, and TMPDIR is never
// touched: message temp files are made in the folder's own tmp/ and the
// checkpoint's temp file beside it, so no rename crosses file systems
// (EXDEV).
func TestD4TmpDirElsewhere(t *testing.T) {
	dirs := map[string]func() string{filepath.Join(t.TempDir(), "missing"): func() string { return "" }}
	var a, b syscall.Stat_t
	if syscall.Stat(os.TempDir(), &a) == nil && syscall.Stat("/dev/shm", &b) == nil && a.Dev != b.Dev {
		if dir, err := os.MkdirTemp("/dev/shm", "mf-d4-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			before, _ := os.Stat(dir)
			dirs[dir] = func() string {
				ents, _ := os.ReadDir(dir)
				now, _ := os.Stat(dir)
				if len(ents) > 0 || !now.ModTime().Equal(before.ModTime()) {
					return "files were created in TMPDIR on another file system"
				}
				return ""
			}
		}
	}
	if len(dirs) == 1 {
		t.Log("no second file system at /dev/shm: only the missing-TMPDIR case runs")
	}
	for tmpdir, used := range dirs {
		t.Run(filepath.Base(tmpdir), func(t *testing.T) {
			root := t.TempDir()
			t.Setenv("TMPDIR", tmpdir)
			s, err := New(ctx, filepath.Join(root, "mail"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			cp, err := checkpoint.Open(filepath.Join(root, "state", "cp.jsonl"), plEndpoint, "maildir", false)
			if err != nil {
				t.Fatal(err)
			}
			defer cp.Close()
			src := mailtest.NewMemSource(plFixtures())
			res, err := mailferry.Copy(ctx, src, s, mailferry.Options{SrcEndpoint: plEndpoint, Checkpoint: cp, DeleteSource: true, BatchSize: 5, Backoff: time.Millisecond})
			if err != nil || len(res.Failures) > 0 {
				t.Fatalf("Copy with TMPDIR=%s: %v %v", tmpdir, err, res.Failures)
			}
			if err := cp.Close(); err != nil {
				t.Fatal(err)
			}
			if n := cp.Len(); n != len(plFixtures()) {
				t.Errorf("checkpoint holds %d records, want %d", n, len(plFixtures()))
			}
			if msg := used(); msg != "" {
				t.Error(msg)
			}
		})
	}
}
