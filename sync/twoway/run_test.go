package twoway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// openState opens (or creates) the state in dir for the memory stores.
func openState(t *testing.T, dir string, readOnly bool) *state.State {
	t.Helper()
	st, err := state.Open(dir, "mem:a", "mem:b", state.Options{ReadOnly: readOnly})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func memStores(a, b *memStore) [2]*Store {
	return [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, {Source: b, Sink: b, Identity: "mem:b"}}
}

// syncMem runs one whole sync of a and b with the state in dir.
func syncMem(t *testing.T, a, b *memStore, dir string, opt RunOptions) (*Result, error) {
	t.Helper()
	st := openState(t, dir, opt.DryRun)
	defer st.Close()
	return Run(context.Background(), memStores(a, b), st, opt)
}

// The scenario of the applier's tests: a first sync, then changes on both
// sides of every kind.
func firstSyncStores() (a, b *memStore) {
	a, b = newMemStore("a", "INBOX", "Archive"), newMemStore("b", "INBOX")
	a.add("INBOX", 1, mail.FlagSeen)
	for tok := 2; tok <= 5; tok++ {
		a.add("INBOX", tok)
	}
	a.add("Archive", 6)
	b.add("INBOX", 1, mail.FlagFlagged) // the same message on both sides
	b.add("INBOX", 7)
	b.add("INBOX", 8)
	return a, b
}

var afterFirstSync = map[string]string{
	"INBOX":   `1:\Flagged \Seen,2:,3:,4:,5:,7:,8:`,
	"Archive": `6:`,
}

func changeBothSides(a, b *memStore) {
	a.add("INBOX", 11)                                  // new on A
	b.add("INBOX", 12, mail.FlagSeen)                   // new on B
	a.setFlagsOf("INBOX", 2, mail.FlagSeen)             // flag set on A
	b.setFlagsOf("INBOX", 3, mail.FlagAnswered)         // flag set on B
	a.setFlagsOf("INBOX", 1, mail.FlagSeen)             // \Flagged cleared on A
	b.setFlagsOf("INBOX", 1, mail.FlagFlagged, "$Work") // \Seen cleared, $Work set on B
	a.removeTok("INBOX", 4)                             // deleted on A
	b.removeTok("INBOX", 5)                             // deleted on B
	a.setFlagsOf("INBOX", 7, mail.FlagFlagged)          // flagged on A ...
	b.removeTok("INBOX", 7)                             // ... deleted on B: a conflict, the deletion wins
	a.moveTo("INBOX", a.find("INBOX", 8), "Archive")    // moved on A
	b.moveTo("Archive", b.find("Archive", 6), "INBOX")  // moved on B
}

var afterChanges = map[string]string{
	"INBOX":   `11:,12:\Seen,1:$Work,2:\Seen,3:\Answered,6:`,
	"Archive": `8:`,
}

func TestRunSyncsBothWays(t *testing.T) {
	a, b := firstSyncStores()
	dir := t.TempDir()
	res, err := syncMem(t, a, b, dir, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkStores(t, "first sync", a, b, afterFirstSync)
	if res.Side[B].Copied != 5 || res.Side[A].Copied != 2 {
		t.Errorf("first sync copied %d to A and %d to B, want 2 and 5", res.Side[A].Copied, res.Side[B].Copied)
	}
	changeBothSides(a, b)
	res, err = syncMem(t, a, b, dir, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkStores(t, "second sync", a, b, afterChanges)
	want := [2]Counts{{Copied: 1, Flagged: 2, Moved: 1, Deleted: 2}, {Copied: 1, Flagged: 2, Moved: 1, Deleted: 1}}
	if res.Side != want || res.Conflicts != 1 {
		t.Errorf("counts %+v conflicts %d, want %+v and 1", res.Side, res.Conflicts, want)
	}
	checkNoop(t, a, b, dir)
}

func checkStores(t *testing.T, when string, a, b *memStore, want map[string]string) {
	t.Helper()
	for _, s := range []*memStore{a, b} {
		if got := s.describe(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: store %s holds\n%v\nwant\n%v", when, s.prefix, got, want)
		}
	}
}

// checkNoop: a sync right after changes nothing.
func checkNoop(t *testing.T, a, b *memStore, dir string) {
	t.Helper()
	res, err := syncMem(t, a, b, dir, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Side != [2]Counts{} {
		t.Fatalf("a sync right after still did %+v", res.Side)
	}
}

func TestRunDryRunChangesNothing(t *testing.T) {
	a, b := firstSyncStores()
	dir := t.TempDir()
	if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	changeBothSides(a, b)
	beforeA, beforeB := a.describe(), b.describe()
	res, err := syncMem(t, a, b, dir, RunOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.describe(), beforeA) || !reflect.DeepEqual(b.describe(), beforeB) {
		t.Fatal("a dry run changed a store")
	}
	if n := len(describePlan(res.Plan)); n == 0 {
		t.Fatal("a dry run planned nothing")
	}
	if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	checkStores(t, "after the dry run, a real one", a, b, afterChanges)
}

// TestRunConvergesAfterKillAtEveryStep stops the second sync before each of
// its durable steps in turn (a kill -9: what the state had not flushed is
// lost), then reruns, itself stopped before each of its own steps (the
// settling of the journal included) and run again: every time, both stores
// end as the changes imply, nothing twice, nothing lost, nothing deleted
// comes back, and a further sync changes nothing.
func TestRunConvergesAfterKillAtEveryStep(t *testing.T) {
	for k := 0; ; k++ {
		a, b := firstSyncStores()
		dir := t.TempDir()
		if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
			t.Fatal(err)
		}
		changeBothSides(a, b)
		after, crashed := runKilledAt(t, a, b, dir, k)
		if !crashed {
			if k < 8 {
				t.Fatalf("only %d steps: the hook is not called", k)
			}
			t.Logf("killed at each of %d steps", k)
			return
		}
		for j := 0; ; j++ {
			a2, b2 := a.clone(), b.clone()
			again, crashed := runKilledAt(t, a2, b2, copyDir(t, after), j)
			if _, err := syncMem(t, a2, b2, again, RunOptions{}); err != nil {
				t.Fatalf("kill at step %d, then at step %d of the rerun: %v", k, j, err)
			}
			checkStores(t, fmt.Sprintf("kill at step %d, then at step %d of the rerun", k, j), a2, b2, afterChanges)
			checkNoop(t, a2, b2, again)
			if !crashed {
				break
			}
		}
	}
}

// TestRunFirstSyncKilledAtEveryStep: a first sync (copies both ways, and a
// message on both sides with different flags, paired and merged) killed
// before each step converges on the rerun: the flags are the union, not
// read as removed from a base recorded before the flag writes.
func TestRunFirstSyncKilledAtEveryStep(t *testing.T) {
	for k := 0; ; k++ {
		a, b := firstSyncStores()
		after, crashed := runKilledAt(t, a, b, t.TempDir(), k)
		if _, err := syncMem(t, a, b, after, RunOptions{}); err != nil {
			t.Fatalf("kill at step %d: rerun: %v", k, err)
		}
		checkStores(t, fmt.Sprint("rerun after a kill at step ", k), a, b, afterFirstSync)
		checkNoop(t, a, b, after)
		if !crashed {
			return
		}
	}
}

// runKilledAt runs a sync stopped before its step k (if it has so many)
// and returns a copy of the state's files as the kill left them.
func runKilledAt(t *testing.T, a, b *memStore, dir string, k int) (after string, crashed bool) {
	t.Helper()
	steps := 0
	killAt := func(what string) error {
		if steps++; steps > k {
			crashed = true
			return errStep
		}
		return nil
	}
	st := openState(t, dir, false)
	_, err := Run(context.Background(), memStores(a, b), st, RunOptions{step: killAt})
	if crashed != errors.Is(err, errStep) {
		t.Fatalf("kill at step %d: run returned %v", k, err)
	}
	after = copyDir(t, dir)
	st.Close()
	return after, crashed
}

// copyDir copies the files of dir into a new directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "state")
	if err := os.CopyFS(to, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return to
}

func TestRunIncompleteListingDeletesNothing(t *testing.T) {
	a, b := firstSyncStores()
	dir := t.TempDir()
	if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	a.removeTok("INBOX", 2)
	a.removeTok("INBOX", 3)
	a.failList = "INBOX" // A's INBOX listing breaks half way
	res, err := syncMem(t, a, b, dir, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Side[B].Deleted != 0 || len(res.Warnings) == 0 {
		t.Fatalf("deleted %d on B from an incomplete listing of A (warnings %q)", res.Side[B].Deleted, res.Warnings)
	}
	a.failList = ""
	if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := b.describe()["INBOX"]; got != `1:\Flagged \Seen,4:,5:,7:,8:` {
		t.Fatalf("after a complete listing B's INBOX holds %s", got)
	}
}

func TestRunLostStateDuplicatesNothing(t *testing.T) {
	a, b := firstSyncStores()
	if _, err := syncMem(t, a, b, t.TempDir(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	a.noMsgID = true // as a Maildir: the run reads the headers of what no record names
	res, err := syncMem(t, a, b, t.TempDir(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkStores(t, "a sync with a new state", a, b, afterFirstSync)
	if res.Side != [2]Counts{} {
		t.Fatalf("a sync with a lost state did %+v", res.Side)
	}
}

func TestRunMassDeleteHeldBack(t *testing.T) {
	a, b := newMemStore("a", "INBOX"), newMemStore("b", "INBOX")
	for tok := 1; tok <= 40; tok++ {
		a.add("INBOX", tok)
	}
	dir := t.TempDir()
	if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for tok := 1; tok <= 25; tok++ {
		a.removeTok("INBOX", tok)
	}
	a.add("INBOX", 99)
	res, err := syncMem(t, a, b, dir, RunOptions{})
	if !errors.Is(err, ErrHeldBack) || res.Side[B].Held != 25 || res.Side[B].Deleted != 0 || res.Side[B].Copied != 1 {
		t.Fatalf("err %v, counts %+v: want held back 25, the new one copied", err, res.Side)
	}
	if len(b.describe()["INBOX"]) == 0 || res.Side[A].Copied != 0 {
		t.Fatal("a held-back deletion was undone by copying back")
	}
	res, err = syncMem(t, a, b, dir, RunOptions{Plan: Options{Force: true}})
	if err != nil || res.Side[B].Deleted != 25 {
		t.Fatalf("--force: err %v, counts %+v", err, res.Side)
	}
	checkNoop(t, a, b, dir)
}

// TestRunUIDValidityChange: one side's ids are all renumbered (IMAP
// UIDVALIDITY): the folder is merged, nothing is deleted or copied, a flag
// the other side set meanwhile survives, and the next sync is a no-op.
func TestRunUIDValidityChange(t *testing.T) {
	a, b := newMemStore("7.", "INBOX"), newMemStore("b", "INBOX")
	for tok := 1; tok <= 5; tok++ {
		a.add("INBOX", tok)
	}
	dir := t.TempDir()
	if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	a.renumber("INBOX", "8.")
	b.setFlagsOf("INBOX", 2, mail.FlagSeen)
	res, err := syncMem(t, a, b, dir, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"INBOX": `1:,2:\Seen,3:,4:,5:`}
	checkStores(t, "after a UIDVALIDITY change", a, b, want)
	if res.Side[A].Copied+res.Side[B].Copied+res.Side[A].Deleted+res.Side[B].Deleted+res.Side[B].Held != 0 {
		t.Fatalf("a UIDVALIDITY change copied or deleted: %+v", res.Side)
	}
	checkNoop(t, a, b, dir)
}
