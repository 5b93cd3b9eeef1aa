package twoway

import (
	"errors"
	"fmt"
	gosync "sync"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// applyFolder carries out one folder's plan in the order FolderPlan
// documents, each change before its record, and flushes the state.
func (r *run) applyFolder(fp *FolderPlan) error {
	switch {
	case fp.Forget:
		return r.st.RemoveFolder(fp.Name)
	case fp.Skip != "":
		return nil
	}
	for s, create := range fp.Create {
		if create {
			if err := r.stores[s].Sink.CreateMailbox(r.ctx, fp.Name); err != nil {
				return fmt.Errorf("sync: side %s: create %q: %w", Side(s), fp.Name, err)
			}
			r.res.Side[s].FoldersCreated++
		}
	}
	fo, err := r.st.Folder(fp.Name)
	if err != nil {
		return err
	}
	if err := r.records(fo, fp); err != nil {
		return err
	}
	if !r.journaledAll {
		if err := r.journal(fp); err != nil {
			return err
		}
	}
	if err := r.changes(fo, fp); err != nil {
		return err
	}
	// The IMAP sides prove their writes there while the state flushes.
	proved := r.startProveFolder(fp)
	defer proved()
	if err := r.step("flush " + fp.Name); err != nil {
		return err
	}
	// The journal is cleared once, at the end of the run (applyEnd), not
	// here: the intents of folders already applied and flushed stay in it
	// until then, and settling them again after a kill finds each done
	// and recorded (a copy or a move recorded, a deletion's record gone),
	// which changes nothing.
	return r.st.Flush()
}

// changes makes a folder's changes in the order FolderPlan documents. The
// Maildir sides' flag writes and deletions hold their directories' fsyncs
// to the end (holdDirs), so a cur/ both rename in is fsynced once, not
// once per kind of change; the records of those changes wait for the
// fsyncs (holdRecord). A failure drops the held records: the changes are
// in the journal, and the next run settles them.
func (r *run) changes(fo *state.Folder, fp *FolderPlan) error {
	r.holdDirs()
	for _, step := range []func(*state.Folder, *FolderPlan) error{r.copies, r.moves, r.flags, r.deletes} {
		if err := step(fo, fp); err != nil {
			_ = r.releaseHeld(false)
			return err
		}
	}
	return r.releaseHeld(true)
}

// holdDirs starts holding the directory fsyncs of the Maildir sides
// (MaildirFiles.hold).
func (r *run) holdDirs() {
	for _, st := range r.stores {
		if st.Maildir != nil {
			st.Maildir.hold()
		}
	}
}

// holdRecord notes a record change (a put, a forget) of a change whose
// directory fsync may be held: releaseHeld makes it once the directories
// are durable, so that no record, not even one a Close flushes after an
// error, names a rename a power loss could undo.
func (r *run) holdRecord(op func() error) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	r.heldOps = append(r.heldOps, op)
}

// releaseHeld ends the hold: with ok, it fsyncs the held directories,
// then makes the held record changes; without (the folder failed), it
// makes the renames durable all the same, as far as it can, and drops the
// record changes.
func (r *run) releaseHeld(ok bool) error {
	ops := r.heldOps
	r.heldOps = nil
	var err error
	for _, st := range r.stores {
		if st.Maildir != nil {
			err = errors.Join(err, st.Maildir.syncHeld())
		}
	}
	if !ok || err != nil {
		return err
	}
	for _, op := range ops {
		if err := op(); err != nil {
			return err
		}
	}
	return nil
}

// journalAll writes the changes of every folder of the plan, durably, in
// one write (one fsync) before the first of them is made, instead of one
// write per folder (rule 1; settle reads them after a kill). A change
// journaled in a folder the run never reached is found not done by
// settle and left to the next plan, as one journaled but not yet made in
// the folder in work always was; a journaled deletion is completed, as
// the guard let it pass.
func (r *run) journalAll(plan *Plan) error {
	var ins []intent
	for i := range plan.Folders {
		if fp := &plan.Folders[i]; !fp.Forget && fp.Skip == "" {
			ins = append(ins, intentsOf(fp)...)
		}
	}
	r.journaledAll = true
	if len(ins) == 0 {
		return nil
	}
	if err := r.step("journal"); err != nil {
		return err
	}
	return r.jr.write(ins)
}

// journal writes one folder's changes, durably, before any is made (a
// first sync, planned and applied folder by folder: byfolder.go).
func (r *run) journal(fp *FolderPlan) error {
	ins := intentsOf(fp)
	if len(ins) == 0 {
		return nil
	}
	if err := r.step("journal " + fp.Name); err != nil {
		return err
	}
	return r.jr.write(ins)
}

// intentsOf returns the intents of a folder's changes.
func intentsOf(fp *FolderPlan) []intent {
	var ins []intent
	for _, c := range fp.Copies {
		ins = append(ins, intent{Op: opCopy, Folder: fp.Name, On: c.From.Other(), ID: c.Msg.ID, Rec: c.Record()})
	}
	for _, mv := range fp.Moves {
		old := mv.Old
		ins = append(ins, intent{Op: opMove, Folder: fp.Name, On: mv.On, ID: mv.ID, From: mv.From, Rec: mv.Record, Old: &old})
	}
	for _, fs := range fp.Flags {
		for _, s := range []Side{A, B} {
			if fs.Changes(s) {
				ins = append(ins, intent{Op: opFlags, Folder: fp.Name, On: s, ID: fs.ID[s], Flags: fs.Set[s]})
			}
		}
	}
	for _, d := range fp.Deletes {
		ins = append(ins, intent{Op: opDelete, Folder: fp.Name, On: d.On, ID: d.ID, Rec: d.Record})
	}
	return ins
}

// records forgets and pairs: state only.
func (r *run) records(fo *state.Folder, fp *FolderPlan) error {
	for _, id := range fp.Forgets {
		if err := fo.Forget(id); err != nil {
			return err
		}
	}
	for _, m := range fp.Pairs {
		if err := fo.Put(r.stamped(fo.Name(), m)); err != nil {
			return err
		}
	}
	return nil
}

// fatal reports whether err stops the run (a cancel, a state write, a full
// disk, a lost login) rather than one message.
func fatal(err error) bool {
	return mail.Fatal(err) || errors.Is(err, errStep) || isCanceled(err)
}

func (r *run) fail(on Side, what string, err error) {
	r.res.Side[on].Failed++
	r.warn(what, err)
}

// moves moves messages into this folder on the side that did not move
// them, then writes the merged flags, then moves the record.
func (r *run) moves(fo *state.Folder, fp *FolderPlan) error {
	for _, mv := range fp.Moves {
		if err := r.moveOne(fo, fp.Name, mv); err != nil {
			if fatal(err) {
				return err
			}
			r.fail(mv.On, fmt.Sprintf("move %s from %q to %q on side %s", mv.ID, mv.From, fp.Name, mv.On), err)
		}
	}
	return nil
}

func (r *run) moveOne(fo *state.Folder, folder string, mv Move) error {
	env := r.env(mv.On, mv.From, mv.ID)
	flags := mv.Set[mv.On]
	if flags == nil {
		flags = env.Flags
	}
	if err := r.step("move " + string(mv.ID)); err != nil {
		return err
	}
	id, flagged, err := r.stores[mv.On].move(r.ctx, env, folder, flags)
	if err != nil {
		return err
	}
	r.res.Side[mv.On].Moved++
	r.noteRemoved(mv.On, mv.From, 1)
	x := mv.On.Other()
	if mv.Set[x] != nil {
		if err := r.setFlags(x, folder, mv.Moved.ID, mv.Set[x]); err != nil {
			return err
		}
	}
	old, err := r.st.Folder(mv.From)
	if err != nil {
		return err
	}
	// Its records change after its own apply kept them: the proof at the
	// end reads them from the state again (still loaded, until the passes).
	r.dropEarlyMaildirProof(mv.From)
	r.dropEarlyProof(mv.On, mv.From)
	if err := old.Forget(mv.Old.Src); err != nil {
		return err
	}
	if id == "" {
		return nil
	}
	rec := mv.Record
	setSideID(&rec, mv.On, id)
	if !flagged {
		// The old base: the merged flags are not on the moved copy, and
		// must not read as removed there next run.
		rec.Flags, rec.FlagsKnown = mv.Old.Flags, mv.Old.FlagsKnown
	}
	return fo.Put(r.stamped(folder, rec))
}

func (r *run) setFlags(s Side, folder string, id mail.ID, flags []mail.Flag) error {
	if err := r.step("flags " + string(id)); err != nil {
		return err
	}
	if err := r.stores[s].setFlags(r.ctx, folder, id, flags); err != nil {
		return err
	}
	r.res.Side[s].Flagged++
	return nil
}

// flags brings each message's flags on both sides to the three-way merge
// and records it as the new base. The writes go per side in one batch
// (Store.setFlagsIfAll: on IMAP one round trip, the messages with the
// same change sharing one UID STORE), not one round trip per message. A
// side whose message another client changed since the listing
// (CONDSTORE: the write is refused, rule 2) is re-read and the message
// merged again, in this run, in the next batch. A side that cannot write
// a message's flags leaves its base as it was, so the merge is tried
// again next run.
func (r *run) flags(fo *state.Folder, fp *FolderPlan) error {
	if len(fp.Flags) == 0 {
		return nil
	}
	folder := fp.Name
	keeps := [2]Keeps{r.keepsIn(A, folder), r.keepsIn(B, folder)}
	jobs := make([]*flagJob, len(fp.Flags))
	for i, fs := range fp.Flags {
		jobs[i] = r.newFlagJob(fo, folder, fs)
	}
	for range mergeRounds {
		for _, j := range jobs {
			if !j.done {
				j.res, j.settled = merge(j.base, j.old.FlagsKnown, j.cur, keeps), true
			}
		}
		if err := r.writeBoth(folder, jobs, keeps); err != nil {
			return err
		}
		for _, j := range jobs {
			if j.done || !j.settled {
				continue
			}
			j.done = true
			rec := j.fs.Record
			rec.Flags, rec.FlagsKnown = j.res.String(), true
			r.holdRecord(func() error { return fo.Put(r.stamped(folder, rec)) })
		}
	}
	for _, j := range jobs {
		if !j.done {
			r.warn(fmt.Sprintf("flags of %s in %q", j.fs.ID[A], folder), errors.New("changed by another client during each of the merges: merged again next run"))
		}
	}
	return nil
}

// mergeRounds bounds how often one message's flags are merged again in a
// run while other clients keep changing them under us.
const mergeRounds = 3

// flagJob is one message's flag merge: the base, each side's flags and
// mod-sequence as last seen, and what the run wrote.
type flagJob struct {
	fs    FlagSync
	old   state.Message // the record: its base ("" for a pair just recorded: the union)
	base  flagSet
	cur   [2]flagSet
	since [2]uint64
	wrote [2]bool
	// res is this round's merge; settled is false once a side refused
	// it (changed under us); done: recorded, failed or given up.
	res           flagSet
	settled, done bool
}

func (r *run) newFlagJob(fo *state.Folder, folder string, fs FlagSync) *flagJob {
	old, _ := fo.Get(fs.Record.Src)
	j := &flagJob{fs: fs, old: old, base: parseBase(old.Flags)}
	for s := range j.cur {
		j.cur[s] = setOf(r.env(Side(s), folder, fs.ID[s]).Flags)
		j.since[s] = r.status[s][folder].HighestModSeq
	}
	return j
}

// writeBoth writes this round's merges on both sides at once (an IMAP
// side's UID STOREs while the Maildir side renames files), then takes in
// what each side's writes found, side A's first. A side writes what its
// own flags lack of the merge whatever the other side's write does: one
// that fails there leaves the base as it was, and the next run's merge of
// a side holding the result and one holding its old flags gives the
// result again.
func (r *run) writeBoth(folder string, jobs []*flagJob, keeps [2]Keeps) error {
	var out [2]sideWrites
	for s := range out {
		out[s] = r.planWrites(Side(s), jobs, keeps[s])
	}
	err := r.bothSides(func(s Side) error {
		return r.writeSide(s, folder, &out[s])
	})
	if err != nil {
		return err
	}
	for s := range out {
		if err := r.takeWrites(Side(s), folder, &out[s]); err != nil {
			return err
		}
	}
	return nil
}

// sideWrites is one side's flag writes of a round: the writes, the job of
// each, and what the side answered.
type sideWrites struct {
	ws  []flagWrite
	of  []*flagJob
	res []mail.FlagResult
}

// planWrites returns side s's writes of this round: every message whose
// merge differs from what the side holds.
func (r *run) planWrites(s Side, jobs []*flagJob, keeps Keeps) sideWrites {
	var sw sideWrites
	for _, j := range jobs {
		if j.done {
			continue
		}
		if t := target(j.res, j.cur[s], keeps); !t.equal(j.cur[s]) {
			sw.ws = append(sw.ws, flagWrite{id: j.fs.ID[s], flags: t.sorted(), expect: j.cur[s].sorted(), since: j.since[s], target: t})
			sw.of = append(sw.of, j)
		}
	}
	return sw
}

// writeSide writes side s's flags of sw in one batch. It only reads the
// jobs (the other side's goroutine reads them too); takeWrites takes in the
// answers.
func (r *run) writeSide(s Side, folder string, sw *sideWrites) error {
	if len(sw.ws) == 0 {
		return nil
	}
	for _, w := range sw.ws {
		if err := r.step("flags " + string(w.id)); err != nil {
			return err
		}
	}
	res, err := r.stores[s].setFlagsIfAll(r.ctx, folder, sw.ws)
	if err != nil {
		if fatal(err) {
			return err
		}
		res = make([]mail.FlagResult, len(sw.ws)) // the batch failed: each of its messages did
		for i := range res {
			res[i].Err = err
		}
	}
	sw.res = res
	return nil
}

// takeWrites takes in what each of side s's writes found: stored, changed
// under us (merge again), or failed (the message is left for the next
// run).
func (r *run) takeWrites(s Side, folder string, sw *sideWrites) error {
	for i, j := range sw.of {
		if err := sw.res[i].Err; err != nil {
			if fatal(err) {
				return err
			}
			r.fail(s, fmt.Sprintf("set flags of %s in %q on side %s", sw.ws[i].id, folder, s), err)
			j.done = true
			continue
		}
		st := sw.res[i].FlagState
		j.since[s] = max(j.since[s], st.ModSeq)
		if !st.Stored {
			j.cur[s], j.settled = setOf(st.Flags), false // changed under us: merge again
			continue
		}
		j.cur[s] = sw.ws[i].target
		if !j.wrote[s] {
			j.wrote[s] = true
			r.res.Side[s].Flagged++
		}
	}
	return nil
}

// deletes removes, per side, the messages the other side deleted, then
// forgets their records.
func (r *run) deletes(fo *state.Folder, fp *FolderPlan) error {
	var envs [2][]mail.Envelope
	var recs [2][]state.Message
	for _, d := range fp.Deletes {
		envs[d.On] = append(envs[d.On], r.env(d.On, fp.Name, d.ID))
		recs[d.On] = append(recs[d.On], d.Record)
	}
	// Both sides' deletions at once (an IMAP side's UID STORE and UID
	// EXPUNGE while the Maildir side moves files to its quarantine): each
	// was journaled before either began, and each record is forgotten only
	// after its own side's removal returned.
	return r.bothSides(func(on Side) error {
		if len(envs[on]) == 0 {
			return nil
		}
		return r.removeOn(fo, on, envs[on], recs[on])
	})
}

// bothSides runs do for side A and side B at once and waits for both: for
// the changes of a folder that one side makes independently of the other
// (the journal holds every one of them before the first is made, and each
// side records a change only after its own write returned). It returns
// side A's error first, as when the sides ran in turn. Under a Fence (a
// batch worker's lease) the sides run in turn: once the fence says no,
// nothing may change, and a change the other side began meanwhile would.
func (r *run) bothSides(do func(s Side) error) error {
	if r.opt.Fence != nil {
		if err := do(A); err != nil {
			return err
		}
		return do(B)
	}
	var errs [2]error
	var wg gosync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[B] = do(B)
	}()
	errs[A] = do(A)
	wg.Wait()
	if errs[A] != nil {
		return errs[A]
	}
	return errs[B]
}

func (r *run) removeOn(fo *state.Folder, on Side, envs []mail.Envelope, recs []state.Message) error {
	if err := r.step("remove"); err != nil {
		return err
	}
	if err := r.stores[on].remove(r.ctx, envs); err != nil {
		if fatal(err) {
			return err
		}
		r.res.Side[on].Failed += len(envs)
		r.warn(fmt.Sprintf("delete %d messages of %q on side %s", len(envs), envs[0].Mailbox, on), err)
		return nil
	}
	r.res.Side[on].Deleted += len(envs)
	r.noteRemoved(on, envs[0].Mailbox, len(envs))
	r.holdRecord(func() error {
		for _, m := range recs {
			if err := forgetRecord(fo, m); err != nil {
				return err
			}
		}
		return nil
	})
	return nil
}

// forgetRecord forgets m unless the record under its Src is now another
// (a Maildir file edited on side A keeps its id: its copy was recorded
// under the same Src before the old version was deleted on side B).
func forgetRecord(fo *state.Folder, m state.Message) error {
	if cur, ok := fo.Get(m.Src); ok && cur.Dst != m.Dst {
		return nil
	}
	return fo.Forget(m.Src)
}
