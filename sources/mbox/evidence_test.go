package mbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/mboxfmt"
)

// evidenceMbox writes INBOX.mbox with two entries under a new root, its
// mtime set to t0, and returns the file's path and a source on the root
// whose clock is an hour ahead (every time settled).
func evidenceMbox(t *testing.T, t0 time.Time) (string, *Source) {
	t.Helper()
	root := t.TempDir()
	path, err := mboxfmt.FilePath(root, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for i := range 2 {
		if _, err := mboxfmt.WriteEntry(&buf, "", t0, bytes.NewReader(fmt.Appendf(nil, "Subject: %d\r\n\r\nbody A\r\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, t0, t0); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	return path, s
}

// sizeSecondsEvidence is the evidence this package must not settle for:
// size and mtime to the second, the negative control of the test below.
func sizeSecondsEvidence(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", fi.Size(), fi.ModTime().Unix())
}

// TestEvidenceSameSecondRewrite: an mbox rewritten within the same second
// to the same size (a mail client changing a message in place), or
// replaced by rename, or appended to, changes the evidence; size and mtime
// to the second would not see the first two.
func TestEvidenceSameSecondRewrite(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 100_000_000, time.UTC)
	later := t0.Add(500 * time.Millisecond)
	flipLast := func(t *testing.T, path string) { // "body A" -> "body B" in the last entry
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.LastIndex(b, []byte("body A"))
		b[i+5] = 'B'
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		edit      func(t *testing.T, path string)
		mtime     time.Time // zero: not set back
		change    bool
		sameSizeS bool // size and mtime to the second stay the same
	}{
		{"nothing", func(*testing.T, string) {}, time.Time{}, false, true},
		{"same size, same second", flipLast, later, true, true},
		{"same size, mtime put back to the nanosecond", flipLast, t0, true, true},
		{"replaced by rename", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+".new", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, t0, true, true},
		{"appended to", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := mboxfmt.WriteEntry(f, "", t0, bytes.NewReader([]byte("Subject: 3\r\n\r\nbody\r\n"))); err != nil {
				t.Fatal(err)
			}
		}, later, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, s := evidenceMbox(t, t0)
			before, err := s.FolderStatuses(context.Background(), []string{"INBOX"})
			if err != nil {
				t.Fatal(err)
			}
			plain := sizeSecondsEvidence(t, path)
			tc.edit(t, path)
			if !tc.mtime.IsZero() {
				if err := os.Chtimes(path, tc.mtime, tc.mtime); err != nil {
					t.Fatal(err)
				}
			}
			if same := sizeSecondsEvidence(t, path) == plain; same != tc.sameSizeS {
				t.Fatalf("negative control: size and mtime to the second unchanged: %v, want %v", same, tc.sameSizeS)
			}
			after, err := s.FolderStatuses(context.Background(), []string{"INBOX", "Missing"})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := after["Missing"]; ok {
				t.Errorf("a missing mailbox has a status")
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

// TestEvidenceUnsettledMbox: a file changed within the settle window of
// now gives Unsettled evidence; judged an hour on, settled.
func TestEvidenceUnsettledMbox(t *testing.T) {
	path, s := evidenceMbox(t, time.Now().Add(-time.Hour))
	for _, tc := range []struct {
		now       time.Time
		unsettled bool
	}{{time.Now(), true}, {time.Now().Add(time.Hour), false}} {
		s.SetClock(func() time.Time { return tc.now })
		st, err := s.FolderStatuses(context.Background(), []string{"INBOX"})
		if err != nil {
			t.Fatal(err)
		}
		if st["INBOX"].Unsettled != tc.unsettled {
			t.Errorf("at %v (file changed at about now, by %s): status %+v, want Unsettled %v", tc.now, filepath.Base(path), st["INBOX"], tc.unsettled)
		}
	}
}
