package mailtest

import (
	"context"
	"io"
	"sync"

	"github.com/mailferry/mailferry/sync/mail"
)

// FaultSink wraps a sink and fails chosen Puts: Fail is called with the
// 1-based number of each Put and its envelope, and a non-nil error is
// returned instead of storing (after reading part of the body).
type FaultSink struct {
	mail.Sink
	Fail func(n int, env mail.Envelope) error
	mu   sync.Mutex
	n    int
}

// Put counts the call and either fails it or passes it on.
func (f *FaultSink) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if f.Fail != nil {
		if err := f.Fail(n, env); err != nil {
			_, _ = io.CopyN(io.Discard, body, 10)
			return "", err
		}
	}
	return f.Sink.Put(ctx, env, body)
}

var (
	_ mail.Sink      = (*FaultSink)(nil)
	_ mail.Featurer  = (*FaultSink)(nil)
	_ mail.Committer = (*FaultSink)(nil)
)

// Features are the wrapped sink's: FaultSink changes only Put, so every
// capability passes through, and its own Commit counts only when the
// wrapped sink is a Committer.
func (f *FaultSink) Features() *mail.Features { return mail.Wrap(f, f.Sink) }

// Commit passes on to the wrapped sink when it is a Committer.
func (f *FaultSink) Commit(ctx context.Context) error {
	if c := mail.FeaturesOf(f.Sink).Committer; c != nil {
		return c.Commit(ctx)
	}
	return nil
}
