package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	stdsync "sync"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// One rule covers a folder whose identifiers changed en masse: an IMAP
// UIDVALIDITY change (server rebuild, restore, or the folder deleted and
// created again) or a POP3 server that regenerated its UIDLs
// (RELIABILITY-PLAN C3, C6, C7; design rules 2 and 6).
//
//  1. Detect: at least resetMinRecords records, of which at least 90 % are
//     no longer listed, while at least 90 % of the listed IDs are new.
//     Smaller changes keep the per-message re-match by content (copy.go).
//  2. Probe: hash new messages that have an orphaned record of their size
//     (resetSample of them, or all with Options.Remap). Each confirmation is
//     an exact SHA-256 match of the whole message.
//  3. Decide. No confirmation: the folder was replaced (C7); its messages
//     are copied as new, the old copies stay, the run reports the event.
//     Confirmations without Remap: the same messages under new IDs (C3);
//     the folder halts with *ResetError ("identifier reset detected"),
//     nothing is copied from it, the other folders go on. With Remap, the
//     re-mapping is accepted when at least remapConfirmations records, or
//     80 % of the orphaned records, are confirmed (C6): confirmed messages
//     are recorded under their new IDs with no Put, the rest are copied.
//     Below that the folder halts: a folder only partly the same is not a
//     renumbering the tool can trust.
//
// The cost: the checkpoint keeps a SHA-256 per message, not its
// Message-ID, so every confirmation downloads the message once (and a new
// message that matched nothing is downloaded again to be copied). The
// plan's "0 body re-downloads" needs a cheap identity on both sides
// (Message-ID + size in the checkpoint, or a sink Indexer that returns
// them); see RELIABILITY.md C3.
const (
	resetMinRecords    = 10
	resetShare         = 0.9
	remapConfirmations = 20
	remapShare         = 0.8
	resetSample        = 20
)

// ErrIdentifierReset is matched (errors.Is) by every *ResetError.
var ErrIdentifierReset = errors.New("identifier reset detected")

// ResetError halts one folder whose message identifiers were reset (see the
// rule above). It also matches checkpoint.ErrUnusable: the checkpoint's
// records no longer name the source's messages, so the CLI exits 6.
type ResetError struct {
	Mailbox  string
	Recorded int // records the checkpoint holds for the folder
	Vanished int // of those, no longer listed
	Listed   int // messages listed now
	New      int // of those, not recorded
	Orphans  int // vanished records with a content hash
	Probed   int // new messages hashed
	Matched  int // of those, equal to an orphaned record
	Remap    bool
	Change   string // e.g. "1700000000.* -> 1700000099.*", when the IDs show it
}

func (e *ResetError) Error() string {
	change := ""
	if e.Change != "" {
		change = " (ids " + e.Change + ")"
	}
	if !e.Remap {
		return fmt.Sprintf("%q: %v%s: %d of %d recorded ids are gone and %d of %d listed ids are new, and %d of %d new messages checked are old messages by content; nothing copied from this folder; rerun with --remap to record them under their new ids without copying them again (one download each)",
			e.Mailbox, ErrIdentifierReset, change, e.Vanished, e.Recorded, e.New, e.Listed, e.Matched, e.Probed)
	}
	return fmt.Sprintf("%q: %v%s: only %d of %d old messages match new ones by content (--remap needs %d, or %d %%); the folder looks partly replaced, so nothing was copied from it; check it on the server",
		e.Mailbox, ErrIdentifierReset, change, e.Matched, e.Orphans, remapConfirmations, int(remapShare*100))
}

// Is makes errors.Is(err, ErrIdentifierReset) and errors.Is(err,
// checkpoint.ErrUnusable) hold.
func (e *ResetError) Is(target error) bool {
	return target == ErrIdentifierReset || target == checkpoint.ErrUnusable
}

// Event is something a run noticed about a folder as a whole, for the
// summary, --json and the log.
type Event struct {
	Mailbox string `json:"mailbox"`
	// Kind is "replaced" (new identifiers, other content: copied as new),
	// "remapped" (new identifiers, same content: recorded without copying),
	// "halted" (see ResetError) or "reset-suspected" (a dry run).
	Kind       string `json:"kind"`
	Change     string `json:"change,omitempty"`
	OldRecords int    `json:"old_records"`
	Rematched  int    `json:"rematched"`
	Text       string `json:"text"`
}

// resetCheck is what the lister knows about a folder's identifiers.
type resetCheck struct {
	mailbox          string
	recorded, gone   int
	listed, fresh    int
	orphans          int
	oldIDs, freshIDs []mail.ID
}

// mass reports whether the folder's identifiers changed en masse.
func (r *resetCheck) mass() bool {
	return r.recorded >= resetMinRecords &&
		float64(r.gone) >= resetShare*float64(r.recorded) &&
		float64(r.fresh) >= resetShare*float64(r.listed)
}

// probeResult is what a worker found for one probed message.
type probeResult struct {
	wg      *stdsync.WaitGroup
	matched bool
	rec     checkpoint.Record
}

// probeOne hashes one message for confirmReset and claims the orphaned
// record it equals, if any. Only a fatal error or cancellation is
// returned; other failures count as "not matched" and the message goes the
// normal way, which classifies the error again.
func probeOne(ctx context.Context, src mail.Source, j job, opt Options) error {
	p := j.probe
	defer p.wg.Done()
	d, err := retry(ctx, opt, func() (d done, err error) {
		defer catchPanic(&err, opt.Logger)
		rec, ok, err := rematch(ctx, src, j)
		if ok {
			p.matched = true
		}
		return done{env: j.env, rec: rec}, err
	})
	switch {
	case err == nil:
		p.rec = d.rec
	case ctx.Err() != nil:
		return ctx.Err()
	case mail.Fatal(err):
		return fmt.Errorf("%s %s: %w", j.env.Mailbox, j.env.ID, err)
	default:
		opt.Logger.Debug("could not check a message against old copies", "mailbox", j.env.Mailbox, "id", j.env.ID, "err", err)
	}
	return nil
}

// resetOutcome is confirmReset's decision.
type resetOutcome struct {
	// fresh is what is left to copy; checked holds IDs already compared
	// with every orphan of their size (no second hash needed).
	fresh   []mail.Envelope
	checked map[mail.ID]bool
	event   Event
	halt    *ResetError
}

// confirmReset applies the rule above to a folder whose identifiers were
// reset. Confirmed re-mappings are sent to dones (recorded without a Put).
func confirmReset(ctx context.Context, rc *resetCheck, fresh []mail.Envelope, orphans *orphanSet, opt Options, jobs chan<- []job, dones chan<- done) (resetOutcome, error) {
	mb := rc.mailbox
	var cands []int
	for i, env := range fresh {
		if (opt.MaxSize <= 0 || env.Size <= opt.MaxSize) && orphans.has(env.Size) {
			cands = append(cands, i)
		}
	}
	if !opt.Remap && len(cands) > resetSample {
		cands = cands[:resetSample]
	}
	var wg stdsync.WaitGroup
	probes := make([]probeResult, len(cands))
	for k, i := range cands {
		probes[k].wg = &wg
		wg.Add(1)
		env := fresh[i]
		env.Key = mail.DeliveryKey(opt.SrcEndpoint, mb, env.ID)
		select {
		case jobs <- []job{{env: env, orphans: orphans, probe: &probes[k]}}:
		case <-ctx.Done():
			return resetOutcome{}, ctx.Err()
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-ctx.Done(): // a worker stopped the run
		return resetOutcome{}, ctx.Err()
	}
	matched := 0
	for _, p := range probes {
		if p.matched {
			matched++
		}
	}
	change := idChange(rc.oldIDs, rc.freshIDs)
	ev := Event{Mailbox: mb, Change: change, OldRecords: rc.orphans, Rematched: matched}
	what := "identifiers changed"
	if change != "" {
		what += " " + change
	}
	out := resetOutcome{checked: map[mail.ID]bool{}}
	accept := float64(matched) >= remapShare*float64(rc.orphans) || matched >= remapConfirmations
	switch {
	case matched == 0:
		ev.Kind = "replaced"
		ev.Text = fmt.Sprintf("%s: %s; %d old records kept, 0 re-matched (%d checked): the folder was replaced, its %d messages are copied as new",
			mb, what, rc.orphans, len(cands), rc.fresh)
		opt.Logger.Warn("folder replaced on the source: old copies kept, its messages copied as new", "mailbox", mb, "change", change, "old_records", rc.orphans, "checked", len(cands))
	case !opt.Remap || !accept:
		halt := &ResetError{Mailbox: mb, Recorded: rc.recorded, Vanished: rc.gone, Listed: rc.listed, New: rc.fresh,
			Orphans: rc.orphans, Probed: len(cands), Matched: matched, Remap: opt.Remap, Change: change}
		ev.Kind, ev.Text = "halted", halt.Error()
		opt.Logger.Error("folder halted", "mailbox", mb, "err", halt)
		return resetOutcome{event: ev, halt: halt}, nil
	default:
		ev.Kind = "remapped"
		ev.Text = fmt.Sprintf("%s: %s; %d of %d old records re-matched by content and kept, not copied again", mb, what, matched, rc.orphans)
		opt.Logger.Warn("folder renumbered on the source: re-mapped by content", "mailbox", mb, "change", change, "old_records", rc.orphans, "rematched", matched)
	}
	out.event = ev
	isMatch := map[mail.ID]bool{}
	for k, i := range cands {
		env := fresh[i]
		out.checked[env.ID] = true
		if !probes[k].matched {
			continue
		}
		isMatch[env.ID] = true
		box := opt.Stats.Box(mb)
		box.Queued.Add(1)
		opt.Stats.Queued.Add(1)
		select {
		case dones <- done{env: env, rec: probes[k].rec}:
		case <-ctx.Done():
			return resetOutcome{}, ctx.Err()
		}
	}
	for _, env := range fresh {
		if !isMatch[env.ID] {
			out.fresh = append(out.fresh, env)
		}
	}
	return out, nil
}

// idChange describes an identifier change when every old ID shares one
// "prefix." and every new one another (IMAP IDs are "uidvalidity.uid"),
// e.g. "123.* -> 456.*"; otherwise "".
func idChange(old, fresh []mail.ID) string {
	prefix := func(ids []mail.ID) string {
		p := ""
		for i, id := range ids {
			k := strings.LastIndexByte(string(id), '.')
			if k <= 0 {
				return ""
			}
			q := string(id[:k])
			if i > 0 && q != p {
				return ""
			}
			p = q
		}
		return p
	}
	a, b := prefix(old), prefix(fresh)
	if a == "" || b == "" || a == b {
		return ""
	}
	return a + ".* -> " + b + ".*"
}

// catchPanic, deferred, turns a panic into *err (a *PanicError).
func catchPanic(err *error, log *slog.Logger) {
	if p := recover(); p != nil {
		*err = recovered(p, log)
	}
}
