package maildir

import (
	"context"
	"testing"

	srcmaildir "github.com/mailferry/mailferry/sources/maildir"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

func TestConformance(t *testing.T) {
	mailtest.TestSink(t, mailtest.SinkHarness{
		New: func(t testing.TB) mail.Sink {
			root := t.TempDir()
			s, err := New(context.Background(), root, nil)
			if err != nil {
				t.Fatalf("New(%q) = %v", root, err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Reopen: func(t testing.TB, s mail.Sink) mail.Source {
			src, err := srcmaildir.New(context.Background(), s.(*Sink).root, nil)
			if err != nil {
				t.Fatalf("source New = %v", err)
			}
			t.Cleanup(func() { src.Close() })
			return src
		},
		Caps: mailtest.Caps{Flags: true, Date: true, Mailboxes: true},
	})
}
