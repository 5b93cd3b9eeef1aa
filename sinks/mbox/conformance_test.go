package mbox

import (
	"context"
	"testing"

	mboxsrc "github.com/mailferry/mailferry/sources/mbox"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

func newTempSink(t testing.TB) mail.Sink { return newSink(t, t.TempDir(), nil) }

// newSink opens a sink on root, closed at cleanup; tune may adjust it.
func newSink(t testing.TB, root string, tune func(*Sink)) *Sink {
	t.Helper()
	s, err := New(context.Background(), Config{Root: root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(s)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// reopen reads what s wrote through the mbox source.
func reopen(t testing.TB, s mail.Sink) mail.Source {
	t.Helper()
	src, err := mboxsrc.New(context.Background(), s.(*Sink).root, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestConformance(t *testing.T) {
	mailtest.TestSink(t, mailtest.SinkHarness{New: newTempSink, Reopen: reopen, Caps: mailtest.Caps{Mailboxes: true, Date: true}})
}
