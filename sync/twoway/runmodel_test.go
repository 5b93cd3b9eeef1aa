package twoway

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// runModel drives Run (the applier, the state on disk, the in-memory
// stores) with random changes on both sides, as the planner's model test
// drives the planner: after every sync both stores hold what the changes
// imply, and a second sync does nothing.
type runModel struct {
	t       *testing.T
	rng     *rand.Rand
	st      [2]*memStore
	truth   map[int]*truthMsg
	tokens  int
	locked  map[int]bool
	touched map[string]Side
	log     []string

	// Folder renames and deletions (folderOps, at the end of a round),
	// with what they need: per side the folders a message arrived in or
	// changed flags in this round (changed) and those one left (left); the
	// folders renamed or deleted this round; and each token's folder and
	// flags as of the last sync.
	folders  bool
	changed  [2]map[string]bool
	left     [2]map[string]bool
	folderOp map[string]bool
	dropped  *droppedFolder
	last     map[int]truthMsg
	renames  int
	// how many folders were deleted and then removed on the other side,
	// or recreated
	removed, recreated int
}

// droppedFolder is a folder a side deleted this round.
type droppedFolder struct {
	on   Side
	name string
}

var runModelFlags = []mail.Flag{mail.FlagSeen, mail.FlagFlagged, mail.FlagAnswered, "$Work"}

// pick returns a random message of side s: its folder, id and token.
func (m *runModel) pick(s Side) (string, mail.ID, int, bool) {
	st := m.st[s]
	st.mu.Lock()
	defer st.mu.Unlock()
	type at struct {
		folder string
		id     mail.ID
	}
	var all []at
	for _, f := range sortedKeys(st.folders) {
		for _, id := range sortedIDs(st.folders[f]) {
			all = append(all, at{f, id})
		}
	}
	if len(all) == 0 {
		return "", "", 0, false
	}
	e := all[m.rng.Intn(len(all))]
	subj := strings.SplitN(strings.SplitN(string(st.folders[e.folder][e.id].body), "Subject: ", 2)[1], "\r\n", 2)[0]
	tok, _ := strconv.Atoi(subj)
	return e.folder, e.id, tok, true
}

func (m *runModel) folder(s Side) string {
	m.st[s].mu.Lock()
	defer m.st[s].mu.Unlock()
	names := sortedKeys(m.st[s].folders)
	return names[m.rng.Intn(len(names))]
}

func (m *runModel) opNew(s Side) {
	m.tokens++
	folder := m.folder(s)
	var fl []mail.Flag
	for _, f := range runModelFlags {
		if m.rng.Intn(3) == 0 {
			fl = append(fl, f)
		}
	}
	m.st[s].add(folder, m.tokens, fl...)
	m.truth[m.tokens] = &truthMsg{folder: folder, flags: setOf(fl)}
	m.locked[m.tokens] = true
	m.changed[s][folder] = true
	m.log = append(m.log, fmt.Sprintf("new %d on %s in %s", m.tokens, s, folder))
}

func (m *runModel) opFlag(s Side) {
	folder, id, tok, ok := m.pick(s)
	f := runModelFlags[m.rng.Intn(len(runModelFlags))]
	key := fmt.Sprint(tok, f)
	if by, seen := m.touched[key]; !ok || (seen && by != s) {
		return
	}
	m.touched[key] = s
	st := m.st[s]
	st.mu.Lock()
	fl := setOf(st.folders[folder][id].flags)
	if fl[f] {
		delete(fl, f)
	} else {
		fl[f] = true
	}
	st.folders[folder][id].flags = fl.sorted()
	st.mu.Unlock()
	m.changed[s][folder] = true
	if tm := m.truth[tok]; tm != nil { // only f changed: the other side may change other flags
		if tm.flags[f] {
			delete(tm.flags, f)
		} else {
			tm.flags[f] = true
		}
	}
	m.log = append(m.log, fmt.Sprintf("flags of %d on %s: %s", tok, s, fl))
}

func (m *runModel) opDelete(s Side) {
	folder, id, tok, ok := m.pick(s)
	if !ok || m.locked[tok] {
		return
	}
	m.locked[tok] = true
	m.st[s].Remove(context.Background(), []mail.Envelope{{Mailbox: folder, ID: id}})
	delete(m.truth, tok)
	m.left[s][folder] = true
	m.log = append(m.log, fmt.Sprintf("delete %d on %s", tok, s))
}

func (m *runModel) opMove(s Side) {
	folder, id, tok, ok := m.pick(s)
	to := m.folder(s)
	if !ok || m.locked[tok] || to == folder {
		return
	}
	m.locked[tok] = true
	m.st[s].moveTo(folder, id, to)
	m.truth[tok].folder = to
	m.left[s][folder], m.changed[s][to] = true, true
	m.log = append(m.log, fmt.Sprintf("move %d on %s to %s", tok, s, to))
}

func (m *runModel) opFolder(s Side) {
	name := fmt.Sprintf("F%d", m.rng.Intn(100))
	other := m.st[s.Other()]
	other.mu.Lock()
	_, exists := other.folders[name]
	other.mu.Unlock()
	if !exists {
		m.st[s].CreateMailbox(context.Background(), name)
		m.log = append(m.log, fmt.Sprintf("folder %s on %s", name, s))
	}
}

// want is the truth as memStore.describe gives it, over the folders of
// both stores.
func (m *runModel) want() map[string]string {
	parts := map[string][]string{}
	for _, st := range m.st {
		for name := range st.describe() {
			parts[name] = nil
		}
	}
	for tok, tm := range m.truth {
		parts[tm.folder] = append(parts[tm.folder], strconv.Itoa(tok)+":"+tm.flags.String())
	}
	out := map[string]string{}
	for name, p := range parts {
		sort.Strings(p)
		out[name] = strings.Join(p, ",")
	}
	return out
}

// TestRunModelRandomRounds: random changes on both sides (new, flag set
// and clear, delete, move, folder create, rename and delete with and
// without --remove-folders, a lost state) for 60 rounds, 200 under
// MAILFERRY_SOAK=1 (make soak).
func TestRunModelRandomRounds(t *testing.T) {
	m := &runModel{t: t, rng: newRand(7), truth: map[int]*truthMsg{}, folders: true}
	m.st[A], m.st[B] = newMemStore("a", "INBOX", "Archive"), newMemStore("b", "INBOX")
	m.rounds(soakRounds(60, 200), func(dir string, opt RunOptions) (*Result, error) {
		return syncMem(t, m.st[A], m.st[B], dir, opt)
	}, nil)
	t.Logf("folders renamed %d, deleted and removed %d, deleted and recreated %d", m.renames, m.removed, m.recreated)
	if m.renames == 0 || m.removed == 0 || m.recreated == 0 {
		t.Errorf("the rounds renamed %d folders, removed %d, recreated %d: each kind must happen", m.renames, m.removed, m.recreated)
	}
}

// soakRounds is n, or soak under MAILFERRY_SOAK=1 (make soak).
func soakRounds(n, soak int) int {
	if os.Getenv("MAILFERRY_SOAK") == "1" {
		return soak
	}
	return n
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }

// rounds makes random changes and syncs with syncFn n+1 times; after
// every sync both stores must hold the truth and a second sync must do
// nothing. With third, a third sync runs and third checks its result.
func (m *runModel) rounds(n int, syncFn func(dir string, opt RunOptions) (*Result, error), third func(round int, res *Result)) {
	t := m.t
	dir := filepath.Join(t.TempDir(), "state")
	ops := []func(Side){m.opNew, m.opNew, m.opFlag, m.opFlag, m.opDelete, m.opMove, m.opFolder}
	for round := 0; round <= n; round++ {
		m.startRound()
		kinds := ops
		lost := round%40 == 39
		if lost { // a lost state: only new mail, or deletions would come back
			dir = filepath.Join(t.TempDir(), "state")
			kinds = ops[:1]
		}
		for i := m.rng.Intn(8); i >= 0; i-- {
			kinds[m.rng.Intn(len(kinds))](Side(m.rng.Intn(2)))
		}
		if m.folders && !lost && round > 0 {
			m.folderOps()
		}
		if m.dropped != nil {
			m.syncDropped(round, dir, syncFn)
		}
		if _, err := syncFn(dir, RunOptions{Plan: Options{Force: true, RemoveFolders: m.folders}}); err != nil {
			t.Fatalf("round %d: %v (changes %q)", round, err, m.log)
		}
		m.remember()
		want := m.want()
		for s, st := range m.st {
			if got := st.describe(); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d: side %s holds\n%v\nwant\n%v\nchanges %q", round, Side(s), got, want, m.log)
			}
		}
		res, err := syncFn(dir, RunOptions{Plan: Options{RemoveFolders: m.folders}})
		if err != nil || res.Side != [2]Counts{} {
			t.Fatalf("round %d: a second sync did %+v, %v (changes %q)", round, res.Side, err, m.log)
		}
		if third != nil {
			res, err := syncFn(dir, RunOptions{})
			if err != nil || res.Side != [2]Counts{} {
				t.Fatalf("round %d: a third sync did %+v, %v", round, res.Side, err)
			}
			third(round, res)
		}
	}
}

// startRound clears what a round's changes note.
func (m *runModel) startRound() {
	m.locked, m.touched, m.log = map[int]bool{}, map[string]Side{}, nil
	m.changed = [2]map[string]bool{{}, {}}
	m.left = [2]map[string]bool{{}, {}}
	m.folderOp, m.dropped = map[string]bool{}, nil
}

// remember notes each token's folder and flags as synced.
func (m *runModel) remember() {
	m.last = map[int]truthMsg{}
	for tok, tm := range m.truth {
		m.last[tok] = truthMsg{folder: tm.folder, flags: setOf(tm.flags.sorted())}
	}
}

// folderOps renames or deletes, now and then, a folder both sides held at
// the last sync, with messages the state knows, on one side: a rename
// (the other side renames it too, the messages stay) or a deletion (kept
// as a warning, then with --remove-folders deleted on the other side, or
// recreated where it changed meanwhile). A folder a message left on that
// side this round is not renamed (it would hold less than the share the
// rename is recognised by) nor deleted (the deletion would bring it back
// or not, by the other side's changes).
func (m *runModel) folderOps() {
	if m.rng.Intn(3) != 0 {
		return
	}
	s := Side(m.rng.Intn(2))
	var cands []string
	count := map[string]int{}
	for _, tm := range m.last {
		count[tm.folder]++
	}
	for _, name := range sortedKeys(count) {
		if name != "INBOX" && m.holds(A, name) && m.holds(B, name) && !m.left[s][name] {
			cands = append(cands, name)
		}
	}
	if len(cands) == 0 {
		return
	}
	name := cands[m.rng.Intn(len(cands))]
	m.folderOp[name] = true
	if m.rng.Intn(2) == 0 || m.changed[s][name] {
		m.renames++
		to := fmt.Sprintf("R%d", m.renames)
		if err := m.st[s].RenameMailbox(context.Background(), name, to); err != nil {
			m.t.Fatal(err)
		}
		for _, tm := range m.truth {
			if tm.folder == name {
				tm.folder = to
			}
		}
		m.log = append(m.log, fmt.Sprintf("rename folder %s on %s to %s", name, s, to))
		return
	}
	if m.rng.Intn(2) == 0 { // new mail there on the other side: the folder comes back
		m.tokens++
		m.st[s.Other()].add(name, m.tokens)
		m.truth[m.tokens] = &truthMsg{folder: name, flags: flagSet{}}
		m.log = append(m.log, fmt.Sprintf("new %d on %s in %s", m.tokens, s.Other(), name))
	}
	st := m.st[s]
	st.mu.Lock()
	delete(st.folders, name)
	st.mu.Unlock()
	m.dropped = &droppedFolder{on: s, name: name}
	m.log = append(m.log, fmt.Sprintf("delete folder %s on %s", name, s))
}

func (m *runModel) holds(s Side, folder string) bool {
	m.st[s].mu.Lock()
	defer m.st[s].mu.Unlock()
	_, ok := m.st[s].folders[folder]
	return ok
}

// syncDropped syncs a round that deleted a folder without
// --remove-folders: the folder stays on the other side as it was, and
// nothing of it is deleted; then works out what --remove-folders will do:
// delete the other side's copy when it did not change since the last
// sync, else recreate the folder with everything in it.
func (m *runModel) syncDropped(round int, dir string, syncFn func(dir string, opt RunOptions) (*Result, error)) {
	d := m.dropped
	other := m.st[d.on.Other()]
	before := other.describe()[d.name]
	res, err := syncFn(dir, RunOptions{Plan: Options{Force: true}})
	if err != nil {
		m.t.Fatalf("round %d: %v (changes %q)", round, err, m.log)
	}
	if m.holds(d.on, d.name) || !m.holds(d.on.Other(), d.name) || other.describe()[d.name] != before || len(res.Warnings) == 0 {
		m.t.Fatalf("round %d: without --remove-folders folder %s deleted on %s became %q on %s (was %q), warnings %q (changes %q)",
			round, d.name, d.on, other.describe()[d.name], d.on.Other(), before, res.Warnings, m.log)
	}
	changed := false
	other.mu.Lock()
	for _, msg := range other.folders[d.name] {
		tok, _ := strconv.Atoi(strings.SplitN(strings.SplitN(string(msg.body), "Subject: ", 2)[1], "\r\n", 2)[0])
		last, known := m.last[tok]
		if !known || last.folder != d.name || !last.flags.equal(setOf(msg.flags)) {
			changed = true
		}
	}
	other.mu.Unlock()
	if changed {
		m.recreated++
		m.log = append(m.log, "(changed on the other side: recreated)")
		return
	}
	m.removed++
	for tok, tm := range m.truth {
		if tm.folder == d.name {
			delete(m.truth, tok)
		}
	}
}
