package sync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// retry runs f until it succeeds, fails with a non-temporary error, or the
// retries are used up, waiting with capped exponential backoff and jitter.
// Every attempt counts towards the run's streak of temporary failures.
// (A function, not a method: methods cannot have type parameters.)
func retry[T any](ctx context.Context, r *run, f func() (T, error)) (T, error) {
	wait := r.opt.Backoff
	for attempt := 1; ; attempt++ {
		v, err := f()
		if serr := r.streak.note(ctx, err); serr != nil {
			return v, serr
		}
		if err == nil || !mail.Temporary(err) || attempt > r.opt.Retries || ctx.Err() != nil {
			if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return v, err
		}
		r.log.Warn("retrying after a temporary error", "attempt", attempt, "err", err)
		jittered := wait/2 + rand.N(wait/2+1)
		t := time.NewTimer(jittered)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}
