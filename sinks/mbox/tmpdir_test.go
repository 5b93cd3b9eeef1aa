package mbox

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// d4TmpDirs returns the TMPDIR values of scenario D4 (b): a directory that
// does not exist (any temp file made there fails at once), and an empty one
// on another file system (/dev/shm, tmpfs) when there is one, where a temp
// file renamed into place would fail with EXDEV. check reports whether
// the directory was used.
func d4TmpDirs(t *testing.T, target string) map[string]func() string {
	t.Helper()
	out := map[string]func() string{
		filepath.Join(t.TempDir(), "missing"): func() string { return "" },
	}
	var a, b syscall.Stat_t
	if syscall.Stat(target, &a) != nil || syscall.Stat("/dev/shm", &b) != nil || a.Dev == b.Dev {
		t.Log("no second file system at /dev/shm: only the missing-TMPDIR case runs")
		return out
	}
	dir, err := os.MkdirTemp("/dev/shm", "mf-d4-")
	if err != nil {
		t.Log("/dev/shm not writable: only the missing-TMPDIR case runs")
		return out
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fi, _ := os.Stat(dir)
	out[dir] = func() string {
		ents, _ := os.ReadDir(dir)
		now, _ := os.Stat(dir)
		if len(ents) > 0 || !now.ModTime().Equal(fi.ModTime()) {
			return "files were created in TMPDIR on another file system"
		}
		return ""
	}
	return out
}

// signalReader closes done when its body has been read to EOF.
type signalReader struct {
	r    io.Reader
	done chan struct{}
}

func (s *signalReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF && s.done != nil {
		close(s.done)
		s.done = nil
	}
	return n, err
}

// TestD4SpoolStaysInFolder covers D4 (b) for the mbox sink: the spool file
// a Put makes when its mailbox file is busy (and the journal's temp file)
// are created in the mbox folder, never in TMPDIR.
func TestD4SpoolStaysInFolder(t *testing.T) {
	for tmpdir, used := range d4TmpDirs(t, os.TempDir()) {
		t.Run(filepath.Base(tmpdir), func(t *testing.T) {
			root := t.TempDir()
			t.Setenv("TMPDIR", tmpdir)
			s := newSink(t, root, nil)
			ctx := context.Background()
			put(t, s, "INBOX", 0) // opens the file and writes the journal
			m, err := s.file("INBOX")
			if err != nil {
				t.Fatal(err)
			}
			m.mu.Lock() // busy: the next Put spools its body first
			read := make(chan struct{})
			errc := make(chan error, 1)
			go func() {
				_, err := s.Put(ctx, env("INBOX", 1), &signalReader{r: strings.NewReader(msgs[1]), done: read})
				errc <- err
			}()
			select {
			case <-read:
			case err := <-errc:
				m.mu.Unlock()
				t.Fatalf("Put into a busy file = %v before spooling", err)
			case <-time.After(10 * time.Second):
				t.Fatal("the Put never read its body")
			}
			m.mu.Unlock()
			if err := <-errc; err != nil {
				t.Fatalf("Put with TMPDIR=%s: %v", tmpdir, err)
			}
			commit(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			wantFile(t, filepath.Join(root, "INBOX.mbox"), encoded(t, 0, 1))
			if msg := used(); msg != "" {
				t.Error(msg)
			}
		})
	}
}
