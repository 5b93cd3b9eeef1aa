package twoway

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// planner holds the per-folder analysis between the passes of Plan.
type planner struct {
	opt  Options
	work []*folderWork
	out  *Plan
}

// folderWork is one folder pair between the passes: what is gone from a
// side and what is new on it, before moves, deletions and copies are
// decided (a move needs every folder's view).
type folderWork struct {
	in     *Folder
	out    *FolderPlan
	active bool      // messages are planned (the folder is on both sides, or being created)
	why    [2]string // why absence from side s is not a deletion ("" trusted)
	// suspect[s] says why deletions read from side s's absence are held
	// back unless forced (the folder is empty while the state says it held
	// mail: an unmounted disk, a replaced directory). Moves still count.
	suspect [2]string
	byID    [2]map[mail.ID]*Msg
	gone    [2][]*goneRec // records whose message is gone from side s only
	fresh   [2][]*freshMsg
	// recreate is true when a folder deleted on one side is recreated
	// there: its records are dropped, so everything is copied back.
	recreate bool
	// sides are Options.Sides with the folder's own Keeps (folderSides).
	sides [2]SideInfo
}

// goneRec is a record whose message is gone from one side; other is the
// message still on the other side.
type goneRec struct {
	rec     state.Message
	other   *Msg
	used    bool   // became a move
	suspect string // why its deletion is held back unless forced
}

// freshMsg is a message on one side that no record names.
type freshMsg struct {
	m    *Msg
	used bool // became a move
}

// MakePlan plans a run over folders (kept in their order). It does no I/O.
func MakePlan(folders []Folder, opt Options) *Plan {
	if opt.MaxDelete <= 0 {
		opt.MaxDelete = defaultMaxDelete
	}
	p := &planner{opt: opt, out: &Plan{}}
	folders = followRenames(folders, opt.Sides)
	for i := range folders {
		p.work = append(p.work, p.analyse(&folders[i]))
	}
	for _, x := range []Side{A, B} {
		p.pairMoves(x)
	}
	for _, w := range p.work {
		p.finish(w)
		p.out.Folders = append(p.out.Folders, *w.out)
	}
	p.guard()
	return p.out
}

// analyse matches one folder's records with both listings.
func (p *planner) analyse(f *Folder) *folderWork {
	w := &folderWork{in: f, out: &FolderPlan{Name: f.Name, Rename: f.rename}, sides: folderSides(f, p.opt.Sides)}
	if !w.folderAction(&p.opt) {
		return w
	}
	w.active = true
	base := append([]state.Message(nil), f.Base...)
	sort.Slice(base, func(i, j int) bool { return base[i].Src < base[j].Src })
	p.distrust(w, len(base)+f.Omitted)
	why := p.mergeOnly(w)
	if why != "" {
		w.out.Warnings = append(w.out.Warnings, why+": merged as on a first sync, nothing deleted")
	}
	if why != "" || w.recreate {
		for _, r := range base {
			w.out.Forgets = append(w.out.Forgets, r.Src)
		}
		base = nil
	}
	for s := range w.byID {
		w.byID[s] = indexMsgs(f.Side[s].Msgs)
	}
	p.matchBase(w, base)
	w.byID = [2]map[mail.ID]*Msg{} // only matchBase needs it: memory follows the folders planned, not held
	w.pairFresh(w.sides)
	return w
}

// folderAction decides what happens to the folder as a whole; it reports
// whether its messages are planned. A folder missing from a side that is
// not the store the state knows (SideInfo.Untrusted) is created there, as
// on a first sync. A folder the state knows that vanished from one side is
// left alone, or with RemoveFolders deleted or recreated (removeOrRecreate).
func (w *folderWork) folderAction(opt *Options) bool {
	f := w.in
	ea, eb := f.Side[A].Exists, f.Side[B].Exists
	switch {
	case ea && eb:
		return true
	case !ea && !eb:
		w.out.Forget = f.Known
		return false
	}
	missing := A
	if ea {
		missing = B
	}
	if !f.Known || opt.Sides[missing].Untrusted != "" {
		w.out.Create[missing] = true
		return true
	}
	if opt.RemoveFolders {
		return w.removeOrRecreate(missing, w.sides[missing.Other()].Keeps)
	}
	w.out.Skip = fmt.Sprintf("folder %q vanished from side %s: nothing in it is changed on either side (a folder deleted on one side is not deleted on the other without --remove-folders)", f.Name, missing)
	w.out.Warnings = append(w.out.Warnings, w.out.Skip)
	return false
}

// distrust sets why absence from each side is not a deletion.
func (p *planner) distrust(w *folderWork, known int) {
	for s := range w.why {
		l := &w.in.Side[s]
		switch {
		case p.opt.Sides[s].Untrusted != "":
			w.why[s] = p.opt.Sides[s].Untrusted
		case l.Untrusted != "":
			w.why[s] = l.Untrusted
		case l.IDsReset:
			w.why[s] = "its ids changed (UIDVALIDITY)"
		case l.Exists && len(l.Msgs)+w.in.Omitted == 0 && known > 0:
			w.suspect[s] = "folder " + strconv.Quote(w.in.Name) + " is empty on side " + Side(s).String() +
				" while the state says it held " + strconv.Itoa(known) + " messages"
		}
	}
}

// mergeOnly says why the state's records cannot name this folder's
// messages ("" when they can): a side's ids changed (UIDVALIDITY), or a
// side is not the store the state was written for. Then the folder is
// merged as on a first sync: a record would only make its message look
// deleted on one side and new on the other, which is how a lost identity
// turns into mass deletion or duplicates.
func (p *planner) mergeOnly(w *folderWork) string {
	for _, s := range []Side{A, B} {
		switch {
		case w.in.Side[s].IDsReset:
			return fmt.Sprintf("side %s's ids changed (UIDVALIDITY)", s)
		case p.opt.Sides[s].Untrusted != "":
			return fmt.Sprintf("side %s: %s", s, p.opt.Sides[s].Untrusted)
		}
	}
	return ""
}

func indexMsgs(msgs []Msg) map[mail.ID]*Msg {
	by := make(map[mail.ID]*Msg, len(msgs))
	for i := range msgs {
		by[msgs[i].ID] = &msgs[i]
	}
	return by
}

// matchBase sorts every record into merged, gone from one side, or gone
// from both, and every unrecorded message into fresh.
func (p *planner) matchBase(w *folderWork, base []state.Message) {
	var seen [2]map[mail.ID]bool
	seen[A], seen[B] = map[mail.ID]bool{}, map[mail.ID]bool{}
	var untrusted [2]int
	for _, r := range base {
		if r.Dst == "" { // half a record: its messages are paired or copied anew
			w.out.Forgets = append(w.out.Forgets, r.Src)
			continue
		}
		seen[A][r.Src], seen[B][r.Dst] = true, true
		ma, mb := w.byID[A][r.Src], w.byID[B][r.Dst]
		editedA, staleA := w.edited(A, r, ma, w.sides)
		if editedA {
			ma, seen[A][r.Src] = nil, false
		}
		editedB, staleB := w.edited(B, r, mb, w.sides)
		if editedB {
			mb, seen[B][r.Dst] = nil, false
		}
		switch {
		case ma != nil && mb != nil:
			w.mergeFlags(r, ma, mb, w.sides, staleA || staleB)
		case ma == nil && mb == nil:
			w.out.Forgets = append(w.out.Forgets, r.Src)
		case mb == nil:
			untrusted[B] += w.goneFrom(B, r, ma)
		default:
			untrusted[A] += w.goneFrom(A, r, mb)
		}
	}
	for s, n := range untrusted {
		if n > 0 {
			w.out.Warnings = append(w.out.Warnings, fmt.Sprintf(
				"%d messages absent from side %s are not read as deleted: %s", n, Side(s), w.why[s]))
		}
	}
	for s := range w.fresh {
		for i := range w.in.Side[s].Msgs {
			m := &w.in.Side[s].Msgs[i]
			if !seen[s][m.ID] && !m.OutOfScope {
				w.fresh[s] = append(w.fresh[s], &freshMsg{m: m})
			}
		}
	}
}

// edited reports whether m, side s's message of record r, is a Maildir
// file whose content a mail client changed (rule 4), by its evidence
// (evidence.go: its mtime, else its size); stale when the record's
// evidence is to be written again. An edited file is a new message:
// copied again to the other side, never deleted; the version the record
// names is gone from side s.
func (w *folderWork) edited(s Side, r state.Message, m *Msg, sides [2]SideInfo) (edited, stale bool) {
	if m == nil || !sides[s].StableIDs || m.OutOfScope {
		return false, false
	}
	return fileEdited(r, s, m)
}

// goneFrom notes a record whose message is gone from side s and still on
// the other side; it returns 1 when the absence cannot be trusted.
func (w *folderWork) goneFrom(s Side, r state.Message, other *Msg) int {
	switch {
	case other.OutOfScope: // frozen
		return 0
	case w.why[s] != "":
		return 1
	}
	w.gone[s] = append(w.gone[s], &goneRec{rec: r, other: other, suspect: w.suspect[s]})
	return 0
}

// mergeFlags plans the flag merge of a message on both sides; restamp
// rewrites its record even when nothing changes (its evidence is stale).
func (w *folderWork) mergeFlags(r state.Message, ma, mb *Msg, sides [2]SideInfo, restamp bool) {
	if ma.OutOfScope || mb.OutOfScope {
		return
	}
	fs, changed := flagSync(r, [2]*Msg{ma, mb}, sides)
	if changed || restamp {
		w.out.Flags = append(w.out.Flags, fs)
	}
}

// flagSync merges the flags of a message both sides hold against its
// record r; changed is false when neither side nor the base changes.
func flagSync(r state.Message, m [2]*Msg, sides [2]SideInfo) (FlagSync, bool) {
	cur := [2]flagSet{setOf(m[A].Flags), setOf(m[B].Flags)}
	keeps := [2]Keeps{sides[A].Keeps, sides[B].Keeps}
	base := parseBase(r.Flags)
	res := merge(base, r.FlagsKnown, cur, keeps)
	fs := FlagSync{ID: [2]mail.ID{m[A].ID, m[B].ID}, Record: r}
	fs.Record.Flags, fs.Record.FlagsKnown = res.String(), true
	changed := !r.FlagsKnown || !res.equal(base)
	for s := range cur {
		t := target(res, cur[s], keeps[s])
		if t.equal(cur[s]) {
			continue
		}
		fs.Set[s], fs.Add[s], fs.Remove[s] = t.sorted(), t.minus(cur[s]).sorted(), cur[s].minus(t).sorted()
		changed = true
	}
	return fs, changed
}

// pairFresh pairs messages new on both sides (a first sync, a lost state,
// a copy whose record a crash lost): by (Message-ID, size, date), then by
// content hash, duplicates count for count.
func (w *folderWork) pairFresh(sides [2]SideInfo) {
	for _, key := range []func(*Msg) string{(*Msg).key, func(m *Msg) string { return m.Content }} {
		pairs, restA, restB := pairBy(w.fresh[A], w.fresh[B], key)
		w.fresh[A], w.fresh[B] = restA, restB
		for _, pr := range pairs {
			rec := state.Message{Src: pr[A].ID, Dst: pr[B].ID, Size: pr[A].Size, Date: pr[A].Date, MsgID: pr[A].MsgID}
			if pr[A].Size != pr[B].Size {
				rec.Size = -1 // paired by content across line endings: no one size (edited cannot judge)
			}
			fs, changed := flagSync(rec, pr, sides) // no base: the union
			if changed && (fs.Changes(A) || fs.Changes(B)) {
				// No base until both sides hold the union: a base recorded
				// before the flag writes would read, after a kill, each
				// side's unwritten flags as removed.
				w.out.Pairs = append(w.out.Pairs, rec)
				w.out.Flags = append(w.out.Flags, fs)
				continue
			}
			w.out.Pairs = append(w.out.Pairs, fs.Record)
		}
	}
}

// pairBy pairs as with bs by a non-empty key, in listing order, count for
// count; it returns the pairs and what is left of each.
func pairBy(as, bs []*freshMsg, key func(*Msg) string) (pairs [][2]*Msg, restA, restB []*freshMsg) {
	byKey := map[string][]int{}
	for i, b := range bs {
		if k := key(b.m); k != "" {
			byKey[k] = append(byKey[k], i)
		}
	}
	taken := make([]bool, len(bs))
	for _, a := range as {
		k := key(a.m)
		if idx := byKey[k]; k != "" && len(idx) > 0 {
			byKey[k] = idx[1:]
			taken[idx[0]] = true
			pairs = append(pairs, [2]*Msg{a.m, bs[idx[0]].m})
			continue
		}
		restA = append(restA, a)
	}
	for i, b := range bs {
		if !taken[i] {
			restB = append(restB, b)
		}
	}
	return pairs, restA, restB
}

func msgKey(msgID string, size, date int64) string {
	if msgID == "" {
		return ""
	}
	return msgID + "\x00" + strconv.FormatInt(size, 10) + "\x00" + strconv.FormatInt(date, 10)
}

// finish turns what is still gone into deletions and what is still fresh
// into copies.
func (p *planner) finish(w *folderWork) {
	if !w.active {
		return
	}
	for _, s := range []Side{A, B} {
		held := len(w.out.Held)
		for _, g := range w.gone[s] {
			if !g.used {
				p.deleteOn(w, s.Other(), g)
			}
		}
		if n := len(w.out.Held) - held; n > 0 {
			p.out.Warnings = append(p.out.Warnings, fmt.Sprintf("folder %q: %d deletions on side %s held back: %s; rerun with --force after checking",
				w.in.Name, n, s.Other(), w.suspect[s]))
		}
		w.copyFrom(s)
	}
}

// deleteOn plans the deletion on side on of a message the other side
// deleted; a flag change on side on since the base is a conflict the
// deletion wins.
func (p *planner) deleteOn(w *folderWork, on Side, g *goneRec) {
	d := Delete{On: on, ID: g.other.ID, Record: g.rec}
	if g.suspect != "" && !p.opt.Force && !p.opt.NoDelete {
		d.Reason = g.suspect
		w.out.Held = append(w.out.Held, d)
		p.out.HeldBack = true
		return
	}
	if g.rec.FlagsKnown && !setOf(g.other.Flags).equal(parseBase(g.rec.Flags)) {
		d.Conflict = true
		w.out.Conflicts = append(w.out.Conflicts, fmt.Sprintf(
			"message %s deleted on side %s while its flags changed on side %s: the deletion wins", g.other.ID, on.Other(), on))
	}
	w.out.Deletes = append(w.out.Deletes, d)
}

// copyFrom plans copying what is still fresh on side s to the other side,
// unless the other side's listing is incomplete: a message it holds but did
// not list would be stored twice.
func (w *folderWork) copyFrom(s Side) {
	n := 0
	for _, f := range w.fresh[s] {
		if f.used {
			continue
		}
		if w.in.Side[s.Other()].Untrusted != "" {
			n++
			continue
		}
		w.out.Copies = append(w.out.Copies, Copy{From: s, Msg: f.m})
	}
	if n > 0 {
		w.out.Warnings = append(w.out.Warnings, fmt.Sprintf("%d new messages of side %s not copied: side %s's listing is incomplete (%s)",
			n, s, s.Other(), w.in.Side[s.Other()].Untrusted))
	}
}
