package mailtest

import (
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

func TestMemSinkConformance(t *testing.T) {
	TestSink(t, SinkHarness{
		New: func(t testing.TB) mail.Sink { return NewMemSink() },
		Reopen: func(t testing.TB, s mail.Sink) mail.Source {
			return s.(*MemSink).Source()
		},
		Caps: Caps{Flags: true, Date: true, Mailboxes: true},
	})
}

func TestMemSourceConformance(t *testing.T) {
	TestSource(t, SourceHarness{
		New: func(t testing.TB, fx []Fixture) mail.Source { return NewMemSource(fx) },
		Reopen: func(t testing.TB, src mail.Source) mail.Source {
			m := src.(*MemSource)
			m.mu.Lock()
			defer m.mu.Unlock()
			return &MemSource{boxes: m.boxes}
		},
		Caps: Caps{Flags: true, Date: true, Mailboxes: true},
	})
}
