package maildir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestHolds: a committed message is held by its key wherever a mail client
// moved or renamed it in the folder, and not once its file is gone.
func TestHolds(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stored []mail.Stored
	for i := range 3 {
		key := fmt.Sprintf("k%d", i)
		id, err := s.Put(ctx, mail.Envelope{Mailbox: "INBOX", Key: key}, strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i)))
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, mail.Stored{ID: id, Key: key})
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// A re-mapped record: another source ID's key, the copy's ID.
	stored = append(stored, mail.Stored{ID: stored[0].ID, Key: "other"}, mail.Stored{ID: "x", Key: "unknown"})
	check := func(name, mailbox string, want []bool) {
		t.Helper()
		got, err := s.Holds(ctx, mailbox, stored)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: Holds = %v, %v; want %v", name, got, err, want)
		}
	}
	check("committed", "INBOX", []bool{true, true, true, true, false})
	check("missing folder", "Nope", []bool{false, false, false, false, false})
	// A client reads message 1 (new/ -> cur/ with flags) and deletes message 2.
	moved, removed := false, false
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(root, sub)
		names, _ := os.ReadDir(dir)
		for _, n := range names {
			p := filepath.Join(dir, n.Name())
			switch {
			case strings.Contains(n.Name(), "k1"):
				moved = os.Rename(p, filepath.Join(root, "cur", strings.SplitN(n.Name(), ":", 2)[0]+":2,S")) == nil
			case strings.Contains(n.Name(), "k2"):
				removed = os.Remove(p) == nil
			}
		}
	}
	if !moved || !removed {
		t.Fatalf("test setup: moved %v, removed %v", moved, removed)
	}
	check("moved and deleted by a client", "INBOX", []bool{true, true, false, true, false})
}

// TestHoldsAny: a folder holds a message while a message file is in its
// new/ or cur/; hidden files (Dovecot's own) and a missing folder hold
// none.
func TestHoldsAny(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateMailbox(ctx, "Work"); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(root, ".Work")
	if err := os.WriteFile(filepath.Join(work, "cur", ".dovecot-state"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	msg := filepath.Join(work, "new", "1.M1P1.host")
	for _, tc := range []struct {
		name, mailbox string
		prepare       func() error
		want          bool
	}{
		{"missing folder", "Nope", func() error { return nil }, false},
		{"hidden files only", "Work", func() error { return nil }, false},
		{"a message in new/", "Work", func() error { return os.WriteFile(msg, []byte("x"), 0o600) }, true},
		{"moved to cur/", "Work", func() error { return os.Rename(msg, filepath.Join(work, "cur", "1.M1P1.host:2,S")) }, true},
		{"deleted", "Work", func() error { return os.Remove(filepath.Join(work, "cur", "1.M1P1.host:2,S")) }, false},
	} {
		if err := tc.prepare(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got, err := s.HoldsAny(ctx, tc.mailbox); got != tc.want || err != nil {
			t.Errorf("%s: HoldsAny(%q) = %v, %v; want %v", tc.name, tc.mailbox, got, err, tc.want)
		}
	}
}

// TestReleaseMailbox: a folder with uncommitted messages keeps its index
// of keys; once committed, ReleaseMailbox drops it, and a Put of a key
// stored before finds it again from the file names (nothing stored twice).
func TestReleaseMailbox(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	held := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.folders[filepath.Join(root, ".Work")]
		return ok
	}
	env := mail.Envelope{Mailbox: "Work", Key: "k1"}
	id, err := s.Put(ctx, env, strings.NewReader("Subject: 1\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	s.ReleaseMailbox("Work")
	if !held() {
		t.Fatal("ReleaseMailbox dropped a folder with an uncommitted message")
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s.ReleaseMailbox("Work")
	if held() {
		t.Fatal("ReleaseMailbox kept a committed folder")
	}
	again, err := s.Put(ctx, env, strings.NewReader("Subject: 1\r\n\r\nbody\r\n"))
	var pe *mail.PresentError
	if errors.As(err, &pe) {
		again, err = pe.ID, nil
	}
	if err != nil || again != id {
		t.Fatalf("Put of a key stored before the release = %q, %v; want %q", again, err, id)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := os.ReadDir(filepath.Join(root, ".Work", "new")); len(n) != 1 {
		t.Errorf("the folder holds %d files, want 1", len(n))
	}
}
