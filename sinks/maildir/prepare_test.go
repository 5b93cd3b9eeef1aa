package maildir

import (
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestPreparePutsSparesTheScan: a rerun's sink (a new one on a root that
// holds messages) told PreparePuts stores a new key without reading the
// folder's names again, and still finds a stored key (no second copy).
// The negative control is the same sink without PreparePuts, whose Put of
// the new key scans.
func TestPreparePutsSparesTheScan(t *testing.T) {
	tests := []struct {
		name      string
		prepare   bool
		wantScans int // lookups by scan for the new key
	}{
		{"prepared", true, 0},
		{"not prepared (control)", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			first := newTestSink(t, root, nil)
			old := put(t, first, mail.Envelope{Mailbox: "INBOX", Key: "old"}, "stored before")
			put(t, first, mail.Envelope{Mailbox: "INBOX", Key: "older", Flags: []mail.Flag{mail.FlagSeen}}, "in cur/")
			commit(t, first)
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}

			s := newTestSink(t, root, nil)
			if tt.prepare {
				s.PreparePuts("INBOX")
				s.prep.Wait()
			}
			put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "new"}, "tonight's")
			f, err := s.folder(ctx, "INBOX")
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			scans := f.scans
			f.mu.Unlock()
			if scans != tt.wantScans {
				t.Errorf("Put of a new key: %d scans of the folder, want %d", scans, tt.wantScans)
			}
			if got := put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "old"}, "stored before"); got != old {
				t.Errorf("Put of a stored key = %s, want the stored copy %s", got, old)
			}
			commit(t, s)
			if n := len(files(t, root, "new")) + len(files(t, root, "cur")); n != 3 {
				t.Errorf("%d messages after the rerun, want 3 (old, older, new)", n)
			}
		})
	}
}

// TestPreparePutsMakesNoFolder: a mailbox that is not there stays so, and
// Close waits for the read.
func TestPreparePutsMakesNoFolder(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, nil)
	s.PreparePuts("Archive")
	s.PreparePuts("../escape")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, root, ".Archive"); len(got) != 0 {
		t.Errorf("PreparePuts made .Archive: %q", got)
	}
	s.PreparePuts("INBOX") // after Close: nothing, no goroutine
}
