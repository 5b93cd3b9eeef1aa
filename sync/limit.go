package sync

import (
	"context"
	"io"
	stdsync "sync"
	"time"
)

// rateLimiter paces events to at most rate per second, shared by every
// worker (providers throttle per account: Gmail and Microsoft 365 answer
// bursts with NO [LIMIT] or "Request is throttled"). Waits select on ctx.
// A nil *rateLimiter never waits.
type rateLimiter struct {
	mu   stdsync.Mutex
	rate float64   // events (messages or bytes) per second
	next time.Time // when the budget is back to zero debt
}

func newRateLimiter(perSec int64) *rateLimiter {
	if perSec <= 0 {
		return nil
	}
	return &rateLimiter{rate: float64(perSec)}
}

// wait takes n events from the budget, sleeping until they are due. Up to
// one second of burst is allowed.
func (l *rateLimiter) wait(ctx context.Context, n int) error {
	if l == nil || n <= 0 {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now.Add(-time.Second)) {
		l.next = now.Add(-time.Second) // unused budget is kept for one second only
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	delay := l.next.Sub(now)
	l.mu.Unlock()
	if delay <= 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// limitedReader paces reads through a byte limiter.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *rateLimiter
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if len(p) > 32<<10 {
		p = p[:32<<10] // small steps keep the pace smooth
	}
	n, err := lr.r.Read(p)
	if werr := lr.l.wait(lr.ctx, n); werr != nil && err == nil {
		err = werr
	}
	return n, err
}
