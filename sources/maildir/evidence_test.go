package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// evidenceTree makes a Maildir with two messages in cur/ and one in new/,
// every directory's mtime set to t0, and returns its root.
func evidenceTree(t *testing.T, t0 time.Time) string {
	t.Helper()
	root := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"cur/1.a.host:2,S", "cur/2.b.host:2,", "new/3.c.host"} {
		if err := os.WriteFile(filepath.Join(root, name), fmt.Appendf(nil, "Subject: %d\r\n\r\nbody\r\n", i), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "dovecot-keywords"), []byte("0 $Label1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setTimes(t, root, t0)
	return root
}

// setTimes gives cur/, new/ and dovecot-keywords the mtime at.
func setTimes(t *testing.T, root string, at time.Time) {
	t.Helper()
	for _, p := range []string{"cur", "new", "dovecot-keywords"} {
		if err := os.Chtimes(filepath.Join(root, p), at, at); err != nil {
			t.Fatal(err)
		}
	}
}

// secondsEvidence is the evidence this package must not settle for: the
// directories' mtimes to the second and the number of messages. The test
// below uses it as its negative control: each edit is one it misses.
func secondsEvidence(t *testing.T, root string) string {
	t.Helper()
	var out string
	n := 0
	for _, sub := range []string{"cur", "new"} {
		fi, err := os.Stat(filepath.Join(root, sub))
		if err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(filepath.Join(root, sub))
		if err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintf("%s:%d;", sub, fi.ModTime().Unix())
		n += len(ents)
	}
	return fmt.Sprintf("%sn=%d", out, n)
}

// TestEvidenceSameSecondEdits: an edit within the same second as the
// evidence before it (a flag change by rename, a message replaced by
// another, a keyword renamed) changes the evidence, although the
// directories' mtimes to the second and their entry counts stay the same;
// an untouched tree keeps it.
func TestEvidenceSameSecondEdits(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 100_000_000, time.UTC)
	later := t0.Add(500 * time.Millisecond) // the same second
	rename := func(from, to string) func(t *testing.T, root string) {
		return func(t *testing.T, root string) {
			if err := os.Rename(filepath.Join(root, from), filepath.Join(root, to)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		edit   func(t *testing.T, root string)
		mtime  time.Time // the directories' mtime after the edit (zero: not set)
		change bool
	}{
		{"nothing", func(*testing.T, string) {}, time.Time{}, false},
		{"flag change by rename", rename("cur/2.b.host:2,", "cur/2.b.host:2,F"), later, true},
		{"flag change, mtime put back to the nanosecond", rename("cur/2.b.host:2,", "cur/2.b.host:2,F"), t0, true},
		{"new to cur", rename("new/3.c.host", "cur/3.c.host:2,"), later, true},
		{"a message replaced by another", func(t *testing.T, root string) {
			rename("cur/1.a.host:2,S", "tmp/gone")(t, root)
			if err := os.WriteFile(filepath.Join(root, "cur", "4.d.host:2,S"), []byte("Subject: 4\r\n\r\nbody\r\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, later, true},
		{"a keyword renamed in place", func(t *testing.T, root string) {
			if err := os.WriteFile(filepath.Join(root, "dovecot-keywords"), []byte("0 $Label2\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, later, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := evidenceTree(t, t0)
			s, err := New(context.Background(), root, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.SetClock(func() time.Time { return time.Now().Add(time.Hour) }) // every time settled
			before, err := s.FolderStatuses(context.Background(), []string{"INBOX"})
			if err != nil {
				t.Fatal(err)
			}
			plain := secondsEvidence(t, root)
			tc.edit(t, root)
			if !tc.mtime.IsZero() {
				setTimes(t, root, tc.mtime)
			}
			if tc.change && secondsEvidence(t, root) != plain {
				t.Fatalf("negative control: mtimes to the second and entry counts see this edit; it tests nothing")
			}
			after, err := s.FolderStatuses(context.Background(), []string{"INBOX"})
			if err != nil {
				t.Fatal(err)
			}
			b, a := before["INBOX"], after["INBOX"]
			if b.Unsettled || a.Unsettled || b.Evidence == "" {
				t.Fatalf("statuses %+v, %+v: want settled evidence", b, a)
			}
			if changed := b.Evidence != a.Evidence; changed != tc.change {
				t.Errorf("evidence changed: %v, want %v\nbefore %s\nafter  %s", changed, tc.change, b.Evidence, a.Evidence)
			}
		})
	}
}

// TestEvidenceUnsettled: evidence whose newest time is within the settle
// window of now is Unsettled (a second change in the same timestamp tick
// would leave it the same); the same evidence judged later is settled.
func TestEvidenceUnsettled(t *testing.T) {
	t0 := time.Now().Add(-time.Hour)
	root := evidenceTree(t, t0)
	s, err := New(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The directories' ctimes are now (set by the writes and utimes):
	// judged at now, every folder is unsettled; an hour on, settled.
	tests := []struct {
		name      string
		now       time.Time
		unsettled bool
	}{
		{"just changed", time.Now(), true},
		{"an hour on", time.Now().Add(time.Hour), false},
		{"a clock behind the file system's", time.Now().Add(-time.Minute), true},
	}
	for _, tc := range tests {
		s.SetClock(func() time.Time { return tc.now })
		st, err := s.FolderStatuses(context.Background(), []string{"INBOX", "Missing"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := st["Missing"]; ok {
			t.Errorf("%s: a missing folder has a status", tc.name)
		}
		if got := st["INBOX"]; got.Unsettled != tc.unsettled || got.Messages != 3 {
			t.Errorf("%s: status %+v, want Unsettled %v and 3 messages", tc.name, got, tc.unsettled)
		}
	}
}

// TestEvidenceFolderRecreated: a folder deleted and made again with the
// same names and times has other evidence (inodes, ctimes).
func TestEvidenceFolderRecreated(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	root := evidenceTree(t, t0)
	work := filepath.Join(root, ".Work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	makeFolder := func() {
		for _, sub := range []string{"cur", "new"} {
			if err := os.Mkdir(filepath.Join(work, sub), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(filepath.Join(work, sub), t0, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	makeFolder()
	before, err := s.FolderStatuses(context.Background(), []string{"Work"})
	if err != nil || before["Work"].Evidence == "" {
		t.Fatalf("FolderStatuses = %+v, %v", before, err)
	}
	for _, sub := range []string{"cur", "new"} {
		if err := os.Remove(filepath.Join(work, sub)); err != nil {
			t.Fatal(err)
		}
	}
	makeFolder()
	after, err := s.FolderStatuses(context.Background(), []string{"Work"})
	if err != nil {
		t.Fatal(err)
	}
	if before["Work"].Evidence == after["Work"].Evidence {
		t.Errorf("a folder made again keeps its evidence %s", after["Work"].Evidence)
	}
}
