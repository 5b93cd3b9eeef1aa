package twoway

import (
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"strconv"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// The model test runs the planner against two in-memory stores for 200
// rounds of random changes on both sides (new mail, the same mail on both,
// flags set and cleared, deletions on one or both sides, moves between
// folders, new folders, a lost state, a UIDVALIDITY change) and checks
// after every sync that both sides hold exactly what the changes imply
// (the "truth", kept independently of the planner), that a second sync
// right after plans nothing, and that moves and pairs moved no body.

type modelMsg struct {
	token int
	flags flagSet
}

type modelSide struct {
	folders map[string]map[mail.ID]*modelMsg
	next    int
	stable  bool // ids survive moves (a Maildir)
	keeps   Keeps
	reset   map[string]bool // folders whose ids were renumbered since the last sync
}

type truthMsg struct {
	folder string
	flags  flagSet
}

type model struct {
	t      *testing.T
	rng    *rand.Rand
	side   [2]*modelSide
	state  map[string]map[mail.ID]state.Message // folder -> Src -> record
	truth  map[int]*truthMsg
	tokens int
	// per round: tokens with a structural change, (token, flag) touched
	locked  map[int]bool
	touched map[string]bool
	// expected copies this round: messages new on one side only
	wantCopies int
	// opts for this round
	opt      Options
	log      []string // this round's changes, for a failure
	lastPlan *Plan

	// folder renames and deletions, as runModel makes them (folderOps)
	changed, left      [2]map[string]bool
	dropped            *droppedFolder
	last               map[int]truthMsg
	renames            int
	removed, recreated int
}

var modelFlags = []mail.Flag{mail.FlagSeen, mail.FlagFlagged, mail.FlagAnswered, "$Label1", "$Other"}

func newModel(t *testing.T, seed int64) *model {
	m := &model{t: t, rng: rand.New(rand.NewSource(seed)), state: map[string]map[mail.ID]state.Message{}, truth: map[int]*truthMsg{}}
	m.side[A] = &modelSide{folders: map[string]map[mail.ID]*modelMsg{"INBOX": {}, "Archive": {}}}
	m.side[B] = &modelSide{folders: map[string]map[mail.ID]*modelMsg{"INBOX": {}}, stable: true,
		keeps: Keeps{mail.FlagSeen: true, mail.FlagFlagged: true, mail.FlagAnswered: true, "$Label1": true}}
	for s := range m.side {
		m.side[s].reset = map[string]bool{}
	}
	return m
}

func (m *model) sideInfo() [2]SideInfo {
	var si [2]SideInfo
	for s, sd := range m.side {
		si[s] = SideInfo{Keeps: sd.keeps, StableIDs: sd.stable}
	}
	return si
}

func (sd *modelSide) newID(prefix string) mail.ID {
	sd.next++
	return mail.ID(prefix + strconv.Itoa(sd.next))
}

func (sd *modelSide) store(folder string, id mail.ID, token int, flags flagSet) {
	kept := flagSet{}
	for f := range flags {
		if sd.keeps.Has(f) {
			kept[f] = true
		}
	}
	sd.folders[folder][id] = &modelMsg{token: token, flags: kept}
}

func tokenMsg(id mail.ID, mm *modelMsg) Msg {
	return Msg{ID: id, Flags: mm.flags.sorted(), Size: int64(100 + mm.token), Date: int64(1e9 + mm.token),
		MsgID: "m" + strconv.Itoa(mm.token)}
}

// inputs builds the planner's input from the stores and the state.
func (m *model) inputs() []Folder {
	names := map[string]bool{}
	for _, sd := range m.side {
		for f := range sd.folders {
			names[f] = true
		}
	}
	for f := range m.state {
		names[f] = true
	}
	var out []Folder
	for _, name := range sortedKeys(names) {
		f := Folder{Name: name}
		recs, known := m.state[name]
		f.Known = known
		for _, r := range recs {
			f.Base = append(f.Base, r)
		}
		for s, sd := range m.side {
			msgs, ok := sd.folders[name]
			f.Side[s] = Listing{Exists: ok, IDsReset: sd.reset[name]}
			for _, id := range sortedIDs(msgs) {
				f.Side[s].Msgs = append(f.Side[s].Msgs, tokenMsg(id, msgs[id]))
			}
		}
		out = append(out, f)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedIDs[V any](m map[mail.ID]V) []mail.ID {
	var out []mail.ID
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// sync plans and applies one run.
func (m *model) sync() *Plan {
	p := MakePlan(m.inputs(), m.opt)
	for i := range p.Folders { // as Run: every rename before any message
		if r := p.Folders[i].Rename; r != nil {
			sd, name := m.side[r.On], p.Folders[i].Name
			sd.folders[name] = sd.folders[r.From]
			delete(sd.folders, r.From)
			m.state[name] = m.state[r.From]
			delete(m.state, r.From)
		}
	}
	for i := range p.Folders {
		m.apply(&p.Folders[i])
	}
	for _, sd := range m.side {
		sd.reset = map[string]bool{}
	}
	return p
}

func (m *model) put(folder string, r state.Message) {
	if r.Src == "" || r.Dst == "" {
		m.t.Fatalf("record without an id on one side: %+v", r)
	}
	m.state[folder][r.Src] = r
}

func (m *model) apply(fp *FolderPlan) {
	if fp.Forget {
		delete(m.state, fp.Name)
		return
	}
	for s, rm := range fp.Remove {
		if rm {
			delete(m.side[s].folders, fp.Name)
			delete(m.state, fp.Name)
		}
	}
	if fp.Skip != "" {
		return
	}
	for s, c := range fp.Create {
		if c {
			m.side[s].folders[fp.Name] = map[mail.ID]*modelMsg{}
		}
	}
	if m.state[fp.Name] == nil {
		m.state[fp.Name] = map[mail.ID]state.Message{}
	}
	for _, id := range fp.Forgets {
		delete(m.state[fp.Name], id)
	}
	for _, r := range fp.Pairs {
		m.put(fp.Name, r)
	}
	for _, c := range fp.Copies {
		m.applyCopy(fp.Name, c)
	}
	for _, mv := range fp.Moves {
		m.applyMove(fp.Name, mv)
	}
	for _, fs := range fp.Flags {
		for _, s := range []Side{A, B} {
			if fs.Changes(s) {
				m.setFlags(s, fp.Name, fs.ID[s], fs.Set[s])
			}
		}
		m.put(fp.Name, fs.Record)
	}
	for _, d := range fp.Deletes {
		if m.side[d.On].folders[fp.Name][d.ID] == nil {
			m.t.Fatalf("delete of a message side %s does not hold: %s/%s", d.On, fp.Name, d.ID)
		}
		delete(m.side[d.On].folders[fp.Name], d.ID)
		delete(m.state[fp.Name], d.Record.Src)
	}
}

func (m *model) setFlags(s Side, folder string, id mail.ID, flags []mail.Flag) {
	mm := m.side[s].folders[folder][id]
	if mm == nil {
		m.t.Fatalf("flags for a message side %s does not hold: %s/%s", s, folder, id)
	}
	m.side[s].store(folder, id, mm.token, setOf(flags))
}

func (m *model) applyCopy(folder string, c Copy) {
	from, to := m.side[c.From], m.side[c.From.Other()]
	mm := from.folders[folder][c.Msg.ID]
	if mm == nil {
		m.t.Fatalf("copy of a message side %s does not hold: %s/%s", c.From, folder, c.Msg.ID)
	}
	id := to.newID("c")
	to.store(folder, id, mm.token, setOf(c.Flags()))
	r := c.Record()
	setSideID(&r, c.From.Other(), id)
	m.put(folder, r)
}

func (m *model) applyMove(folder string, mv Move) {
	sd := m.side[mv.On]
	mm := sd.folders[mv.From][mv.ID]
	if mm == nil {
		m.t.Fatalf("move of a message side %s does not hold: %s/%s", mv.On, mv.From, mv.ID)
	}
	delete(sd.folders[mv.From], mv.ID)
	id := mv.ID
	if !sd.stable {
		id = sd.newID("v")
	}
	sd.folders[folder][id] = mm
	for _, s := range []Side{A, B} {
		if mv.Set[s] == nil {
			continue
		}
		target := id
		if s != mv.On {
			target = mv.Moved.ID
		}
		m.setFlags(s, folder, target, mv.Set[s])
	}
	delete(m.state[mv.From], mv.Old.Src)
	r := mv.Record
	setSideID(&r, mv.On, id)
	m.put(folder, r)
}

// check compares both stores with the truth and the state with both.
func (m *model) check(round int) {
	for s, sd := range m.side {
		got := map[string]string{}
		for name, msgs := range sd.folders {
			got[name] = describe(msgs)
		}
		want := map[string]string{}
		for name := range m.side[A].folders {
			want[name] = describe(nil)
		}
		for name := range m.side[B].folders {
			want[name] = describe(nil)
		}
		byFolder := map[string]map[mail.ID]*modelMsg{}
		for tok, tm := range m.truth {
			if byFolder[tm.folder] == nil {
				byFolder[tm.folder] = map[mail.ID]*modelMsg{}
			}
			kept := flagSet{}
			for f := range tm.flags {
				if sd.keeps.Has(f) {
					kept[f] = true
				}
			}
			byFolder[tm.folder][mail.ID(strconv.Itoa(tok))] = &modelMsg{token: tok, flags: kept}
		}
		for name, msgs := range byFolder {
			want[name] = describe(msgs)
		}
		if !reflect.DeepEqual(got, want) {
			m.t.Fatalf("round %d: side %s holds\n%v\nwant\n%v\nchanges: %q\nplan: %+v", round, Side(s), got, want, m.log, m.lastPlan)
		}
	}
	m.checkState(round)
}

// checkState: every record names a message on both sides, and every
// message is named by exactly one record.
func (m *model) checkState(round int) {
	for s, sd := range m.side {
		for name, msgs := range sd.folders {
			named := map[mail.ID]int{}
			for _, r := range m.state[name] {
				named[sideID(r, Side(s))]++
			}
			for id := range msgs {
				if named[id] != 1 {
					m.t.Fatalf("round %d: side %s %s/%s is named by %d records", round, Side(s), name, id, named[id])
				}
			}
			if len(named) != len(msgs) {
				m.t.Fatalf("round %d: side %s folder %s: %d records for %d messages", round, Side(s), name, len(named), len(msgs))
			}
		}
	}
}

// describe is a folder's content as sorted "token:flags" entries.
func describe(msgs map[mail.ID]*modelMsg) string {
	var parts []string
	for _, mm := range msgs {
		parts = append(parts, fmt.Sprintf("%d:%s", mm.token, mm.flags))
	}
	sort.Strings(parts)
	return fmt.Sprint(parts)
}

func (m *model) logf(format string, args ...any) { m.log = append(m.log, fmt.Sprintf(format, args...)) }

// --- the random changes ---

func (m *model) pickMsg(s Side) (string, mail.ID, *modelMsg) {
	sd := m.side[s]
	var all []struct {
		folder string
		id     mail.ID
	}
	for _, name := range sortedKeys(sd.folders) {
		for _, id := range sortedIDs(sd.folders[name]) {
			all = append(all, struct {
				folder string
				id     mail.ID
			}{name, id})
		}
	}
	if len(all) == 0 {
		return "", "", nil
	}
	e := all[m.rng.Intn(len(all))]
	return e.folder, e.id, sd.folders[e.folder][e.id]
}

func (m *model) pickFolder(s Side) string {
	names := sortedKeys(m.side[s].folders)
	return names[m.rng.Intn(len(names))]
}

func (m *model) randomFlags(s Side) flagSet {
	fl := flagSet{}
	for _, f := range modelFlags {
		if m.rng.Intn(3) == 0 && m.side[s].keeps.Has(f) {
			fl[f] = true
		}
	}
	return fl
}

func (m *model) opNew(s Side) {
	m.tokens++
	tok := m.tokens
	folder := m.pickFolder(s)
	fl := m.randomFlags(s)
	m.side[s].store(folder, m.side[s].newID("n"), tok, fl)
	m.truth[tok] = &truthMsg{folder: folder, flags: fl}
	m.locked[tok] = true
	m.changed[s][folder] = true
	m.wantCopies++
	m.logf("new on %s: %d in %s", s, tok, folder)
}

// opNewBoth delivers the same message to the same folder on both sides.
func (m *model) opNewBoth() {
	folder := m.pickFolder(A)
	if m.side[B].folders[folder] == nil {
		return
	}
	m.tokens++
	tok := m.tokens
	fl := m.randomFlags(B)
	for _, s := range []Side{A, B} {
		m.side[s].store(folder, m.side[s].newID("n"), tok, fl)
		m.changed[s][folder] = true
	}
	m.truth[tok] = &truthMsg{folder: folder, flags: fl}
	m.locked[tok] = true
}

func (m *model) opFlag(s Side) {
	folder, id, mm := m.pickMsg(s)
	if mm == nil {
		return
	}
	f := modelFlags[m.rng.Intn(len(modelFlags))]
	key := fmt.Sprint(mm.token, f)
	if !m.side[s].keeps.Has(f) || m.touched[key+Side(s.Other()).String()] {
		return
	}
	m.touched[key+s.String()] = true
	fl := setOf(mm.flags.sorted())
	fl[f] = !fl[f]
	if !fl[f] {
		delete(fl, f)
	}
	m.side[s].store(folder, id, mm.token, fl)
	m.changed[s][folder] = true
	if tm := m.truth[mm.token]; tm != nil {
		if fl[f] {
			tm.flags[f] = true
		} else {
			delete(tm.flags, f)
		}
	}
}

func (m *model) opDelete(s Side) {
	folder, id, mm := m.pickMsg(s)
	if mm == nil || m.locked[mm.token] {
		return
	}
	m.locked[mm.token] = true
	delete(m.side[s].folders[folder], id)
	delete(m.truth, mm.token)
	m.left[s][folder] = true
	m.logf("delete on %s: %d in %s", s, mm.token, folder)
}

// opDeleteBoth deletes a message on both sides (forgotten by the sync).
func (m *model) opDeleteBoth() {
	_, _, mm := m.pickMsg(A)
	if mm == nil || m.locked[mm.token] {
		return
	}
	m.locked[mm.token] = true
	for s, sd := range m.side {
		for name, msgs := range sd.folders {
			for id, x := range msgs {
				if x.token == mm.token {
					delete(msgs, id)
					m.left[s][name] = true
				}
			}
		}
	}
	delete(m.truth, mm.token)
}

func (m *model) opMove(s Side) {
	folder, id, mm := m.pickMsg(s)
	to := m.pickFolder(s)
	if mm == nil || m.locked[mm.token] || to == folder {
		return
	}
	m.locked[mm.token] = true
	sd := m.side[s]
	delete(sd.folders[folder], id)
	if !sd.stable {
		id = sd.newID("m")
	}
	sd.folders[to][id] = mm
	m.truth[mm.token].folder = to
	m.left[s][folder], m.changed[s][to] = true, true
	m.logf("move on %s: %d %s -> %s", s, mm.token, folder, to)
}

func (m *model) opFolder(s Side) {
	name := fmt.Sprintf("F%d", m.rng.Intn(1000))
	if _, ok := m.side[s.Other()].folders[name]; ok {
		return
	}
	if _, ok := m.side[s].folders[name]; !ok {
		m.side[s].folders[name] = map[mail.ID]*modelMsg{}
		m.logf("folder on %s: %s", s, name)
	}
}

// opReset renumbers a folder's ids on the non-stable side (UIDVALIDITY).
func (m *model) opReset() {
	folder := m.pickFolder(A)
	old := m.side[A].folders[folder]
	renum := map[mail.ID]*modelMsg{}
	for _, id := range sortedIDs(old) {
		renum[m.side[A].newID("r")] = old[id]
	}
	m.side[A].folders[folder] = renum
	m.side[A].reset[folder] = true
}

// round makes random changes on both sides; kind picks the special rounds.
func (m *model) round(kind int) {
	m.locked, m.touched, m.wantCopies, m.log = map[int]bool{}, map[string]bool{}, 0, nil
	m.changed, m.left, m.dropped = [2]map[string]bool{{}, {}}, [2]map[string]bool{{}, {}}, nil
	ops := []func(Side){m.opNew, m.opFlag, m.opFlag, m.opDelete, m.opMove, m.opNew}
	switch kind {
	case 1: // a lost state: only new mail this round, or it would come back
		m.state = map[string]map[mail.ID]state.Message{}
		ops = ops[:1]
	case 2: // a UIDVALIDITY change and new mail
		m.opReset()
		ops = ops[:1]
	}
	for i := m.rng.Intn(8); i >= 0; i-- {
		ops[m.rng.Intn(len(ops))](Side(m.rng.Intn(2)))
	}
	if kind == 0 {
		m.extraOps()
		m.folderOps()
	}
}

func (m *model) extraOps() {
	switch m.rng.Intn(6) {
	case 0:
		m.opNewBoth()
	case 1:
		m.opDeleteBoth()
	case 2:
		m.opFolder(Side(m.rng.Intn(2)))
	}
}

func TestModelRandomRounds(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			m := newModel(t, seed)
			m.opt = Options{Sides: m.sideInfo(), Force: true, RemoveFolders: true}
			m.locked, m.touched = map[int]bool{}, map[string]bool{}
			m.changed, m.left = [2]map[string]bool{{}, {}}, [2]map[string]bool{{}, {}}
			// a first sync over mail already on both sides, some of it the same
			for i := 0; i < 6; i++ {
				m.opNew(A)
				m.opNew(B)
				m.opNewBoth()
			}
			m.syncAndCheck(0, 0)
			for round := 1; round <= 200; round++ {
				kind := 0
				switch {
				case round%25 == 0:
					kind = 1
				case round%30 == 0:
					kind = 2
				}
				m.round(kind)
				m.syncAndCheck(round, kind)
			}
			t.Logf("folders renamed %d, deleted and removed %d, deleted and recreated %d", m.renames, m.removed, m.recreated)
			if m.renames == 0 || m.removed == 0 || m.recreated == 0 {
				t.Errorf("the rounds renamed %d folders, removed %d, recreated %d: each kind must happen", m.renames, m.removed, m.recreated)
			}
		})
	}
}

// syncAndCheck syncs, checks the stores and the state, checks that moves
// and pairs copied nothing, and that a second sync plans nothing.
func (m *model) syncAndCheck(round, kind int) {
	m.t.Helper()
	if m.dropped != nil {
		m.syncDropped(round)
		kind = -1 // the folder's moves became copies, its recreation copies it all
	}
	p := m.sync()
	m.lastPlan = p
	m.check(round)
	m.last = map[int]truthMsg{}
	for tok, tm := range m.truth {
		m.last[tok] = truthMsg{folder: tm.folder, flags: setOf(tm.flags.sorted())}
	}
	if got := countCopies(p); kind == 0 && got != m.wantCopies {
		m.t.Fatalf("round %d: %d copies planned, want %d (moves and pairs move no body):\n%+v", round, got, m.wantCopies, p)
	}
	if p.HeldBack {
		m.t.Fatalf("round %d: deletions held back with --force", round)
	}
	again := m.sync()
	for _, fp := range again.Folders {
		if n := len(fp.Copies) + len(fp.Moves) + len(fp.Flags) + len(fp.Deletes) + len(fp.Pairs) + len(fp.Forgets); n > 0 || fp.Create != [2]bool{} {
			m.t.Fatalf("round %d: a second sync still plans %+v", round, fp)
		}
	}
}

func countCopies(p *Plan) int {
	n := 0
	for _, fp := range p.Folders {
		n += len(fp.Copies)
	}
	return n
}

// folderOps renames or deletes, one round in three, a folder the state
// knows with messages, on one side, as runModel.folderOps does.
func (m *model) folderOps() {
	if m.rng.Intn(3) != 0 {
		return
	}
	s := Side(m.rng.Intn(2))
	var cands []string
	for _, name := range sortedKeys(m.state) {
		_, onA := m.side[A].folders[name]
		_, onB := m.side[B].folders[name]
		if name != "INBOX" && len(m.state[name]) > 0 && onA && onB && !m.left[s][name] {
			cands = append(cands, name)
		}
	}
	if len(cands) == 0 {
		return
	}
	name := cands[m.rng.Intn(len(cands))]
	sd := m.side[s]
	if m.rng.Intn(2) == 0 || m.changed[s][name] {
		m.renames++
		to := fmt.Sprintf("R%d", m.renames)
		sd.folders[to] = sd.folders[name] // the ids stay (a Maildir, an IMAP server keeping UIDVALIDITY)
		delete(sd.folders, name)
		for _, tm := range m.truth {
			if tm.folder == name {
				tm.folder = to
			}
		}
		m.logf("rename folder on %s: %s -> %s", s, name, to)
		return
	}
	if m.rng.Intn(2) == 0 { // new mail there on the other side: the folder comes back
		m.tokens++
		m.side[s.Other()].store(name, m.side[s.Other()].newID("n"), m.tokens, flagSet{})
		m.truth[m.tokens] = &truthMsg{folder: name, flags: flagSet{}}
		m.logf("new on %s: %d in %s", s.Other(), m.tokens, name)
	}
	delete(sd.folders, name)
	m.dropped = &droppedFolder{on: s, name: name}
	m.logf("delete folder on %s: %s", s, name)
}

// syncDropped syncs a round that deleted a folder without
// --remove-folders (the other side keeps it as it was, a warning), then
// works out what the sync with it does: delete the other side's copy when
// it did not change since the last sync, else recreate the folder.
func (m *model) syncDropped(round int) {
	d := m.dropped
	before := describe(m.side[d.on.Other()].folders[d.name])
	m.opt.RemoveFolders = false
	p := m.sync()
	m.opt.RemoveFolders = true
	// What the deleting side held of the folder's messages is gone: what
	// comes back is the other side's, without the flags it cannot keep.
	for tok, tm := range m.truth {
		if last, ok := m.last[tok]; ok && last.folder == d.name {
			for f := range tm.flags {
				if !m.side[d.on.Other()].keeps.Has(f) {
					delete(tm.flags, f)
				}
			}
		}
	}
	_, back := m.side[d.on].folders[d.name]
	after, kept := m.side[d.on.Other()].folders[d.name]
	if back || !kept || describe(after) != before || len(p.Folders) == 0 {
		m.t.Fatalf("round %d: without --remove-folders folder %s deleted on %s: back %v, on %s %s (was %s); changes %q",
			round, d.name, d.on, back, d.on.Other(), describe(after), before, m.log)
	}
	for _, mm := range after {
		last, known := m.last[mm.token]
		kept := flagSet{}
		for f := range last.flags {
			if m.side[d.on.Other()].keeps.Has(f) {
				kept[f] = true
			}
		}
		if !known || last.folder != d.name || !kept.equal(mm.flags) {
			m.recreated++
			m.logf("(changed on the other side: recreated)")
			return
		}
	}
	m.removed++
	for tok, tm := range m.truth {
		if tm.folder == d.name {
			delete(m.truth, tok)
		}
	}
}
