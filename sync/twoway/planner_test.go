package twoway

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// tm is a test message: token tok gives its Message-ID, size and date.
func tm(id string, tok int, flags ...mail.Flag) Msg {
	return Msg{ID: mail.ID(id), Flags: flags, Size: int64(100 + tok), Date: int64(1e9 + tok), MsgID: "m" + strconv.Itoa(tok)}
}

// tr is a test record of token tok with base flags.
func tr(src, dst string, tok int, flags string) state.Message {
	return state.Message{Src: mail.ID(src), Dst: mail.ID(dst), Flags: flags, FlagsKnown: true,
		Size: int64(100 + tok), Date: int64(1e9 + tok), MsgID: "m" + strconv.Itoa(tok)}
}

func both(a, b []Msg) [2]Listing {
	return [2]Listing{{Exists: true, Msgs: a}, {Exists: true, Msgs: b}}
}

func msgs(ms ...Msg) []Msg { return ms }

// describePlan is a plan as one line per action, for the tables.
func describePlan(p *Plan) []string {
	var out []string
	add := func(f string, args ...any) { out = append(out, fmt.Sprintf(f, args...)) }
	for _, fp := range p.Folders {
		n := fp.Name
		for s, c := range fp.Create {
			if c {
				add("%s: create on %s", n, Side(s))
			}
		}
		if fp.Skip != "" {
			add("%s: skip", n)
		}
		if fp.Forget {
			add("%s: forget folder", n)
		}
		for _, id := range fp.Forgets {
			add("%s: forget %s", n, id)
		}
		for _, r := range fp.Pairs {
			add("%s: pair %s=%s [%s]", n, r.Src, r.Dst, r.Flags)
		}
		for _, c := range fp.Copies {
			add("%s: copy %s %s>%s %v", n, c.Msg.ID, c.From, c.From.Other(), c.Flags())
		}
		for _, mv := range fp.Moves {
			add("%s: move on %s %s from %s (moved %s) set %v", n, mv.On, mv.ID, mv.From, mv.Moved.ID, mv.Set)
		}
		for _, f := range fp.Flags {
			add("%s: flags %s=%s base [%s] A%v-%v B%v-%v", n, f.ID[A], f.ID[B], f.Record.Flags, f.Add[A], f.Remove[A], f.Add[B], f.Remove[B])
		}
		for _, d := range fp.Deletes {
			add("%s: delete on %s %s conflict=%v", n, d.On, d.ID, d.Conflict)
		}
		for _, d := range fp.Held {
			add("%s: hold on %s %s", n, d.On, d.ID)
		}
	}
	if p.HeldBack {
		add("held back")
	}
	return out
}

func TestMerge(t *testing.T) {
	limited := Keeps{mail.FlagSeen: true, mail.FlagFlagged: true}
	for _, c := range []struct {
		name      string
		base      string
		known     bool
		a, b      string
		keeps     [2]Keeps
		want      string
		wantA     string // target on A (what A should hold)
		wantB     string
		wantSameA bool
	}{
		{name: "added on each side", base: "", known: true, a: `\Seen`, b: `\Flagged`, want: `\Flagged \Seen`, wantA: `\Flagged \Seen`, wantB: `\Flagged \Seen`},
		{name: "removed on A", base: `\Seen \Flagged`, known: true, a: `\Flagged`, b: `\Seen \Flagged`, want: `\Flagged`, wantA: `\Flagged`, wantB: `\Flagged`},
		{name: "removed on A, added on B", base: `\Seen`, known: true, a: ``, b: `\Seen \Answered`, want: `\Answered`, wantA: `\Answered`, wantB: `\Answered`},
		{name: "removed on both", base: `\Seen`, known: true, a: ``, b: ``, want: ``, wantA: ``, wantB: ``},
		{name: "added on both", base: ``, known: true, a: `$X`, b: `$X`, want: `$X`, wantA: `$X`, wantB: `$X`},
		{name: "keyword B cannot store is not removed by B", base: `$X \Seen`, known: true, a: `$X \Seen`, b: `\Seen`,
			keeps: [2]Keeps{nil, limited}, want: `$X \Seen`, wantA: `$X \Seen`, wantB: `\Seen`},
		{name: "keyword removed on A while B cannot store it", base: `$X \Seen`, known: true, a: `\Seen`, b: `\Seen`,
			keeps: [2]Keeps{nil, limited}, want: `\Seen`, wantA: `\Seen`, wantB: `\Seen`},
		{name: "a flag B lists but cannot store is added to A, and stays on B", base: ``, known: true, a: ``, b: `$Y`,
			keeps: [2]Keeps{nil, limited}, want: `$Y`, wantA: `$Y`, wantB: `$Y`},
		{name: "no base: union", base: `\Deleted`, known: false, a: `\Seen`, b: `\Flagged`, want: `\Flagged \Seen`, wantA: `\Flagged \Seen`, wantB: `\Flagged \Seen`},
		{name: `\Recent is ignored`, base: ``, known: true, a: `\Recent`, b: ``, want: ``, wantA: ``, wantB: ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			cur := [2]flagSet{parseBase(c.a), parseBase(c.b)}
			res := merge(parseBase(c.base), c.known, cur, c.keeps)
			if res.String() != c.want {
				t.Errorf("merge = %q, want %q", res, c.want)
			}
			if got := target(res, cur[A], c.keeps[A]).String(); got != c.wantA {
				t.Errorf("target A = %q, want %q", got, c.wantA)
			}
			if got := target(res, cur[B], c.keeps[B]).String(); got != c.wantB {
				t.Errorf("target B = %q, want %q", got, c.wantB)
			}
		})
	}
}

func TestPlanFolder(t *testing.T) {
	inbox := func(base []state.Message, a, b []Msg) []Folder {
		return []Folder{{Name: "INBOX", Known: true, Base: base, Side: both(a, b)}}
	}
	untrustedB := func(why string) func([]Folder) {
		return func(f []Folder) { f[0].Side[B].Untrusted = why }
	}
	for _, c := range []struct {
		name    string
		folders []Folder
		edit    func([]Folder)
		opt     Options
		want    []string
	}{
		{name: "new on A is copied to B with its flags",
			folders: inbox(nil, msgs(tm("a1", 1, mail.FlagSeen, `\Recent`)), nil),
			want:    []string{`INBOX: copy a1 A>B [\Seen]`}},
		{name: "new on B is copied to A",
			folders: inbox(nil, nil, msgs(tm("b1", 1))),
			want:    []string{`INBOX: copy b1 B>A []`}},
		{name: "nothing changed plans nothing",
			folders: inbox([]state.Message{tr("a1", "b1", 1, `\Seen`)}, msgs(tm("a1", 1, mail.FlagSeen)), msgs(tm("b1", 1, mail.FlagSeen)))},
		{name: "flags changed on both sides are merged",
			folders: inbox([]state.Message{tr("a1", "b1", 1, `\Seen`)},
				msgs(tm("a1", 1, mail.FlagSeen, mail.FlagFlagged)), msgs(tm("b1", 1))),
			want: []string{`INBOX: flags a1=b1 base [\Flagged] A[]-[\Seen] B[\Flagged]-[]`}},
		{name: "the same change on both sides only moves the base",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``)},
				msgs(tm("a1", 1, mail.FlagSeen)), msgs(tm("b1", 1, mail.FlagSeen))),
			want: []string{`INBOX: flags a1=b1 base [\Seen] A[]-[] B[]-[]`}},
		{name: "gone from B is deleted on A",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
				msgs(tm("a1", 1), tm("a2", 2)), msgs(tm("b2", 2))),
			want: []string{`INBOX: delete on A a1 conflict=false`}},
		{name: "gone from A is deleted on B",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
				msgs(tm("a2", 2)), msgs(tm("b1", 1), tm("b2", 2))),
			want: []string{`INBOX: delete on B b1 conflict=false`}},
		{name: "gone from both is forgotten",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)}, msgs(tm("a2", 2)), msgs(tm("b2", 2))),
			want:    []string{`INBOX: forget a1`}},
		{name: "deleted on B while flagged on A: the deletion wins, a conflict",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
				msgs(tm("a1", 1, mail.FlagFlagged), tm("a2", 2)), msgs(tm("b2", 2))),
			want: []string{`INBOX: delete on A a1 conflict=true`}},
		{name: "an incomplete listing deletes nothing",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
				msgs(tm("a1", 1), tm("a2", 2)), msgs(tm("b2", 2))),
			edit: untrustedB("the connection was cut while listing")},
		{name: "an incomplete listing merges flags and copies from it, not into it",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``)},
				msgs(tm("a1", 1, mail.FlagSeen), tm("a3", 3)), msgs(tm("b1", 1), tm("b4", 4))),
			edit: untrustedB("cut"),
			want: []string{`INBOX: copy b4 B>A []`, `INBOX: flags a1=b1 base [\Seen] A[]-[] B[\Seen]-[]`}},
		{name: "a side whose identity does not match: merged as a first sync, nothing deleted, no duplicates",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
				msgs(tm("x2", 2), tm("x3", 3)), msgs(tm("b1", 1), tm("b2", 2))),
			opt:  Options{Sides: [2]SideInfo{{Untrusted: "its marker file does not match the state"}, {}}},
			want: []string{`INBOX: forget a1`, `INBOX: forget a2`, `INBOX: pair x2=b2 []`, `INBOX: copy x3 A>B []`, `INBOX: copy b1 B>A []`}},
		{name: "an empty folder whose state held mail: deletions held back",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
				nil, msgs(tm("b1", 1), tm("b2", 2))),
			want: []string{`INBOX: hold on B b1`, `INBOX: hold on B b2`, `held back`}},
		{name: "an empty folder whose state held mail, --force: deleted",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
				nil, msgs(tm("b1", 1), tm("b2", 2))),
			opt:  Options{Force: true},
			want: []string{`INBOX: delete on B b1 conflict=false`, `INBOX: delete on B b2 conflict=false`}},
		{name: "out of scope freezes: neither deleted nor copied nor merged",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
				msgs(Msg{ID: "a1", Size: 101, Date: 1e9 + 1, MsgID: "m1", OutOfScope: true, Flags: []mail.Flag{mail.FlagSeen}},
					Msg{ID: "a3", OutOfScope: true}, tm("a2", 2)),
				msgs(tm("b2", 2))),
		},
		{name: "out of scope on the side that still has it: not deleted",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
				msgs(tm("a2", 2)), msgs(Msg{ID: "b1", OutOfScope: true}, tm("b2", 2)))},
		{name: "first sync: same messages paired, flags the union, duplicates count for count",
			folders: []Folder{{Name: "INBOX", Side: both(
				msgs(tm("a1", 1, mail.FlagSeen), tm("a2", 2), tm("a3", 2), tm("a4", 4)),
				msgs(tm("b1", 1, mail.FlagFlagged), tm("b2", 2), tm("b5", 5)))}},
			// a1=b1 is recorded without a base until the flag writes
			// (TestRunFirstSyncKilledAtEveryStep): then the union.
			want: []string{`INBOX: pair a1=b1 []`, `INBOX: pair a2=b2 []`,
				`INBOX: copy a3 A>B []`, `INBOX: copy a4 A>B []`, `INBOX: copy b5 B>A []`,
				`INBOX: flags a1=b1 base [\Flagged \Seen] A[\Flagged]-[] B[\Seen]-[]`}},
		{name: "first sync: no Message-ID, paired by content hash",
			folders: []Folder{{Name: "INBOX", Side: both(
				msgs(Msg{ID: "a1", Size: 10, Content: "h1"}, Msg{ID: "a2", Size: 10, Content: "h2"}),
				msgs(Msg{ID: "b1", Size: 12, Content: "h1"}))}},
			want: []string{`INBOX: pair a1=b1 []`, `INBOX: copy a2 A>B []`}},
		{name: "a record missing B's id is forgotten and its messages paired again",
			folders: inbox([]state.Message{{Src: "a1", Size: 101, Date: 1e9 + 1, MsgID: "m1"}}, msgs(tm("a1", 1)), msgs(tm("b1", 1))),
			want:    []string{`INBOX: forget a1`, `INBOX: pair a1=b1 []`}},
		{name: "UIDVALIDITY change on A: records dropped, paired by content, nothing deleted or copied",
			folders: inbox([]state.Message{tr("a1", "b1", 1, `\Seen`), tr("a2", "b2", 2, ``), tr("a3", "b3", 3, ``)},
				msgs(tm("x1", 1, mail.FlagSeen), tm("x2", 2)), msgs(tm("b1", 1, mail.FlagSeen), tm("b2", 2), tm("b3", 3))),
			edit: func(f []Folder) { f[0].Side[A].IDsReset = true },
			want: []string{`INBOX: forget a1`, `INBOX: forget a2`, `INBOX: forget a3`,
				`INBOX: pair x1=b1 [\Seen]`, `INBOX: pair x2=b2 []`, `INBOX: copy b3 B>A []`}},
		{name: "--no-delete keeps every deletion back without the guard's exit",
			folders: inbox([]state.Message{tr("a1", "b1", 1, ``)}, msgs(tm("a1", 1)), nil),
			opt:     Options{NoDelete: true},
			want:    []string{`INBOX: hold on A a1`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.edit != nil {
				c.edit(c.folders)
			}
			got := describePlan(MakePlan(c.folders, c.opt))
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestPlanFolders(t *testing.T) {
	for _, c := range []struct {
		name    string
		folders []Folder
		opt     Options
		want    []string
	}{
		{name: "a folder new on A is created on B and filled",
			folders: []Folder{{Name: "Work", Side: [2]Listing{{Exists: true, Msgs: msgs(tm("a1", 1))}, {}}}},
			want:    []string{`Work: create on B`, `Work: copy a1 A>B []`}},
		{name: "a known folder vanished from B: a warning, nothing deleted or copied",
			folders: []Folder{{Name: "Work", Known: true, Base: []state.Message{tr("a1", "b1", 1, ``)},
				Side: [2]Listing{{Exists: true, Msgs: msgs(tm("a1", 1), tm("a2", 2))}, {}}}},
			want: []string{`Work: skip`}},
		{name: "a known folder missing from a side the state does not know is created again, not skipped",
			folders: []Folder{{Name: "Work", Known: true, Base: []state.Message{tr("a1", "b1", 1, ``)},
				Side: [2]Listing{{Exists: true, Msgs: msgs(tm("a1", 1))}, {}}}},
			opt:  Options{Sides: [2]SideInfo{{}, {Untrusted: "another store"}}},
			want: []string{`Work: create on B`, `Work: forget a1`, `Work: copy a1 A>B []`}},
		{name: "a known folder gone from both sides is forgotten",
			folders: []Folder{{Name: "Work", Known: true, Base: []state.Message{tr("a1", "b1", 1, ``)}}},
			want:    []string{`Work: forget folder`}},
		{name: "moved on A between folders (same Message-ID, size, date): moved on B, no copy",
			folders: []Folder{
				{Name: "INBOX", Known: true, Base: []state.Message{tr("a1", "b1", 1, `\Seen`)}, Side: both(nil, msgs(tm("b1", 1, mail.FlagSeen, mail.FlagFlagged)))},
				{Name: "Old", Known: true, Side: both(msgs(tm("a9", 1, mail.FlagSeen)), nil)}},
			want: []string{`Old: move on B b1 from INBOX (moved a9) set [[\Flagged \Seen] []]`}},
		{name: "moved on B, a Maildir (same base name): moved on A",
			folders: []Folder{
				{Name: "INBOX", Known: true, Base: []state.Message{tr("a1", "f1", 1, ``)}, Side: both(msgs(tm("a1", 1)), nil)},
				{Name: "Old", Known: true, Side: both(nil, msgs(Msg{ID: "f1", Size: 999}))}},
			opt:  Options{Sides: [2]SideInfo{{}, {StableIDs: true}}},
			want: []string{`Old: move on A a1 from INBOX (moved f1) set [[] []]`}},
		{name: "moved into a folder new on that side: created, then moved",
			folders: []Folder{
				{Name: "INBOX", Known: true, Base: []state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
					Side: both(msgs(tm("a2", 2)), msgs(tm("b1", 1), tm("b2", 2)))},
				{Name: "New", Side: [2]Listing{{Exists: true, Msgs: msgs(tm("a7", 1))}, {}}}},
			want: []string{`New: create on B`, `New: move on B b1 from INBOX (moved a7) set [[] []]`}},
		{name: "an ambiguous move (two alike) is a deletion and a copy",
			folders: []Folder{
				{Name: "INBOX", Known: true, Base: []state.Message{tr("a1", "b1", 1, ``), tr("a2", "b2", 2, ``)},
					Side: both(msgs(tm("a2", 2)), msgs(tm("b1", 1), tm("b2", 2)))},
				{Name: "Old", Known: true, Side: both(msgs(tm("a8", 1), tm("a9", 1)), nil)}},
			want: []string{`INBOX: delete on B b1 conflict=false`, `Old: copy a8 A>B []`, `Old: copy a9 A>B []`}},
		{name: "moved on A and deleted on B: forgotten, and the moved one copied",
			folders: []Folder{
				{Name: "INBOX", Known: true, Base: []state.Message{tr("a1", "b1", 1, ``)}, Side: both(nil, nil)},
				{Name: "Old", Known: true, Side: both(msgs(tm("a9", 1)), nil)}},
			want: []string{`INBOX: forget a1`, `Old: copy a9 A>B []`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := describePlan(MakePlan(c.folders, c.opt))
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// guardFolder is a known folder of n messages of which side B deleted the
// first del.
func guardFolder(name string, n, del int) Folder {
	f := Folder{Name: name, Known: true, Side: both(nil, nil)}
	for i := 0; i < n; i++ {
		a, b := fmt.Sprintf("%s-a%d", name, i), fmt.Sprintf("%s-b%d", name, i)
		f.Base = append(f.Base, tr(a, b, i, ``))
		f.Side[A].Msgs = append(f.Side[A].Msgs, tm(a, i))
		if i >= del {
			f.Side[B].Msgs = append(f.Side[B].Msgs, tm(b, i))
		}
	}
	return f
}

func TestGuard(t *testing.T) {
	for _, c := range []struct {
		name     string
		folders  []Folder
		opt      Options
		deleted  int
		held     int
		heldBack bool
	}{
		{name: "60% of a folder (> 50% and > 20): held back",
			folders: []Folder{guardFolder("INBOX", 50, 30), guardFolder("Big", 500, 0)}, held: 30, heldBack: true},
		{name: "60% of a folder, --force: applied",
			folders: []Folder{guardFolder("INBOX", 50, 30), guardFolder("Big", 500, 0)}, opt: Options{Force: true}, deleted: 30},
		{name: "60% but only 18 messages: applied",
			folders: []Folder{guardFolder("INBOX", 30, 18), guardFolder("Big", 500, 0)}, deleted: 18},
		{name: "--max-delete 0.8 lets 60% through",
			folders: []Folder{guardFolder("INBOX", 50, 30), guardFolder("Big", 500, 0)}, opt: Options{MaxDelete: 0.8}, deleted: 30},
		{name: "30% of every folder: more than 25% of the side: held back",
			folders: []Folder{guardFolder("A1", 40, 12), guardFolder("A2", 40, 12), guardFolder("A3", 40, 12)}, held: 36, heldBack: true},
		{name: "30% of a small account (20 or fewer): applied",
			folders: []Folder{guardFolder("A1", 10, 3), guardFolder("A2", 10, 3)}, deleted: 6},
		{name: "20% of every folder: applied",
			folders: []Folder{guardFolder("A1", 40, 8), guardFolder("A2", 40, 8), guardFolder("A3", 40, 8)}, deleted: 24},
		{name: "more than half of the paired folders vanished from B: B's deletions held",
			folders: []Folder{guardFolder("A1", 40, 2), {Name: "A2", Known: true, Side: [2]Listing{{Exists: true}, {}}},
				{Name: "A3", Known: true, Side: [2]Listing{{Exists: true}, {}}}}, held: 2, heldBack: true},
		{name: "--no-delete: held, no exit 10",
			folders: []Folder{guardFolder("A1", 40, 2)}, opt: Options{NoDelete: true}, held: 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := MakePlan(c.folders, c.opt)
			deleted, held := 0, 0
			for _, fp := range p.Folders {
				deleted += len(fp.Deletes)
				held += len(fp.Held)
				if len(fp.Copies) > 0 {
					t.Errorf("%s: a deletion was copied back: %+v", fp.Name, fp.Copies)
				}
			}
			if deleted != c.deleted || held != c.held || p.HeldBack != c.heldBack {
				t.Errorf("deleted %d, held %d, held back %v; want %d, %d, %v (warnings %q)",
					deleted, held, p.HeldBack, c.deleted, c.held, c.heldBack, p.Warnings)
			}
		})
	}
}
