package imapsink

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestLendWithoutNoop: a commit of a few messages on a connection of the
// shared pool (a two-way sync) gives it back to the pool right after the
// MULTIAPPEND's answer, with no NOOP to stop the reader at, and the pool's
// next taker finds the mailbox selected there (no SELECT of its own). A
// refused MULTIAPPEND closes that connection instead: nobody reads it any
// more, so it never goes back to the pool.
func TestLendWithoutNoop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse bool
	}{
		{"appended", false},
		{"refused", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := startFake(t, "UIDPLUS MULTIAPPEND LITERAL+")
			if tc.refuse {
				f.script(func(int, string, []fakeMsg) fakeAction { return fakeAction{reply: "NO [OVERQUOTA] full"} })
			}
			share := mail.NewShare()
			t.Cleanup(func() { _ = share.Close() })
			o := f.opts()
			o.Share = share
			s, err := New(ctx, f.config(), o)
			if err != nil {
				t.Fatalf("New() = %v", err)
			}
			t.Cleanup(func() { s.Close() })
			for i, body := range []string{"Message-ID: <a@x>\r\n\r\na\r\n", "Message-ID: <b@x>\r\n\r\nb\r\n"} {
				env := mail.Envelope{Mailbox: "INBOX", ID: mail.ID(rune('a' + i)), Size: int64(len(body)), Date: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
				if _, err := s.Put(ctx, env, bytes.NewReader([]byte(body))); err != nil {
					t.Fatalf("Put(%d) = %v", i, err)
				}
			}
			err = s.Commit(ctx)
			if (err != nil) != tc.refuse {
				t.Fatalf("Commit() = %v, want an error: %v", err, tc.refuse)
			}
			f.mu.Lock()
			lines := append([]string(nil), f.lines...)
			f.mu.Unlock()
			for _, l := range lines {
				if _, cmd, _ := strings.Cut(l, " "); strings.EqualFold(cmd, "NOOP") {
					t.Errorf("the commit sent %q; want no NOOP", l)
				}
			}
			logins := s.pool.Logins()
			sess, err := s.pool.Session(ctx)
			if err != nil {
				t.Fatalf("pool Session() = %v", err)
			}
			box, _, open := sess.SelectedCondStore()
			switch {
			case !tc.refuse && (s.pool.Logins() != logins || !open || box != "INBOX"):
				t.Errorf("after the commit the pool gave a session with %q open (%v), %d logins before, %d after; want the appending one, INBOX open",
					box, open, logins, s.pool.Logins())
			case tc.refuse && s.pool.Logins() != logins+1:
				t.Errorf("after a refused commit the pool logged in %d times, then %d; want a new session, not the refused one", logins, s.pool.Logins())
			}
			s.pool.PutSession(sess)
		})
	}
}
