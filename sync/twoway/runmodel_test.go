package twoway

import (
	"context"
	"fmt"
	"math/rand"
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

func TestRunModelRandomRounds(t *testing.T) {
	m := &runModel{t: t, rng: newRand(7), truth: map[int]*truthMsg{}}
	m.st[A], m.st[B] = newMemStore("a", "INBOX", "Archive"), newMemStore("b", "INBOX")
	m.rounds(200, func(dir string, opt RunOptions) (*Result, error) {
		return syncMem(t, m.st[A], m.st[B], dir, opt)
	}, nil)
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
		m.locked, m.touched, m.log = map[int]bool{}, map[string]Side{}, nil
		kinds := ops
		if round%40 == 39 { // a lost state: only new mail, or deletions would come back
			dir = filepath.Join(t.TempDir(), "state")
			kinds = ops[:1]
		}
		for i := m.rng.Intn(8); i >= 0; i-- {
			kinds[m.rng.Intn(len(kinds))](Side(m.rng.Intn(2)))
		}
		if _, err := syncFn(dir, RunOptions{Plan: Options{Force: true}}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		want := m.want()
		for s, st := range m.st {
			if got := st.describe(); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d: side %s holds\n%v\nwant\n%v\nchanges %q", round, Side(s), got, want, m.log)
			}
		}
		res, err := syncFn(dir, RunOptions{})
		if err != nil || res.Side != [2]Counts{} {
			t.Fatalf("round %d: a second sync did %+v, %v", round, res.Side, err)
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
