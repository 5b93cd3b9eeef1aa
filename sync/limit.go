package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdsync "sync"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
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

// ErrResumeLater means the run stopped early on purpose, with everything it
// stored committed and recorded: its byte budget (Options.MaxBytes) is spent,
// or the servers kept failing temporarily (throttled, connection lost) so
// going on would only hammer them. A later rerun resumes; the CLI exits with
// its "temporary, retry later" code. It is always wrapped in a
// mail.FatalError, so the engine stops instead of retrying.
var ErrResumeLater = errors.New("stopped early; rerun later to resume")

// byteBudget caps the bytes one run copies (Gmail allows about 2500 MB of
// IMAP download and 500 MB of upload a day and answers more with BYE or
// NO; a nightly job with a budget stops cleanly below that and resumes
// the next night). A nil *byteBudget has no limit.
type byteBudget struct {
	mu    stdsync.Mutex
	limit int64
	used  int64 // size hints of messages started, corrected to actual bytes once stored
	n     int   // messages started
}

func newByteBudget(limit int64) *byteBudget {
	if limit <= 0 {
		return nil
	}
	return &byteBudget{limit: limit}
}

// take reserves size (a hint; -1 if unknown) for one message, or returns an
// ErrResumeLater error when it would go over the limit. The first message
// of a run is always allowed, so a budget smaller than one message still
// makes progress.
func (b *byteBudget) take(size int64) error {
	if b == nil {
		return nil
	}
	size = max(size, 0)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n > 0 && b.used+size > b.limit {
		return mail.MakeFatal(fmt.Errorf("%w: the byte budget of %d bytes (--max-bytes) is spent (%d bytes used)", ErrResumeLater, b.limit, b.used))
	}
	b.used += size
	b.n++
	return nil
}

// settle corrects the reservation of a message to the actual bytes read
// from the source, stored or not (a failed transfer still used the
// provider's quota), or gives it back whole (actual < 0) when nothing was
// read.
func (b *byteBudget) settle(hint, actual int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if actual < 0 {
		b.used -= max(hint, 0)
		b.n--
		return
	}
	b.used += actual - max(hint, 0)
}

// maxTempStreak is how many temporary failures in a row (throttling
// answers, dropped connections, with no success in between) stop a run:
// a server that keeps saying "later" is asked again later, by the next
// run, instead of once per remaining message (scenario B6).
const maxTempStreak = 5

// tempStreak counts temporary failures in a row over all workers. A nil
// *tempStreak never stops a run.
type tempStreak struct {
	mu stdsync.Mutex
	n  int
}

// note records the outcome of one attempt. It returns an ErrResumeLater
// error when err makes maxTempStreak temporary failures in a row. Any other
// outcome (success, or a failure the server gave a definite answer for)
// resets the count; cancellation leaves it alone.
func (s *tempStreak) note(ctx context.Context, err error) error {
	if s == nil || ctx.Err() != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !mail.Temporary(err) {
		s.n = 0
		return nil
	}
	s.n++
	if s.n < maxTempStreak {
		return nil
	}
	s.n = 0
	return mail.MakeFatal(fmt.Errorf("%w: %d temporary failures in a row (the server is throttling or the connection keeps dropping); last: %w", ErrResumeLater, maxTempStreak, err))
}
