package twoway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/state"
)

// killPair is the two sides of a Dovecot kill test: how to open them as a
// sync would, change them as other clients would, and describe them.
type killPair struct {
	open     func(t *testing.T) ([2]*Store, func())
	seed     func(t *testing.T)
	change   func(t *testing.T)
	describe func(t *testing.T, s Side) map[string]string
}

// What both kill scenarios hold after the first sync, changes on both
// sides of every kind (new, flags, deletions, moves, a deletion against a
// flag change) and the second sync.
var (
	killFirst = map[string]string{"INBOX": joinSorted("1:", "2:", "3:", "4:", "5:", "7:"), "Archive": joinSorted("6:", "9:", "10:")}
	killAfter = map[string]string{
		"INBOX":   joinSorted("1:", "11:", `2:$Work \Seen`, `3:\Flagged`, "8:", "9:"),
		"Archive": joinSorted("5:", "10:"),
	}
)

func joinSorted(parts ...string) string {
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// TestDovecotKillAtEveryStep kills (stops, then drops every connection of)
// a sync that copies, writes flags, moves and deletes on both sides before
// each of its durable steps in turn, IMAP <-> IMAP and IMAP <-> Maildir
// against Dovecot, and reruns it: both sides end as the changes imply,
// nothing lost, nothing twice, nothing deleted back, and a further sync
// changes nothing.
func TestDovecotKillAtEveryStep(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct {
		name string
		pair func(t *testing.T, d *mailtest.Dovecot, users [2][2]string) killPair
	}{
		{"imap-imap", imapPair},
		{"imap-maildir", maildirPair},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each on its own users: the two halve the wall time
			var users [2][2]string
			for i := range users {
				users[i][0], users[i][1] = d.NewUser(t)
			}
			for k := 0; ; k++ {
				resetAccount(t, d, users[0])
				resetAccount(t, d, users[1])
				if !killDovecotAt(t, tc.pair(t, d, users), k) {
					t.Logf("killed at each of %d steps", k)
					return
				}
			}
		})
	}
}

// killDovecotAt runs the scenario with the second sync killed before step
// k; it reports whether the sync had a step k.
func killDovecotAt(t *testing.T, p killPair, k int) bool {
	t.Helper()
	p.seed(t)
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := syncPair(t, p, dir, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	checkPair(t, p, "first sync", killFirst)
	p.change(t)
	steps, crashed := 0, false
	killAt := func(string) error {
		if steps++; steps > k {
			crashed = true
			return errStep
		}
		return nil
	}
	st, err := state.Open(dir, "a", "b", state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stores, closeStores := p.open(t)
	_, err = Run(context.Background(), stores, st, RunOptions{step: killAt})
	closeStores() // a kill drops the connections: an open APPEND is lost
	if crashed != errors.Is(err, errStep) {
		t.Fatalf("kill at step %d: %v", k, err)
	}
	after := copyDir(t, dir) // the state's files as the kill left them
	st.Close()
	if _, err := syncPair(t, p, after, RunOptions{}); err != nil {
		t.Fatalf("kill at step %d: rerun: %v", k, err)
	}
	checkPair(t, p, fmt.Sprint("rerun after a kill at step ", k), killAfter)
	res, err := syncPair(t, p, after, RunOptions{})
	if err != nil || res.Side != [2]Counts{} {
		t.Fatalf("kill at step %d: a sync after the rerun did %+v, %v (warnings %q)", k, res.Side, err, res.Warnings)
	}
	return crashed
}

func syncPair(t *testing.T, p killPair, dir string, opt RunOptions) (*Result, error) {
	t.Helper()
	st, err := state.Open(dir, "a", "b", state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stores, closeStores := p.open(t)
	defer closeStores()
	return Run(context.Background(), stores, st, opt)
}

func checkPair(t *testing.T, p killPair, when string, want map[string]string) {
	t.Helper()
	for _, s := range []Side{A, B} {
		if got := p.describe(t, s); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: side %s holds\n%v\nwant\n%v", when, s, got, want)
		}
	}
}

// resetAccount empties user's account: a fresh scenario on the same user
// (a new user costs a second: Dovecot reads its passwd-file once a second).
func resetAccount(t *testing.T, d *mailtest.Dovecot, user [2]string) {
	t.Helper()
	c := d.Dial(t, user[0], user[1])
	defer func() { _ = c.Logout().Wait() }()
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes {
		if !strings.EqualFold(b.Mailbox, "INBOX") {
			if err := c.Delete(b.Mailbox).Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return
	}
	var all imapv2.SeqSet
	all.AddRange(1, 0)
	if err := c.Store(all, &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd, Silent: true, Flags: []imapv2.Flag{imapv2.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
}

// describeAccount is describeDovecot less the empty special folders.
func describeAccount(t *testing.T, d *mailtest.Dovecot, user [2]string) map[string]string {
	return describeDovecot(t, d, user[0], user[1])
}

// changeA is what another client does to the Dovecot account of side A in
// both scenarios.
func changeA(t *testing.T, d *mailtest.Dovecot, user [2]string) {
	a := client{t, d.Dial(t, user[0], user[1])}
	defer func() { _ = a.c.Logout().Wait() }()
	a.store("INBOX", 2, imapv2.StoreFlagsAdd, imapv2.FlagSeen, "$Work")
	a.expunge("INBOX", 7)
	a.move("INBOX", 5, "Archive")
	a.store("Archive", 6, imapv2.StoreFlagsAdd, imapv2.FlagAnswered) // ... while B deletes it
	d.Seed(t, user[0], user[1], "INBOX", seedTokens(11))
}

func imapPair(t *testing.T, d *mailtest.Dovecot, users [2][2]string) killPair {
	return killPair{
		open: func(t *testing.T) ([2]*Store, func()) {
			a, b := dovecotStore(t, d, users[0][0], users[0][1]), dovecotStore(t, d, users[1][0], users[1][1])
			return [2]*Store{a, b}, func() { closeStore(a); closeStore(b) }
		},
		seed: func(t *testing.T) {
			d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(1, 2, 3, 4, 5))
			d.Seed(t, users[0][0], users[0][1], "Archive", seedTokens(6, 9, 10))
			d.Seed(t, users[1][0], users[1][1], "INBOX", seedTokens(1, 7))
		},
		change: func(t *testing.T) {
			changeA(t, d, users[0])
			b := client{t, d.Dial(t, users[1][0], users[1][1])}
			defer func() { _ = b.c.Logout().Wait() }()
			b.store("INBOX", 3, imapv2.StoreFlagsAdd, imapv2.FlagFlagged)
			b.expunge("INBOX", 4)
			b.move("Archive", 9, "INBOX")
			b.expunge("Archive", 6)
			d.Seed(t, users[1][0], users[1][1], "INBOX", seedTokens(8))
		},
		describe: func(t *testing.T, s Side) map[string]string { return describeAccount(t, d, users[s]) },
	}
}

func maildirPair(t *testing.T, d *mailtest.Dovecot, users [2][2]string) killPair {
	root, q := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	return killPair{
		open: func(t *testing.T) ([2]*Store, func()) {
			a := dovecotStore(t, d, users[0][0], users[0][1])
			b, done := maildirSide(t, root, q)
			return [2]*Store{a, b}, func() { closeStore(a); done() }
		},
		seed: func(t *testing.T) {
			d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(1, 2, 3, 4, 5, 7))
			d.Seed(t, users[0][0], users[0][1], "Archive", seedTokens(6, 9, 10))
		},
		change: func(t *testing.T) {
			changeA(t, d, users[0])
			p3 := maildirFile(t, root, 3)
			base3, _, _ := strings.Cut(filepath.Base(p3), ":")
			mustDo(t, os.Rename(p3, filepath.Join(root, "cur", base3+":2,F")))
			mustDo(t, os.Remove(maildirFile(t, root, 4)))
			p9 := maildirFile(t, filepath.Join(root, ".Archive"), 9)
			mustDo(t, os.Rename(p9, filepath.Join(root, "cur", filepath.Base(p9))))
			mustDo(t, os.Remove(maildirFile(t, filepath.Join(root, ".Archive"), 6)))
			p8 := filepath.Join(root, "new", "1700000008.M8P8.client")
			mustDo(t, os.WriteFile(p8, tokenBody(8), 0o600))
			mustDo(t, os.Chtimes(p8, tokenDate(8), tokenDate(8)))
		},
		describe: func(t *testing.T, s Side) map[string]string {
			if s == A {
				return describeAccount(t, d, users[0])
			}
			out := describeMaildir(t, root)
			for mb, v := range out {
				if v == "" && mb != "INBOX" {
					delete(out, mb) // the special folders Dovecot made, created here too
				}
			}
			return out
		},
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func closeStore(s *Store) {
	_ = s.Source.Close()
	_ = s.Sink.Close()
}
