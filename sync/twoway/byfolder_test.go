package twoway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	gosync "sync"
	"testing"
	"weak"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// TestListOmitsQuietRecords: after one message of 50 changed flags on
// side A, the listing of the folder holds that message's record and
// listings only, the 49 others counted as omitted, whether side B is
// listed by its changes or in full (side A, unchanged but for the flag,
// is listed by its changes: its listing is rebuilt from the records).
func TestListOmitsQuietRecords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		deltaB bool
	}{
		{"both by changes", true},
		{"B in full", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newMemStore("a", "INBOX"), newMemStore("b", "INBOX")
			for tok := 1; tok <= 50; tok++ {
				a.add("INBOX", tok)
			}
			da := newDeltaStore(a)
			stores := [2]*Store{{Source: da, Sink: da, Identity: "mem:a"}, {Source: b, Sink: b, Identity: "mem:b"}}
			if tc.deltaB {
				db := newDeltaStore(b)
				stores[B].Source, stores[B].Sink = db, db
			}
			dir := filepath.Join(t.TempDir(), "state")
			for range 2 { // the first sync, then one that records the passes
				st := openState(t, dir, false)
				_, err := Run(context.Background(), stores, st, RunOptions{})
				st.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			a.setFlagsOf("INBOX", 7, mail.FlagFlagged)
			st := openState(t, dir, false)
			defer st.Close()
			r := &run{ctx: context.Background(), stores: stores, st: st, log: slog.New(slog.DiscardHandler),
				res: &Result{Listing: map[string]string{}}, passes: map[string]*folderPass{}}
			if err := r.checkIdentities(); err != nil {
				t.Fatal(err)
			}
			folders, err := r.list(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(folders) != 1 {
				t.Fatalf("listed %d folders, want INBOX", len(folders))
			}
			f := folders[0]
			if f.Omitted != 49 || len(f.Base) != 1 || len(f.Side[A].Msgs) != 1 || len(f.Side[B].Msgs) != 1 {
				t.Errorf("INBOX listed with %d records omitted, %d kept, %d and %d messages listed; want 49, 1, 1 and 1",
					f.Omitted, len(f.Base), len(f.Side[A].Msgs), len(f.Side[B].Msgs))
			}
		})
	}
}

// orderStore records the folders a store lists and puts into, in order.
type orderStore struct {
	*memStore
	mu     *gosync.Mutex // puts come from several workers
	events *[]string
}

func (o orderStore) note(e string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	*o.events = append(*o.events, e)
}

func (o orderStore) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	o.note("list " + mailbox)
	return o.memStore.List(ctx, mailbox, fn)
}

func (o orderStore) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	o.note("put " + env.Mailbox)
	return o.memStore.Put(ctx, env, body)
}

// TestFirstSyncGoesFolderByFolder: a first sync lists a folder pair only
// once the one before is applied (its copies put), so it holds one
// folder's listing at a time; a sync with a state lists every folder
// first (moves and the guard span folders).
func TestFirstSyncGoesFolderByFolder(t *testing.T) {
	a, b := newMemStore("a", "INBOX", "Archive"), newMemStore("b", "INBOX", "Archive")
	for tok := 1; tok <= 6; tok++ {
		folder := "INBOX"
		if tok > 3 {
			folder = "Archive"
		}
		a.add(folder, tok)
	}
	dir := filepath.Join(t.TempDir(), "state")
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"first sync", []string{"list Archive", "put Archive", "list INBOX", "put INBOX"}},
		{"with a state", []string{"list Archive", "list INBOX", "put INBOX"}},
	} {
		var events []string
		ob := orderStore{b, &gosync.Mutex{}, &events}
		stores := [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, {Source: ob, Sink: ob, Identity: "mem:b"}}
		st := openState(t, dir, false)
		_, err := Run(context.Background(), stores, st, RunOptions{})
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range events { // one event per folder and kind in a row
			if len(got) == 0 || got[len(got)-1] != e {
				got = append(got, e)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: side B saw %q, want %q", tc.name, got, tc.want)
		}
		a.add("INBOX", 10+len(tc.name)) // something to put next time
	}
}

// TestOmitQuietLetsGoOfTheRecords: once every record of a folder is left
// out as quiet, nothing reachable from the folder keeps the records read
// from the state (an empty slice of their array would keep all of them).
func TestOmitQuietLetsGoOfTheRecords(t *testing.T) {
	f := &Folder{Name: "INBOX", Known: true}
	var ch [2]*changes
	for s := range ch {
		ch[s] = &changes{fresh: map[mail.ID]mail.Envelope{}, flags: map[mail.ID][]mail.Flag{}, gone: map[mail.ID]bool{}}
	}
	for i := range 100 {
		id := mail.ID(fmt.Sprint("1.", i))
		f.Base = append(f.Base, state.Message{Src: id, Dst: id, Flags: `\Seen`, FlagsKnown: true, Size: -1})
	}
	first := weak.Make(&f.Base[0])
	omitQuiet(f, ch, [2]Keeps{})
	runtime.GC()
	if f.Omitted != 100 || len(f.Base) != 0 {
		t.Fatalf("omitted %d, kept %d records; want 100 and 0", f.Omitted, len(f.Base))
	}
	if first.Value() != nil {
		t.Error("the omitted records are still reachable from the folder")
	}
	runtime.KeepAlive(f)
}
