package twoway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/mailferry/mailferry/sync/state"
)

// writeTok writes token tok's message into folder of the Maildir at root,
// as a mail client delivers it.
func writeTok(t *testing.T, root, folder string, tok int) {
	t.Helper()
	dir := root
	if folder != "INBOX" {
		dir = filepath.Join(root, "."+folder)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cur", fmt.Sprintf("%d.tok:2,", tok)), tokenBody(tok), 0o600); err != nil {
		t.Fatal(err)
	}
}

// twoMaildirs is a pair of Maildirs synced with --remove-folders, with the
// state in dir; run runs one sync with the step hook kill (nil: none) and
// returns the state it used, unclosed when the run was killed (a killed
// process flushes nothing).
type twoMaildirs struct {
	t          *testing.T
	root, q    [2]string
	dir        string
	removeDirs bool
}

func newTwoMaildirs(t *testing.T) *twoMaildirs {
	base := t.TempDir()
	m := &twoMaildirs{t: t, dir: filepath.Join(base, "state"), removeDirs: true}
	for s := range m.root {
		m.root[s], m.q[s] = filepath.Join(base, Side(s).String()), filepath.Join(base, "q"+Side(s).String())
	}
	return m
}

func (m *twoMaildirs) run(kill func(string) error) (*Result, *state.State, error) {
	m.t.Helper()
	var stores [2]*Store
	for s := range stores {
		st, done := maildirSide(m.t, m.root[s], m.q[s])
		defer done()
		stores[s] = st
	}
	st, err := state.Open(m.dir, "maildir:a", "maildir:b", state.Options{})
	if err != nil {
		m.t.Fatal(err)
	}
	res, err := Run(context.Background(), stores, st, RunOptions{Plan: Options{RemoveFolders: m.removeDirs}, step: kill})
	if !errors.Is(err, errStep) {
		if cerr := st.Close(); cerr != nil {
			m.t.Fatal(cerr)
		}
	}
	return res, st, err
}

// seedFolders is the scenario's first state: five folders on A, synced
// to B; then A renames Work to Projects and deletes Old, A gets new mail
// in Keep while B deletes Keep.
func seedFolders(t *testing.T) *twoMaildirs {
	m := newTwoMaildirs(t)
	for folder, toks := range map[string][]int{"INBOX": {1}, "Work": {2, 3, 4}, "Old": {5, 6}, "Keep": {7}, "Extra": {8}} {
		for _, tok := range toks {
			writeTok(t, m.root[A], folder, tok)
		}
	}
	if _, _, err := m.run(nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(m.root[A], ".Work"), filepath.Join(m.root[A], ".Projects")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(m.root[A], ".Old"), filepath.Join(m.root[B], ".Keep")} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	writeTok(t, m.root[A], "Keep", 9)
	return m
}

var afterFolderChanges = map[string]string{"INBOX": "1:", "Projects": "2:,3:,4:", "Keep": "7:,9:", "Extra": "8:"}

func (m *twoMaildirs) check(when string, want map[string]string) {
	m.t.Helper()
	for s := range m.root {
		if got := describeMaildir(m.t, m.root[s]); !reflect.DeepEqual(got, want) {
			m.t.Fatalf("%s: side %s holds %v, want %v", when, Side(s), got, want)
		}
	}
}

// TestRunFolderActions: a folder renamed on A is renamed on B (nothing
// copied or deleted), one deleted on A is deleted on B (into the
// quarantine), one deleted on B while A got new mail in it is recreated on
// B with everything; a sync right after changes nothing. Without
// --remove-folders the deleted folder stays on B.
func TestRunFolderActions(t *testing.T) {
	m := seedFolders(t)
	m.removeDirs = false
	res, _, err := m.run(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := describeMaildir(t, m.root[B]); got["Old"] != "5:,6:" || got["Projects"] != "2:,3:,4:" || got["Work"] != "" {
		t.Fatalf("without --remove-folders B holds %v, want Old kept and Work renamed", got)
	}
	if res.Side[B].FoldersRenamed != 1 || res.Side[B].Copied != 0 || res.Side[B].Deleted != 0 {
		t.Errorf("without --remove-folders: counts %+v", res.Side)
	}

	m = seedFolders(t)
	res, _, err = m.run(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.check("sync", afterFolderChanges)
	want := Counts{Copied: 2, Deleted: 2, FoldersCreated: 1, FoldersRenamed: 1, FoldersRemoved: 1}
	if res.Side[B] != want || res.Side[A] != (Counts{}) || res.SideConflicts != [2]int{0, 1} {
		t.Errorf("counts %+v conflicts %v, want B %+v and one conflict on B", res.Side, res.SideConflicts, want)
	}
	if q, _ := filepath.Glob(filepath.Join(m.q[B], "*", ".Old.*", "*", "*")); len(q) != 2 {
		t.Errorf("B's quarantine holds %q, want Old's two messages", q)
	}
	if res, _, _ := m.run(nil); res.Side != [2]Counts{} {
		t.Errorf("a sync right after did %+v (warnings %q)", res.Side, res.Warnings)
	}
}

// TestRunFolderActionsConvergeAfterKill kills the run of TestRunFolderActions
// at every durable step: the rerun converges, nothing lost, nothing twice,
// no deletion held back.
func TestRunFolderActionsConvergeAfterKill(t *testing.T) {
	for k := 0; ; k++ {
		m := seedFolders(t)
		steps, crashed := 0, false
		_, st, err := m.run(func(string) error {
			if steps++; steps > k {
				crashed = true
				return errStep
			}
			return nil
		})
		if crashed != errors.Is(err, errStep) {
			t.Fatalf("kill at step %d: run returned %v", k, err)
		}
		if crashed { // what a kill leaves: the state's files as they are now
			after := filepath.Join(t.TempDir(), "state")
			if err := os.CopyFS(after, os.DirFS(m.dir)); err != nil {
				t.Fatal(err)
			}
			_ = st.Close()
			m.dir = after
			if _, _, err := m.run(nil); err != nil {
				t.Fatalf("kill at step %d: rerun: %v", k, err)
			}
		}
		m.check(fmt.Sprint("rerun after a kill at step ", k), afterFolderChanges)
		if res, _, _ := m.run(nil); res.Side != [2]Counts{} {
			t.Fatalf("kill at step %d: a sync after the rerun did %+v (warnings %q)", k, res.Side, res.Warnings)
		}
		if !crashed {
			if k < 5 {
				t.Fatalf("only %d steps: the hook is not called", k)
			}
			t.Logf("killed at each of %d steps", k)
			return
		}
	}
}

// RenameMailbox renames as memStore does; the folder keeps its MAILBOXID.
func (d *deltaStore) RenameMailbox(ctx context.Context, from, to string) error {
	if err := d.memStore.RenameMailbox(ctx, from, to); err != nil {
		return err
	}
	d.dmu.Lock()
	defer d.dmu.Unlock()
	if id, ok := d.mailboxIDs[from]; ok {
		d.mailboxIDs[to] = id
		delete(d.mailboxIDs, from)
	}
	return nil
}

// TestRunRenameByMailboxID: side A's server has MAILBOXIDs (RFC 8474).
// Folder Old is renamed to New on A and 8 of its 10 messages deleted
// there: the rename is followed by the MAILBOXID (renamed on B, the 8
// deleted there, nothing copied). The control, the same without
// MAILBOXIDs, is the >= 90 % rule's answer: New is a new folder (created
// on B, its 2 messages copied again), Old is left on B with a warning.
func TestRunRenameByMailboxID(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ids          bool
		renamed      int
		copied, gone int // on B
	}{
		{"MAILBOXID", true, 1, 0, 8},
		{"no MAILBOXID (control)", false, 0, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ma, mb := newMemStore("a", "INBOX", "Old"), newMemStore("b", "INBOX")
			for tok := 1; tok <= 10; tok++ {
				ma.add("Old", tok)
			}
			a, b := newDeltaStore(ma), newDeltaStore(mb)
			if tc.ids {
				a.mailboxIDs = map[string]string{"INBOX": "F0", "Old": "F1"}
			}
			dir := t.TempDir()
			mustSyncDelta(t, a, b, dir, RunOptions{})
			mustDo(t, a.RenameMailbox(context.Background(), "Old", "New"))
			for tok := 3; tok <= 10; tok++ {
				ma.removeTok("New", tok)
			}
			res := mustSyncDelta(t, a, b, dir, RunOptions{Plan: Options{Force: true}})
			if res.Side[B].FoldersRenamed != tc.renamed || res.Side[B].Copied != tc.copied || res.Side[B].Deleted != tc.gone || res.Side[A].Copied != 0 {
				t.Fatalf("counts %+v", res.Side)
			}
			want := map[string]string{"INBOX": "", "New": "1:,2:"}
			if !tc.ids {
				want["Old"] = "10:,1:,2:,3:,4:,5:,6:,7:,8:,9:"
			}
			if got := mb.describe(); !reflect.DeepEqual(got, want) {
				t.Fatalf("B holds %v, want %v", got, want)
			}
		})
	}
}
