package maildir

import (
	"context"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

func TestConformance(t *testing.T) {
	mailtest.TestSource(t, mailtest.SourceHarness{
		New: func(t testing.TB, fixtures []mailtest.Fixture) mail.Source {
			root := t.TempDir()
			seed(t, root, fixtures)
			s, err := New(context.Background(), root, nil)
			if err != nil {
				t.Fatalf("New(%q) = %v", root, err)
			}
			t.Cleanup(func() { s.Close() })
			// A tree made a moment ago gives Unsettled evidence, which may
			// turn settled between two calls: judge it an hour ahead.
			s.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
			return s
		},
		Caps: mailtest.Caps{Flags: true, Date: true, Mailboxes: true},
	})
}
