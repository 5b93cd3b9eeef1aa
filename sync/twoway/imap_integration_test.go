package twoway

import (
	"context"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/state"
)

// dovecotStore opens user's account as a sync store (sources/imap and
// sinks/imapsink over the same account), as the command does.
func dovecotStore(t *testing.T, d *mailtest.Dovecot, user, pw string) *Store {
	t.Helper()
	st, _, err := dovecotStoreVia(t, d, d.IMAPS, user, pw)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// syncDovecot runs one sync of the two accounts with the state in dir.
func syncDovecot(t *testing.T, d *mailtest.Dovecot, users [2][2]string, dir string) *Result {
	t.Helper()
	st, err := state.Open(dir, "imaps://"+users[0][0], "imaps://"+users[1][0], state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stores := [2]*Store{dovecotStore(t, d, users[0][0], users[0][1]), dovecotStore(t, d, users[1][0], users[1][1])}
	res, err := Run(context.Background(), stores, st, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// describeDovecot is user's account as memStore.describe gives it, leaving
// out the empty special folders Dovecot makes.
func describeDovecot(t *testing.T, d *mailtest.Dovecot, user, pw string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for mb, msgs := range d.Fetch(t, user, pw) {
		if len(msgs) == 0 && mb != "INBOX" {
			continue
		}
		var parts []string
		for _, m := range msgs {
			subj := strings.SplitN(strings.SplitN(string(m.Body), "Subject: ", 2)[1], "\r\n", 2)[0]
			var fl []mail.Flag
			for _, f := range m.Flags {
				fl = append(fl, mail.Flag(f))
			}
			parts = append(parts, subj+":"+setOf(fl).String())
		}
		sort.Strings(parts)
		out[mb] = strings.Join(parts, ",")
	}
	return out
}

func seedTokens(toks ...int) []mailtest.SeedMessage {
	var out []mailtest.SeedMessage
	for _, tok := range toks {
		out = append(out, mailtest.SeedMessage{Body: tokenBody(tok), Date: tokenDate(tok)})
	}
	return out
}

// client is another mail client changing an account.
type client struct {
	t *testing.T
	c *imapclient.Client
}

// uid selects mailbox and returns the UID of token tok.
func (c client) uid(mailbox string, tok int) imapv2.UID {
	c.t.Helper()
	if _, err := c.c.Select(mailbox, nil).Wait(); err != nil {
		c.t.Fatal(err)
	}
	var all imapv2.SeqSet
	all.AddRange(1, 0) // 1:*
	msgs, err := c.c.Fetch(all, &imapv2.FetchOptions{UID: true,
		BodySection: []*imapv2.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, m := range msgs {
		for _, b := range m.BodySection {
			if string(b.Bytes) == string(tokenBody(tok)) {
				return m.UID
			}
		}
	}
	c.t.Fatalf("token %d not in %s", tok, mailbox)
	return 0
}

func (c client) store(mailbox string, tok int, op imapv2.StoreFlagsOp, flags ...imapv2.Flag) {
	c.t.Helper()
	uid := c.uid(mailbox, tok)
	if err := c.c.Store(imapv2.UIDSetNum(uid), &imapv2.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close(); err != nil {
		c.t.Fatal(err)
	}
}

func (c client) expunge(mailbox string, tok int) {
	c.t.Helper()
	c.store(mailbox, tok, imapv2.StoreFlagsAdd, imapv2.FlagDeleted)
	if err := c.c.UIDExpunge(imapv2.UIDSetNum(c.uid(mailbox, tok))).Close(); err != nil {
		c.t.Fatal(err)
	}
}

func (c client) move(mailbox string, tok int, to string) {
	c.t.Helper()
	if _, err := c.c.Move(imapv2.UIDSetNum(c.uid(mailbox, tok)), to).Wait(); err != nil {
		c.t.Fatal(err)
	}
}

// TestDovecotTwoAccounts syncs two Dovecot users: a first sync that pairs
// what both hold, then changes by other clients on both sides (new mail,
// flags, a deletion, a move between folders, a deletion against a flag
// change), then a sync that changes nothing.
func TestDovecotTwoAccounts(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	var users [2][2]string
	for i := range users {
		users[i][0], users[i][1] = d.NewUser(t)
	}
	d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(1, 2, 3, 4, 5))
	d.Seed(t, users[0][0], users[0][1], "Archive", seedTokens(6, 9))
	d.Seed(t, users[1][0], users[1][1], "INBOX", seedTokens(1, 7))
	dir := filepath.Join(t.TempDir(), "state")
	res := syncDovecot(t, d, users, dir)
	want := map[string]string{"INBOX": "1:,2:,3:,4:,5:,7:", "Archive": "6:,9:"}
	for _, u := range users {
		if got := describeDovecot(t, d, u[0], u[1]); !reflect.DeepEqual(got, want) {
			t.Fatalf("first sync: %s holds %v, want %v", u[0], got, want)
		}
	}
	if res.Side[B].Copied != 6 || res.Side[A].Copied != 1 {
		t.Fatalf("first sync counts %+v", res.Side)
	}

	a, b := client{t, d.Dial(t, users[0][0], users[0][1])}, client{t, d.Dial(t, users[1][0], users[1][1])}
	a.store("INBOX", 2, imapv2.StoreFlagsAdd, imapv2.FlagSeen, "$Work")
	b.store("INBOX", 3, imapv2.StoreFlagsAdd, imapv2.FlagFlagged)
	b.expunge("INBOX", 4)
	a.move("INBOX", 5, "Archive")
	a.store("Archive", 6, imapv2.StoreFlagsAdd, imapv2.FlagAnswered)
	b.expunge("Archive", 6) // deleted on B while flagged on A: the deletion wins
	d.Seed(t, users[1][0], users[1][1], "INBOX", seedTokens(8))
	res = syncDovecot(t, d, users, dir)
	want = map[string]string{"INBOX": `1:,2:$Work \Seen,3:\Flagged,7:,8:`, "Archive": "5:,9:"}
	for _, u := range users {
		if got := describeDovecot(t, d, u[0], u[1]); !reflect.DeepEqual(got, want) {
			t.Fatalf("second sync: %s holds %v, want %v (warnings %q)", u[0], got, want, res.Warnings)
		}
	}
	if res.Side[B].Moved != 1 || res.Conflicts != 1 || res.Side[A].Copied != 1 || res.Side[B].Copied != 0 {
		t.Errorf("second sync counts %+v, conflicts %d", res.Side, res.Conflicts)
	}
	if res := syncDovecot(t, d, users, dir); res.Side != [2]Counts{} {
		t.Fatalf("a sync right after did %+v (warnings %q)", res.Side, res.Warnings)
	}
}
