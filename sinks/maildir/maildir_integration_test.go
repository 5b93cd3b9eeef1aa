package maildir

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	srcmaildir "github.com/mailferry/mailferry/sources/maildir"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestDovecotReadsSinkOutput writes a Maildir++ tree with nested and
// non-ASCII folders and flags through the sink, makes it a Dovecot user's
// mail_location, and checks that Dovecot (over IMAP, and doveadm) sees the
// same folders, bytes, flags and dates. Then a second sink run over the tree
// Dovecot has indexed stores nothing again (A3 across tools).
func TestDovecotReadsSinkOutput(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	home := filepath.Join(d.Dir, "home", user)
	root := filepath.Join(home, "Maildir") // dovecot.sh: mail_location = maildir:~/Maildir

	day := func(n int) time.Time { return time.Date(2023, 4, n, 10, 20, 30, 0, time.UTC) }
	msgs := []struct {
		mailbox string
		flags   []mail.Flag
		date    time.Time
		body    string
	}{
		{"INBOX", nil, day(1), "Subject: new\r\n\r\nunseen, in new/\r\n"},
		{"INBOX", []mail.Flag{mail.FlagSeen}, day(2), "Subject: seen\r\n\r\nseen\r\n"},
		{"INBOX/Sub", []mail.Flag{mail.FlagSeen}, day(3), "Subject: sub of inbox\r\n\r\nx\r\n"},
		{"Archive/2024/Q1", []mail.Flag{mail.FlagSeen, mail.FlagFlagged, mail.FlagAnswered}, day(4), "Subject: archived\r\n\r\nold\r\n"},
		{"Übersicht", []mail.Flag{mail.FlagDraft}, day(5), "Subject: =?utf-8?q?=C3=9Cbersicht?=\r\n\r\nGrüße, 8-bit body\r\n"},
		{"日本語/メール", []mail.Flag{mail.FlagDeleted, mail.FlagSeen}, day(6), "Subject: nihongo\r\n\r\n日本語\r\n"},
		{"Tom & Jerry", nil, day(7), "Subject: amp\r\n\r\ncat & mouse\r\n"},
		{"Tom & Jerry", []mail.Flag{mail.FlagSeen}, day(8), "Subject: amp 2\r\n\r\nno final newline"},
		{"a.b", []mail.Flag{mail.FlagSeen}, day(9), "Subject: dotted\r\n\r\ndot in the name\r\n"},
		{"Sent", []mail.Flag{mail.FlagSeen, maildirfmt.FlagForwarded}, day(10), "Subject: forwarded\r\n\r\nP\r\n"},
		// Keywords: dovecot-keywords letters, which Dovecot shows over IMAP.
		{"Work", []mail.Flag{mail.FlagSeen, "$Label1", "NonJunk"}, day(11), "Subject: keywords\r\n\r\nkw\r\n"},
		{"Work", []mail.Flag{"Project-X"}, day(12), "Subject: keyword only\r\n\r\nkw2\r\n"},
	}
	key := func(i int) string { return mail.DeliveryKey("test:", msgs[i].mailbox, mail.ID(rune('a'+i))) }

	s, err := New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]mail.ID, len(msgs))
	for i, m := range msgs {
		ids[i] = put(t, s, mail.Envelope{Mailbox: m.mailbox, Flags: m.flags, Date: m.date, Key: key(i)}, m.body)
	}
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	chownTree(t, root, home)

	// Dovecot without the listescape plugin shows "a.b" as its storage name.
	dovecotName := map[string]string{"a.b": `a\2eb`}
	got := d.Fetch(t, user, pw)
	want := map[string][]int{}
	for i, m := range msgs {
		name := m.mailbox
		if n, ok := dovecotName[name]; ok {
			name = n
		}
		want[name] = append(want[name], i)
	}
	for mb, fetched := range got {
		idx := want[mb]
		if len(fetched) != len(idx) {
			t.Errorf("Dovecot %q holds %d messages, want %d", mb, len(fetched), len(idx))
			continue
		}
		// The sink's order is Put order; Dovecot's UIDs follow file names,
		// which start with the delivery time: match by body instead.
		for _, f := range fetched {
			i := -1
			for _, j := range idx {
				if msgs[j].body == string(f.Body) {
					i = j
				}
			}
			if i < 0 {
				t.Errorf("Dovecot %q: unexpected body %q", mb, f.Body)
				continue
			}
			var gotFlags, wantFlags []string
			for _, fl := range f.Flags {
				gotFlags = append(gotFlags, strings.ToLower(string(fl)))
			}
			for _, fl := range msgs[i].flags {
				// Dovecot keeps the Maildir P (passed) letter in the name
				// but has no IMAP flag for it; our source reads it back.
				if fl != maildirfmt.FlagForwarded {
					wantFlags = append(wantFlags, strings.ToLower(string(fl)))
				}
			}
			sort.Strings(gotFlags)
			sort.Strings(wantFlags)
			if strings.Join(gotFlags, " ") != strings.Join(wantFlags, " ") {
				t.Errorf("Dovecot %q %q: flags %v, want %v", mb, msgs[i].body[:12], f.Flags, msgs[i].flags)
			}
			if !f.Date.Equal(msgs[i].date) {
				t.Errorf("Dovecot %q %q: INTERNALDATE %v, want %v", mb, msgs[i].body[:12], f.Date, msgs[i].date)
			}
		}
	}
	for mb := range want {
		if _, ok := got[mb]; !ok {
			t.Errorf("Dovecot does not list %q (it lists %q)", mb, keys(got))
		}
	}

	// With listescape (escape character '\', our encoding) Dovecot shows the
	// original name.
	out := d.Doveadm(t, "-o", "mail_plugins=listescape", "mailbox", "list", "-u", user)
	if !slicesContainsLine(out, "a.b") || !slicesContainsLine(out, "Übersicht") || !slicesContainsLine(out, "日本語/メール") {
		t.Errorf("doveadm mailbox list with listescape:\n%s\nwant a.b, Übersicht and 日本語/メール", out)
	}
	out = d.Doveadm(t, "search", "-u", user, "mailbox", "Archive/2024/Q1", "FLAGGED", "ANSWERED", "SEEN")
	if n := len(strings.Fields(out)); n != 2 { // "<guid> <uid>"
		t.Errorf("doveadm search FLAGGED ANSWERED SEEN in Archive/2024/Q1 = %q, want one message", out)
	}

	// Dovecot has now indexed the tree (and may have moved new/ to cur/).
	// Our source still finds every message by the ID the sink returned, and
	// a rerun stores nothing twice.
	src, err := srcmaildir.New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i, m := range msgs {
		r, err := src.Open(ctx, mail.Envelope{Mailbox: m.mailbox, ID: ids[i]})
		if err != nil {
			t.Errorf("source Open(%q, %q) after Dovecot = %v", m.mailbox, ids[i], err)
			continue
		}
		r.Close()
	}
	s2, err := New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for i, m := range msgs {
		id := put(t, s2, mail.Envelope{Mailbox: m.mailbox, Flags: m.flags, Date: m.date, Key: key(i)}, m.body)
		if id != ids[i] {
			t.Errorf("rerun Put(%q) = %q, want the stored %q", m.mailbox, id, ids[i])
		}
	}
	commit(t, s2)
	s2.Close()
	chownTree(t, root, home)
	again := d.Fetch(t, user, pw)
	for mb, idx := range want {
		if len(again[mb]) != len(idx) {
			t.Errorf("after the rerun Dovecot %q holds %d messages, want %d", mb, len(again[mb]), len(idx))
		}
	}
}

// chownTree gives the tree to the owner of home (the vmail user Dovecot's
// mail processes run as), since the test writes as root.
func chownTree(t *testing.T, root, home string) {
	t.Helper()
	fi, err := os.Stat(home)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	err = filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(st.Uid), int(st.Gid))
	})
	if err != nil {
		t.Fatalf("chown %s: %v", root, err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func slicesContainsLine(out, line string) bool {
	for l := range strings.SplitSeq(out, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}
