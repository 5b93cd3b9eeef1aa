package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// This file is the incremental listing of issue 11: a run asks the source
// the status of every folder first (mail.FolderStatuser) and compares it
// with the status the state (Options.State) recorded at the end of the
// folder's last complete pass. A folder that did not move is skipped; one
// that moved is listed by its changes (mail.ChangeLister) or in full. The
// checkpoint still holds the message records; the state holds only the
// pass summaries, and a folder's pass is recorded only once the run ended
// with every one of its records flushed to the checkpoint, so a kill never
// makes a folder look done.

// The ways a folder is listed, as Snapshot.Listing reports them.
const (
	ListingFull        = "full"
	ListingIncremental = "incremental"
	ListingSkipped     = "skipped"
)

// pass is what the run plans, then learns, for one folder.
type pass struct {
	mode   string
	reason string            // why full (log)
	since  mail.FolderStatus // the status the last complete pass recorded
	status mail.FolderStatus // the status to record when this pass completes
	done   bool              // listed to the end and queued, not halted
}

// passesOn reports whether this run skips unchanged folders: a state, a
// checkpoint, a source that tells folder statuses, and neither delete mode
// (which lists in full to finish deletions, as before) nor retention (which
// must see every stored message to find the expired ones).
func (r *run) passesOn() bool {
	return r.opt.State != nil && r.cp != nil && r.srcF.FolderStatuser != nil && !r.opt.DeleteSource &&
		r.opt.DeleteAfter == nil
}

// planPasses asks the status of every selected folder and decides how each
// is listed. A failing status request only costs full listings. A first
// run asks too, although it lists every folder in full: the status it
// records (asked before the listing, so a message arriving meanwhile makes
// the next run look, never miss it) lets the second run skip.
func (r *run) planPasses(ctx context.Context, selected []string) {
	if !r.passesOn() {
		return
	}
	r.passes = make(map[string]*pass, len(selected))
	sts, err := retry(ctx, r, func() (map[string]mail.FolderStatus, error) {
		return r.srcF.FolderStatuser.FolderStatuses(ctx, selected)
	})
	if err != nil {
		r.log.Warn("folder statuses unknown: listing every folder in full", "err", err)
		sts = nil
	}
	for _, mb := range selected {
		p := r.planPass(mb, sts)
		r.passes[mb] = p
		r.st.Box(mb).setListing(p.mode)
		if p.mode == ListingFull {
			r.log.Debug("listing in full", "mailbox", mb, "reason", p.reason)
		}
	}
}

// planPass decides how mb is listed from its status now (absent: unknown)
// and the summary of its last complete pass.
func (r *run) planPass(mb string, sts map[string]mail.FolderStatus) *pass {
	now, known := sts[mb]
	p := &pass{mode: ListingFull, status: now}
	sum, ok := r.opt.State.Summary(mb)
	switch {
	case !known:
		p.reason = "status unknown"
		return p
	case now.Unsettled:
		p.reason = "changed moments ago: its change evidence is not to be trusted yet"
		return p
	case !ok || sum.Complete == 0:
		p.reason = "no complete pass yet"
		return p
	case sum.B.Evidence != r.filterKey():
		p.reason = "the date or size filters changed"
		return p
	case sum.FullDue(r.fullEvery()):
		p.reason = fmt.Sprintf("every %d runs", r.fullEvery())
		return p
	}
	p.since = folderStatus(sum.A)
	if p.reason = fullReason(p.since, now); p.reason != "" {
		return p
	}
	switch {
	case sameStatus(p.since, now) && (now.HighestModSeq > 0 || now.Evidence != "" || !r.flagsFollow()):
		p.mode = ListingSkipped
		if now.Evidence != "" {
			// The same evidence: the messages the last pass listed (an
			// mbox cannot count without reading them).
			p.status.Messages = p.since.Messages
		}
	case r.srcF.ChangeLister != nil:
		p.mode = ListingIncremental
	default:
		p.reason = "changed, and the source cannot list changes"
	}
	return p
}

// fullReason says why a folder that moved from since to now must be listed
// in full, or "".
func fullReason(since, now mail.FolderStatus) string {
	if since.Evidence != now.Evidence {
		return "its files changed"
	}
	if now.Evidence != "" {
		return "" // the same evidence says it all; the kept count is the listing's
	}
	switch {
	case since.UIDValidity != now.UIDValidity:
		return fmt.Sprintf("UIDVALIDITY changed from %d to %d", since.UIDValidity, now.UIDValidity)
	case now.UIDNext < since.UIDNext:
		return "UIDNEXT went backwards"
	case since.HighestModSeq > 0 && (now.NoModSeq || now.HighestModSeq == 0):
		return "the server says NOMODSEQ"
	case now.HighestModSeq < since.HighestModSeq:
		return "HIGHESTMODSEQ went backwards"
	case uint64(now.Messages) > uint64(since.Messages)+uint64(now.UIDNext-since.UIDNext):
		// More messages than could have arrived since: counts disagree.
		return "message counts disagree"
	}
	return ""
}

// sameStatus reports a folder whose status did not move. Change evidence
// says it all: the count kept with it is the listing's (recordPasses).
func sameStatus(a, b mail.FolderStatus) bool {
	if a.Evidence != "" || b.Evidence != "" {
		return a.Evidence == b.Evidence
	}
	return a.UIDValidity == b.UIDValidity && a.UIDNext == b.UIDNext && a.Messages == b.Messages &&
		a.HighestModSeq == b.HighestModSeq
}

// flagsFollow reports whether flag changes on the source are carried to the
// destination: without mod-sequences a status cannot show them.
func (r *run) flagsFollow() bool { return r.dstF.FlagSetter != nil }

// fullEvery is Options.FullEvery or the state's default.
func (r *run) fullEvery() int {
	if r.opt.FullEvery > 0 {
		return r.opt.FullEvery
	}
	return state.DefaultFullEvery
}

// filterKey names the filters that decide which messages a pass copies: a
// pass recorded under other filters says nothing about this one (a message
// outside the old dates was never copied), so the folder is listed in full.
// It is kept as side B's evidence, which a one-way copy does not use.
func (r *run) filterKey() string {
	return fmt.Sprintf("filter:%d:%d:%d", unixOrZero(r.opt.Since), unixOrZero(r.opt.Before), r.opt.MaxSize)
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func folderStatus(s state.SideStatus) mail.FolderStatus {
	return mail.FolderStatus{UIDValidity: s.UIDValidity, UIDNext: s.UIDNext, Messages: s.Messages, HighestModSeq: s.HighestModSeq,
		Evidence: s.Evidence}
}

// sideStatus is the status kept for the next run. Unsettled evidence is
// not kept: the next run then sees other evidence and lists the folder.
func sideStatus(s mail.FolderStatus) state.SideStatus {
	st := state.SideStatus{UIDValidity: s.UIDValidity, UIDNext: s.UIDNext, Messages: s.Messages, HighestModSeq: s.HighestModSeq,
		Evidence: s.Evidence}
	if s.Unsettled {
		st.Evidence = ""
	}
	return st
}

// passOf returns mb's pass, nil when the run does not plan passes.
func (r *run) passOf(mb string) *pass {
	if r.passes == nil {
		return nil
	}
	return r.passes[mb]
}

// unfinished marks mb as not complete in this run (a flag change not
// applied): its pass is not recorded, so the next run lists it again.
func (r *run) unfinished(mb string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.passOf(mb); p != nil {
		p.done = false
		p.reason = "unfinished"
	}
}

// finished marks mb as listed to the end and queued.
func (r *run) finished(mb string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.passOf(mb); p != nil && p.reason != "unfinished" {
		p.done = true
	}
}

// skipFolder passes over mb, whose status did not move, without listing
// it or reading its records: it counts the folder as a full listing would
// (from the pass summary), checks that the destination still holds
// something when copies were recorded there, and marks the pass done, so
// that recordPasses counts it toward the full listing every Nth run.
func (r *run) skipFolder(ctx context.Context, mb string, p *pass) error {
	r.countFolder(mb, p.status.Messages, 0, func() int { return r.passedLen(mb) })
	r.st.Listed.Add(r.st.Box(mb).Listed.Load())
	r.st.Skipped.Add(r.st.Box(mb).Skipped.Load())
	if err := r.destinationHolds(ctx, mb, r.passedLen(mb)); err != nil {
		return err
	}
	r.finished(mb)
	return nil
}

// changeListing lists only what changed in mb since its last complete pass
// (mail.ChangeLister). It returns nil, nil when the source says the folder
// must be listed in full. The listing holds new messages as fresh, flag
// changes of recorded messages as stored, the recorded IDs that vanished,
// and as its count every recorded ID that did not vanish plus the new
// ones, so the orphan and renumbering checks see what a full listing would
// show.
func (r *run) changeListing(ctx context.Context, mb string, p *pass) (*listing, error) {
	box := r.st.Box(mb)
	var l *listing
	sum, err := retry(ctx, r, func() (mail.ChangeSummary, error) {
		l = &listing{mb: mb, changed: true}
		box.Listed.Store(0)
		box.Skipped.Store(0)
		dates := r.dates.start(mb)
		defer dates.done()
		return r.srcF.ChangeLister.ListChanges(ctx, mb, p.since, r.knownIDs(mb), func(c mail.Change) error {
			r.applyChange(l, c, dates)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list changes %q: %w", mb, err)
	}
	if sum.Full {
		r.log.Debug("listing in full", "mailbox", mb, "reason", sum.Reason)
		p.mode, p.reason = ListingFull, sum.Reason
		box.setListing(ListingFull)
		return nil, nil
	}
	p.status = sum.Status
	r.countFolder(mb, sum.Status.Messages, len(l.fresh), func() int { return r.recordCount(mb) })
	// The recorded IDs plus the new ones, less the vanished; new ones are
	// never recorded (fresh), and only recorded ones are kept as vanished.
	l.count = r.recordCount(mb) - len(l.vanished) + len(l.fresh)
	r.st.Listed.Add(box.Listed.Load())
	r.st.Skipped.Add(box.Skipped.Load())
	return l, nil
}

// countFolder counts a folder not listed in full as a full listing would:
// every message the server counts is found, and all but the fresh ones are
// present (recorded by a complete pass). With date filters the server's
// count includes messages left out, so the checkpoint's records of the
// folder (recorded()) are counted instead.
func (r *run) countFolder(mb string, messages uint32, fresh int, recorded func() int) {
	n := int64(messages)
	if r.dates != nil {
		n = min(n, int64(recorded()+fresh))
	}
	box := r.st.Box(mb)
	listed, skipped := max(n, box.Listed.Load()), max(n-int64(fresh), box.Skipped.Load(), 0)
	box.Listed.Store(listed)
	box.Skipped.Store(skipped)
}

// applyChange sorts one change into the listing. A flag change of a
// message the checkpoint does not hold is ignored: a complete pass copied
// every message it kept, so such a message was left out on purpose (dates).
func (r *run) applyChange(l *listing, c mail.Change, dates *dateCount) {
	env := c.Envelope
	env.Mailbox = l.mb
	box := r.st.Box(l.mb)
	recorded := r.cp.Has(checkpoint.Key{Mailbox: l.mb, ID: env.ID})
	switch c.Kind {
	case mail.ChangeVanished:
		if recorded { // a source reports each vanished ID once
			l.vanished = append(l.vanished, env.ID)
		}
	case mail.ChangeFlags:
		if recorded {
			box.Listed.Add(1)
			box.Skipped.Add(1)
			l.stored = append(l.stored, env)
		}
	case mail.ChangeNew:
		if !dates.keep(env, recorded) {
			return
		}
		box.Listed.Add(1)
		if recorded {
			box.Skipped.Add(1)
			l.stored = append(l.stored, env)
			return
		}
		l.fresh = append(l.fresh, env)
	}
}

// noteVanished marks, once a listing of mb is complete, the records of
// the messages it found gone as Vanished, and unmarks one listed again, so
// the next change listing is given as known only the messages the source
// held at the end of this pass. Without QRESYNC a change listing finds
// expunges as the known messages missing from the folder, and checks their
// number against the counts: a record of a message expunged in an earlier
// run would be counted again, every run, and the folder listed in full
// (counts disagree). A change listing names what vanished; a full listing
// leaves out what is gone (a recorded message is kept whatever its date).
// A mark written by a run killed before its pass is recorded makes the
// next change listing's counts disagree: one full listing, which marks
// again. Only runs that plan passes from a source that lists changes need
// the marks. A full listing looks records up one at a time rather than
// building the folder's records all at once (memory: a 50,000-message
// folder's records are 10 MB more).
func (r *run) noteVanished(l *listing) error {
	if r.passes == nil || r.srcF.ChangeLister == nil || r.opt.DryRun || r.cp == nil {
		return nil
	}
	record := r.recordLookup(l.mb)
	mark := func(id mail.ID, vanished bool) error {
		if rec, ok := record(id); ok && rec.Vanished != vanished {
			rec.Vanished = vanished
			return r.addRecord(rec)
		}
		return nil
	}
	if l.changed {
		for _, id := range l.vanished {
			if err := mark(id, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, id := range r.recordedIDs(l.mb) { // the unmarked ones
		if !l.listed[id] {
			if err := mark(id, true); err != nil {
				return err
			}
		}
	}
	for id := range l.listed { // a message back under its old ID
		if err := mark(id, false); err != nil {
			return err
		}
	}
	return nil
}

// knownIDs yields the IDs the checkpoint holds for mb, less those marked
// Vanished (noteVanished).
func (r *run) knownIDs(mb string) iter.Seq[mail.ID] {
	return func(yield func(mail.ID) bool) {
		for _, id := range r.recordedIDs(mb) {
			if !yield(id) {
				return
			}
		}
	}
}

// recordPasses records, after a run that ended without error, the pass of
// every folder listed to the end with nothing failed or skipped in it. The
// committer has flushed every record to the checkpoint by then.
func (r *run) recordPasses() error {
	if r.passes == nil || r.opt.DryRun {
		return nil
	}
	skipped := map[string]bool{}
	for _, f := range r.res.Skipped {
		skipped[f.Mailbox] = true
	}
	var unchanged []string
	for mb, p := range r.passes {
		if !p.done || skipped[mb] || r.st.Box(mb).Failed.Load() > 0 {
			continue
		}
		if p.mode == ListingSkipped {
			unchanged = append(unchanged, mb)
			continue
		}
		a := sideStatus(p.status)
		if p.status.Evidence != "" && p.mode == ListingFull {
			// What the listing found, for the runs that skip the folder
			// (the source may not count: mbox).
			a.Messages = uint32(r.st.Box(mb).Listed.Load())
		}
		if err := r.opt.State.CompletePass(mb, a, state.SideStatus{Evidence: r.filterKey()}, p.mode == ListingFull); err != nil {
			return mail.MakeFatal(fmt.Errorf("record the pass over %q: %w", mb, err))
		}
		if err := r.opt.State.Release(mb); err != nil {
			return mail.MakeFatal(fmt.Errorf("record the pass over %q: %w", mb, err))
		}
		r.opt.Step("pass")
	}
	return r.skipPasses(unchanged)
}

// skipPasses counts a pass over each folder skipped as unchanged (one
// summary write for all), so that a folder whose status never moves is
// still listed in full every Nth run (state.Summary.FullDue): a server
// that forgot to move a status cannot hide a change forever. Its
// statuses, record count and completion time stay those of its last
// listing.
func (r *run) skipPasses(names []string) error {
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	if err := r.opt.State.SkipPasses(names); err != nil {
		return mail.MakeFatal(fmt.Errorf("record the passes over %d unchanged folders: %w", len(names), err))
	}
	r.opt.Step("pass")
	return nil
}

// passedLen is how many records mb, a folder skipped as unchanged, held at
// the end of its last complete pass (state.Summary.Len): a skipped folder's
// records are never read. (A checkpoint kept apart from the state holds
// all its records in memory anyway: it is asked.)
func (r *run) passedLen(mb string) int {
	if r.folders == nil {
		return len(r.cp.Records(mb))
	}
	sum, _ := r.opt.State.Summary(mb)
	return sum.Len
}

// holdsAny reports whether the destination folder to (of source folder mb)
// holds any message: mail.HoldEvidencer answers from the evidence the
// state kept of its last answer without reading the folder while that
// evidence holds; mail.AnyHolder reads only up to the first message; an
// Indexer alone lists the folder (stopping the callbacks at the first
// message).
func (r *run) holdsAny(ctx context.Context, mb, to string) (bool, error) {
	if h := r.dstF.HoldEvidencer; h != nil && r.opt.State != nil {
		sum, _ := r.opt.State.Summary(mb)
		held, ev, err := h.HoldsSince(ctx, to, sum.Held)
		if err == nil && !r.opt.DryRun {
			r.opt.State.SetHeldEvidence(mb, ev)
		}
		return held, err
	}
	if a := r.dstF.AnyHolder; a != nil {
		return a.HoldsAny(ctx, to)
	}
	err := r.dstF.Indexer.Index(ctx, to, func(mail.Envelope) error { return errHolds })
	if errors.Is(err, errHolds) {
		return true, nil
	}
	return false, err
}

// errHolds stops an Index at its first message.
var errHolds = errors.New("the destination holds a message")

// destinationHolds keeps, for a folder skipped as unchanged or listed in a
// run that deletes nothing, the promise destinationKeys makes in a run that
// deletes: a destination folder found empty while the checkpoint records
// recorded copies there is refused, so an unmounted or replaced destination
// never reads as "all copied". It reads only up to the first message the
// destination lists.
func (r *run) destinationHolds(ctx context.Context, mb string, recorded int) error {
	idx := r.dstF.Indexer
	if idx == nil && r.dstF.AnyHolder == nil || r.cp == nil {
		return nil
	}
	if recorded == 0 {
		return nil
	}
	to := r.opt.dstName(mb)
	held, err := r.holdsAny(ctx, mb, to)
	switch {
	case held:
		return nil
	case err != nil:
		return fmt.Errorf("list destination folder %q: %w", to, err)
	}
	return mail.MakeFatal(fmt.Errorf("%w: the destination folder %q is empty or missing, but the checkpoint records %d messages copied there; refusing to go on (was the destination moved, deleted or unmounted?); pass --reset to copy everything again",
		checkpoint.ErrUnusable, to, recorded))
}
