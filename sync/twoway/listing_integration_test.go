package twoway

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/state"
)

// syncStores runs one sync of stores with the state in dir.
func syncStores(t *testing.T, stores [2]*Store, dir string, opt RunOptions) (*Result, error) {
	t.Helper()
	st, err := state.Open(dir, "a", "b", state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return Run(context.Background(), stores, st, opt)
}

func listings(res *Result, folders ...string) []string {
	var out []string
	for _, f := range folders {
		out = append(out, res.Listing[f])
	}
	return out
}

// TestDovecotIncremental syncs two Dovecot users (CONDSTORE and QRESYNC
// on): a sync with nothing changed skips every folder pair without reading
// its records; changes by other clients between syncs (new mail, a flag,
// an expunge) are listed by their changes and applied; the Nth pass lists
// in full.
func TestDovecotIncremental(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	var users [2][2]string
	for i := range users {
		users[i][0], users[i][1] = d.NewUser(t)
	}
	d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(1, 2, 3))
	d.Seed(t, users[0][0], users[0][1], "Archive", seedTokens(4, 5))
	d.Seed(t, users[1][0], users[1][1], "INBOX", seedTokens(6))
	stores := func() [2]*Store {
		return [2]*Store{dovecotStore(t, d, users[0][0], users[0][1]), dovecotStore(t, d, users[1][0], users[1][1])}
	}
	dir := filepath.Join(t.TempDir(), "state")
	opt := RunOptions{FullEvery: 4}
	run := func(what string) *Result {
		t.Helper()
		res, err := syncStores(t, stores(), dir, opt)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return res
	}
	run("first sync")
	// The first sync's own changes: INBOX's are listed by its changes on
	// both sides; Archive was created on B, which had no status for it yet.
	if got := listings(run("second sync"), "INBOX", "Archive"); !reflect.DeepEqual(got, []string{ListingIncremental, ListingFull}) {
		t.Fatalf("the sync after the first listed %q, want INBOX by its changes and Archive in full", got)
	}
	res := run("a sync with nothing changed")
	if got := listings(res, "INBOX", "Archive"); !reflect.DeepEqual(got, []string{ListingSkipped, ListingSkipped}) || res.Side != [2]Counts{} {
		t.Fatalf("a sync with nothing changed listed %q and did %+v, want both skipped and nothing", got, res.Side)
	}
	garbleLog(t, dir, "Archive") // a skipped folder's log is not read

	a, b := client{t, d.Dial(t, users[0][0], users[0][1])}, client{t, d.Dial(t, users[1][0], users[1][1])}
	a.store("INBOX", 2, imapv2.StoreFlagsAdd, imapv2.FlagFlagged)
	b.expunge("INBOX", 3)
	d.Seed(t, users[1][0], users[1][1], "INBOX", seedTokens(7))
	res = run("a sync after changes")
	want := map[string]string{"INBOX": `1:,2:\Flagged,6:,7:`, "Archive": "4:,5:"}
	for _, u := range users {
		if got := describeDovecot(t, d, u[0], u[1]); !reflect.DeepEqual(got, want) {
			t.Fatalf("after changes by other clients: %s holds %v, want %v", u[0], got, want)
		}
	}
	if got := listings(res, "INBOX", "Archive"); !reflect.DeepEqual(got, []string{ListingIncremental, ListingSkipped}) {
		t.Errorf("a sync after changes in INBOX listed %q, want INBOX by its changes, Archive skipped", got)
	}
	if res.Side[B].Flagged != 1 || res.Side[A].Deleted != 1 || res.Side[A].Copied != 1 {
		t.Errorf("a sync after changes did %+v", res.Side)
	}
	// Every 4th pass is full: INBOX's 5th (1 full, 3 since), Archive's
	// 6th (the 2nd was full); Archive's log is read then, and refused.
	if got := listings(run("fifth sync"), "INBOX", "Archive"); !reflect.DeepEqual(got, []string{ListingFull, ListingSkipped}) {
		t.Errorf("the fifth sync listed %q, want INBOX in full (due) and Archive skipped", got)
	}
	if _, err := syncStores(t, stores(), dir, opt); !errors.Is(err, state.ErrUnusable) {
		t.Fatalf("the full listing due reads Archive's garbled log: %v, want ErrUnusable", err)
	}
}

// TestDovecotMaildirIncremental syncs a Dovecot user with a Maildir: a
// flag set on the server by another client is listed by the server's
// changes (the Maildir side is rebuilt from the records while its
// directories did not change) and reaches the Maildir.
func TestDovecotMaildirIncremental(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", seedTokens(1, 2))
	root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	run := func(what string) *Result {
		t.Helper()
		b, done := maildirSide(t, root, filepath.Join(dir, "quarantine"))
		defer done()
		res, err := syncStores(t, [2]*Store{dovecotStore(t, d, user, pw), b}, filepath.Join(dir, "state"), RunOptions{})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return res
	}
	run("first sync")
	ageMaildir(t, root)
	run("second sync")
	if res := run("a sync with nothing changed"); res.Listing["INBOX"] != ListingSkipped {
		t.Fatalf("a sync with nothing changed listed INBOX %s, want skipped", res.Listing["INBOX"])
	}
	c := client{t, d.Dial(t, user, pw)}
	c.store("INBOX", 1, imapv2.StoreFlagsAdd, imapv2.FlagSeen)
	res := run("a sync after a flag change on the server")
	if res.Listing["INBOX"] != ListingIncremental || res.Side[B].Flagged != 1 {
		t.Fatalf("after a flag change on the server: listed %s, did %+v; want incremental and one flag change on the Maildir", res.Listing["INBOX"], res.Side)
	}
	if got := describeMaildir(t, root)["INBOX"]; got != `1:\Seen,2:` {
		t.Fatalf("the Maildir's INBOX holds %s", got)
	}
}
