package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	stdsync "sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// Options configure Copy and Run. The zero value copies everything with
// defaults. Options are configuration only: what a run learns and counts
// lives in its run value.
type Options struct {
	// SrcEndpoint names the source (its redacted URL); it seeds Envelope.Key.
	SrcEndpoint string
	// Workers is the number of concurrent copies; it is capped by both
	// sides' Limits. Default 4.
	Workers int
	// Checkpoint records what was copied; nil keeps nothing between runs.
	Checkpoint checkpoint.Store
	// Mailboxes, if set, selects the source mailboxes to copy.
	Mailboxes func(name string) bool
	// MapMailbox, if set, names the destination mailbox for a source
	// mailbox (folder renames, special-use roles, separators). The
	// checkpoint keeps source names.
	MapMailbox func(name string) string
	// Since and Before, when set, keep only the messages whose internal
	// date is on or after Since and before Before (see dates.go).
	Since, Before time.Time
	// DryRun lists and counts what would be copied without opening or
	// storing anything.
	DryRun bool
	// DeleteSource removes each message from the source (mail.Remover) once
	// it is durable in the sink and recorded in the checkpoint.
	DeleteSource bool
	// DeleteAfter, when set, leaves mail on the source and deletes there
	// the messages earlier runs recorded as stored at least that long ago,
	// while the destination still holds them (retention.go). It cannot be
	// combined with DeleteSource.
	DeleteAfter *time.Duration
	// Now is the clock of the store times recorded in the checkpoint and
	// of DeleteAfter; nil is time.Now. Tests set it.
	Now func() time.Time
	// MaxSize skips (and reports) messages whose size hint exceeds it; 0 is
	// no limit.
	MaxSize int64
	// MaxBytesPerSec and MaxMsgsPerSec, when positive, cap the copy's pace
	// over all workers, for providers that throttle bursts.
	MaxBytesPerSec int64
	MaxMsgsPerSec  int64
	// MaxBytes, when positive, is the run's byte budget: no message starts
	// once it would go over it, and Copy stops with ErrResumeLater.
	MaxBytes int64
	// Retries is how often a temporary failure is retried per message
	// (default 3); Backoff is the first wait, doubled up to 30 s (default 1 s).
	Retries int
	Backoff time.Duration
	// BatchSize and BatchDelay bound how many messages, and how long, wait
	// for one commit (sink fsync + checkpoint fsync). Defaults: the sink's
	// Limits().Batch, else 64; and 2 s.
	BatchSize  int
	BatchDelay time.Duration
	// FetchBatch is how many messages of one mailbox a worker asks a
	// mail.BatchOpener source for at once (default 32).
	FetchBatch int
	// Stats, if set, is updated during the run (for progress displays).
	Stats *Stats
	// Logger receives the engine's records; nil discards.
	Logger *slog.Logger
	// Step, if set, is called after each durable step of the pipeline:
	// "put" (a message written to the sink), "commit" (a batch made durable),
	// "record" (the checkpoint fsynced) and "remove" (deleted on the
	// source). Crash tests kill the process from it.
	Step func(name string)
	// Fence, if set, is asked before each commit to the sink; an error
	// abandons the commit (what was Put stays invisible, aborted when the
	// sink closes) and stops the run. A batch worker sets it: once its
	// account may have been handed to another worker (a stopped process
	// resumed past the job's rescue time, a lost slot lease), committing
	// would add what the other worker copies too.
	Fence func() error
	// Remap hashes every candidate of a folder whose identifiers were reset
	// en masse at once, instead of a sample first. A renumbering confirmed
	// by content is re-mapped with or without it (reset.go).
	Remap bool
	// Rebuild, when set, fills the checkpoint from what the destination
	// lists (mail.Indexer) before copying: set it when the checkpoint holds
	// no record (lost, or started afresh). Used by Run.
	Rebuild *Rebuild
	// State, when set with a Checkpoint, keeps each folder's status at the
	// end of its last complete pass, so that a run skips the folders that
	// did not move and lists only the changes of those that did
	// (passes.go). Run closes it.
	State *state.State
	// FullEvery lists a folder in full every FullEvery-th pass although its
	// status says nothing moved (default state.DefaultFullEvery).
	FullEvery int
}

// Rebuild asks Run to rebuild an empty checkpoint from the destination
// (docs/failure-model.md A9): messages it stored before are recorded
// without a download, and delete mode deletes only what it holds.
type Rebuild struct {
	// File names the checkpoint in the log record.
	File string
	// Asked: the user asked for it, so the log record is written even when
	// the destination held nothing of this source.
	Asked bool
}

// Failure is a message given up after retries.
type Failure struct {
	Mailbox string  `json:"mailbox"`
	ID      mail.ID `json:"id"`
	Err     string  `json:"error"`
	// Temporary: given up on a temporary error (throttled, connection
	// lost), so a later rerun will likely copy it.
	Temporary bool `json:"temporary,omitempty"`
}

// Result is what a run did.
type Result struct {
	Stats    *Stats
	Failures []Failure
	Skipped  []Failure // skipped on purpose (too large), with the reason
	// Events are what the run noticed about whole folders (identifiers
	// changed, a folder replaced or halted), in the order they happened.
	Events []Event
	// Planned, in a dry run, lists the messages a real run would copy now,
	// in listing order (docs/failure-model.md H2: the plan is comparable with
	// what the real run then records).
	Planned []Planned
	// Expired lists what DeleteAfter deleted from the source (in a dry
	// run: would delete); NotHeld the messages old enough that were kept
	// because the destination no longer holds their stored copy.
	Expired []Expired
	NotHeld []Failure
	// OutsideDates is how many listed messages Since/Before left out;
	// Undated how many had no date (POP3) and so were kept.
	OutsideDates, Undated int64
	// AlteredOnAppend is how many copies in the destination the sink
	// recognised although its server changed them when storing them
	// (mail.AlterationCounter).
	AlteredOnAppend int64
}

// Planned is one message a dry run would copy.
type Planned struct {
	Mailbox string  `json:"mailbox"`
	ID      mail.ID `json:"id"`
	Size    int64   `json:"size"`
}

// run is one copy from a source into a sink: its options, endpoints,
// checkpoint, results and channels. Its methods are the stages: plan
// (run.go), list (list.go), transfer (transfer.go), commit (commit.go),
// flags (flags.go), retry (retry.go) and reset (reset.go). Every message
// takes one path: lister -> jobs -> worker -> dones -> committer.
type run struct {
	opt Options
	src mail.Source
	dst mail.Sink
	cp  checkpoint.Store
	// folders is cp when it keeps each folder apart: the run then reads a
	// folder's records only when it lists the folder, and releases them
	// when done with it (release.go).
	folders checkpoint.Folders
	use     folderUse
	st      *Stats
	log     *slog.Logger
	res     *Result

	// Run-time state derived from the options.
	byteLimit, msgLimit *rateLimiter // from MaxBytesPerSec and MaxMsgsPerSec
	budget              *byteBudget  // from MaxBytes
	streak              *tempStreak  // stops the run after temporary failures in a row
	dates               *dateFilter  // from Since and Before; nil keeps all

	// The endpoints' optional capabilities, discovered once (a wrapper
	// says what it passes through: mail.Featurer).
	srcF, dstF *mail.Features
	remover    mail.Remover // delete mode only
	ret        *retention   // DeleteAfter only

	// passes, when the run skips unchanged folders, says how each selected
	// folder is listed (passes.go); nil lists every folder in full.
	passes map[string]*pass

	jobs  chan []job
	dones chan done

	mu    stdsync.Mutex // guards res.Failures, res.Skipped, res.Events, res.Planned, halts
	halts []error
}

// newRun applies the defaults and derives the run-time state.
func newRun(src mail.Source, dst mail.Sink, opt Options) *run {
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	if opt.Retries == 0 {
		opt.Retries = 3
	}
	if opt.Backoff <= 0 {
		opt.Backoff = time.Second
	}
	if opt.FetchBatch <= 0 {
		opt.FetchBatch = 32
	}
	if opt.BatchDelay <= 0 {
		opt.BatchDelay = 2 * time.Second
	}
	if opt.Stats == nil {
		opt.Stats = &Stats{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Step == nil {
		opt.Step = func(string) {}
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 64
		if b := dst.Limits().Batch; b > 0 {
			opt.BatchSize = b
		}
	}
	if opt.Stats.Start.IsZero() {
		opt.Stats.Start = time.Now()
	}
	r := &run{opt: opt, src: src, dst: dst, cp: opt.Checkpoint, st: opt.Stats, log: opt.Logger,
		res:       &Result{Stats: opt.Stats},
		byteLimit: newRateLimiter(opt.MaxBytesPerSec), msgLimit: newRateLimiter(opt.MaxMsgsPerSec),
		budget: newByteBudget(opt.MaxBytes), streak: &tempStreak{},
		dates: newDateFilter(opt.Since, opt.Before)}
	r.srcF, r.dstF = mail.FeaturesOf(src), mail.FeaturesOf(dst)
	if f, ok := opt.Checkpoint.(checkpoint.Folders); ok {
		r.folders = f
		r.use = folderUse{open: map[string]int{}, listed: map[string]bool{}}
	}
	return r
}

// dstName maps a source mailbox to its destination name.
func (o *Options) dstName(mailbox string) string {
	if o.MapMailbox == nil {
		return mailbox
	}
	return o.MapMailbox(mailbox)
}

// Copy copies every selected message of src that the checkpoint does not
// hold into dst. It returns an error when the run as a whole stopped:
// cancelled (errors.Is(err, context.Canceled)), or a fatal error (mail.Fatal)
// such as rejected credentials, a full disk or an unwritable checkpoint. It
// also returns one when every other folder finished but some folder was
// halted because its identifiers were reset (*ResetError, joined with
// errors.Join when there are several). Messages that failed alone, a panic
// included (*PanicError), are listed in Result.Failures and the run goes
// on. Whatever stopped the run, every message Put before it is committed and
// recorded before Copy returns. Copy closes nothing; Run does.
func Copy(ctx context.Context, src mail.Source, dst mail.Sink, opt Options) (*Result, error) {
	r := newRun(src, dst, opt)
	return r.res, r.execute(ctx)
}

// Run is the engine's one entry for a whole copy: it rebuilds the
// checkpoint when Options.Rebuild asks, copies (Copy), then closes the
// source, the checkpoint and the sink, in that order, whatever happened.
// Closing the source commits POP3 deletions (QUIT), so in delete mode its
// failure is the run's error; so is the checkpoint's. The sink's Close
// error is not: everything stored was committed before.
func Run(ctx context.Context, src mail.Source, dst mail.Sink, opt Options) (*Result, error) {
	r := newRun(src, dst, opt)
	err := r.rebuild(ctx)
	if err == nil {
		err = r.execute(ctx)
	}
	if cerr := src.Close(); cerr != nil && (opt.DeleteSource || r.res.Stats.Deleted.Load() > 0) && err == nil {
		err = fmt.Errorf("source: close (deletions may not have been committed; the rerun will finish them): %w", cerr)
	}
	if r.cp != nil {
		if cerr := r.cp.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if opt.State != nil {
		if cerr := opt.State.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	_ = dst.Close()
	return r.res, err
}

// rebuild fills an empty checkpoint from the keys the destination lists
// (Options.Rebuild), so nothing it holds is downloaded again.
func (r *run) rebuild(ctx context.Context) error {
	idx := r.dstF.Indexer
	if r.opt.Rebuild == nil || idx == nil || r.cp == nil || r.opt.DryRun {
		return nil
	}
	n, err := checkpoint.Rebuild(ctx, r.cp, r.src, idx, r.opt.SrcEndpoint, r.opt.Mailboxes, r.opt.MapMailbox, r.now().Unix())
	if err != nil {
		return err
	}
	if n > 0 || r.opt.Rebuild.Asked {
		r.log.Info("checkpoint rebuilt from the destination", "file", r.opt.Rebuild.File, "records", n)
	}
	return nil
}

// execute runs the stages: plan, then the lister, the workers and the
// committer together.
func (r *run) execute(ctx context.Context) error {
	if err := r.prepareDelete(); err != nil {
		return err
	}
	if err := r.prepareRetention(); err != nil {
		return err
	}
	selected, err := r.plan(ctx)
	if err != nil {
		return err
	}
	r.planPasses(ctx, selected)
	if !r.opt.DryRun {
		if selected, err = r.createMailboxes(ctx, selected); err != nil {
			return err
		}
	}
	workers := r.workers()
	runCtx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	g, gctx := errgroup.WithContext(runCtx)
	r.jobs = make(chan []job, 2*workers)
	r.dones = make(chan done, 4*r.opt.BatchSize)
	g.Go(func() error { return r.listAll(gctx, selected) })
	for range workers {
		g.Go(func() error { return r.transfer(gctx) })
	}
	// The committer lives outside the group: it must still commit what was
	// Put after the group was cancelled, so an interrupt loses no work.
	commitErr := make(chan error, 1)
	go func() { commitErr <- r.commitLoop(ctx, func(err error) { cancelRun(err) }) }()
	gerr := g.Wait()
	close(r.dones)
	cerr := <-commitErr
	r.reportUnstored()
	r.res.OutsideDates, r.res.Undated = r.dates.counts()
	if a := r.dstF.AlterationCounter; a != nil {
		r.res.AlteredOnAppend = a.AlteredOnAppend()
	}
	if cerr != nil {
		return cerr
	}
	if gerr == nil && ctx.Err() != nil {
		gerr = ctx.Err()
	}
	if gerr == nil {
		gerr = r.retain(ctx)
	}
	if err := r.stampLegacy(); err != nil {
		return err
	}
	if gerr == nil && len(r.halts) > 0 {
		gerr = errors.Join(r.halts...)
	}
	if gerr == nil {
		gerr = r.recordPasses()
	}
	return gerr
}

// prepareDelete checks that delete mode can delete, and tells a source
// that identifies messages more ways when they are to be deleted (POP3
// without UIDL: by content) before it lists.
func (r *run) prepareDelete() error {
	if !r.opt.DeleteSource {
		return nil
	}
	if r.srcF.Remover == nil {
		return &mail.ConfigError{Msg: "the source cannot delete messages", Hint: "drop --delete-source"}
	}
	r.remover = r.srcF.Remover
	if d := r.srcF.DeleteAware; d != nil {
		d.DeleteAfterCopy()
	}
	return nil
}

// plan lists the source's mailboxes and keeps the selected ones.
func (r *run) plan(ctx context.Context) ([]string, error) {
	boxes, err := retry(ctx, r, func() ([]string, error) { return r.src.Mailboxes(ctx) })
	if err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	var selected []string
	for _, mb := range boxes {
		if r.opt.Mailboxes == nil || r.opt.Mailboxes(mb) {
			selected = append(selected, mb)
			r.st.Box(mb)
		}
	}
	return selected, nil
}

// createMailboxes creates the destination of each selected mailbox once,
// dropping (and reporting) a folder whose name the destination cannot hold.
// A folder skipped as unchanged is left alone: its last complete pass made
// it, and making it again can cost the sink a look at all it holds (the
// Maildir sink indexes a folder's keys when it opens it); one that went
// missing is refused by destinationHolds.
func (r *run) createMailboxes(ctx context.Context, selected []string) ([]string, error) {
	made := map[string]bool{}
	kept := selected[:0]
	for _, mb := range selected {
		if p := r.passOf(mb); p != nil && p.mode == ListingSkipped {
			kept = append(kept, mb)
			continue
		}
		to := r.opt.dstName(mb)
		if !made[to] {
			_, err := retry(ctx, r, func() (struct{}, error) { return struct{}{}, r.dst.CreateMailbox(ctx, to) })
			switch {
			case errors.Is(err, mail.ErrConfig) || errors.Is(err, mail.ErrUnsupported):
				// A name the destination cannot hold safely (e.g. "../x" into
				// a Maildir): skip that folder, report it, copy the rest.
				r.failFolder(mb, fmt.Errorf("folder skipped: %w", err))
				r.log.Error("folder skipped: the destination cannot store its name", "mailbox", mb, "err", err)
				continue
			case err != nil:
				return nil, fmt.Errorf("create mailbox %q: %w", to, err)
			}
			made[to] = true
		}
		kept = append(kept, mb)
	}
	return kept, nil
}

// workers is Options.Workers capped by both sides' connection limits.
func (r *run) workers() int {
	workers := r.opt.Workers
	for _, l := range []mail.Limits{r.src.Limits(), r.dst.Limits()} {
		if l.Conns > 0 && l.Conns < workers {
			workers = l.Conns
		}
	}
	return workers
}

// failFolder counts and lists a folder given up as a whole.
func (r *run) failFolder(mb string, err error) {
	r.st.Failed.Add(1)
	r.st.Box(mb).Failed.Add(1)
	r.fail(&r.res.Failures, mail.Envelope{Mailbox: mb}, err)
}

// failMessage counts, lists and logs a message given up.
func (r *run) failMessage(env mail.Envelope, err error) {
	r.st.Failed.Add(1)
	r.st.Box(env.Mailbox).Failed.Add(1)
	r.fail(&r.res.Failures, env, err)
	r.log.Error("message not copied", "mailbox", env.Mailbox, "id", env.ID, "err", err)
}

// fail appends to one of the result's lists.
func (r *run) fail(list *[]Failure, env mail.Envelope, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*list = append(*list, Failure{Mailbox: env.Mailbox, ID: env.ID, Err: err.Error(), Temporary: mail.Temporary(err)})
}

// note records a folder event, and the folder's halt if any.
func (r *run) note(ev Event, halt *ResetError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Events = append(r.res.Events, ev)
	if halt != nil {
		r.halts = append(r.halts, halt)
	}
}

// planned lists a message a dry run would copy.
func (r *run) planned(env mail.Envelope) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Planned = append(r.res.Planned, Planned{Mailbox: env.Mailbox, ID: env.ID, Size: env.Size})
}

// reportUnstored lists as failed the messages a source that hides what
// was read (Gmail's POP3) read but the run did not record: the server may
// never offer them again (docs/failure-model.md C5). It runs once the committer
// is done, so the checkpoint knows everything stored.
func (r *run) reportUnstored() {
	u := r.srcF.UnstoredReporter
	if u == nil || r.cp == nil {
		return
	}
	lost := u.Unstored(func(e mail.Envelope) bool {
		return r.cp.Has(checkpoint.Key{Mailbox: e.Mailbox, ID: e.ID})
	})
	res := r.res
	for _, env := range lost {
		msg := fmt.Sprintf("server may have removed message %s after RETR; it was NOT stored", env.ID)
		r.log.Error(msg, "mailbox", env.Mailbox, "id", env.ID)
		i := slices.IndexFunc(res.Failures, func(f Failure) bool { return f.Mailbox == env.Mailbox && f.ID == env.ID })
		if i >= 0 { // already failed: say what that may cost
			res.Failures[i].Err = msg + ": " + res.Failures[i].Err
			res.Failures[i].Temporary = false
			continue
		}
		r.st.Failed.Add(1)
		r.st.Box(env.Mailbox).Failed.Add(1)
		res.Failures = append(res.Failures, Failure{Mailbox: env.Mailbox, ID: env.ID, Err: msg})
	}
}
