package mailtest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestDovecotHarness(t *testing.T) {
	d := NeedDovecot(t)
	user, password := d.NewUser(t)

	date := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	msg := func(mailbox string, n int) []byte {
		return fmt.Appendf(nil, "From: a@example.org\r\nTo: b@example.org\r\nSubject: %s %d\r\n"+
			"Message-ID: <%s-%d@example.org>\r\n\r\nbody %d of %s\r\n.\r\nFrom the end\r\n", mailbox, n, strings.ReplaceAll(mailbox, "/", "."), n, n, mailbox)
	}
	seeds := map[string][]SeedMessage{}
	for _, mb := range []string{"INBOX", "A/B"} {
		seeds[mb] = []SeedMessage{
			{Body: msg(mb, 1), Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}, Date: date},
			// \Recent must be dropped by Seed, or Dovecot rejects the APPEND.
			{Body: msg(mb, 2), Flags: []imap.Flag{`\Recent`, "$Label1"}, Date: date.Add(36 * time.Hour)},
		}
		d.Seed(t, user, password, mb, seeds[mb])
	}

	got := d.Fetch(t, user, password)
	for mb, want := range seeds {
		msgs := got[mb]
		if len(msgs) != len(want) {
			t.Errorf("Fetch()[%q] has %d messages, want %d", mb, len(msgs), len(want))
			continue
		}
		for i, m := range msgs {
			if !bytes.Equal(m.Body, want[i].Body) {
				t.Errorf("Fetch()[%q][%d].Body = %q, want %q", mb, i, m.Body, want[i].Body)
			}
			if !m.Date.Equal(want[i].Date) {
				t.Errorf("Fetch()[%q][%d].Date = %v, want %v", mb, i, m.Date, want[i].Date)
			}
			wantFlags := slices.DeleteFunc(slices.Clone(want[i].Flags), func(f imap.Flag) bool { return f == `\Recent` })
			if !dovecotSameFlags(m.Flags, wantFlags) {
				t.Errorf("Fetch()[%q][%d].Flags = %v, want %v", mb, i, m.Flags, wantFlags)
			}
			if i > 0 && m.UID <= msgs[i-1].UID {
				t.Errorf("Fetch()[%q] UIDs not ascending: %d after %d", mb, m.UID, msgs[i-1].UID)
			}
		}
	}
	for _, mb := range []string{"Drafts", "Sent", "Trash", "Junk"} {
		if msgs, ok := got[mb]; !ok || len(msgs) != 0 {
			t.Errorf("Fetch()[%q] = %v, %v; want an empty mailbox", mb, msgs, ok)
		}
	}
	if out := d.Doveadm(t, "mailbox", "list", "-u", user); !strings.Contains(out, "A/B") {
		t.Errorf("doveadm mailbox list -u %s = %q, want A/B in it", user, out)
	}

	// Users added concurrently, in this process and by other test binaries, all log in.
	t.Run("parallel users", func(t *testing.T) {
		for i := range 4 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				u, p := d.NewUser(t)
				c := d.Dial(t, u, p)
				sel, err := c.Select("INBOX", nil).Wait()
				if err != nil {
					t.Fatalf("Select(INBOX) as %s = %v", u, err)
				}
				if sel.NumMessages != 0 {
					t.Errorf("new user %s has %d messages, want 0", u, sel.NumMessages)
				}
			})
		}
	})
}

func dovecotSameFlags(a, b []imap.Flag) bool {
	norm := func(fs []imap.Flag) []string {
		var s []string
		for _, f := range fs {
			s = append(s, strings.ToLower(string(f)))
		}
		slices.Sort(s)
		return s
	}
	return slices.Equal(norm(a), norm(b))
}
