package twoway

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sinks/imapsink"
	"github.com/mailferry/mailferry/sources/imap"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// sharedStore opens user's account as the command does for a sync: the
// source and the sink share one connection pool (mail.Share), which also
// logs the side's own writes (mail.WriteProver).
func sharedStore(t *testing.T, d *mailtest.Dovecot, user, pw string) *Store {
	t.Helper()
	ctx := context.Background()
	u, err := url.Parse("imaps://" + user + "@" + d.IMAPS)
	if err != nil {
		t.Fatal(err)
	}
	share := mail.NewShare()
	opt := func() *mail.OpenOptions {
		return &mail.OpenOptions{CAFile: d.CAFile, Password: func(context.Context) (string, error) { return pw, nil }, Share: share}
	}
	scfg, err := imap.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	src, err := imap.New(ctx, scfg, opt())
	if err != nil {
		t.Fatal(err)
	}
	kcfg, err := imapsink.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := imapsink.New(ctx, kcfg, opt())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close(); sink.Close(); share.Close() })
	return &Store{Source: src, Sink: sink, Identity: "imap:" + user + "@" + d.IMAPS}
}

// TestDovecotOwnWrites: a sync after changes records each IMAP folder it
// wrote to at its status after its own writes, once the server's
// CHANGEDSINCE/VANISHED answer shows every change since the listing is
// one of them (a flag STORE on B; an expunge and an append on A): the
// next sync skips the folder pair instead of listing it only to find the
// run's own changes. The negative controls: another client sets a flag on
// A between the run's last write and the end of the run, or between the
// listing and the run's writes there (before the folder's proof, which
// runs right after them: ownproof.go); the folder pair is listed again by
// the next sync, and the flag reaches B.
func TestDovecotOwnWrites(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct {
		name    string
		foreign string // the step before which another client sets a flag on A ("": none)
		next    string // the listing of INBOX by the sync after the change sync
	}{
		{"only own writes", "", ListingSkipped},
		{"another client's change after the run's writes", "flush", ListingIncremental},
		{"another client's change before the run's writes", "remove", ListingIncremental},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users := twoUsers(t, d)
			d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(1, 2, 3, 4))
			dir := filepath.Join(t.TempDir(), "state")
			run := func(what string, opt RunOptions) *Result {
				t.Helper()
				stores := [2]*Store{sharedStore(t, d, users[0][0], users[0][1]), sharedStore(t, d, users[1][0], users[1][1])}
				res := runDovecot(t, stores, dir, opt)
				if len(res.Warnings) > 0 {
					t.Fatalf("%s: warnings %q", what, res.Warnings)
				}
				return res
			}
			run("first sync", RunOptions{})
			run("second sync", RunOptions{})
			if got := run("a sync with nothing changed", RunOptions{}).Listing["INBOX"]; got != ListingSkipped {
				t.Fatalf("a sync with nothing changed listed INBOX %s", got)
			}
			a, b := client{t, d.Dial(t, users[0][0], users[0][1])}, client{t, d.Dial(t, users[1][0], users[1][1])}
			a.store("INBOX", 1, imapv2.StoreFlagsAdd, imapv2.FlagFlagged)
			b.expunge("INBOX", 2)
			d.Seed(t, users[1][0], users[1][1], "INBOX", seedTokens(5))
			opt := RunOptions{}
			if tc.foreign != "" {
				done := false
				opt.step = func(what string) error {
					// "flush": every folder applied, the passes not recorded
					// yet; "remove": INBOX listed, its deletions not made.
					if what == tc.foreign && !done {
						done = true
						a.store("INBOX", 3, imapv2.StoreFlagsAdd, imapv2.FlagSeen)
					}
					return nil
				}
			}
			res := run("a sync after changes", opt)
			if res.Listing["INBOX"] != ListingIncremental || res.Side[B].Flagged != 1 || res.Side[A].Deleted != 1 || res.Side[A].Copied != 1 {
				t.Fatalf("a sync after changes listed INBOX %s and did %+v", res.Listing["INBOX"], res.Side)
			}
			res = run("the sync after", RunOptions{})
			if got := res.Listing["INBOX"]; got != tc.next {
				t.Errorf("the sync after the change sync listed INBOX %s, want %s", got, tc.next)
			}
			want := map[string]string{"INBOX": `1:\Flagged,3:,4:,5:`}
			if tc.foreign != "" {
				want["INBOX"] = `1:\Flagged,3:\Seen,4:,5:`
			}
			wantSame(t, d, users, "after the sync after", want, res)
		})
	}
}
