package main

import (
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// deleteAwareSource records what the date filter passes through to it.
type deleteAwareSource struct {
	*mailtest.MemSource
	told   bool
	asked  bool
	unread []mail.Envelope
}

func (s *deleteAwareSource) DeleteAfterCopy() { s.told = true }

func (s *deleteAwareSource) Unstored(stored func(mail.Envelope) bool) []mail.Envelope {
	s.asked = true
	return s.unread
}

// TestDateFilterPassesOptionalInterfaces: --since/--before wrap the source;
// the wrapper must not hide what a POP3 source without UIDL (C1) or a Gmail
// POP3 source (C5) needs from the engine.
func TestDateFilterPassesOptionalInterfaces(t *testing.T) {
	inner := &deleteAwareSource{MemSource: mailtest.NewMemSource(nil), unread: []mail.Envelope{{Mailbox: "INBOX", ID: "7"}}}
	src := filterSource(inner, newDateFilter(time.Now().AddDate(-1, 0, 0), time.Time{}, nil))
	d, ok := src.(mail.DeleteAware)
	if !ok {
		t.Fatal("filtered source is not a mail.DeleteAware")
	}
	d.DeleteAfterCopy()
	u, ok := src.(mail.UnstoredReporter)
	if !ok {
		t.Fatal("filtered source is not a mail.UnstoredReporter")
	}
	got := u.Unstored(func(mail.Envelope) bool { return false })
	if !inner.told || !inner.asked || len(got) != 1 || got[0].ID != "7" {
		t.Errorf("told %v, asked %v, unstored %v: want the inner source's answers", inner.told, inner.asked, got)
	}
	// A source without them: the wrapper's no-ops.
	plain := filterSource(mailtest.NewMemSource(nil), newDateFilter(time.Time{}, time.Time{}, nil))
	plain.(mail.DeleteAware).DeleteAfterCopy()
	if got := plain.(mail.UnstoredReporter).Unstored(nil); got != nil {
		t.Errorf("Unstored of a plain source = %v", got)
	}
}
