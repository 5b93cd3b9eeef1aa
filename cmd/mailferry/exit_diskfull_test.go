package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	maildirsink "github.com/mailferry/mailferry/sinks/maildir"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestD1DiskFullInjected: a Put failing with ENOSPC on a path stops the
// run with exit 9 and one line naming the path and the remedy; what was
// stored before is recorded and the rerun stores the rest exactly once.
func TestD1DiskFullInjected(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04")
	pc := &putCounter{}
	full := true
	w.failPut = func(env mail.Envelope) error {
		if full && env.ID == "3" {
			return mail.MakeFatal(&os.PathError{Op: "write", Path: "/srv/mail/tmp/1700000000.M1P2.host", Err: syscall.ENOSPC})
		}
		return pc.fail(env)
	}
	cp := filepath.Join(t.TempDir(), "cp.jsonl")
	args := []string{"copy", "mem:a", "memsink:b", "--checkpoint", cp, "--workers", "1", "--quiet"}
	code, _, stderr := w.cli(context.Background(), t, nil, args...)
	last := lastLine(stderr)
	if code != exitcode.DiskFull || !strings.Contains(last, "no space left on device") || !strings.Contains(last, "free space on the file system holding /srv/mail/tmp/") {
		t.Fatalf("disk-full run = %d, stderr %q; want %d naming the path and the remedy", code, stderr, exitcode.DiskFull)
	}
	full = false
	if code, _, stderr := w.cli(context.Background(), t, nil, args...); code != 0 {
		t.Fatalf("rerun = %d %q", code, stderr)
	}
	pc.once(t, 4)
}

// TestD1DiskFullTmpfs fills a real (small) tmpfs under a Maildir
// destination: exit 9 naming the path, no file left in tmp/, and after
// space is freed the rerun stores every message exactly once. It needs
// the right to mount (root in a container); without it, it skips and
// TestD1DiskFullInjected covers the CLI path.
func TestD1DiskFullTmpfs(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): TestD1DiskFullInjected covers the exit code", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 150<<10), 0o600); err != nil {
		t.Fatal(err)
	}

	w := newFakeWorld()
	var fx []mailtest.Fixture
	for i := range 10 {
		head := fmt.Sprintf("Subject: %d\r\n\r\n", i)
		fx = append(fx, mailtest.Fixture{Mailbox: "INBOX", Body: []byte(head + strings.Repeat(fmt.Sprint(i%10), 20<<10))})
	}
	w.fixtures["a"] = fx
	reg := w.registry()
	maildirsink.Register(reg)
	root := filepath.Join(mnt, "mail")
	cp := filepath.Join(t.TempDir(), "cp.jsonl") // on another file system: only the Maildir is full
	args := []string{"copy", "mem:a", "maildir:" + root, "--checkpoint", cp, "--workers", "2", "--quiet"}
	code, _, stderr := cliWith(t, reg, nil, args...)
	last := lastLine(stderr)
	if code != exitcode.DiskFull || !strings.Contains(last, "free space on the file system holding "+root) {
		t.Fatalf("run on a full tmpfs = %d, stderr %q; want %d naming a path under %s", code, stderr, exitcode.DiskFull, root)
	}
	t.Logf("disk full: %s", last)
	if left, _ := os.ReadDir(filepath.Join(root, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %d file(s) after the failed run, want none", len(left))
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cliWith(t, reg, nil, args...); code != 0 {
		t.Fatalf("rerun after freeing space = %d %q", code, stderr)
	}
	seen := map[string]int{}
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(root, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(root, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			seen[string(b)]++
		}
	}
	for _, f := range fx {
		if n := seen[string(f.Body)]; n != 1 {
			t.Errorf("message %.12q stored %d times, want once", f.Body, n)
		}
	}
	if len(seen) != len(fx) {
		t.Errorf("maildir holds %d distinct messages, want %d", len(seen), len(fx))
	}
}
