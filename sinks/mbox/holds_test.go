package mbox

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// TestHolds: committed messages are held by key, in the run that wrote them
// and in a later one; uncommitted, unknown, rewritten-file and missing
// mailbox cases are not.
func TestHolds(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := newSink(t, root, nil)
	var stored []mail.Stored
	for i := range 3 {
		key := fmt.Sprintf("k%d", i)
		id, err := s.Put(ctx, mail.Envelope{Mailbox: "INBOX", Key: key}, strings.NewReader(fmt.Sprintf("Subject: %d\n\nbody\n", i)))
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, mail.Stored{ID: id, Key: key})
		if i < 2 {
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	stored = append(stored, mail.Stored{ID: "999", Key: "unknown"})
	check := func(name string, s *Sink, mailbox string, want []bool) {
		t.Helper()
		got, err := s.Holds(ctx, mailbox, stored)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: Holds = %v, %v; want %v", name, got, err, want)
		}
	}
	check("same run", s, "INBOX", []bool{true, true, false, false})
	check("missing mailbox", s, "Nope", []bool{false, false, false, false})
	s.Close() // the third was never committed: Close drops it
	s2 := newSink(t, root, nil)
	check("later run", s2, "INBOX", []bool{true, true, false, false})
	path, err := mboxfmt.FilePath(root, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("From x Thu Jan  1 00:00:00 1970\n\nrewritten\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("rewritten by another program", newSink(t, root, nil), "INBOX", []bool{false, false, false, false})
}
