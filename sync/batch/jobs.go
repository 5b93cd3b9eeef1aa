package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailferry/mailferry/internal/exitcode"
)

// Runner copies one account in-process: the command gives the copy engine
// (with the options 'mailferry copy' builds from a row). It reports
// mailferry's exit code; a run stopped by ctx returns 130.
type Runner interface {
	RunAccount(ctx context.Context, acct *Account) Outcome
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context, acct *Account) Outcome

// RunAccount calls f.
func (f RunnerFunc) RunAccount(ctx context.Context, acct *Account) Outcome { return f(ctx, acct) }

// Account is one account to copy in one pass.
type Account struct {
	Batch, Pass, Mode string
	// DeleteSource: the pass moves (copy --delete-source).
	DeleteSource bool
	// Force: the pass syncs with --force (deletions the guard held back
	// in an earlier pass, after a person checked them).
	Force bool
	// Reset: the account's checkpoint, when written for other endpoints
	// (its row's URLs changed), starts afresh instead of failing (exit 6).
	Reset bool
	Row   Row
	// Connections, when > 0, caps the account's connections (its host
	// groups' connections_per_account).
	Connections int
	// MaxMsgsPerSec, when > 0, is the account's share of its host groups'
	// max_msgs_per_sec (copy's --max-msgs-per-sec).
	MaxMsgsPerSec int64
	// MaxBytes, when > 0, is what the account may copy in this run out of
	// its host groups' daily byte budgets (copy's --max-bytes): the run
	// stops with exit 8 when it is spent, and resumes later.
	MaxBytes int64
	// Resolver gives the secrets the row's references name.
	Resolver *Resolver
	store    *Store // the batch database, for the account's checkpoint
	// Fence says whether the account is still this worker's to commit
	// messages for (nil: it is); the Runner asks it before every commit.
	Fence func() error
}

// OpenCheckpoint opens the account's checkpoint in the batch database
// (Store.OpenCheckpoint), where a worker on any machine finds it.
func (a *Account) OpenCheckpoint(ctx context.Context, src, dst string, reset bool) (*Checkpoint, error) {
	if a.store == nil {
		return nil, errors.New("checkpoint: the account has no batch database")
	}
	return a.store.OpenCheckpoint(ctx, a.Batch, a.Row.ID, src, dst, reset)
}

// Totals count messages as 'copy --json' does: a rerun over a full
// destination says copied 0.
type Totals struct {
	Copied  int64 `json:"copied"`
	Present int64 `json:"present"`
	Failed  int64 `json:"failed"`
	Bytes   int64 `json:"bytes"`
}

// Outcome is what one run of an account told. It is stored as the job's
// output: it must hold no secret.
type Outcome struct {
	ExitCode int      `json:"exit_code"`
	Class    string   `json:"class,omitempty"` // "" : from the exit code (ClassOf)
	Error    string   `json:"error,omitempty"`
	Totals   Totals   `json:"totals"`
	Failures []string `json:"failures,omitempty"` // the first few failed messages
	Slices   int      `json:"slices,omitempty"`   // slices of work this pass so far (see DefaultSlice)
	// CopyMillis is how long the Runner's copy took (this slice): the
	// rest of a job's time is the engine's (testdata/bench/batch.sh).
	CopyMillis int64 `json:"copy_ms,omitempty"`
}

// Failure classes of the report.
const (
	ClassAuth       = "auth"
	ClassConnect    = "connect"
	ClassTLS        = "tls"
	ClassQuota      = "quota"
	ClassCheckpoint = "checkpoint"
	ClassUsage      = "usage"
	ClassTemporary  = "temporary"
)

// ClassOf is the failure class of an exit code; "" for success and
// partial runs. A Runner may say "tls" where it knows better than 5.
func ClassOf(code int) string {
	switch code {
	case exitcode.OK, exitcode.Partial, exitcode.HeldBack:
		return ""
	case exitcode.Auth:
		return ClassAuth
	case exitcode.Unreachable:
		return ClassConnect
	case exitcode.Checkpoint:
		return ClassCheckpoint
	case exitcode.DiskFull:
		return ClassQuota
	case exitcode.Usage:
		return ClassUsage
	}
	return ClassTemporary
}

// maxFailures bounds the failures kept per account.
const maxFailures = 5

// defaultPausePoll is how often a job of a paused batch looks again.
const defaultPausePoll = 30 * time.Second

// jobKind is the River job kind of one account in one pass.
const jobKind = "mailferry_account"

// accountArgs are a job's arguments: which account of which batch in
// which pass. River's unique key is all of them (ByArgs), so loading or
// passing the same CSV twice makes no second job.
type accountArgs struct {
	Batch string `json:"batch"`
	Pass  string `json:"pass"`
	ID    string `json:"id"`
	Mode  string `json:"mode"`
	// DeleteSource is omitted when false, so jobs queued before it
	// existed keep their unique keys.
	DeleteSource bool `json:"delete_source,omitempty"`
	// Force: sync applies the deletions its guard would hold back.
	Force bool `json:"force,omitempty"`
	// Reset: a checkpoint written for other endpoints starts afresh.
	Reset bool `json:"reset,omitempty"`
}

func (accountArgs) Kind() string { return jobKind }

// accountWorker runs accounts for River.
type accountWorker struct {
	river.WorkerDefaults[accountArgs]
	store *Store
}

// Work runs one slice of one account and tells River what comes next
// (see outcomeError), unless this process runs the job already (ghost.go).
func (w *accountWorker) Work(ctx context.Context, job *river.Job[accountArgs]) error {
	e, ghost := w.store.execs.begin(job.ID)
	if ghost {
		w.store.cfg.Logger.Warn("batch worker: a job fetched again while it runs here (a late end of an earlier run); waiting for the run", "id", job.Args.ID)
		return e.wait(ctx)
	}
	err := errRunPanicked // unless work returns
	defer func() { w.store.execs.end(job.ID, e, err) }()
	err = w.work(ctx, job, e)
	return err
}

// errRunPanicked is what a ghost of a run that panicked returns (River
// recovers the panic and retries the job).
var errRunPanicked = errors.New("batch: the account's run panicked")

// work is Work for the one run of the job in this process; e keeps the
// output it records, for a ghost to record too.
func (w *accountWorker) work(ctx context.Context, job *river.Job[accountArgs], e *execution) error {
	s := w.store
	if paused, err := s.paused(ctx, job.Args.Batch); err != nil || paused {
		if err != nil {
			return err
		}
		return river.JobSnooze(s.cfg.PausePoll)
	}
	row, err := s.row(ctx, job.Args.Batch, job.Args.ID)
	if err != nil {
		return err // the database: retried
	}
	if row == nil {
		out := Outcome{ExitCode: exitcode.Usage, Class: ClassUsage, Error: "the batch has no account " + job.Args.ID}
		e.out = &out
		_ = river.RecordOutput(ctx, out)
		return river.JobCancel(errors.New(out.Error))
	}
	acct := &Account{Batch: job.Args.Batch, Pass: job.Args.Pass, Mode: job.Args.Mode, DeleteSource: job.Args.DeleteSource, Force: job.Args.Force, Reset: job.Args.Reset, Row: *row, Resolver: s.cfg.Resolver, store: s}
	run, wait, err := w.runInSlots(ctx, acct)
	if err != nil || wait.group != "" {
		if wait.group != "" {
			s.cfg.Metrics.slotWait(acct.Batch, wait.group)
			return river.JobSnooze(wait.snooze)
		}
		return err
	}
	out := merge(previousOutput(job.JobRow), run)
	if len(out.Failures) > maxFailures {
		out.Failures = out.Failures[:maxFailures]
	}
	if out.Class == "" {
		out.Class = ClassOf(out.ExitCode)
	}
	outcome, err := outcomeError(ctx, &out, s.cfg.Throttle)
	e.out = &out
	s.cfg.Metrics.observe(acct.Batch, outcome, out.Class, run.Totals)
	s.cfg.Logger.Info("account ran", "batch", acct.Batch, "pass", acct.Pass, "id", row.ID, "exit_code", out.ExitCode, "class", out.Class, "attempt", job.Attempt, "outcome", outcome)
	return err
}

// groupWait says why an account did not run: a group without a free
// slot (snooze SlotWait) or with its daily byte budget spent (snooze
// until the next UTC day).
type groupWait struct {
	group  string
	snooze time.Duration
}

// runInSlots runs the account once it holds a slot in each capped host
// group of its two ends, renewed while it runs, and (copy passes) a share
// of its groups' daily byte budgets. It returns the group it waits for
// instead of running.
func (w *accountWorker) runInSlots(ctx context.Context, acct *Account) (Outcome, groupWait, error) {
	s := w.store
	if !s.takePlace(ctx) {
		// The slice ended (or the worker stops) while other batches'
		// accounts took every place: back to the queue, no attempt spent.
		return Outcome{ExitCode: exitcode.Interrupted}, groupWait{}, nil
	}
	defer func() { <-s.running }()
	owned := s.ownedUntil(time.Now())
	groups := groupsOf(s.cfg.Groups, &acct.Row)
	acct.Connections, acct.MaxMsgsPerSec = connections(groups), msgsPerSec(groups)
	runCtx := ctx
	if len(groups) > 0 {
		l, full, err := s.acquire(ctx, groups)
		if err != nil || l == nil {
			return Outcome{}, groupWait{full, s.cfg.SlotWait}, err
		}
		var stopHold func()
		runCtx, stopHold = s.holdWhile(ctx, l)
		defer stopHold()
	}
	var budgets []budgetUse
	if acct.Mode != ModeSync { // a sync run has no byte budget to stop at
		budgets = budgetsOf(s.cfg.Groups, &acct.Row)
	}
	h, spent, err := s.reserveBudgets(ctx, budgets)
	if errors.Is(err, errBudgetSpent) {
		return Outcome{}, groupWait{spent, untilTomorrow(s.now())}, nil
	}
	if err != nil {
		return Outcome{}, groupWait{}, err
	}
	if h != nil {
		acct.MaxBytes = h.allowance
	}
	acct.Fence = fence(runCtx, owned)
	stop := s.cfg.Metrics.start(acct.Batch)
	defer stop()
	out := s.cfg.Runner.RunAccount(runCtx, acct)
	s.settleBudgets(context.WithoutCancel(ctx), h, out.Totals.Bytes)
	return out, groupWait{}, nil
}

// ownedUntil is when a job that started at start may be rescued by
// River's rescuer (RescueAfter) and run by another worker, less a margin:
// halfway between the end of the slice and the rescue. A worker stopped
// (SIGSTOP, a frozen VM) past it must commit nothing more: the copy's
// context ends with the slice, but a commit already under way ignores an
// interrupt (sync commitLoop), and the stopped process cannot tell how
// long it slept but by the clock.
func (s *Store) ownedUntil(start time.Time) time.Time {
	return start.Add(s.cfg.Slice + (s.cfg.RescueAfter-s.cfg.Slice)/2)
}

// errHandedOver: the account may be another worker's by now.
var errHandedOver = errors.New("batch: the account's slice ran past its rescue time; another worker may hold it now")

// fence is the Account's Fence: no commit once the job may have been
// rescued or the host group slot's lease was lost.
func fence(ctx context.Context, owned time.Time) func() error {
	return func() error {
		if errors.Is(context.Cause(ctx), errLeaseLost) {
			return errLeaseLost
		}
		if time.Now().After(owned) {
			return errHandedOver
		}
		return nil
	}
}

// takePlace waits for one of the process's Workers places; false when
// ctx ended first.
func (s *Store) takePlace(ctx context.Context) bool {
	select {
	case s.running <- struct{}{}:
		return true
	default:
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case s.running <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// outcomeError records the outcome and maps it to River's: done on 0, 3
// and 10 (sync held deletions back); cancelled (no retry) on 2, 4, 6 and 9, which need a person; snoozed,
// without spending an attempt, on 8 (throttled, --max-bytes) and when the
// slice ended or the worker is stopping (SIGTERM: another worker, or this
// one restarted, resumes it); retried with River's backoff otherwise (5,
// 1: the network, a server's bad minute).
//
// It returns the outcome's name for the metrics.
func outcomeError(ctx context.Context, out *Outcome, throttle time.Duration) (string, error) {
	if ctx.Err() != nil || out.ExitCode == exitcode.Interrupted {
		if errors.Is(context.Cause(ctx), river.ErrJobCancelledRemotely) {
			out.Class, out.Error = "", "cancelled by a person"
			_ = river.RecordOutput(ctx, out)
			return "cancelled", river.JobCancel(river.ErrJobCancelledRemotely)
		}
		out.Slices++
		out.ExitCode, out.Class = exitcode.Interrupted, ""
		_ = river.RecordOutput(ctx, out)
		return "snoozed", river.JobSnooze(0)
	}
	out.Slices = 0
	if err := river.RecordOutput(ctx, out); err != nil {
		return "retry", err
	}
	err := fmt.Errorf("exit %d (%s): %s", out.ExitCode, out.Class, out.Error)
	switch out.ExitCode {
	case exitcode.OK:
		return "done", nil
	case exitcode.Partial:
		return "partial", nil
	case exitcode.HeldBack:
		// Running it again would hold them back again: a person looks
		// (the report says held_back), then queues a pass with --force.
		return "held_back", nil
	case exitcode.Usage, exitcode.Auth, exitcode.Checkpoint, exitcode.DiskFull:
		return "failed", river.JobCancel(err)
	case exitcode.Temporary, exitcode.Locked:
		return "snoozed", river.JobSnooze(throttle)
	}
	return "retry", err
}

// previousOutput is the outcome the job's last attempt or slice recorded.
func previousOutput(job *rivertype.JobRow) *Outcome {
	var md struct {
		Output *Outcome `json:"output"`
	}
	if len(job.Metadata) == 0 || json.Unmarshal(job.Metadata, &md) != nil {
		return nil
	}
	return md.Output
}

// merge adds what earlier slices of this pass copied: each slice is a new
// run that counts the earlier slices' messages as present.
func merge(prev *Outcome, cur Outcome) Outcome {
	if prev == nil || prev.Slices == 0 {
		return cur
	}
	cur.Slices = prev.Slices
	cur.Totals.Copied += prev.Totals.Copied
	cur.Totals.Bytes += prev.Totals.Bytes
	cur.Totals.Present = max(cur.Totals.Present-prev.Totals.Copied, 0)
	return cur
}
