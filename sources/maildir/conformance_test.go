package maildir

import (
	"context"
	"testing"

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
			return s
		},
		Caps: mailtest.Caps{Flags: true, Date: true, Mailboxes: true},
	})
}
