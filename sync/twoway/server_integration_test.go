package twoway

import (
	"context"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/state"
)

// plainSink hides the two-way capabilities of an IMAP sink (conditional
// flag writes, moves, permanent flags): the negative controls.
type plainSink struct {
	mail.Sink
	mail.FlagSetter
	mail.Committer
	mail.IDResolver
}

// countingSource counts the bodies a source serves.
type countingSource struct {
	mail.Source
	mail.Remover
	mail.FolderStatuser
	opens atomic.Int64
}

func (c *countingSource) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	c.opens.Add(1)
	return c.Source.Open(ctx, env)
}

func twoUsers(t *testing.T, d *mailtest.Dovecot) [2][2]string {
	var users [2][2]string
	for i := range users {
		users[i][0], users[i][1] = d.NewUser(t)
	}
	return users
}

func runDovecot(t *testing.T, stores [2]*Store, dir string, opt RunOptions) *Result {
	t.Helper()
	st, err := state.Open(dir, "a", "b", state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := Run(context.Background(), stores, st, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestDovecotFlagsChangedUnderUs: another client changes a message's flags
// on side B between the listing and the sync's flag write there. With
// UNCHANGEDSINCE the write is refused, the message re-read and merged
// again in the same run: both changes survive on both sides. The negative
// control writes unconditionally and loses the other client's flag.
func TestDovecotFlagsChangedUnderUs(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct {
		name        string
		conditional bool
		want        string
	}{
		{"UNCHANGEDSINCE", true, `1:$Later \Seen`},
		{"unconditional (negative control)", false, `1:\Seen`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users := twoUsers(t, d)
			d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(1))
			dir := filepath.Join(t.TempDir(), "state")
			open := func() [2]*Store {
				s := [2]*Store{dovecotStore(t, d, users[0][0], users[0][1]), dovecotStore(t, d, users[1][0], users[1][1])}
				if !tc.conditional {
					for _, st := range s {
						f := mail.FeaturesOf(st.Sink)
						st.Sink = plainSink{st.Sink, f.FlagSetter, f.Committer, f.IDResolver}
					}
				}
				return s
			}
			runDovecot(t, open(), dir, RunOptions{})
			a, b := client{t, d.Dial(t, users[0][0], users[0][1])}, client{t, d.Dial(t, users[1][0], users[1][1])}
			a.store("INBOX", 1, imapv2.StoreFlagsAdd, imapv2.FlagSeen)
			changed := false
			under := func(what string) error {
				if strings.HasPrefix(what, "flags ") && !changed { // B's write: A already holds the result
					changed = true
					b.store("INBOX", 1, imapv2.StoreFlagsAdd, "$Later")
				}
				return nil
			}
			res := runDovecot(t, open(), dir, RunOptions{step: under})
			if !changed {
				t.Fatal("the run wrote no flags")
			}
			for _, u := range users {
				if got := describeDovecot(t, d, u[0], u[1])["INBOX"]; got != tc.want {
					t.Fatalf("%s holds %s, want %s (counts %+v)", u[0], got, tc.want, res.Side)
				}
			}
			if res := runDovecot(t, open(), dir, RunOptions{}); res.Side != [2]Counts{} {
				t.Fatalf("a sync right after did %+v", res.Side)
			}
		})
	}
}

// TestDovecotMoveOnServer: a message another client moved on side A is
// moved on side B on the server (UID MOVE): no body is read from either
// side, and the moved message keeps its flags.
func TestDovecotMoveOnServer(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	users := twoUsers(t, d)
	d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(1, 2))
	d.Seed(t, users[0][0], users[0][1], "Archive", seedTokens(3))
	dir := filepath.Join(t.TempDir(), "state")
	var counted [2]*countingSource
	open := func() [2]*Store {
		var s [2]*Store
		for i, u := range users {
			s[i] = dovecotStore(t, d, u[0], u[1])
			f := mail.FeaturesOf(s[i].Source)
			counted[i] = &countingSource{Source: s[i].Source, Remover: f.Remover, FolderStatuser: f.FolderStatuser}
			s[i].Source = counted[i]
		}
		return s
	}
	runDovecot(t, open(), dir, RunOptions{})
	a := client{t, d.Dial(t, users[0][0], users[0][1])}
	a.store("INBOX", 2, imapv2.StoreFlagsAdd, imapv2.FlagFlagged)
	a.move("INBOX", 2, "Archive")
	res := runDovecot(t, open(), dir, RunOptions{})
	want := map[string]string{"INBOX": "1:", "Archive": joinSorted(`2:\Flagged`, "3:")}
	for _, u := range users {
		if got := describeDovecot(t, d, u[0], u[1]); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s holds %v, want %v", u[0], got, want)
		}
	}
	if res.Side[B].Moved != 1 || counted[A].opens.Load()+counted[B].opens.Load() != 0 {
		t.Fatalf("counts %+v; bodies read: A %d, B %d (want a move and none)", res.Side, counted[A].opens.Load(), counted[B].opens.Load())
	}
}
