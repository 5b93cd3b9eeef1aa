package mbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// seed writes fixtures as mbox files under a new root with mboxfmt.WriteEntry, the
// encoder the sink uses, and opens a Source on it.
func seed(t testing.TB, fixtures []mailtest.Fixture) mail.Source {
	t.Helper()
	root := t.TempDir()
	for _, f := range fixtures {
		path, err := mboxfmt.FilePath(root, f.Mailbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mboxfmt.WriteEntry(fh, "", f.Date, bytes.NewReader(f.Body)); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
	}
	src, err := New(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	// Files written a moment ago make Unsettled evidence, which may turn
	// settled between two calls: judge it by a clock an hour ahead.
	src.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	return src
}

func TestConformance(t *testing.T) {
	mailtest.TestSource(t, mailtest.SourceHarness{New: seed, Caps: mailtest.Caps{Mailboxes: true, Date: true}})
}
