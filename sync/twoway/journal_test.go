package twoway

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// killOn stops a run before its first step whose name starts with prefix,
// as a kill -9 there would.
func killOn(prefix string) func(string) error {
	return func(what string) error {
		if strings.HasPrefix(what, prefix) {
			return errStep
		}
		return nil
	}
}

// TestJournalSettles kills a run right after it journaled a change and
// before (or while) it made it, changes the stores as another client
// would, and reruns: the journal decides the outcome. Each case runs again
// with the journal deleted before the rerun (the negative control: what
// the next run does without it), which must end differently.
func TestJournalSettles(t *testing.T) {
	type outcome struct {
		stores  map[string]string
		heldErr bool
	}
	cases := []struct {
		name string
		// setup makes the first sync's stores and the changes the killed
		// run makes; after runs between the kill and the rerun.
		setup      func() (a, b *memStore)
		change     func(a, b *memStore)
		killed     RunOptions
		kill       string
		after      func(a, b *memStore)
		rerun      RunOptions
		want, bare outcome
	}{{
		// A copy stored on B, the kill before its record, then the
		// original deleted on A: the copy goes too (not copied back).
		name: "copy then original deleted",
		setup: func() (a, b *memStore) {
			a, b = newMemStore("a", "INBOX"), newMemStore("b", "INBOX")
			a.add("INBOX", 1)
			return a, b
		},
		change: func(a, b *memStore) { a.add("INBOX", 11) },
		kill:   "commit",
		after:  func(a, b *memStore) { a.removeTok("INBOX", 11) },
		want:   outcome{stores: map[string]string{"INBOX": "1:"}},
		bare:   outcome{stores: map[string]string{"INBOX": "11:,1:"}},
	}, {
		// A forced mass deletion killed before it ran: the rerun without
		// --force completes it rather than holding it back again.
		name: "forced deletion",
		setup: func() (a, b *memStore) {
			a, b = newMemStore("a", "INBOX"), newMemStore("b", "INBOX")
			for tok := 1; tok <= 40; tok++ {
				a.add("INBOX", tok)
			}
			return a, b
		},
		change: func(a, b *memStore) {
			for tok := 1; tok <= 25; tok++ {
				a.removeTok("INBOX", tok)
			}
		},
		killed: RunOptions{Plan: Options{Force: true}},
		kill:   "remove",
		want:   outcome{stores: map[string]string{"INBOX": tokens(26, 40)}},
		bare:   outcome{stores: map[string]string{"INBOX": tokens(1, 40)}, heldErr: true},
	}, {
		// A move done by a copy within B, killed before the original was
		// removed, rerun with --no-delete: the move is finished, never
		// left copied.
		name: "move by copy under --no-delete",
		setup: func() (a, b *memStore) {
			a, b = newMemStore("a", "INBOX", "Archive"), newMemStore("b", "INBOX", "Archive")
			a.add("INBOX", 8)
			return a, b
		},
		change: func(a, b *memStore) { a.moveTo("INBOX", a.find("INBOX", 8), "Archive") },
		killed: RunOptions{Plan: Options{NoDelete: true}},
		kill:   "move: remove the original",
		rerun:  RunOptions{Plan: Options{NoDelete: true}},
		want:   outcome{stores: map[string]string{"INBOX": "", "Archive": "8:"}},
		bare:   outcome{stores: map[string]string{"INBOX": "8:", "Archive": "8:"}},
	}}
	for _, tc := range cases {
		for _, bare := range []bool{false, true} {
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
				killed := tc.killed
				killed.step = killOn(tc.kill)
				if _, err := syncMem(t, a, b, dir, killed); !errors.Is(err, errStep) {
					t.Fatalf("the run was not killed at %q: %v", tc.kill, err)
				}
				if bare {
					if err := os.Remove(filepath.Join(dir, JournalName)); err != nil {
						t.Fatal(err)
					}
				}
				if tc.after != nil {
					tc.after(a, b)
				}
				_, err := syncMem(t, a, b, dir, tc.rerun)
				want := tc.want
				if bare {
					want = tc.bare
				}
				if got := errors.Is(err, ErrHeldBack); got != want.heldErr || err != nil && !got {
					t.Fatalf("rerun: %v, want held back %v", err, want.heldErr)
				}
				if got := b.describe(); !reflect.DeepEqual(got, want.stores) {
					t.Fatalf("B holds %v, want %v", got, want.stores)
				}
			})
		}
	}
}

// tokens describes tokens from..to without flags, as memStore.describe
// sorts them.
func tokens(from, to int) string {
	s := newMemStore("x", "INBOX")
	for tok := from; tok <= to; tok++ {
		s.add("INBOX", tok)
	}
	return s.describe()["INBOX"]
}

func TestJournalFile(t *testing.T) {
	dir := t.TempDir()
	j, pending, err := openJournal(dir)
	if err != nil || pending != nil {
		t.Fatalf("openJournal of nothing = %v, %v", pending, err)
	}
	ins := []intent{
		{Op: opCopy, Folder: "INBOX", On: B, ID: "a1"},
		{Op: opDelete, Folder: "Tab\there", On: A, ID: "7.3", Flags: []mail.Flag{mail.FlagSeen}},
	}
	if err := j.write(ins); err != nil {
		t.Fatal(err)
	}
	j.close()
	path := filepath.Join(dir, JournalName)
	whole, _ := os.ReadFile(path)
	first := strings.Index(string(whole), "\n") + 1
	for _, tc := range []struct {
		name    string
		content string
		want    int // intents read; -1: refused
	}{
		{"whole", string(whole), 2},
		{"torn last line", string(whole[:len(whole)-3]), 1},
		{"zeros after a crash", string(whole[:first]) + strings.Repeat("\x00", 40), 1},
		{"bad line before the last", string(whole[:first]) + "00000000\t{}\n" + string(whole[first:]), -1},
		{"bit flip", strings.Replace(string(whole), "INBOX", "INBOy", 1), -1},
		{"empty", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, got, err := openJournal(dir)
			switch {
			case tc.want < 0 && err == nil:
				t.Fatalf("openJournal = %d intents, want refused", len(got))
			case tc.want >= 0 && (err != nil || len(got) != tc.want):
				t.Fatalf("openJournal = %d intents, %v; want %d", len(got), err, tc.want)
			case tc.want == 2 && !reflect.DeepEqual(got, ins):
				t.Fatalf("read back %+v, want %+v", got, ins)
			}
		})
	}
	j, _, _ = openJournal(dir)
	if err := j.clear(); err != nil {
		t.Fatal(err)
	}
	if _, got, err := openJournal(dir); err != nil || len(got) != 0 {
		t.Fatalf("after clear: %v, %v", got, err)
	}
}

// alteringStore is a memStore that, as some servers do on APPEND, changes
// what it stores (here: a header added), so a copy's size is not its
// original's.
type alteringStore struct{ *memStore }

func (s alteringStore) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	return s.memStore.Put(ctx, env, io.MultiReader(strings.NewReader("X-Altered: yes\r\n"), body))
}

// TestJournalSettlesAlteredCopy: a copy the server altered on APPEND,
// killed before its record, then its original deleted: the rerun finds the
// copy by its Message-ID alone and deletes it; without the journal (the
// negative control) it is copied back.
func TestJournalSettlesAlteredCopy(t *testing.T) {
	for _, bare := range []bool{false, true} {
		a, b := newMemStore("a", "INBOX"), newMemStore("b", "INBOX")
		a.add("INBOX", 1)
		dir := t.TempDir()
		sync := func(opt RunOptions) error {
			st := openState(t, dir, false)
			defer st.Close()
			_, err := Run(context.Background(), [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, {Source: b, Sink: alteringStore{b}, Identity: "mem:b"}}, st, opt)
			return err
		}
		mustDo(t, sync(RunOptions{}))
		a.add("INBOX", 11)
		if err := sync(RunOptions{step: killOn("commit")}); !errors.Is(err, errStep) {
			t.Fatalf("not killed: %v", err)
		}
		if bare {
			mustDo(t, os.Remove(filepath.Join(dir, JournalName)))
		}
		a.removeTok("INBOX", 11)
		mustDo(t, sync(RunOptions{}))
		got, want := a.describe()["INBOX"], "1:"
		if bare {
			want = "11:,1:"
		}
		if gotB := b.describe()["INBOX"]; got != want || gotB != want {
			t.Fatalf("without the journal %v: A holds %s, B %s, want %s", bare, got, gotB, want)
		}
	}
}
