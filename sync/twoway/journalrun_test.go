package twoway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestJournalRunWide covers the crash windows of the run-wide journal: the
// run journals every folder's changes in one write before its first change
// (journalAll), keeps a folder's last copy records in memory until the
// folder's flush, and empties the journal once, at the end of the run. A
// run is killed in each window (the state's files copied as the kill left
// them), another client changes a store, and the rerun must end as the
// journal says. The negative control reruns with the journal deleted, as if
// the changes had been made before their intents were durable: it must end
// differently, except for the case that checks that intents already
// recorded are settled again harmlessly (control: nil).
func TestJournalRunWide(t *testing.T) {
	type outcome struct {
		b    map[string]string // what side B holds after the rerun
		held bool              // the rerun returns ErrHeldBack
	}
	cases := []struct {
		name          string
		setup         func() (a, b *memStore)
		change, after func(a, b *memStore)
		killed        RunOptions
		kill          string
		want          outcome
		control       *outcome
	}{{
		// A copy made durable by the folder's last commit, its record not
		// flushed (it waits for the folder's flush), then its original
		// deleted: the rerun records the copy from the journal, and the
		// deletion reaches it.
		name: "copy recorded at the folder's flush",
		setup: func() (a, b *memStore) {
			a, b = newMemStore("a", "INBOX"), newMemStore("b", "INBOX")
			a.add("INBOX", 1)
			return a, b
		},
		change:  func(a, b *memStore) { a.add("INBOX", 11) },
		kill:    "flush INBOX",
		after:   func(a, b *memStore) { a.removeTok("INBOX", 11) },
		want:    outcome{b: map[string]string{"INBOX": "1:"}},
		control: &outcome{b: map[string]string{"INBOX": "11:,1:"}},
	}, {
		// A forced mass deletion in INBOX, killed in Archive (applied
		// first): INBOX's deletions were journaled with Archive's copy
		// before either was made, so the rerun without --force completes
		// them instead of holding them back.
		name: "a later folder's forced deletion",
		setup: func() (a, b *memStore) {
			a, b = newMemStore("a", "Archive", "INBOX"), newMemStore("b", "Archive", "INBOX")
			for tok := 1; tok <= 40; tok++ {
				a.add("INBOX", tok)
			}
			return a, b
		},
		change: func(a, b *memStore) {
			a.add("Archive", 50)
			for tok := 1; tok <= 25; tok++ {
				a.removeTok("INBOX", tok)
			}
		},
		killed:  RunOptions{Plan: Options{Force: true}},
		kill:    "commit",
		want:    outcome{b: map[string]string{"Archive": "50:", "INBOX": tokens(26, 40)}},
		control: &outcome{b: map[string]string{"Archive": "50:", "INBOX": tokens(1, 40)}, held: true},
	}, {
		// Archive applied and flushed, the kill in INBOX: Archive's copy
		// intent is still in the journal, and settling it again finds it
		// recorded. B then deletes the copy: the deletion reaches A, the
		// copy is not recorded a second time nor copied back.
		name: "an applied folder's intents settled again",
		setup: func() (a, b *memStore) {
			a, b = newMemStore("a", "Archive", "INBOX"), newMemStore("b", "Archive", "INBOX")
			a.add("Archive", 49)
			a.add("INBOX", 1)
			return a, b
		},
		change: func(a, b *memStore) {
			a.add("Archive", 50)
			a.add("INBOX", 11)
		},
		kill:  "flush INBOX",
		after: func(a, b *memStore) { b.removeTok("Archive", 50) },
		want:  outcome{b: map[string]string{"Archive": "49:", "INBOX": "11:,1:"}},
	}}
	for _, tc := range cases {
		for _, bare := range []bool{false, true} {
			if bare && tc.control == nil {
				continue
			}
			name := tc.name
			if bare {
				name += " without the journal"
			}
			t.Run(name, func(t *testing.T) {
				a, b := tc.setup()
				dir := t.TempDir()
				if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
					t.Fatal(err)
				}
				tc.change(a, b)
				after := runKilledOn(t, a, b, dir, tc.killed, tc.kill)
				if bare {
					if err := os.Remove(filepath.Join(after, JournalName)); err != nil {
						t.Fatal(err)
					}
				}
				if tc.after != nil {
					tc.after(a, b)
				}
				_, err := syncMem(t, a, b, after, RunOptions{})
				want := tc.want
				if bare {
					want = *tc.control
				}
				if got := errors.Is(err, ErrHeldBack); got != want.held || err != nil && !got {
					t.Fatalf("rerun: %v, want held back %v", err, want.held)
				}
				if got := b.describe(); !reflect.DeepEqual(got, want.b) {
					t.Fatalf("B holds %v, want %v", got, want.b)
				}
				if !bare {
					if got := a.describe(); !reflect.DeepEqual(got, want.b) {
						t.Fatalf("A holds %v, want what B holds, %v", got, want.b)
					}
				}
			})
		}
	}
}

// runKilledOn runs a sync with opt stopped before its first step whose
// name starts with prefix, as a kill -9 there would, and returns a copy of
// the state's files as the kill left them (what was not flushed is lost).
func runKilledOn(t *testing.T, a, b *memStore, dir string, opt RunOptions, prefix string) string {
	t.Helper()
	opt.step = killOn(prefix)
	st := openState(t, dir, false)
	_, err := Run(context.Background(), memStores(a, b), st, opt)
	if !errors.Is(err, errStep) {
		t.Fatalf("the run was not killed at %q: %v", prefix, err)
	}
	after := copyDir(t, dir)
	_ = st.Abandon()
	return after
}
