package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	stdsync "sync"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// One rule covers a folder whose identifiers changed en masse: an IMAP
// UIDVALIDITY change (server rebuild, restore, or the folder deleted and
// created again) or a POP3 server that regenerated its UIDLs
// (docs/failure-model.md C3, C6, C7; design rules 2 and 6).
//
//  1. Detect: at least resetMinRecords records, of which at least 90 % are
//     no longer listed, while at least 90 % of the listed IDs are new.
//     Smaller changes keep the per-message re-match by content (transfer.go).
//  2. Match by listing: a new message whose (Message-ID, size, internal
//     date) equals that of exactly one orphaned record, while no other
//     listed message and no other orphaned record has that triple, is that
//     record's message. This costs no download: the listing gives the
//     three for free (IMAP) and the record keeps them (Record.MsgID, Date).
//     A source whose listing has no Message-IDs but that can read headers
//     alone (mail.HeaderFetcher: POP3 TOP msg 0) is asked once, in one
//     pass, for those of the listed messages that have an orphaned record
//     of their size with a Message-ID; the records of such sources get
//     theirs from the body as it is copied (transfer.go putOne). POP3 lists no
//     date either, so there the key is (Message-ID, size): a date is
//     compared only as far as it is known, and a zero date matches only a
//     zero date.
//  3. Probe: hash new messages that step 2 left unmatched and that have an
//     orphaned record of their size: first resetSample of them (none when
//     step 2 matched any; all at once with Options.Remap), then, once
//     anything matched, all the others. Each confirmation is an exact
//     SHA-256 match of the whole message.
//  4. Decide, counting the matches of steps 2 and 3 together. No match:
//     the folder was replaced (C7); its messages are copied as new, the
//     old copies stay, the run reports the event. At least
//     remapConfirmations records, or 80 % of the orphaned records,
//     confirmed: the same messages under new IDs (C3, C6); they are
//     recorded under their new IDs with no Put, the rest are copied, and
//     the run reports a "remapped" event, with or without --remap. Fewer:
//     the folder halts with *ResetError ("identifier reset detected"),
//     nothing is copied from it, the other folders go on: a folder only
//     partly the same is not a renumbering the tool can trust.
//
// Step 2 is weaker than SHA-256: two different messages with the same
// Message-ID, the same size to the octet and the same internal date to
// the second would be taken for one another. It is what the plan's C6 asks
// for (Message-ID + size + fingerprint), and acceptable because each
// triple must be unique on both sides: duplicate Message-IDs in the folder
// (resent or hostile messages, the corpus has such pairs) make their
// triple ambiguous and send those messages to step 3, and a message
// without a Message-ID or a size (records written before this field
// existed, a source without headers) never matches in step 2. The wrong
// pairing it leaves possible needs a message deleted on the server and
// another with the same three values appended to the same folder within
// the same reset; the new one would then be taken as copied, the
// destination keeping the old one's bytes for it (nothing is deleted).
// Without dates (POP3) the same needs only the same Message-ID and size to
// the octet: a resent copy of a deleted message could do it, which is the
// price of not downloading a regenerated maildrop again.
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
	Recorded int  // records the checkpoint holds for the folder
	Vanished int  // of those, no longer listed
	Listed   int  // messages listed now
	New      int  // of those, not recorded
	Orphans  int  // vanished records with a content hash
	Probed   int  // new messages hashed
	Matched  int  // new messages found equal to an orphaned record
	Listing  int  // of those, by Message-ID, size and date (no download)
	Headers  int  // messages whose header was read for its Message-ID (mail.HeaderFetcher)
	NoDates  bool // the listing gave no dates (POP3): Listing matched by Message-ID and size
	Remap    bool
	Change   string // e.g. "1700000000.* -> 1700000099.*", when the IDs show it
}

func (e *ResetError) Error() string {
	change := ""
	if e.Change != "" {
		change = " (ids " + e.Change + ")"
	}
	return fmt.Sprintf("%q: %v%s: only %d of %d old messages match new ones (%s; a renumbering needs %d, or %d %%); the folder looks partly replaced, so nothing was copied from it; check it on the server",
		e.Mailbox, ErrIdentifierReset, change, e.Matched, e.Orphans, e.how(), remapConfirmations, int(remapShare*100))
}

// how says how the matches were found.
func (e *ResetError) how() string {
	s := fmt.Sprintf("%d by %s; %d of %d hashed by content", e.Listing, keyName(e.NoDates), e.Matched-e.Listing, e.Probed)
	if e.Headers > 0 {
		s += fmt.Sprintf("; %d headers read", e.Headers)
	}
	return s
}

// keyName names what step 2 of the rule compares.
func keyName(noDates bool) string {
	if noDates {
		return "Message-ID and size"
	}
	return "Message-ID, size and date"
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
	// ByListing of the Rematched were matched by Message-ID, size and
	// date (Message-ID and size for a source without dates), without a
	// download; Hashed is how many new messages were downloaded to compare
	// them by content (SHA-256). HeadersRead is how many messages' headers
	// were read, in one pass, to learn Message-IDs the listing lacked
	// (mail.HeaderFetcher: POP3 TOP).
	ByListing   int    `json:"by_listing"`
	Hashed      int    `json:"hashed"`
	HeadersRead int    `json:"headers_read,omitempty"`
	Text        string `json:"text"`
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
func (r *run) probeOne(ctx context.Context, j job) error {
	p := j.probe
	defer p.wg.Done()
	d, err := retry(ctx, r, func() (d done, err error) {
		defer catchPanic(&err, r.log)
		rec, ok, err := r.rematch(ctx, j)
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
		r.log.Debug("could not check a message against old copies", "mailbox", j.env.Mailbox, "id", j.env.ID, "err", err)
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

// resetMatch is what steps 2 and 3 of the rule found in a folder.
type resetMatch struct {
	rc        *resetCheck
	fresh     []mail.Envelope
	headers   int
	noDates   bool
	byListing int
	probed    []int // indexes in fresh hashed by content
	confirmed map[int]checkpoint.Record
}

// confirmReset applies the rule above to a folder whose identifiers were
// reset; stored are the listed messages the checkpoint still knows (they
// count for the uniqueness of step 2). Confirmed re-mappings are queued as
// ready jobs (recorded without a Put).
func (r *run) confirmReset(ctx context.Context, rc *resetCheck, fresh, stored []mail.Envelope, orphans *orphanSet) (resetOutcome, error) {
	m, err := r.matchReset(ctx, rc, fresh, stored, orphans)
	if err != nil {
		return resetOutcome{}, err
	}
	out := r.decideReset(m)
	if out.halt != nil {
		return out, nil
	}
	out.checked = map[mail.ID]bool{}
	for _, i := range m.probed {
		out.checked[fresh[i].ID] = true
	}
	var ready []job
	for i, env := range fresh {
		rec, ok := m.confirmed[i]
		if !ok {
			out.fresh = append(out.fresh, env)
			continue
		}
		r.st.Box(rc.mailbox).Queued.Add(1)
		r.st.Queued.Add(1)
		ready = append(ready, job{env: env, ready: &done{env: env, rec: rec, kind: doneRemapped}})
	}
	for len(ready) > 0 {
		n := min(len(ready), r.opt.FetchBatch)
		if err := r.send(ctx, ready[:n]); err != nil {
			return resetOutcome{}, err
		}
		ready = ready[n:]
	}
	return out, nil
}

// matchReset runs steps 2 and 3 of the rule: the listing first, then a
// sample hashed by content (all candidates at once with Options.Remap).
// Once anything matched, the folder looks renumbered, and every other
// candidate is hashed too, so the decision counts them all.
func (r *run) matchReset(ctx context.Context, rc *resetCheck, fresh, stored []mail.Envelope, orphans *orphanSet) (*resetMatch, error) {
	headers, err := r.headerPass(ctx, rc.mailbox, fresh, stored, orphans)
	if err != nil {
		return nil, err
	}
	m := &resetMatch{rc: rc, fresh: fresh, headers: headers, confirmed: map[int]checkpoint.Record{}}
	m.noDates = !slices.ContainsFunc(fresh, func(e mail.Envelope) bool { return !e.Date.IsZero() })
	for i, rec := range orphans.claimByListing(fresh, stored) {
		m.confirmed[i] = rec
	}
	m.byListing = len(m.confirmed)
	var cands []int
	for i, env := range fresh {
		if _, ok := m.confirmed[i]; ok {
			continue
		}
		if (r.opt.MaxSize <= 0 || env.Size <= r.opt.MaxSize) && orphans.has(env.Size) {
			cands = append(cands, i)
		}
	}
	first := cands
	if !r.opt.Remap && m.byListing == 0 && len(cands) > resetSample {
		first = cands[:resetSample]
	} else if !r.opt.Remap && m.byListing > 0 {
		first = nil // the listing already shows a renumbering
	}
	if err := r.probeAll(ctx, rc.mailbox, m, first, orphans); err != nil {
		return nil, err
	}
	if len(m.confirmed) > 0 && len(first) < len(cands) {
		if err := r.probeAll(ctx, rc.mailbox, m, cands[len(first):], orphans); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// probeAll hashes the messages fresh[cands] on the workers and waits for
// them, adding what matched to m.confirmed.
func (r *run) probeAll(ctx context.Context, mb string, m *resetMatch, cands []int, orphans *orphanSet) error {
	var wg stdsync.WaitGroup
	probes := make([]probeResult, len(cands))
	for k, i := range cands {
		probes[k].wg = &wg
		wg.Add(1)
		env := m.fresh[i]
		env.Key = mail.DeliveryKey(r.opt.SrcEndpoint, mb, env.ID)
		if err := r.send(ctx, []job{{env: env, orphans: orphans, probe: &probes[k]}}); err != nil {
			return err
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-ctx.Done(): // a worker stopped the run
		return ctx.Err()
	}
	for k, i := range cands {
		if probes[k].matched {
			m.confirmed[i] = probes[k].rec
		}
	}
	m.probed = append(m.probed, cands...)
	return nil
}

// decideReset is step 4 of the rule: replaced, re-mapped, or halted.
func (r *run) decideReset(m *resetMatch) resetOutcome {
	rc, mb := m.rc, m.rc.mailbox
	matched := len(m.confirmed)
	change := idChange(rc.oldIDs, rc.freshIDs)
	ev := Event{Mailbox: mb, Change: change, OldRecords: rc.orphans, Rematched: matched, ByListing: m.byListing, Hashed: len(m.probed), HeadersRead: m.headers}
	what := "identifiers changed"
	if change != "" {
		what += " " + change
	}
	accept := float64(matched) >= remapShare*float64(r.orphanBase(rc)) || matched >= remapConfirmations
	switch {
	case matched == 0:
		ev.Kind = "replaced"
		ev.Text = fmt.Sprintf("%s: %s; %d old records kept, 0 re-matched (%d checked): the folder was replaced, its %d messages are copied as new",
			mb, what, rc.orphans, len(m.probed), rc.fresh)
		r.log.Warn("folder replaced on the source: old copies kept, its messages copied as new", "mailbox", mb, "change", change, "old_records", rc.orphans, "checked", len(m.probed))
	case !accept:
		halt := &ResetError{Mailbox: mb, Recorded: rc.recorded, Vanished: rc.gone, Listed: rc.listed, New: rc.fresh,
			Orphans: rc.orphans, Probed: len(m.probed), Matched: matched, Listing: m.byListing, Headers: m.headers, NoDates: m.noDates, Remap: r.opt.Remap, Change: change}
		ev.Kind, ev.Text = "halted", halt.Error()
		r.log.Error("folder halted", "mailbox", mb, "err", halt)
		return resetOutcome{event: ev, halt: halt}
	default:
		ev.Kind = "remapped"
		ev.Text = fmt.Sprintf("%s: %s; %d of %d old records re-matched (%d by %s, %d by content) and kept, not copied again",
			mb, what, matched, rc.orphans, m.byListing, keyName(m.noDates), matched-m.byListing)
		r.log.Warn("folder renumbered on the source: re-mapped", "mailbox", mb, "change", change, "old_records", rc.orphans, "rematched", matched, "by_listing", m.byListing, "headers_read", m.headers)
	}
	return resetOutcome{event: ev}
}

// orphanBase is how many orphaned records step 4 takes the share of: all
// of them, or fewer when the state recorded a complete pass over the folder
// (Options.State) that counted fewer messages: the other records are of
// messages expunged before that pass, which no renumbering brings back.
// Without this, a folder of fewer than remapConfirmations messages with an
// expunge history halted for good after a UIDVALIDITY change (found by
// the change generator, cmd/mailferry nightly_generator_integration_test.go).
func (r *run) orphanBase(rc *resetCheck) int {
	if r.opt.State == nil {
		return rc.orphans
	}
	sum, ok := r.opt.State.Summary(rc.mailbox)
	if !ok || sum.Complete == 0 || sum.A.UIDValidity == 0 || sum.A.Messages == 0 {
		return rc.orphans // no pass, or one that asked no status
	}
	return min(rc.orphans, int(sum.A.Messages))
}

// headerPass learns the Message-IDs a listing lacked (POP3) from a source
// that can read headers alone (mail.HeaderFetcher), in one call, for the
// listed messages step 2 could match: those without a Message-ID whose
// size an orphaned record with a Message-ID has. It fills them into fresh
// and stored (which counts for uniqueness) and returns how many it asked
// for. A pass that fails, or answers for only some of the messages, is
// dropped with a warning: step 3 then compares by content, as before. Only
// cancellation and fatal errors are returned.
func (r *run) headerPass(ctx context.Context, mb string, fresh, stored []mail.Envelope, orphans *orphanSet) (int, error) {
	hf := r.srcF.HeaderFetcher
	if hf == nil {
		return 0, nil
	}
	sizes := orphans.keyedSizes()
	var ids []mail.ID
	var at []*mail.Envelope
	for _, list := range [][]mail.Envelope{fresh, stored} {
		for i := range list {
			if env := &list[i]; env.MessageID == "" && sizes[env.Size] {
				ids = append(ids, env.ID)
				at = append(at, env)
			}
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	got, err := retry(ctx, r, func() (map[mail.ID]string, error) { return hf.MessageIDs(ctx, mb, ids) })
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case mail.Fatal(err):
		return 0, fmt.Errorf("read headers of %q: %w", mb, err)
	default:
		r.log.Warn("could not read the headers of a renumbered folder: comparing its messages by content instead", "mailbox", mb, "err", err)
		return 0, nil
	}
	for _, env := range at {
		if _, ok := got[env.ID]; !ok {
			// Matching needs every listed key: one unknown could be the
			// twin that makes another ambiguous.
			r.log.Warn("the source left out headers of a renumbered folder: comparing its messages by content instead", "mailbox", mb, "id", env.ID)
			return 0, nil
		}
	}
	for _, env := range at {
		env.MessageID = got[env.ID]
	}
	r.log.Debug("read the headers of a renumbered folder", "mailbox", mb, "size", len(ids))
	return len(ids), nil
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

// keyedSizes returns the sizes of the orphaned records that have a
// Message-ID hash.
func (o *orphanSet) keyedSizes() map[int64]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[int64]bool{}
	for size, rs := range o.bySize {
		if slices.ContainsFunc(rs, func(r checkpoint.Record) bool { return r.MsgID != "" }) {
			out[size] = true
		}
	}
	return out
}

// listingKey is what a listing tells of a message for free (step 2 of the
// rule above): a hash of its Message-ID, its size and its internal date
// (0 when the source lists none, as POP3).
type listingKey struct {
	msgID string
	size  int64
	date  int64
}

// envListingKey is env's key; false when the listing lacks its Message-ID
// or size. A missing date is part of the key: it matches only records
// without one.
func envListingKey(env mail.Envelope) (listingKey, bool) {
	k := listingKey{checkpoint.MsgIDSum(env.MessageID), env.Size, checkpoint.UnixDate(env.Date)}
	return k, k.msgID != "" && k.size >= 0
}

// recListingKey is r's key; false when the record lacks its Message-ID or
// size.
func recListingKey(r checkpoint.Record) (listingKey, bool) {
	k := listingKey{r.MsgID, r.Size, r.Date}
	return k, k.msgID != "" && k.size >= 0
}

// claimByListing pairs new messages (fresh) with orphaned records by
// listingKey where the key is unique among the orphans and among all the
// listed messages (fresh and stored), and claims those records. It returns
// the records re-addressed to their new IDs, by index in fresh; each keeps
// the old SHA-256 and sink ID.
func (o *orphanSet) claimByListing(fresh, stored []mail.Envelope) map[int]checkpoint.Record {
	o.mu.Lock()
	defer o.mu.Unlock()
	recs := map[listingKey][]checkpoint.Record{}
	for _, rs := range o.bySize {
		for _, r := range rs {
			if k, ok := recListingKey(r); ok {
				recs[k] = append(recs[k], r)
			}
		}
	}
	if len(recs) == 0 {
		return nil
	}
	listed := map[listingKey]int{}
	for _, list := range [][]mail.Envelope{fresh, stored} {
		for _, env := range list {
			if k, ok := envListingKey(env); ok {
				listed[k]++
			}
		}
	}
	out := map[int]checkpoint.Record{}
	for i, env := range fresh {
		k, ok := envListingKey(env)
		if !ok || listed[k] != 1 || len(recs[k]) != 1 {
			continue
		}
		old := recs[k][0]
		same := o.bySize[old.Size]
		j := slices.IndexFunc(same, func(r checkpoint.Record) bool { return r.ID == old.ID })
		o.bySize[old.Size] = slices.Delete(same, j, j+1)
		rec := old // its Flags are the stored copy's: remapFlags compares them with env's
		rec.Mailbox, rec.ID = env.Mailbox, env.ID
		out[i] = rec
	}
	return out
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
