package twoway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	gosync "sync"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// RunOptions tune a sync run.
type RunOptions struct {
	Plan Options
	// DryRun plans and changes nothing (open the state read-only).
	DryRun bool
	// Folders, when not nil, says which folders are in scope (--include,
	// --exclude): the others are neither listed nor changed, and their
	// state is kept (out of scope freezes, it does not delete).
	Folders func(name string) bool
	Log     *slog.Logger
	// FullEvery lists a folder pair in full every FullEvery passes, even
	// when its statuses say nothing moved (so that a server bug cannot
	// hide a change forever); 0: state.DefaultFullEvery.
	FullEvery int
	// Fence, if set, is asked before every durable step (a put, a
	// commit, a flag write, a move, a deletion, a state flush); an error
	// stops the run there, as a kill -9 would: a batch worker whose hold
	// on the account lapsed must change nothing more (sync.Options.Fence
	// of a copy). The caller then abandons the state (state.Abandon),
	// whose Close would flush what the run recorded.
	Fence func() error
	// step, in tests, is called before every durable step, after Fence;
	// an error stops the run there, as a kill -9 would.
	step func(what string) error
	// heldBudget, when not 0, replaces heldRecordsBudget (tests).
	heldBudget int
}

// Counts are the changes made on one side. Deleted counts the messages of
// deleted folders too; FoldersHeld are folder deletions the guard held back.
type Counts struct {
	Copied, Flagged, Moved, Deleted, Held, Failed int

	FoldersCreated, FoldersRenamed, FoldersRemoved, FoldersHeld int
}

// Result is what a run did.
type Result struct {
	// Plan is what the run planned; a first sync, planned and applied
	// folder by folder (byfolder.go), drops each folder's Copies once
	// applied (Side counts them).
	Plan      *Plan
	Side      [2]Counts // changes made on side A, on side B
	Conflicts int
	// SideConflicts counts the conflicts by the side whose change lost (a
	// message deleted there while its flags changed here: deleted here; a
	// folder deleted there while it changed here: recreated there).
	SideConflicts [2]int
	// HeldBack is true when the guard held deletions back (exit 10).
	HeldBack bool
	Warnings []string
	// Listing says per folder pair how it was listed: ListingSkipped (no
	// side moved), ListingIncremental (by the changes since the last
	// pass, or from the records for a side that did not move) or
	// ListingFull (a side listed whole).
	Listing map[string]string
}

// ErrHeldBack is returned by Run, after everything else was done, when the
// mass-delete guard held deletions back.
var ErrHeldBack = errors.New("deletions held back; rerun with --force after checking")

// run is one sync run.
type run struct {
	ctx    context.Context
	stores [2]*Store
	st     *state.State
	opt    RunOptions
	log    *slog.Logger
	res    *Result
	jr     *journal                        // changes are written here before they are made
	ids    [2]string                       // each store's identity (Store.identity)
	boxes  [2][]string                     // each side's folders (Source.Mailboxes), read first
	status [2]map[string]mail.FolderStatus // before listing (Store.statuses): modseqs for flag writes
	// The incremental listing (listing.go): each side's folder statuses
	// read before listing, the pass of each folder pair listed, the pairs
	// skipped as unchanged, and the messages removed per side and folder.
	sts     [2]map[string]state.SideStatus
	passes  map[string]*folderPass
	skipped []string
	removed [2]map[string]int
	// settled: Maildir evidence whose stamps now stand alone (listing.go).
	settled [2]map[string]string
	// early: the Maildir proofs run beside the apply (mdevidence.go).
	early mdEarly
	// scans: side -> the names of the folder being listed, read while its
	// records load (mdlisting.go).
	scans  [2]*nameScan
	msgs   [2]map[string][]Msg // side -> folder -> listing, sorted by ID
	keeps  [2]map[string]Keeps // side -> folder -> the flags it keeps there (learnKeeps)
	warnMu gosync.Mutex        // guards res.Warnings while both sides list
	// journaledAll: the plan's changes of every folder are in the journal
	// (journalAll), so a folder does not journal its own.
	journaledAll bool
	stepMu       gosync.Mutex // takes step's calls one at a time
	// The record changes held until the folder's held directory fsyncs
	// are done (holdRecord), noted from both sides' goroutines.
	heldMu  gosync.Mutex
	heldOps []func() error
	// The folders whose records the state keeps loaded from listing to
	// apply, and how many records that is in all (held.go).
	held     map[string]int
	heldRecs int
	// own: the IMAP sides' own writes proved folder by folder (ownproof.go).
	own ownProofs
}

// Run syncs the two stores with the state st: lists both sides, settles
// what an interrupted run journaled (settle), plans (MakePlan) and applies
// the plan folder by folder, journaling each folder's changes before it
// makes them and writing each change's record to the state after the
// change is durable. A run killed at any point converges on the next. It returns ErrHeldBack when the
// guard held deletions back, after doing everything else.
func Run(ctx context.Context, stores [2]*Store, st *state.State, opt RunOptions) (*Result, error) {
	r := &run{ctx: ctx, stores: stores, st: st, opt: opt, log: opt.Log, res: &Result{Listing: map[string]string{}},
		passes: map[string]*folderPass{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for _, st := range stores {
		st.step = r.step
	}
	defer r.stopEarlyProofs()
	if err := r.checkIdentities(); err != nil {
		return r.res, err
	}
	var pending []intent
	if !opt.DryRun {
		var err error
		if r.jr, pending, err = openJournal(st.Dir()); err != nil {
			return r.res, err
		}
		defer r.jr.close()
	}
	if r.byFolder(pending) { // byfolder.go
		return r.res, r.syncByFolder()
	}
	folders, err := r.list(pending)
	if err != nil {
		return r.res, err
	}
	if err := r.settle(folders, pending); err != nil {
		return r.res, err
	}
	plan := MakePlan(folders, r.opt.Plan)
	r.res.Plan = plan
	planned := r.notePlan(plan)
	if opt.DryRun { // what a real run would do
		r.res.Side = planned
		return r.res, nil
	}
	if err := r.apply(plan); err != nil {
		return r.res, err
	}
	if plan.HeldBack {
		return r.res, ErrHeldBack
	}
	return r.res, nil
}

// notePlan adds what plan says to the result (its warnings, conflicts and
// held-back deletions; a run made of several plans adds each) and returns
// the changes it plans on each side.
func (r *run) notePlan(plan *Plan) [2]Counts {
	r.res.HeldBack = r.res.HeldBack || plan.HeldBack
	r.res.Warnings = append(r.res.Warnings, plan.Warnings...)
	for _, fp := range plan.Folders {
		r.res.Warnings = append(r.res.Warnings, fp.Warnings...)
		r.res.Conflicts += len(fp.Conflicts)
	}
	planned := plan.Counts()
	for s, n := range plan.Conflicts() {
		r.res.SideConflicts[s] += n
	}
	if !r.opt.DryRun {
		for s, c := range planned {
			r.res.Side[s].Held += c.Held
			r.res.Side[s].FoldersHeld += c.FoldersHeld
		}
	}
	return planned
}

// checkIdentities reads both sides at once (each its own server, so the
// logins and round trips overlap: a run with nothing to do costs about
// one side's): the folders, then their statuses (readSide). It then
// compares each store's identity with the state's: a side the state does
// not name is not trusted to have deleted anything.
func (r *run) checkIdentities() error {
	ida, idb := r.st.Identities()
	var errs [2]error
	var wg gosync.WaitGroup
	for s := range r.stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[s] = r.readSide(Side(s))
		}()
	}
	wg.Wait()
	for s, want := range []string{ida, idb} {
		if errs[s] != nil {
			return fmt.Errorf("sync: side %s: %w", Side(s), errs[s])
		}
		got := r.stores[s].identity(r.status[s])
		r.ids[s] = got
		if !sameIdentity(want, got) {
			r.opt.Plan.Sides[s].Untrusted = fmt.Sprintf("it is not the store the state was written for (identity %q, the state has %q)", got, want)
		}
		r.opt.Plan.Sides[s].StableIDs = r.stores[s].StableIDs
		r.opt.Plan.Sides[s].Keeps = r.stores[s].Keeps // per folder: learnKeeps
	}
	return nil
}

// readSide reads side s's folders (list) and the statuses of those the
// state knows and INBOX (Store.statuses: the identity, and the
// mod-sequences flag writes compare with), in that order: the folder list
// names the folders the statuses are asked of, without a LIST of its own.
func (r *run) readSide(s Side) error {
	boxes, err := r.stores[s].Source.Mailboxes(r.ctx)
	if err != nil {
		return err
	}
	r.boxes[s] = boxes
	r.status[s], err = r.stores[s].statuses(r.ctx, r.st.Folders())
	return err
}

// apply carries out the plan folder by folder, then records the
// identities.
func (r *run) apply(plan *Plan) error {
	if err := r.applyStart(plan); err != nil {
		return err
	}
	r.nextWrites(plan)
	opened := r.startOpenFirst() // ownproof.go
	err := r.journalAll(plan)
	opened()
	if err != nil {
		return err
	}
	for i := range plan.Folders {
		r.setNext(i)
		if err := r.applyOne(&plan.Folders[i]); err != nil {
			return err
		}
	}
	r.setNext(-1)
	return r.applyEnd(plan)
}

// applyStart prunes the quarantines and renames folders: before any
// folder's changes.
func (r *run) applyStart(plan *Plan) error {
	for _, s := range r.stores {
		if s.Maildir != nil {
			if err := s.Maildir.Prune(); err != nil {
				r.warn("quarantine not pruned", err)
			}
		}
	}
	return r.applyRenames(plan)
}

// applyOne carries out one folder's changes and releases its records.
func (r *run) applyOne(fp *FolderPlan) error {
	if err := r.applyFolder(fp); err != nil {
		return err
	}
	// Its records are on disk: memory holds one folder's at a time, and
	// of them only what its proof needs until it is done (proveEarly).
	r.forgetFiles()
	if err := r.proveEarly(fp); err != nil {
		return err
	}
	r.unhold(fp.Name)
	return r.st.Release(fp.Name)
}

// applyEnd removes folders, flushes the state, records the passes and
// the identities: after every folder's changes.
func (r *run) applyEnd(plan *Plan) error {
	if err := r.applyRemovals(plan); err != nil {
		return err
	}
	if err := r.step("flush"); err != nil {
		return err
	}
	if err := r.st.Flush(); err != nil {
		return err
	}
	// The state holds the outcome of every journaled change: the journal
	// is emptied once for the run.
	if err := r.jr.clear(); err != nil {
		return err
	}
	if err := r.recordPasses(plan); err != nil {
		return err
	}
	return r.st.SetIdentities(r.ids[A], r.ids[B])
}

// step is called before every durable step, from the goroutine of each
// side at once where the two sides' changes run together (bothSides): the
// calls are taken one at a time, so a test's hook counts them as a kill
// would find them, one after the other.
func (r *run) step(what string) error {
	r.stepMu.Lock()
	defer r.stepMu.Unlock()
	if r.opt.Fence != nil {
		if err := r.opt.Fence(); err != nil {
			return err
		}
	}
	if r.opt.step == nil {
		return nil
	}
	return r.opt.step(what)
}

func (r *run) warn(msg string, err error) {
	r.log.Warn("sync: "+msg, "err", err)
	r.warnMu.Lock() // the two sides of a folder are listed at once
	defer r.warnMu.Unlock()
	r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("%s: %v", msg, err))
}

// list takes both sides' folders (read by checkIdentities) and the
// statuses of those in scope, then lists each folder pair that moved
// (listing.go), with the state's records of it. A pair that did not move is left out: its records are not
// read. A pair an interrupted run journaled changes in is always listed:
// settle needs its listing.
func (r *run) list(pending []intent) ([]Folder, error) {
	scoped, exists, journaled := r.scope(pending)
	var out []Folder
	for _, name := range scoped {
		if sum, ok := r.unchanged(name, exists); ok && !journaled[name] {
			r.skip(name, sum)
			continue
		}
		f, err := r.listFolder(name, exists, journaled[name])
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// scope returns the folder pairs in scope, sorted (on either side or in
// the state), which side holds which, and those an interrupted run
// journaled changes in; it reads their statuses (askStatuses).
func (r *run) scope(pending []intent) (scoped []string, exists [2]map[string]bool, journaled map[string]bool) {
	names := map[string]bool{}
	for s := range r.stores {
		exists[s] = map[string]bool{}
		for _, b := range r.boxes[s] {
			exists[s][b], names[b] = true, true
		}
		r.msgs[s] = map[string][]Msg{}
	}
	for _, n := range r.st.Folders() {
		names[n] = true
	}
	for _, name := range sortedNames(names) {
		if r.opt.Folders == nil || r.opt.Folders(name) {
			scoped = append(scoped, name)
		}
	}
	r.askStatuses(scoped, exists)
	journaled = map[string]bool{}
	for _, in := range pending {
		journaled[in.Folder], journaled[in.From] = true, true
	}
	return scoped, exists, journaled
}

func sortedNames(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// listFolder lists both sides of folder pair name (by their changes where
// the last pass allows) with the state's records of it, and notes the
// pass to record once the run's changes are applied.
func (r *run) listFolder(name string, exists [2]map[string]bool, journaled bool) (Folder, error) {
	f := Folder{Name: name}
	f.MailboxIDs = [2]string{r.sts[A][name].MailboxID, r.sts[B][name].MailboxID}
	r.startScans(name, exists)
	defer r.endScans()
	if sum, known := r.st.Summary(name); known {
		f.KnownMailboxIDs = [2]string{sum.A.MailboxID, sum.B.MailboxID}
		fo, err := r.st.Folder(name)
		if err != nil {
			return f, err
		}
		f.Known, f.Base = true, fo.Messages()
		if err := r.holdOrRelease(name, len(f.Base)); err != nil {
			return f, err
		}
	}
	var recorded [2]map[mail.ID]bool
	recorded[A], recorded[B] = map[mail.ID]bool{}, map[mail.ID]bool{}
	for _, m := range f.Base {
		recorded[A][m.Src], recorded[B][m.Dst] = true, true
	}
	p := &folderPass{}
	var ch [2]*changes
	sides, err := r.listSides(name, exists, &f, recorded)
	if err != nil {
		return f, err
	}
	for s, sl := range sides {
		if !exists[s][name] {
			p.full = true
			continue
		}
		l := sl.l
		f.Side[s], p.status[s], ch[s] = l, sl.st, sl.ch
		p.full = p.full || sl.full
		switch {
		case l.Untrusted != "":
			p.noPass = l.Untrusted
		case l.IDsReset:
			p.noPass = "its ids changed"
		case r.opt.Plan.Sides[s].Untrusted != "":
			p.noPass = r.opt.Plan.Sides[s].Untrusted
		}
	}
	r.fillEvidence(&f)
	// A side listed by its changes (ch) has no listing yet (rebuild
	// makes it below): it is there all the same.
	there := func(s Side) bool { return f.Side[s].Exists || ch[s] != nil }
	if there(A) && there(B) && p.noPass == "" && !journaled {
		omitQuiet(&f, ch, [2]Keeps{r.keepsIn(A, name), r.keepsIn(B, name)})
	}
	for s, c := range ch {
		if c != nil {
			f.Side[s] = r.rebuild(Side(s), name, f.Base, recorded[s], c)
		}
	}
	if err := r.statDoomed(&f); err != nil { // rule 4 before any deletion (mdlisting.go)
		return f, err
	}
	for s := range f.Side {
		r.msgs[s][name] = f.Side[s].Msgs
	}
	mode := ListingIncremental
	if p.full || f.Side[A].byNames || f.Side[B].byNames { // the folder read, if not every file stat'ed
		mode = ListingFull
	}
	r.fillContent(&f, recorded)
	r.passes[name], r.res.Listing[name] = p, mode
	return f, nil
}

// sideListing is what listing one side of a folder pair gave.
type sideListing struct {
	l    Listing
	ch   *changes
	st   state.SideStatus
	full bool
}

// listSides lists each side of folder pair name that exists, both at
// once: each side is its own server or disk, so an IMAP side's round
// trips overlap the other side's (a Maildir's directory reads, or the
// other server's round trips) instead of following them.
func (r *run) listSides(name string, exists [2]map[string]bool, f *Folder, recorded [2]map[mail.ID]bool) ([2]sideListing, error) {
	var out [2]sideListing
	var errs [2]error
	var wg gosync.WaitGroup
	for s := range r.stores {
		if !exists[s][name] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[s], errs[s] = r.listOneSide(Side(s), name, f, recorded[s])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return out, err // side A's first, as when listed in turn
		}
	}
	return out, nil
}

// listOneSide lists side s of folder pair name (listSideAs) with the flags
// it keeps there. It only reads f, which the other side's goroutine
// reads too.
func (r *run) listOneSide(s Side, name string, f *Folder, recorded map[mail.ID]bool) (sideListing, error) {
	if err := r.learnKeepsOnce(s, name); err != nil {
		return sideListing{}, err
	}
	l, c, st, full, err := r.listSideAs(s, name, f, recorded)
	if err != nil {
		return sideListing{}, err
	}
	st.Keeps = r.keepsNote(s, name, st)
	l.Keeps = r.keeps[s][name]
	l.IDsReset = !r.stores[s].StableIDs && idsReset(l.Msgs, recorded)
	return sideListing{l: l, ch: c, st: st, full: full}, nil
}

// idsReset reports whether a folder's ids were all renumbered since the
// state recorded them (an IMAP UIDVALIDITY change): ids "uidvalidity.uid"
// all of one validity now, and a record of another. Each record would look
// deleted and each message new; the planner merges the folder instead.
func idsReset(msgs []Msg, recorded map[mail.ID]bool) bool {
	if len(msgs) == 0 {
		return false
	}
	now, _, ok := strings.Cut(string(msgs[0].ID), ".")
	if !ok {
		return false // not "uidvalidity.uid"
	}
	for _, m := range msgs[1:] {
		if p, _, _ := strings.Cut(string(m.ID), "."); p != now {
			return false
		}
	}
	for id := range recorded {
		if p, _, _ := strings.Cut(string(id), "."); p != now {
			return true
		}
	}
	return false
}

// listSide lists one folder of one side. A listing that fails part way is
// kept as far as it went and marked untrusted (no deletion is read from
// it); a cancelled run stops.
func (r *run) listSide(s Side, name string, recorded map[mail.ID]bool) (Listing, error) {
	l := Listing{Exists: true}
	envs := map[mail.ID]mail.Envelope{}
	stamps, hash, err := r.listFiles(s, name, func(env mail.Envelope) { envs[env.ID] = env })
	l.evidenceHash = hash
	if ok, err := r.listingEnded(s, name, &l, err); !ok {
		return l, err
	}
	l.Msgs = r.listedMsgs(s, name, envs, recorded, stamps)
	return l, nil
}

// listingEnded takes in the error err a listing l of side s's folder name
// ended with, for listSide and listNarrow: a cancelled run stops with its
// error, a folder that is not there has no listing (l emptied), and a
// listing that failed part way is kept as far as it went but untrusted (no
// deletion is read from it). It reports whether the caller goes on with l.
func (r *run) listingEnded(s Side, name string, l *Listing, err error) (bool, error) {
	switch {
	case r.ctx.Err() != nil:
		return false, r.ctx.Err()
	case errors.Is(err, mail.ErrMailboxNotFound):
		*l = Listing{}
		return false, nil
	case err != nil:
		l.Untrusted = fmt.Sprintf("the listing failed part way (%v)", err)
		r.warn(fmt.Sprintf("side %s: folder %q listed in part", s, name), err)
	}
	return true, nil
}

// listedMsgs are a listing's messages from its envelopes, sorted by id,
// with their Message-IDs where pairing needs them (fillMessageIDs), flags
// shared, and each one's file stamp (none: stamps has no entry).
func (r *run) listedMsgs(s Side, name string, envs map[mail.ID]mail.Envelope, recorded map[mail.ID]bool, stamps map[mail.ID]fileStamp) []Msg {
	r.fillMessageIDs(s, name, envs, recorded)
	msgs := make([]Msg, 0, len(envs))
	flags := flagInterner{}
	for _, id := range sortedEnvIDs(envs) {
		m := toMsg(envs[id], recorded[id])
		m.Flags = flags.intern(m.Flags)
		m.Stamp, m.Racy = stamps[id].stamp, stamps[id].racy
		msgs = append(msgs, m)
	}
	return msgs
}

// flagInterner shares one flag slice among the messages of a listing with
// the same flags (most have one of a few sets): a 200,000-message account
// otherwise holds 200,000 slices. The slices are never changed in place.
type flagInterner map[string][]mail.Flag

func (fi flagInterner) intern(fl []mail.Flag) []mail.Flag {
	var b strings.Builder
	for _, f := range fl {
		b.WriteString(string(f))
		b.WriteByte(' ')
	}
	if got, ok := fi[b.String()]; ok {
		return got
	}
	fi[b.String()] = fl
	return fl
}

func sortedEnvIDs(envs map[mail.ID]mail.Envelope) []mail.ID {
	ids := make([]mail.ID, 0, len(envs))
	for id := range envs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// toMsg is what the planner needs of an envelope. A message flagged
// \Deleted that no record names is frozen: a server without UIDPLUS keeps
// what the sync deleted as \Deleted until someone expunges, and it must
// not come back as new.
func toMsg(env mail.Envelope, recorded bool) Msg {
	return Msg{
		ID: env.ID, Flags: env.Flags, Size: env.Size, Date: checkpoint.UnixDate(env.Date),
		MsgID:      checkpoint.MsgIDSum(env.MessageID),
		OutOfScope: !recorded && env.HasFlag(mail.FlagDeleted),
	}
}

// fillMessageIDs reads the Message-ID of the messages no record names
// whose listing gave none (a Maildir lists no headers): pairing them with
// the other side's needs it. Only new messages are read, never the folder.
func (r *run) fillMessageIDs(s Side, name string, envs map[mail.ID]mail.Envelope, recorded map[mail.ID]bool) {
	var need []mail.ID
	for id, env := range envs {
		if env.MessageID == "" && !recorded[id] {
			need = append(need, id)
		}
	}
	if len(need) == 0 {
		return
	}
	src := r.stores[s].Source
	if hf := mail.FeaturesOf(src).HeaderFetcher; hf != nil {
		if got, err := hf.MessageIDs(r.ctx, name, need); err == nil {
			for id, mid := range got {
				env := envs[id]
				env.MessageID = mid
				envs[id] = env
			}
			return
		}
	}
	for _, id := range need {
		env := envs[id]
		env.MessageID = readMessageID(r.ctx, src, env)
		envs[id] = env
	}
}

// readMessageID reads a message's start for its Message-ID ("" on any
// error: the message is then paired by nothing and copied).
func readMessageID(ctx context.Context, src mail.Source, env mail.Envelope) string {
	rc, err := src.Open(ctx, env)
	if err != nil {
		return ""
	}
	defer func() { _ = rc.Close() }()
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	id, _ := scanMessageID(rc, *buf)
	return id
}

// scanMessageID reads r's header, no more than mail.HeaderScanLimit bytes
// of it, until it has the Message-ID; err is the read error (io.EOF
// included) that ended the scan early, if one did.
func scanMessageID(r io.Reader, buf []byte) (id string, err error) {
	sc := mail.NewHeaderScanner(r)
	for read := 0; read <= mail.HeaderScanLimit; {
		n, err := sc.Read(buf)
		read += n
		if id := sc.MessageID(); id != "" || err != nil {
			return id, err
		}
	}
	return sc.MessageID(), nil
}

// env returns the envelope of a listed message, made from its Msg: a
// listing keeps no envelopes (a 200,000-message account would hold them
// all). The date keeps its instant, in Unix seconds as IMAP and a Maildir
// give it; the size is a hint, -1 where the listing was rebuilt from the
// records.
func (r *run) env(s Side, folder string, id mail.ID) mail.Envelope {
	env := mail.Envelope{Mailbox: folder, ID: id, Size: -1}
	msgs := r.msgs[s][folder]
	if i := sort.Search(len(msgs), func(i int) bool { return msgs[i].ID >= id }); i < len(msgs) && msgs[i].ID == id {
		env.Size, env.Flags = msgs[i].Size, msgs[i].Flags
		if msgs[i].Date != 0 {
			env.Date = time.Unix(msgs[i].Date, 0)
		}
	}
	return env
}

// errStep is what a test's step hook returns to stop a run.
var errStep = errors.New("stopped by the test")

func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
