package imap

import (
	"context"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// rawFirstNames are folder names that a decoder could get wrong: quotes,
// a backslash, a literal's announcement, '&' (modified UTF-7's shift),
// 8-bit and astral characters, a hierarchy, and INBOX's children.
var rawFirstNames = []string{
	`Quote" DELETE Victim`, `Back\ Slash\"`, `Brace {5}`, `Plus {5+}`, "&", "a&b", "&-", "Ünïcödé", "日本語", "😀",
	"Archiv/Übersicht", "Archiv/Sub/Tief", "INBOX/Kind",
}

// logins counts the logins in a trace of the source's commands.
func traceLoginCount(trace string) int {
	return strings.Count(trace, " AUTHENTICATE ") + strings.Count(trace, " LOGIN ")
}

// TestDovecotRawFirstSameAsClient: the folders and their statuses New
// learns on the raw session (NAMESPACE, LIST, LIST-STATUS parsed by
// imapconn) are those the imapclient path learns, on hostile folder
// names, and the raw path gets them without an imapclient login.
func TestDovecotRawFirstSameAsClient(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(1), deltaMsg(2)})
	for i, name := range rawFirstNames {
		d.Seed(t, user, pw, name, []mailtest.SeedMessage{deltaMsg(10 + i)})
	}
	ctx := context.Background()
	type learnt struct {
		boxes    []string
		statuses map[string]mail.FolderStatus
		trace    string
	}
	learn := func(incremental bool) learnt {
		s, trace := tracedSource(t, d, user, pw, nil, incremental)
		boxes, err := s.Mailboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sts, err := s.FolderStatuses(ctx, append(slices.Clone(boxes), "Gone"))
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		return learnt{boxes, sts, trace()}
	}
	raw, client := learn(true), learn(false)
	if !reflect.DeepEqual(raw.boxes, client.boxes) || !reflect.DeepEqual(raw.statuses, client.statuses) {
		t.Errorf("raw path: %q\n%+v\nimapclient path: %q\n%+v", raw.boxes, raw.statuses, client.boxes, client.statuses)
	}
	for _, name := range append(slices.Clone(rawFirstNames), "INBOX") {
		if st, ok := raw.statuses[name]; !slices.Contains(raw.boxes, name) || !ok || st.Messages == 0 {
			t.Errorf("raw path: %q not listed with its status: %q, %+v", name, raw.boxes, st)
		}
	}
	for _, c := range []struct {
		name  string
		trace string
		want  int
	}{{"raw path", raw.trace, 0}, {"imapclient path (negative control)", client.trace, 1}} {
		if n := strings.Count(c.trace, "C: T1 AUTHENTICATE"); n != c.want {
			t.Errorf("%s: %d imapclient logins, want %d:\n%s", c.name, n, c.want, c.trace)
		}
	}
}

// TestDovecotChangeRerunLogins: a rerun after a new message and a flag
// change (statuses, the change listing, the new body) logs in once; the
// imapclient-first path of before logs in twice (negative control).
func TestDovecotChangeRerunLogins(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	ctx := context.Background()
	for _, c := range []struct {
		name        string
		incremental bool
		want        int
	}{{"raw first", true, 1}, {"imapclient first (negative control)", false, 2}} {
		t.Run(c.name, func(t *testing.T) {
			user, pw := d.NewUser(t)
			d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(1), deltaMsg(2), deltaMsg(3)})
			d.Seed(t, user, pw, "Work", []mailtest.SeedMessage{deltaMsg(4)})
			first, _ := tracedSource(t, d, user, pw, nil, c.incremental)
			st0, err := first.FolderStatuses(ctx, []string{"INBOX", "Work"})
			if err != nil {
				t.Fatal(err)
			}
			var known []mail.ID
			if err := first.List(ctx, "INBOX", func(e mail.Envelope) error { known = append(known, e.ID); return nil }); err != nil {
				t.Fatal(err)
			}
			_ = first.Close()

			d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(5)})
			cl := d.Dial(t, user, pw)
			if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			if err := cl.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			_ = cl.Logout().Wait()

			s, trace := tracedSource(t, d, user, pw, nil, c.incremental)
			sts, err := s.FolderStatuses(ctx, []string{"INBOX", "Work"})
			if err != nil {
				t.Fatal(err)
			}
			if sts["Work"] != st0["Work"] || sts["INBOX"].UIDNext != st0["INBOX"].UIDNext+1 {
				t.Fatalf("statuses %+v after %+v", sts, st0)
			}
			got, _ := listChanges(t, s, "INBOX", st0["INBOX"], slices.Values(known))
			var news []mail.Envelope
			for _, ch := range got {
				if ch.Kind == mail.ChangeNew {
					news = append(news, ch.Envelope)
				}
			}
			if txt := changeText(got); len(news) != 1 || len(got) != 2 {
				t.Fatalf("changes %q, want one new and one flag change", txt)
			}
			var body []byte
			if err := s.OpenBatch(ctx, news, func(_ mail.Envelope, r io.Reader) (err error) { body, err = io.ReadAll(r); return err }); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(body), "body 5") {
				t.Fatalf("body %q", body)
			}
			if n := traceLoginCount(trace()); n != c.want {
				t.Errorf("the change rerun logged in %d times, want %d:\n%s", n, c.want, trace())
			}
		})
	}
}
