package sync

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// job is one unit of work for a worker.
type job struct {
	env mail.Envelope
	// orphans, when set, holds orphaned records of env's size: env may be
	// one of them under a new ID.
	orphans *orphanSet
	// probe, when set, asks only for a hash and claim (confirmReset): no Put.
	probe *probeResult
	// ready, when set, is a message that needs no transfer (recorded by an
	// earlier run and still to be deleted, or re-mapped by a folder's
	// renumbering): the worker hands it to the committer as it is.
	ready *done
}

// fetchBatchBytes caps the size hints of one batch, so one worker does not
// hold a long run of big messages while the others idle.
const fetchBatchBytes = 8 << 20

// listing is what one listing of a mailbox found.
type listing struct {
	mb     string
	fresh  []mail.Envelope // not in the checkpoint
	stored []mail.Envelope // in the checkpoint
	// listed holds every ID a full listing found. A change listing
	// (passes.go) leaves it nil: it sees only what changed, and a set of
	// every ID would cost what the folder holds, not what changed. It
	// keeps the recorded IDs reported vanished instead, and how many IDs
	// a full listing would have found (changed).
	listed   map[mail.ID]bool
	vanished []mail.ID
	changed  bool
	count    int
}

// size is how many messages the listing found (a change listing: would
// have found).
func (l *listing) size() int {
	if l.changed {
		return l.count
	}
	return len(l.listed)
}

// listAll lists the selected mailboxes one after the other, queueing their
// work; a panic cuts only its folder short.
func (r *run) listAll(ctx context.Context, selected []string) error {
	defer close(r.jobs)
	for _, mb := range selected {
		err := func() (err error) {
			defer catchPanic(&err, r.log)
			return r.list(ctx, mb)
		}()
		var pe *PanicError
		if errors.As(err, &pe) {
			// Only this folder is cut short: what it queued is still
			// copied, and the other folders go on (G2).
			r.failFolder(mb, fmt.Errorf("folder not finished: %w", err))
			r.log.Error("folder not finished", "mailbox", mb, "err", err)
			if err := r.listedAll(mb); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := r.listedAll(mb); err != nil {
			return err
		}
	}
	r.st.current.Store("")
	return nil
}

// list sends the messages of mb that need work to the workers.
func (r *run) list(ctx context.Context, mb string) error {
	r.st.current.Store(mb)
	l, err := r.listFolder(ctx, mb)
	if err != nil || l == nil {
		return err
	}
	if err := r.syncFlags(ctx, mb, l.stored); err != nil {
		return fmt.Errorf("update flags in %q: %w", mb, err)
	}
	if err := r.finishDeletes(ctx, l); err != nil {
		return err
	}
	if err := r.noteVanished(l); err != nil {
		return err
	}
	orphans, rc := r.orphans(l)
	// A folder whose identifiers changed en masse is confirmed by content
	// before anything is copied from it (C3, C6, C7: see reset.go).
	var checked map[mail.ID]bool
	if rc.mass() {
		for _, env := range l.fresh {
			rc.freshIDs = append(rc.freshIDs, env.ID)
		}
		if r.opt.DryRun {
			r.noteSuspected(rc)
		} else {
			out, err := r.confirmReset(ctx, rc, l.fresh, l.stored, orphans)
			if err != nil {
				return err
			}
			r.note(out.event, out.halt)
			if out.halt != nil {
				return nil
			}
			l.fresh, checked = out.fresh, out.checked
		}
	}
	r.selectExpired(l)
	if err := r.queue(ctx, mb, l.fresh, orphans, checked); err != nil {
		return err
	}
	r.finished(mb)
	return nil
}

// listFolder lists mb as its pass says (passes.go): not at all (nil), by
// its changes, or in full.
func (r *run) listFolder(ctx context.Context, mb string) (*listing, error) {
	p := r.passOf(mb)
	if p != nil && p.mode == ListingSkipped {
		return nil, r.skipFolder(ctx, mb, p)
	}
	if p != nil && p.mode == ListingIncremental {
		r.preparePuts(mb, p)
		loaded := r.loadFolderAsync(mb) // read beside the listing's round trips
		l, err := r.changeListing(ctx, mb, p)
		if lerr := loaded(); lerr != nil {
			return nil, lerr
		}
		if err != nil || l != nil {
			return l, err
		}
		return r.listing(ctx, mb)
	}
	if err := r.loadFolder(mb); err != nil {
		return nil, err
	}
	return r.listing(ctx, mb)
}

// preparePuts tells a sink that looks for stored copies by reading the
// destination folder (mail.PutPreparer) that mb's change listing is about
// to queue new messages (its status says some arrived), so that the read
// runs beside the listing's round trips, not before the first Put.
func (r *run) preparePuts(mb string, p *pass) {
	pp := r.dstF.PutPreparer
	if pp == nil || r.opt.DryRun {
		return
	}
	if p.status.UIDNext != p.since.UIDNext || p.status.Messages > p.since.Messages {
		pp.PreparePuts(r.opt.dstName(mb))
	}
}

// listing lists mb (with retries), splitting what the checkpoint holds
// from what it does not, and leaving out what the dates exclude.
func (r *run) listing(ctx context.Context, mb string) (*listing, error) {
	box := r.st.Box(mb)
	l := &listing{mb: mb}
	_, err := retry(ctx, r, func() (struct{}, error) {
		l.fresh, l.stored, l.listed = l.fresh[:0], l.stored[:0], map[mail.ID]bool{}
		box.Listed.Store(0)
		box.Skipped.Store(0)
		dates := r.dates.start(mb)
		defer dates.done()
		return struct{}{}, r.src.List(ctx, mb, func(env mail.Envelope) error {
			env.Mailbox = mb
			recorded := r.cp != nil && r.cp.Has(checkpoint.Key{Mailbox: mb, ID: env.ID})
			if !dates.keep(env, recorded) {
				return nil
			}
			l.listed[env.ID] = true
			box.Listed.Add(1)
			if recorded {
				box.Skipped.Add(1)
				l.stored = append(l.stored, env)
				return nil
			}
			l.fresh = append(l.fresh, env)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", mb, err)
	}
	r.st.Listed.Add(box.Listed.Load())
	r.st.Skipped.Add(box.Skipped.Load())
	return l, nil
}

// finishDeletes, in delete mode, queues for deletion the messages an
// earlier run stored and recorded but could not delete (killed before
// POP3 QUIT, which commits DELE), once the destination confirms it still
// holds them; one it lost is copied again first.
func (r *run) finishDeletes(ctx context.Context, l *listing) error {
	// Only messages the source still has need the destination's word: a
	// folder emptied by a mail client after its messages left the source is
	// no reason to stop.
	if len(l.stored) == 0 {
		return nil
	}
	if !r.opt.DeleteSource || r.opt.DryRun {
		// Nothing to delete: only the check that the destination was not
		// emptied or unmounted, which needs its first message, not its
		// list (a 50,000-message folder took 0.34 s of a 1.8 s rerun).
		return r.destinationHolds(ctx, l.mb, r.recordCount(l.mb))
	}
	present, err := r.destinationKeys(ctx, l.mb)
	if err != nil {
		return err
	}
	box := r.st.Box(l.mb)
	var ready []job
	for _, env := range l.stored {
		if present != nil && !present[mail.DeliveryKey(r.opt.SrcEndpoint, l.mb, env.ID)] {
			r.log.Warn("recorded as copied but missing from the destination: copying it again before deleting it", "mailbox", l.mb, "id", env.ID)
			box.Skipped.Add(-1)
			r.st.Skipped.Add(-1)
			l.fresh = append(l.fresh, env)
			continue
		}
		ready = append(ready, job{env: env, ready: &done{env: env, kind: doneRecorded}})
		if len(ready) >= r.opt.FetchBatch {
			if err := r.send(ctx, ready); err != nil {
				return err
			}
			ready = nil
		}
	}
	return r.send(ctx, ready)
}

// orphans collects the records of mb whose IDs the source no longer
// lists: deleted messages, or the same messages under new IDs (an IMAP
// UIDVALIDITY change, a rebuilt POP3 UIDL list). A new message of an
// orphan's size is hashed before it is copied, so a renumbered mailbox is
// re-mapped instead of duplicated, and nothing is skipped on the strength
// of an ID.
//
// Not in delete mode: there the engine itself makes records orphans by
// deleting their messages, and a second identical message would be
// re-mapped onto its deleted twin's copy and deleted unstored (found by
// TestI2TwinsSurviveDeleteRerun). A renumbering source in delete mode
// costs at worst a duplicate, never a loss. The same holds with
// DeleteAfter, which deletes recorded messages too (retention.go).
func (r *run) orphans(l *listing) (*orphanSet, *resetCheck) {
	orphans := &orphanSet{bySize: map[int64][]checkpoint.Record{}}
	rc := &resetCheck{mailbox: l.mb, listed: l.size(), fresh: len(l.fresh)}
	if r.cp == nil || len(l.fresh) == 0 || r.opt.DeleteSource || r.opt.DeleteAfter != nil {
		return orphans, rc
	}
	var gone []checkpoint.Record
	rc.recorded, gone = r.unlisted(l)
	for _, rec := range gone {
		rc.gone++
		rc.oldIDs = append(rc.oldIDs, rec.ID)
		if rec.SHA256 != "" {
			orphans.bySize[rec.Size] = append(orphans.bySize[rec.Size], rec)
			rc.orphans++
		}
	}
	orphans.forgetSharedFlags()
	return orphans, rc
}

// unlisted returns how many records the checkpoint holds for l's folder
// and those whose IDs l did not list. A change listing names them (its
// vanished IDs, looked up one by one), so the folder's other records are
// not built.
func (r *run) unlisted(l *listing) (int, []checkpoint.Record) {
	if l.changed {
		record := r.recordLookup(l.mb)
		var gone []checkpoint.Record
		for _, id := range l.vanished {
			if rec, ok := record(id); ok {
				gone = append(gone, rec)
			}
		}
		return r.recordCount(l.mb), gone
	}
	recs := r.cp.Records(l.mb)
	gone := recs[:0]
	for _, rec := range recs {
		if !l.listed[rec.ID] {
			gone = append(gone, rec)
		}
	}
	return len(recs), gone
}

// forgetSharedFlags drops the flags of orphaned records that share their
// stored copy (Dst) with another: a copy re-mapped before keeps its old
// record next to the new one, whose flags later runs updated, and which of
// them a renumbering claims is chance. remapFlags then sets the source's
// flags whatever they were (found by the change generator: a folder
// restored twice kept stale flags).
func (o *orphanSet) forgetSharedFlags() {
	n := map[mail.ID]int{}
	for _, rs := range o.bySize {
		for _, r := range rs {
			if r.Dst != "" {
				n[r.Dst]++
			}
		}
	}
	for _, rs := range o.bySize {
		for i := range rs {
			if n[rs[i].Dst] > 1 {
				rs[i].Flags = nil
			}
		}
	}
}

// noteSuspected reports, in a dry run, a folder whose identifiers changed
// en masse: only a real run compares them by content.
func (r *run) noteSuspected(rc *resetCheck) {
	change := idChange(rc.oldIDs, rc.freshIDs)
	r.note(Event{Mailbox: rc.mailbox, Kind: "reset-suspected", Change: change, OldRecords: rc.orphans,
		Text: fmt.Sprintf("%s: %d of %d recorded ids are gone and %d of %d listed are new; a real run compares them by content first", rc.mailbox, rc.gone, rc.recorded, rc.fresh, rc.listed)}, nil)
}

// queue counts and sends the messages left to copy, in batches for a
// mail.BatchOpener; a dry run only plans them.
func (r *run) queue(ctx context.Context, mb string, fresh []mail.Envelope, orphans *orphanSet, checked map[mail.ID]bool) error {
	var batch []job
	var batchBytes int64
	for _, env := range fresh {
		if !r.admit(mb, &env) {
			continue
		}
		if r.opt.DryRun {
			r.planned(env)
			continue
		}
		j := job{env: env}
		if !checked[env.ID] && orphans.has(env.Size) { // re-matching needs the one-by-one path
			j.orphans = orphans
			if err := r.send(ctx, []job{j}); err != nil {
				return err
			}
			continue
		}
		batch = append(batch, j)
		batchBytes += max(env.Size, 0)
		if len(batch) >= r.opt.FetchBatch || batchBytes >= fetchBatchBytes {
			if err := r.send(ctx, batch); err != nil {
				return err
			}
			batch, batchBytes = nil, 0
		}
	}
	return r.send(ctx, batch)
}

// admit skips (and reports) a message over MaxSize, or gives it its
// delivery key and counts it as queued.
func (r *run) admit(mb string, env *mail.Envelope) bool {
	box := r.st.Box(mb)
	if r.opt.MaxSize > 0 && env.Size > r.opt.MaxSize {
		box.Skipped.Add(1)
		r.st.Skipped.Add(1)
		r.fail(&r.res.Skipped, *env, fmt.Errorf("%w: %d bytes is over --max-size %d", mail.ErrTooLarge, env.Size, r.opt.MaxSize))
		r.log.Warn("message skipped: over --max-size", "mailbox", mb, "id", env.ID, "size", env.Size)
		return false
	}
	env.Key = mail.DeliveryKey(r.opt.SrcEndpoint, mb, env.ID)
	box.Queued.Add(1)
	r.st.Queued.Add(1)
	if env.Size > 0 {
		box.QueuedBytes.Add(env.Size)
		r.st.QueuedBytes.Add(env.Size)
	}
	return true
}

// send hands a batch to the workers.
func (r *run) send(ctx context.Context, b []job) error {
	if len(b) == 0 {
		return nil
	}
	r.queuedIn(b)
	select {
	case r.jobs <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// destinationKeys returns the delivery keys the destination holds in the
// mailbox mb maps to, when the sink can list them (mail.Indexer) and the
// checkpoint has records for mb; otherwise nil. A destination mailbox that
// holds nothing although the checkpoint records messages copied there is
// refused (docs/failure-model.md rule 5: never act on the strength of absence):
// an unmounted or replaced destination must not read as "all copied", and
// in delete mode must never lead to deleting the only copy.
func (r *run) destinationKeys(ctx context.Context, mb string) (map[string]bool, error) {
	idx := r.dstF.Indexer
	if idx == nil || r.cp == nil {
		return nil, nil
	}
	recorded := r.recordCount(mb)
	if recorded == 0 {
		return nil, nil
	}
	to := r.opt.dstName(mb)
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
