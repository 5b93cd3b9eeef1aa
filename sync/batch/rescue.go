package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
)

// River's rescuer (run by the elected leader among the workers) hands a
// dead worker's jobs back to the queue: it looks every 30 s, a period
// River does not let a client set. That is part of the default bound
// (DefaultSlice + DefaultRescueAfter + 30 s: a killed worker's account is
// taken up within 2 minutes), and so is River's scheduler's 5 s, which
// makes a rescued job (retryable) available again. Config.RescueEvery
// adds a rescue and a scheduling of this worker's own at a shorter
// period, for tests that must not wait for River's ticks: the same steps
// River's maintenance takes, through River's driver (JobGetStuck and
// JobRescueMany, JobSchedule), whose updates touch only jobs still in the
// state they read, so River's and any number of workers' may run at once.
// River says its driver API may change in any release: these calls are
// checked again when River is upgraded (docs/library-notes.md §12).

// rescueBatch is how many stuck jobs one query fetches (River's default).
const rescueBatch = 1000

// rescuer runs the rescue step every period until stopped.
type rescuer struct {
	exec   riverdriver.Executor
	cfg    *Config
	policy river.ClientRetryPolicy
	stop   context.CancelFunc
	done   sync.WaitGroup
}

// startRescuer starts s's rescuer when Config.RescueEvery asks for one.
func (s *Store) startRescuer(ctx context.Context) {
	if s.cfg.RescueEvery <= 0 || s.exec == nil {
		return
	}
	r := &rescuer{exec: s.exec, cfg: &s.cfg, policy: &river.DefaultClientRetryPolicy{}}
	if s.cfg.RetryDelay > 0 {
		r.policy = fixedRetry(s.cfg.RetryDelay)
	}
	ctx, r.stop = context.WithCancel(context.WithoutCancel(ctx))
	r.done.Add(1)
	go r.loop(ctx)
	s.rescue = r
}

// stopRescuer stops the rescuer, if any, and waits for it.
func (s *Store) stopRescuer() {
	if s.rescue != nil {
		s.rescue.stop()
		s.rescue.done.Wait()
		s.rescue = nil
	}
}

func (r *rescuer) loop(ctx context.Context) {
	defer r.done.Done()
	t := time.NewTicker(r.cfg.RescueEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if n, err := r.once(ctx, now); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("batch worker: rescue", "err", err)
		} else if n > 0 {
			r.cfg.Logger.Info("batch worker: rescued accounts of a worker that stopped", "jobs", n)
		}
		if err := r.schedule(ctx, now.Add(r.cfg.RescueEvery)); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("batch worker: schedule", "err", err)
		}
	}
}

// schedule makes the jobs due by until available, as River's scheduler
// does (it looks one period ahead too).
func (r *rescuer) schedule(ctx context.Context, until time.Time) error {
	tx, err := r.exec.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	if _, err := tx.JobSchedule(ctx, &riverdriver.JobScheduleParams{Max: rescueBatch, Now: &until}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// once rescues the jobs running since before now - RescueAfter, as River's
// rescuer does: a job a person cancelled is cancelled, one with attempts
// left is retried by the retry policy, the others are discarded. It
// returns how many jobs it changed.
func (r *rescuer) once(ctx context.Context, now time.Time) (int, error) {
	horizon := now.Add(-r.cfg.RescueAfter)
	var afterID int64
	total := 0
	for {
		stuck, err := r.exec.JobGetStuck(ctx, &riverdriver.JobGetStuckParams{AfterID: afterID, Max: rescueBatch, StuckHorizon: horizon})
		if err != nil {
			return total, fmt.Errorf("stuck jobs: %w", err)
		}
		if len(stuck) == 0 {
			return total, nil
		}
		afterID = stuck[len(stuck)-1].ID
		p, err := r.params(stuck, now.UTC(), horizon)
		if err != nil {
			return total, err
		}
		if len(p.ID) > 0 {
			if _, err := r.exec.JobRescueMany(ctx, p); err != nil {
				return total, fmt.Errorf("rescue jobs: %w", err)
			}
			total += len(p.ID)
		}
		if len(stuck) < rescueBatch {
			return total, nil
		}
	}
}

// params decides each stuck job's fate (River's JobRescuer.runOnce and
// makeRetryDecision for our one job kind).
func (r *rescuer) params(stuck []*rivertype.JobRow, now, horizon time.Time) (*riverdriver.JobRescueManyParams, error) {
	p := &riverdriver.JobRescueManyParams{StuckHorizon: horizon}
	for _, job := range stuck {
		if job.Kind != jobKind || job.AttemptedAt == nil || now.Sub(*job.AttemptedAt) < r.cfg.Slice {
			continue // not ours, or not past its timeout: River's to judge
		}
		errData, err := json.Marshal(rivertype.AttemptError{At: now, Attempt: max(job.Attempt, 0), Error: "Stuck job rescued by the batch worker"})
		if err != nil {
			return nil, err
		}
		state, finalized, at := rivertype.JobStateRetryable, (*time.Time)(nil), job.ScheduledAt
		switch {
		case cancelledByPerson(job):
			state, finalized = rivertype.JobStateCancelled, &now
		case job.Attempt < max(job.MaxAttempts, 0):
			at = r.policy.NextRetry(job)
		default:
			state, finalized = rivertype.JobStateDiscarded, &now
		}
		p.ID = append(p.ID, job.ID)
		p.Error = append(p.Error, errData)
		p.FinalizedAt = append(p.FinalizedAt, finalized)
		p.ScheduledAt = append(p.ScheduledAt, at)
		p.State = append(p.State, string(state))
	}
	return p, nil
}
