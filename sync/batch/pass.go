package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Modes of a pass.
const (
	ModeCopy = "copy" // one way, as 'mailferry copy'
	ModeSync = "sync" // both ways, as 'mailferry sync'
)

// PassOptions choose the accounts of a pass.
type PassOptions struct {
	Mode string // "copy" (the default) or "sync"
	// DeleteSource makes each copy a move, as copy --delete-source (a
	// final pass): what a job does is fixed when the pass is queued, not
	// by whichever worker runs it.
	DeleteSource bool
	// Force makes each sync apply the deletions its guard would hold
	// back (sync --force), after a person checked the held_back accounts.
	Force bool
	// Reset starts afresh the checkpoints written for other endpoints
	// (rows whose URLs changed) instead of failing them (exit 6).
	Reset bool
	// OnlyFailed takes only the accounts whose latest run, in any pass,
	// failed; Class narrows them to one failure class.
	OnlyFailed bool
	Class      string
}

// PassResult says what Pass did.
type PassResult struct {
	Queued, Skipped int // Skipped: a job for the account in this pass exists already
}

// Pass queues one job per account (or per failed account) of a batch.
// Queuing the same pass again queues nothing for an account whose job is
// waiting, running or done: River's unique key is (batch, pass, account).
// An account whose job in this pass failed or was cancelled is queued
// anew.
func (s *Store) Pass(ctx context.Context, batch, pass string, o PassOptions) (PassResult, error) {
	if err := checkPass(batch, pass, o); err != nil {
		return PassResult{}, err
	}
	rows, err := s.Rows(ctx, batch)
	if err != nil {
		return PassResult{}, err
	}
	if len(rows) == 0 {
		return PassResult{}, fmt.Errorf("batch %s: no accounts loaded (batch load %s FILE.csv)", batch, batch)
	}
	if o.OnlyFailed {
		if rows, err = s.failedRows(ctx, batch, rows, o.Class); err != nil {
			return PassResult{}, err
		}
	}
	mode := o.Mode
	if mode == "" {
		mode = ModeCopy
	}
	return s.insert(ctx, batch, pass, accountArgs{Mode: mode, DeleteSource: o.DeleteSource, Force: o.Force, Reset: o.Reset}, rows)
}

func checkPass(batch, pass string, o PassOptions) error {
	if err := CheckName("batch", batch); err != nil {
		return err
	}
	if err := CheckName("pass", pass); err != nil {
		return err
	}
	if o.Mode != "" && o.Mode != ModeCopy && o.Mode != ModeSync {
		return fmt.Errorf("mode %q: want copy or sync", o.Mode)
	}
	if o.DeleteSource && o.Mode == ModeSync {
		return errors.New("--delete-source goes with --mode copy (sync carries deletions both ways)")
	}
	if o.Force && o.Mode != ModeSync {
		return errors.New("--force goes with --mode sync")
	}
	if o.Class != "" && !o.OnlyFailed {
		return errors.New("--class goes with --only failed")
	}
	if o.Class != "" && !slices.Contains(classes, o.Class) {
		return fmt.Errorf("class %q: want one of %v", o.Class, classes)
	}
	return nil
}

var classes = []string{ClassAuth, ClassConnect, ClassTLS, ClassQuota, ClassCheckpoint, ClassUsage, ClassTemporary}

// insertChunk bounds one InsertMany (one transaction).
const insertChunk = 500

// insert queues a job per row with the arguments of like (its mode and
// deletion).
func (s *Store) insert(ctx context.Context, batch, pass string, like accountArgs, rows []Row) (PassResult, error) {
	var res PassResult
	for chunk := range slices.Chunk(rows, insertChunk) {
		params := make([]river.InsertManyParams, 0, len(chunk))
		for _, r := range chunk {
			params = append(params, river.InsertManyParams{
				Args: accountArgs{Batch: batch, Pass: pass, ID: r.ID, Mode: like.Mode, DeleteSource: like.DeleteSource, Force: like.Force, Reset: like.Reset},
				InsertOpts: &river.InsertOpts{
					Queue:      queueName(batch),
					Tags:       []string{passTag(pass)},
					UniqueOpts: river.UniqueOpts{ByArgs: true},
				},
			})
		}
		results, err := s.client.InsertMany(ctx, params)
		if err != nil {
			return res, fmt.Errorf("queue pass %s: %w", pass, err)
		}
		for _, r := range results {
			if r.UniqueSkippedAsDuplicate {
				res.Skipped++
			} else {
				res.Queued++
			}
		}
	}
	return res, nil
}

func passTag(pass string) string { return "pass_" + pass }

// listPage is the page size of job listings.
const listPage = 1000

// jobs lists the jobs of a batch (of one pass when pass is not ""), in
// insertion order.
func (s *Store) jobs(ctx context.Context, batch, pass string, states ...rivertype.JobState) ([]*rivertype.JobRow, error) {
	p := river.NewJobListParams().Queues(queueName(batch)).Kinds(jobKind).First(listPage).OrderBy(river.JobListOrderByID, river.SortOrderAsc)
	if pass != "" {
		p = p.TagsAny(passTag(pass))
	}
	if len(states) > 0 {
		p = p.States(states...)
	}
	var all []*rivertype.JobRow
	for {
		res, err := s.client.JobList(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		all = append(all, res.Jobs...)
		if len(res.Jobs) < listPage {
			return all, nil
		}
		p = p.After(res.LastCursor)
	}
}

// failedRows keeps the rows whose latest run, in any pass, failed (of
// class when not "").
func (s *Store) failedRows(ctx context.Context, batch string, rows []Row, class string) ([]Row, error) {
	latest, err := s.latest(ctx, batch, "")
	if err != nil {
		return nil, err
	}
	var out []Row
	for _, r := range rows {
		l, ok := latest[r.ID]
		if ok && l.State == StateFailed && (class == "" || l.Class == class) {
			out = append(out, r)
		}
	}
	return out, nil
}

// unfinished are the states of a job that will run again.
var unfinished = []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled}

// Wait returns once no job of the pass will run again, checking every
// poll. Each check asks for one unfinished job, not all of them: listing
// the thousands of a large pass every second held the one SQLite
// connection the workers fetch and complete jobs through.
func (s *Store) Wait(ctx context.Context, batch, pass string, poll time.Duration) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		left, err := s.anyJob(ctx, batch, pass, unfinished...)
		if err != nil {
			return err
		}
		if !left {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// anyJob reports whether the pass (all passes: "") has a job in one of
// states.
func (s *Store) anyJob(ctx context.Context, batch, pass string, states ...rivertype.JobState) (bool, error) {
	p := river.NewJobListParams().Queues(queueName(batch)).Kinds(jobKind).First(1).States(states...)
	if pass != "" {
		p = p.TagsAny(passTag(pass))
	}
	res, err := s.client.JobList(ctx, p)
	if err != nil {
		return false, fmt.Errorf("list jobs: %w", err)
	}
	return len(res.Jobs) > 0, nil
}

// Pause stops workers from starting accounts of a batch; running accounts
// stop at the end of their slice. The flag is ours (a worker that takes a
// job of a paused batch snoozes it, see accountWorker.Work); River's queue
// is paused too once a worker has created it, so that workers stop
// fetching. Resume undoes both.
func (s *Store) Pause(ctx context.Context, batch string) error {
	if err := s.setPaused(ctx, batch, true); err != nil {
		return err
	}
	return ignoreNotFound(s.client.QueuePause(ctx, queueName(batch), nil))
}

// Resume lets workers start the batch's accounts again.
func (s *Store) Resume(ctx context.Context, batch string) error {
	if err := s.setPaused(ctx, batch, false); err != nil {
		return err
	}
	return ignoreNotFound(s.client.QueueResume(ctx, queueName(batch), nil))
}

// ignoreNotFound: River knows a queue only once a worker worked it.
func ignoreNotFound(err error) error {
	if errors.Is(err, rivertype.ErrNotFound) {
		return nil
	}
	return err
}

// Cancel cancels every job of the batch (of one pass when pass is not "")
// that would run again; a running account stops between messages. It
// returns how many it cancelled.
func (s *Store) Cancel(ctx context.Context, batch, pass string) (int, error) {
	jobs, err := s.jobs(ctx, batch, pass, unfinished...)
	if err != nil {
		return 0, err
	}
	for _, j := range jobs {
		if _, err := s.client.JobCancel(ctx, j.ID); err != nil {
			return 0, fmt.Errorf("cancel %d: %w", j.ID, err)
		}
	}
	return len(jobs), nil
}

// Start runs this process's workers (Config.Workers at once) until Stop.
func (s *Store) Start(ctx context.Context) error {
	if s.cfg.Workers < 1 || s.cfg.Runner == nil {
		return errors.New("batch: Start needs Workers and a Runner")
	}
	if err := s.client.Start(ctx); err != nil {
		return err
	}
	s.startRescuer(ctx)
	return nil
}

// AddQueues makes this worker work the batches loaded since it started.
func (s *Store) AddQueues(ctx context.Context) error {
	names, err := s.Batches(ctx)
	if err != nil {
		return err
	}
	for _, b := range names {
		if s.queues[b] {
			continue
		}
		if err := s.client.Queues().Add(queueName(b), river.QueueConfig{MaxWorkers: s.cfg.Workers}); err != nil {
			return fmt.Errorf("work batch %s: %w", b, err)
		}
		s.queues[b] = true
	}
	return nil
}

// Stop lets the running accounts stop between messages (their checkpoint
// flushed) and snooze, so that another worker resumes them at once, then
// returns: a worker's SIGTERM.
func (s *Store) Stop(ctx context.Context) error {
	s.stopRescuer()
	return s.client.StopAndCancel(ctx)
}

// jobOutput is a job's recorded Outcome, or nil.
func jobOutput(j *rivertype.JobRow) *Outcome { return previousOutput(j) }

// cancelledByPerson: River marks a job a person cancelled.
func cancelledByPerson(j *rivertype.JobRow) bool {
	var md map[string]json.RawMessage
	if json.Unmarshal(j.Metadata, &md) != nil {
		return false
	}
	_, ok := md["cancel_attempted_at"]
	return ok
}
