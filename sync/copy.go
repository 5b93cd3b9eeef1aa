package sync

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	stdsync "sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// Options configure Copy. The zero value copies everything with defaults.
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
	// DryRun lists and counts what would be copied without opening or
	// storing anything.
	DryRun bool
	// DeleteSource removes each message from the source (mail.Remover) once
	// it is durable in the sink and recorded in the checkpoint.
	DeleteSource bool
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
	// Remap lets a folder whose identifiers were reset en masse (an IMAP
	// UIDVALIDITY change, regenerated POP3 UIDLs) be re-mapped by content
	// instead of halted: see ResetError and the rule in reset.go.
	Remap bool

	byteLimit, msgLimit *rateLimiter // from MaxBytesPerSec and MaxMsgsPerSec
	budget              *byteBudget  // from MaxBytes
	streak              *tempStreak  // stops the run after temporary failures in a row
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
}

// Planned is one message a dry run would copy.
type Planned struct {
	Mailbox string  `json:"mailbox"`
	ID      mail.ID `json:"id"`
	Size    int64   `json:"size"`
}

type job struct {
	env mail.Envelope
	// orphans, when set, holds orphaned records of env's size: env may be
	// one of them under a new ID.
	orphans *orphanSet
	// probe, when set, asks only for a hash and claim (confirmReset): no Put.
	probe *probeResult
}

// orphanSet holds a mailbox's orphaned records by size. Claiming removes a
// record, so two identical source messages re-map to two records, not one.
// Workers share it.
type orphanSet struct {
	mu     stdsync.Mutex
	bySize map[int64][]checkpoint.Record
}

func (o *orphanSet) has(size int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.bySize[size]) > 0
}

// claim takes the first unclaimed record of size with content sum.
func (o *orphanSet) claim(size int64, sum string) (checkpoint.Record, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	recs := o.bySize[size]
	for i, r := range recs {
		if r.SHA256 == sum {
			o.bySize[size] = append(recs[:i:i], recs[i+1:]...)
			return r, true
		}
	}
	return checkpoint.Record{}, false
}

type done struct {
	env mail.Envelope
	rec checkpoint.Record
	// recorded: the checkpoint already holds the message (it was stored by
	// an earlier run); it only still has to be deleted from the source.
	recorded bool
}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.FetchBatch <= 0 {
		o.FetchBatch = 32
	}
	if o.BatchDelay <= 0 {
		o.BatchDelay = 2 * time.Second
	}
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Step == nil {
		o.Step = func(string) {}
	}
	o.byteLimit = newRateLimiter(o.MaxBytesPerSec)
	o.msgLimit = newRateLimiter(o.MaxMsgsPerSec)
	o.budget = newByteBudget(o.MaxBytes)
	o.streak = &tempStreak{}
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
// recorded before Copy returns.
func Copy(ctx context.Context, src mail.Source, dst mail.Sink, opt Options) (*Result, error) {
	opt.defaults()
	st := opt.Stats
	if st.Start.IsZero() {
		st.Start = time.Now()
	}
	res := &Result{Stats: st}
	var remover mail.Remover
	if opt.DeleteSource {
		r, ok := src.(mail.Remover)
		if !ok {
			return res, &mail.ConfigError{Msg: "the source cannot delete messages", Hint: "drop --delete-source"}
		}
		remover = r
		// A source that can identify messages more ways when they are to be
		// deleted (POP3 without UIDL: by content) learns so before it lists.
		if d, ok := src.(mail.DeleteAware); ok {
			d.DeleteAfterCopy()
		}
	}
	boxes, err := retry(ctx, opt, func() ([]string, error) { return src.Mailboxes(ctx) })
	if err != nil {
		return res, fmt.Errorf("list mailboxes: %w", err)
	}
	var selected []string
	for _, mb := range boxes {
		if opt.Mailboxes == nil || opt.Mailboxes(mb) {
			selected = append(selected, mb)
			st.Box(mb)
		}
	}
	if !opt.DryRun {
		made := map[string]bool{}
		kept := selected[:0]
		for _, mb := range selected {
			to := opt.dstName(mb)
			if !made[to] {
				_, err := retry(ctx, opt, func() (struct{}, error) { return struct{}{}, dst.CreateMailbox(ctx, to) })
				switch {
				case errors.Is(err, mail.ErrConfig) || errors.Is(err, mail.ErrUnsupported):
					// A name the destination cannot hold safely (e.g. "../x" into
					// a Maildir): skip that folder, report it, copy the rest.
					res.Failures = append(res.Failures, Failure{Mailbox: mb, Err: fmt.Sprintf("folder skipped: %v", err)})
					st.Failed.Add(1)
					st.Box(mb).Failed.Add(1)
					opt.Logger.Error("folder skipped: the destination cannot store its name", "mailbox", mb, "err", err)
					continue
				case err != nil:
					return res, fmt.Errorf("create mailbox %q: %w", to, err)
				}
				made[to] = true
			}
			kept = append(kept, mb)
		}
		selected = kept
	}

	workers := opt.Workers
	for _, l := range []mail.Limits{src.Limits(), dst.Limits()} {
		if l.Conns > 0 && l.Conns < workers {
			workers = l.Conns
		}
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 64
		if b := dst.Limits().Batch; b > 0 {
			opt.BatchSize = b
		}
	}
	runCtx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	g, gctx := errgroup.WithContext(runCtx)
	jobs := make(chan []job, 2*workers)
	dones := make(chan done, 4*opt.BatchSize)
	var mu stdsync.Mutex // guards res.Failures, res.Skipped, res.Events, res.Planned, halts
	fail := func(list *[]Failure, env mail.Envelope, err error) {
		mu.Lock()
		*list = append(*list, Failure{Mailbox: env.Mailbox, ID: env.ID, Err: err.Error(), Temporary: mail.Temporary(err)})
		mu.Unlock()
	}

	var halts []error
	note := func(ev Event, halt *ResetError) {
		mu.Lock()
		defer mu.Unlock()
		res.Events = append(res.Events, ev)
		if halt != nil {
			halts = append(halts, halt)
		}
	}
	plan := func(env mail.Envelope) {
		mu.Lock()
		res.Planned = append(res.Planned, Planned{Mailbox: env.Mailbox, ID: env.ID, Size: env.Size})
		mu.Unlock()
	}

	g.Go(func() error {
		defer close(jobs)
		for _, mb := range selected {
			err := func() (err error) {
				defer catchPanic(&err, opt.Logger)
				return listMailbox(gctx, src, dst, mb, opt, jobs, dones, func(env mail.Envelope, err error) { fail(&res.Skipped, env, err) }, note, plan)
			}()
			var pe *PanicError
			if errors.As(err, &pe) {
				// Only this folder is cut short: what it queued is still
				// copied, and the other folders go on (G2).
				st.Failed.Add(1)
				st.Box(mb).Failed.Add(1)
				fail(&res.Failures, mail.Envelope{Mailbox: mb}, fmt.Errorf("folder not finished: %w", err))
				opt.Logger.Error("folder not finished", "mailbox", mb, "err", err)
				continue
			}
			if err != nil {
				return err
			}
		}
		st.current.Store("")
		return nil
	})
	batchOpener, _ := src.(mail.BatchOpener)
	for range workers {
		g.Go(func() error {
			settle := func(j job, d done, err error) error {
				box := st.Box(j.env.Mailbox)
				switch {
				case err == nil:
					// Stored: hand it to the committer even when the run is being
					// cancelled; it drains until the end, so this cannot block for
					// good, and the message gets recorded instead of re-copied.
					dones <- d
				case gctx.Err() != nil:
					return gctx.Err()
				case mail.Fatal(err):
					return fmt.Errorf("%s %s: %w", j.env.Mailbox, j.env.ID, err)
				case errors.Is(err, mail.ErrNotFound):
					st.Vanished.Add(1)
					box.Vanished.Add(1)
					opt.Logger.Warn("message vanished from the source before it was copied", "mailbox", j.env.Mailbox, "id", j.env.ID)
				default:
					st.Failed.Add(1)
					box.Failed.Add(1)
					fail(&res.Failures, j.env, err)
					opt.Logger.Error("message not copied", "mailbox", j.env.Mailbox, "id", j.env.ID, "err", err)
				}
				return nil
			}
			for b := range jobs {
				if len(b) == 1 && b[0].probe != nil {
					if err := probeOne(gctx, src, b[0], opt); err != nil {
						return err
					}
					continue
				}
				handled := make([]bool, len(b))
				if batchOpener != nil && len(b) > 1 {
					if err := copyBatch(gctx, batchOpener, dst, b, handled, opt, settle); err != nil {
						return err
					}
				}
				// One by one, with retries: everything a batch did not finish.
				for i, j := range b {
					if handled[i] {
						continue
					}
					d, err := copyOne(gctx, src, dst, j, opt)
					if err := settle(j, d, err); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}

	// The committer lives outside the group: it must still commit what was
	// Put after the group was cancelled, so an interrupt loses no work.
	commitErr := make(chan error, 1)
	go func() {
		commitErr <- commitLoop(ctx, dst, remover, dones, opt, func(err error) { cancelRun(err) }, func(env mail.Envelope, err error) {
			st.Failed.Add(1)
			st.Box(env.Mailbox).Failed.Add(1)
			fail(&res.Failures, env, err)
			opt.Logger.Error("message not copied", "mailbox", env.Mailbox, "id", env.ID, "err", err)
		})
	}()
	gerr := g.Wait()
	close(dones)
	cerr := <-commitErr
	reportUnstored(src, res, opt)
	if cerr != nil {
		return res, cerr
	}
	if gerr == nil && ctx.Err() != nil {
		gerr = ctx.Err()
	}
	if gerr == nil && len(halts) > 0 {
		gerr = errors.Join(halts...)
	}
	return res, gerr
}

// reportUnstored lists as failed the messages a source that hides what
// was read (Gmail's POP3) read but the run did not record: the server may
// never offer them again (docs/failure-model.md C5). It runs once the committer
// is done, so the checkpoint knows everything stored.
func reportUnstored(src mail.Source, res *Result, opt Options) {
	u, ok := src.(mail.UnstoredReporter)
	if !ok || opt.Checkpoint == nil {
		return
	}
	lost := u.Unstored(func(e mail.Envelope) bool {
		return opt.Checkpoint.Has(checkpoint.Key{Mailbox: e.Mailbox, ID: e.ID})
	})
	for _, env := range lost {
		msg := fmt.Sprintf("server may have removed message %s after RETR; it was NOT stored", env.ID)
		opt.Logger.Error(msg, "mailbox", env.Mailbox, "id", env.ID)
		i := slices.IndexFunc(res.Failures, func(f Failure) bool { return f.Mailbox == env.Mailbox && f.ID == env.ID })
		if i >= 0 { // already failed: say what that may cost
			res.Failures[i].Err = msg + ": " + res.Failures[i].Err
			res.Failures[i].Temporary = false
			continue
		}
		opt.Stats.Failed.Add(1)
		opt.Stats.Box(env.Mailbox).Failed.Add(1)
		res.Failures = append(res.Failures, Failure{Mailbox: env.Mailbox, ID: env.ID, Err: msg})
	}
}

// listMailbox sends the messages of mb that need copying to jobs.
func listMailbox(ctx context.Context, src mail.Source, dst mail.Sink, mb string, opt Options, jobs chan<- []job, dones chan<- done, skip func(mail.Envelope, error), note func(Event, *ResetError), plan func(mail.Envelope)) error {
	st := opt.Stats
	box := st.Box(mb)
	st.current.Store(mb)
	var fresh, stored []mail.Envelope
	listed := map[mail.ID]bool{}
	_, err := retry(ctx, opt, func() (struct{}, error) {
		fresh, stored, listed = fresh[:0], stored[:0], map[mail.ID]bool{}
		box.Listed.Store(0)
		box.Skipped.Store(0)
		return struct{}{}, src.List(ctx, mb, func(env mail.Envelope) error {
			env.Mailbox = mb
			listed[env.ID] = true
			box.Listed.Add(1)
			if opt.Checkpoint != nil && opt.Checkpoint.Has(checkpoint.Key{Mailbox: mb, ID: env.ID}) {
				box.Skipped.Add(1)
				stored = append(stored, env)
				return nil
			}
			fresh = append(fresh, env)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("list %q: %w", mb, err)
	}
	st.Listed.Add(box.Listed.Load())
	st.Skipped.Add(box.Skipped.Load())
	if err := syncFlags(ctx, dst, mb, stored, opt); err != nil {
		return fmt.Errorf("update flags in %q: %w", mb, err)
	}
	// Only messages the source still has need the destination's word: a
	// folder emptied by a mail client after its messages left the source is
	// no reason to stop.
	var present map[string]bool
	if len(stored) > 0 {
		var err error
		if present, err = destinationKeys(ctx, dst, mb, opt); err != nil {
			return err
		}
	}
	// In delete mode, messages an earlier run stored and recorded but could
	// not delete (killed before POP3 QUIT, which commits DELE) are deleted
	// now, once the destination confirms it still holds them; one it lost
	// is copied again first.
	if opt.DeleteSource && !opt.DryRun {
		for _, env := range stored {
			if present != nil && !present[mail.DeliveryKey(opt.SrcEndpoint, mb, env.ID)] {
				opt.Logger.Warn("recorded as copied but missing from the destination: copying it again before deleting it", "mailbox", mb, "id", env.ID)
				box.Skipped.Add(-1)
				st.Skipped.Add(-1)
				fresh = append(fresh, env)
				continue
			}
			select {
			case dones <- done{env: env, recorded: true}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}

	// Records whose IDs the source no longer lists are orphans: deleted
	// messages, or the same messages under new IDs (an IMAP UIDVALIDITY
	// change, a rebuilt POP3 UIDL list). A new message of an orphan's size
	// is hashed before it is copied, so a renumbered mailbox is re-mapped
	// instead of duplicated, and nothing is skipped on the strength of an ID.
	//
	// Not in delete mode: there the engine itself makes records orphans by
	// deleting their messages, and a second identical message would be
	// re-mapped onto its deleted twin's copy and deleted unstored (found by
	// TestI2TwinsSurviveDeleteRerun). A renumbering source in delete mode
	// costs at worst a duplicate, never a loss.
	orphans := &orphanSet{bySize: map[int64][]checkpoint.Record{}}
	rc := resetCheck{mailbox: mb, listed: len(listed), fresh: len(fresh)}
	if opt.Checkpoint != nil && len(fresh) > 0 && !opt.DeleteSource {
		recs := opt.Checkpoint.Records(mb)
		rc.recorded = len(recs)
		for _, r := range recs {
			if listed[r.ID] {
				continue
			}
			rc.gone++
			rc.oldIDs = append(rc.oldIDs, r.ID)
			if r.SHA256 != "" {
				orphans.bySize[r.Size] = append(orphans.bySize[r.Size], r)
				rc.orphans++
			}
		}
	}
	// A folder whose identifiers changed en masse is confirmed by content
	// before anything is copied from it (C3, C6, C7: see reset.go).
	var checked map[mail.ID]bool
	if rc.mass() {
		for _, env := range fresh {
			rc.freshIDs = append(rc.freshIDs, env.ID)
		}
		if opt.DryRun {
			change := idChange(rc.oldIDs, rc.freshIDs)
			note(Event{Mailbox: mb, Kind: "reset-suspected", Change: change, OldRecords: rc.orphans,
				Text: fmt.Sprintf("%s: %d of %d recorded ids are gone and %d of %d listed are new; a real run compares them by content first", mb, rc.gone, rc.recorded, rc.fresh, rc.listed)}, nil)
		} else {
			out, err := confirmReset(ctx, src, &rc, fresh, stored, orphans, opt, jobs, dones)
			if err != nil {
				return err
			}
			note(out.event, out.halt)
			if out.halt != nil {
				return nil
			}
			fresh, checked = out.fresh, out.checked
		}
	}
	var batch []job
	var batchBytes int64
	send := func(b []job) error {
		if len(b) == 0 {
			return nil
		}
		select {
		case jobs <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, env := range fresh {
		if opt.MaxSize > 0 && env.Size > opt.MaxSize {
			box.Skipped.Add(1)
			st.Skipped.Add(1)
			skip(env, fmt.Errorf("%w: %d bytes is over --max-size %d", mail.ErrTooLarge, env.Size, opt.MaxSize))
			opt.Logger.Warn("message skipped: over --max-size", "mailbox", mb, "id", env.ID, "size", env.Size)
			continue
		}
		env.Key = mail.DeliveryKey(opt.SrcEndpoint, mb, env.ID)
		box.Queued.Add(1)
		st.Queued.Add(1)
		if env.Size > 0 {
			box.QueuedBytes.Add(env.Size)
			st.QueuedBytes.Add(env.Size)
		}
		if opt.DryRun {
			plan(env)
			continue
		}
		j := job{env: env}
		if !checked[env.ID] && orphans.has(env.Size) { // re-matching needs the one-by-one path
			j.orphans = orphans
			if err := send([]job{j}); err != nil {
				return err
			}
			continue
		}
		batch = append(batch, j)
		batchBytes += max(env.Size, 0)
		if len(batch) >= opt.FetchBatch || batchBytes >= fetchBatchBytes {
			if err := send(batch); err != nil {
				return err
			}
			batch, batchBytes = nil, 0
		}
	}
	return send(batch)
}

// destinationKeys returns the delivery keys the destination holds in the
// mailbox mb maps to, when the sink can list them (mail.Indexer) and the
// checkpoint has records for mb; otherwise nil. A destination mailbox that
// holds nothing although the checkpoint records messages copied there is
// refused (docs/failure-model.md rule 5: never act on the strength of absence):
// an unmounted or replaced destination must not read as "all copied", and
// in delete mode must never lead to deleting the only copy.
func destinationKeys(ctx context.Context, dst mail.Sink, mb string, opt Options) (map[string]bool, error) {
	idx, ok := dst.(mail.Indexer)
	if !ok || opt.Checkpoint == nil {
		return nil, nil
	}
	recorded := len(opt.Checkpoint.Records(mb))
	if recorded == 0 {
		return nil, nil
	}
	to := opt.dstName(mb)
	present := map[string]bool{}
	n := 0
	err := idx.Index(ctx, to, func(e mail.Envelope) error {
		n++
		if e.Key != "" {
			present[e.Key] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list destination folder %q: %w", to, err)
	}
	if n == 0 {
		return nil, mail.MakeFatal(fmt.Errorf("%w: the destination folder %q is empty or missing, but the checkpoint records %d messages copied there; refusing to go on (was the destination moved, deleted or unmounted?); pass --reset to copy everything again",
			checkpoint.ErrUnusable, to, recorded))
	}
	return present, nil
}

// fetchBatchBytes caps the size hints of one batch, so one worker does not
// hold a long run of big messages while the others idle.
const fetchBatchBytes = 8 << 20

// copyOne copies one message, retrying temporary failures.
func copyOne(ctx context.Context, src mail.Source, dst mail.Sink, j job, opt Options) (done, error) {
	return retry(ctx, opt, func() (d done, err error) {
		// A panic (in an endpoint, or a hook) fails this message alone (G2).
		defer catchPanic(&err, opt.Logger)
		if j.orphans != nil {
			if rec, ok, err := rematch(ctx, src, j); err != nil || ok {
				return done{env: j.env, rec: rec}, err
			}
		}
		rc, err := src.Open(ctx, j.env)
		if err != nil {
			return done{}, fmt.Errorf("open: %w", err)
		}
		defer rc.Close()
		return putOne(ctx, dst, j.env, rc, opt)
	})
}

// putOne stores one message body into dst, counting and hashing it.
func putOne(ctx context.Context, dst mail.Sink, env mail.Envelope, body io.Reader, opt Options) (done, error) {
	if err := opt.budget.take(env.Size); err != nil {
		return done{}, err
	}
	if err := opt.msgLimit.wait(ctx, 1); err != nil {
		opt.budget.settle(env.Size, -1)
		return done{}, err
	}
	if opt.byteLimit != nil {
		body = &limitedReader{ctx: ctx, r: body, l: opt.byteLimit}
	}
	// A listing without Message-IDs (POP3) leaves the record without one;
	// the header is read on its way to the sink instead, so that a later
	// identifier reset can match the message by Message-ID (reset.go)
	// without a download.
	var scan *mail.HeaderScanner
	if env.MessageID == "" {
		scan = mail.NewHeaderScanner(body)
		body = scan
	}
	hr := mail.NewHashReader(body)
	put := env
	put.Mailbox = opt.dstName(env.Mailbox)
	id, err := dst.Put(ctx, put, hr)
	if err != nil {
		// What was read counts, stored or not: a provider's quota (B5)
		// counts every byte it sent, and a retry reads them again.
		opt.budget.settle(env.Size, hr.Digest().Bytes)
		return done{}, fmt.Errorf("put: %w", err)
	}
	opt.Step("put")
	dg := hr.Digest()
	opt.budget.settle(env.Size, dg.Bytes)
	opt.Stats.Fetched.Add(1)
	opt.Stats.Box(env.Mailbox).Fetched.Add(1)
	opt.Stats.Bytes.Add(dg.Bytes)
	opt.Stats.Box(env.Mailbox).Bytes.Add(dg.Bytes)
	rec := checkpoint.Record{Mailbox: env.Mailbox, ID: env.ID, Dst: id, Size: env.Size, SHA256: hex.EncodeToString(dg.SHA256[:]),
		MsgID: checkpoint.MsgIDSum(scannedMessageID(env, scan)), Date: checkpoint.UnixDate(env.Date)}
	if _, ok := dst.(mail.FlagSetter); ok && env.Flags != nil {
		f := flagString(env.Flags)
		rec.Flags = &f
	}
	return done{env: env, rec: rec}, nil
}

// flagString is a canonical form of a flag set, for comparisons.
func flagString(flags []mail.Flag) string {
	s := make([]string, len(flags))
	for i, f := range flags {
		s[i] = strings.ToLower(string(f))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// syncFlags gives the destination the current source flags of messages
// copied earlier whose flags changed since (RFC 9051 STORE FLAGS on an IMAP
// destination), so a message read or flagged on the source after the first
// run looks the same on the destination after the next. It needs a sink
// that can change flags (mail.FlagSetter) and records that know the flags
// last copied; a failure is logged and retried on the next run.
func syncFlags(ctx context.Context, dst mail.Sink, mb string, stored []mail.Envelope, opt Options) error {
	fs, ok := dst.(mail.FlagSetter)
	if !ok || opt.Checkpoint == nil || opt.DryRun || len(stored) == 0 {
		return nil
	}
	recs := map[mail.ID]checkpoint.Record{}
	for _, r := range opt.Checkpoint.Records(mb) {
		recs[r.ID] = r
	}
	for _, env := range stored {
		r, ok := recs[env.ID]
		if !ok || r.Flags == nil || r.Dst == "" || env.Flags == nil {
			continue
		}
		now := flagString(env.Flags)
		if now == *r.Flags {
			continue
		}
		if err := fs.SetFlags(ctx, opt.dstName(mb), r.Dst, env.Flags); err != nil {
			if ctx.Err() != nil || mail.Fatal(err) {
				return err
			}
			opt.Logger.Warn("flags not updated on the destination; the next run tries again", "mailbox", mb, "id", env.ID, "err", err)
			continue
		}
		r.Flags = &now
		if err := opt.Checkpoint.Add(r); err != nil {
			return mail.MakeFatal(err)
		}
		opt.Stats.FlagsUpdated.Add(1)
	}
	return nil
}

// copyBatch streams a batch through one BatchOpener request, marking what
// it stored in handled. Anything it did not finish (a failed Put, a dropped
// connection, a message the server did not return) is left unmarked for
// the one-by-one path, which retries and classifies it. Only a fatal error
// or cancellation is returned.
func copyBatch(ctx context.Context, bo mail.BatchOpener, dst mail.Sink, b []job, handled []bool, opt Options, settle func(job, done, error) error) error {
	index := make(map[mail.ID]int, len(b))
	envs := make([]mail.Envelope, len(b))
	for i, j := range b {
		index[j.env.ID] = i
		envs[i] = j.env
	}
	var settleErr error
	err := func() (err error) {
		// A panic in the source's own code ends the batch early; the
		// one-by-one path then meets it again and fails that message alone.
		defer catchPanic(&err, opt.Logger)
		return bo.OpenBatch(ctx, envs, func(env mail.Envelope, body io.Reader) error {
			i, ok := index[env.ID]
			if !ok || handled[i] {
				return fmt.Errorf("batch: source returned %s %s twice or unasked", env.Mailbox, env.ID)
			}
			d, err := func() (d done, err error) {
				// A panic while storing must not unwind through the
				// source's OpenBatch, which would skip its clean-up (an
				// IMAP connection left mid-FETCH hangs the next Open). It
				// fails this message alone and the batch goes on; a body
				// left unread is the source's to report.
				defer catchPanic(&err, opt.Logger)
				return putOne(ctx, dst, b[i].env, body, opt)
			}()
			var pe *PanicError
			if errors.As(err, &pe) {
				handled[i] = true
				if serr := settle(b[i], done{}, err); serr != nil {
					settleErr = serr
					return serr
				}
				return nil
			}
			if err != nil {
				return err
			}
			handled[i] = true
			if err := settle(b[i], d, nil); err != nil {
				settleErr = err
				return err
			}
			return nil
		})
	}()
	switch {
	case settleErr != nil:
		return settleErr
	case err == nil:
	case ctx.Err() != nil:
		return ctx.Err()
	case mail.Fatal(err):
		return err
	default:
		opt.Logger.Debug("batch fetch ended early; finishing one by one", "err", err)
	}
	return nil
}

// rematch hashes the message and reports whether it is one of the orphaned
// records (already stored under an old ID), claiming that record.
func rematch(ctx context.Context, src mail.Source, j job) (checkpoint.Record, bool, error) {
	rc, err := src.Open(ctx, j.env)
	if err != nil {
		return checkpoint.Record{}, false, fmt.Errorf("open: %w", err)
	}
	defer rc.Close()
	var body io.Reader = rc
	var scan *mail.HeaderScanner
	if j.env.MessageID == "" {
		scan = mail.NewHeaderScanner(rc)
		body = scan
	}
	hr := mail.NewHashReader(body)
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return checkpoint.Record{}, false, fmt.Errorf("read: %w", err)
	}
	sum := hr.Digest().Hex()
	old, ok := j.orphans.claim(j.env.Size, sum)
	if !ok {
		return checkpoint.Record{}, false, nil
	}
	return checkpoint.Record{Mailbox: j.env.Mailbox, ID: j.env.ID, Dst: old.Dst, Size: j.env.Size, SHA256: sum,
		MsgID: checkpoint.MsgIDSum(scannedMessageID(j.env, scan)), Date: checkpoint.UnixDate(j.env.Date)}, true, nil
}

// scannedMessageID is env's Message-ID: the listing's, or else what scan
// found in the body (nil scan: none).
func scannedMessageID(env mail.Envelope, scan *mail.HeaderScanner) string {
	if env.MessageID != "" || scan == nil {
		return env.MessageID
	}
	return scan.MessageID()
}

// commitLoop batches finished messages: sink commit, checkpoint record and
// fsync, then deletion on the source. On failure it reports through abort and
// keeps draining so workers never block.
func commitLoop(ctx context.Context, dst mail.Sink, remover mail.Remover, dones <-chan done, opt Options, abort func(error), failMsg func(mail.Envelope, error)) error {
	c := &commitState{opt: opt, remover: remover, failMsg: failMsg, failed: map[mail.ID]error{}}
	c.committer, _ = dst.(mail.Committer)
	c.resolver, _ = dst.(mail.IDResolver)
	var batch []done
	var failed error
	timer := time.NewTimer(opt.BatchDelay)
	defer timer.Stop()
	flush := func() {
		if len(batch) == 0 || failed != nil {
			batch = batch[:0]
			return
		}
		// An interrupt must not stop the commit of messages already Put:
		// committing is local and short.
		cctx := context.WithoutCancel(ctx)
		if err := c.safeCommit(cctx, batch); err != nil {
			failed = err
			abort(err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case d, ok := <-dones:
			if !ok {
				flush()
				return failed
			}
			batch = append(batch, d)
			if len(batch) >= opt.BatchSize {
				flush()
			}
		case <-timer.C:
			flush()
			timer.Reset(opt.BatchDelay)
		}
	}
}

// commitState is what the committer carries from batch to batch.
type commitState struct {
	opt       Options
	committer mail.Committer
	resolver  mail.IDResolver
	remover   mail.Remover
	failMsg   func(mail.Envelope, error)
	// failed remembers IDs a Commit gave up: a message Put before that Commit
	// may reach the committer only with a later batch.
	failed map[mail.ID]error
}

// safeCommit is commit with a panic turned into a fatal error: the state of
// the sink and the checkpoint is unknown after it, so the run stops, but the
// committer goes on draining so that no worker blocks.
func (c *commitState) safeCommit(ctx context.Context, batch []done) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = mail.MakeFatal(fmt.Errorf("commit: %w", recovered(p, c.opt.Logger)))
		}
	}()
	return c.commit(ctx, batch)
}

// commit makes a batch durable, records it, then deletes it on the source:
// in that order, and each step only for what the one before secured.
func (c *commitState) commit(ctx context.Context, batch []done) error {
	opt := c.opt
	if c.committer != nil {
		err := c.committer.Commit(ctx)
		var ce *mail.CommitError
		switch {
		case err == nil:
		case errors.As(err, &ce) && !mail.Fatal(err):
			for id, e := range ce.Failed {
				c.failed[id] = e
			}
		default:
			return mail.MakeFatal(fmt.Errorf("commit: %w", err))
		}
		opt.Step("commit")
	}
	kept := batch[:0]
	for _, d := range batch {
		if d.recorded {
			kept = append(kept, d)
			continue
		}
		if err, bad := c.failed[d.rec.Dst]; bad && d.rec.Dst != "" {
			delete(c.failed, d.rec.Dst)
			c.failMsg(d.env, fmt.Errorf("commit: %w", err))
			continue
		}
		if c.resolver != nil {
			final, ok := c.resolver.FinalID(d.rec.Dst)
			if !ok {
				c.failMsg(d.env, fmt.Errorf("commit: the destination did not confirm message %s", d.rec.Dst))
				continue
			}
			d.rec.Dst = final
		}
		kept = append(kept, d)
	}
	batch = kept
	if opt.Checkpoint != nil {
		for _, d := range batch {
			if d.recorded {
				continue
			}
			if err := opt.Checkpoint.Add(d.rec); err != nil {
				return mail.MakeFatal(err)
			}
		}
		if err := opt.Checkpoint.Flush(); err != nil {
			return mail.MakeFatal(err)
		}
		opt.Step("record")
	}
	for _, d := range batch {
		if d.recorded {
			continue
		}
		opt.Stats.Copied.Add(1)
		opt.Stats.Box(d.env.Mailbox).Copied.Add(1)
		opt.Logger.Debug("copied", "mailbox", d.env.Mailbox, "id", d.env.ID, "size", d.env.Size)
	}
	if c.remover != nil && len(batch) > 0 {
		envs := make([]mail.Envelope, len(batch))
		for i, d := range batch {
			envs[i] = d.env
		}
		if err := c.remover.Remove(ctx, envs); err != nil {
			return mail.MakeFatal(fmt.Errorf("delete on source: %w", err))
		}
		opt.Stats.Deleted.Add(int64(len(envs)))
		opt.Step("remove")
	}
	return nil
}

// retry runs f until it succeeds, fails with a non-temporary error, or the
// retries are used up, waiting with capped exponential backoff and jitter.
func retry[T any](ctx context.Context, opt Options, f func() (T, error)) (T, error) {
	wait := opt.Backoff
	for attempt := 1; ; attempt++ {
		v, err := f()
		if serr := opt.streak.note(ctx, err); serr != nil {
			return v, serr
		}
		if err == nil || !mail.Temporary(err) || attempt > opt.Retries || ctx.Err() != nil {
			if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return v, err
		}
		opt.Logger.Warn("retrying after a temporary error", "attempt", attempt, "err", err)
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
