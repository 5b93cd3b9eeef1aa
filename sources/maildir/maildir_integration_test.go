package maildir

import (
	"context"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestReadsDovecotMaildir seeds a user over IMAP, then reads Dovecot's own
// Maildir++ files with the source: the same folders (mUTF-7 decoded), bytes
// (as Dovecot stores them: LF line endings),
// flags (keywords through dovecot-keywords) and internal dates.
func TestReadsDovecotMaildir(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	date := time.Date(2022, 8, 9, 10, 11, 12, 0, time.UTC)
	seeds := map[string][]mailtest.SeedMessage{
		"INBOX": {
			{Body: []byte("Subject: one\r\n\r\nunseen\r\n"), Date: date},
			{Body: []byte("Subject: two\r\n\r\nseen\r\n"), Flags: []imap.Flag{imap.FlagSeen, "$Label1"}, Date: date.Add(time.Hour)},
		},
		"Entwürfe/Alt": {
			{Body: []byte("Subject: draft\r\n\r\nGrüße\r\n"), Flags: []imap.Flag{imap.FlagDraft, imap.FlagFlagged}, Date: date.Add(2 * time.Hour)},
		},
		"Tom & Jerry": {
			{Body: []byte("Subject: amp\r\n\r\nx\r\n"), Flags: []imap.Flag{imap.FlagAnswered, imap.FlagDeleted, imap.FlagSeen, "$Forwarded"}, Date: date.Add(3 * time.Hour)},
		},
	}
	for mb, msgs := range seeds {
		d.Seed(t, user, pw, mb, msgs)
	}
	src, err := New(context.Background(), filepath.Join(d.Dir, "home", user, "Maildir"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	boxes, err := src.Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for mb, msgs := range seeds {
		if !contains(boxes, mb) {
			t.Errorf("Mailboxes = %q, want %q among them", boxes, mb)
			continue
		}
		var got []mail.Envelope
		if err := src.List(context.Background(), mb, func(e mail.Envelope) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(msgs) {
			t.Errorf("List(%q) = %d messages, want %d", mb, len(got), len(msgs))
			continue
		}
		for _, e := range got {
			r, err := src.Open(context.Background(), e)
			if err != nil {
				t.Fatalf("Open(%q, %q) = %v", mb, e.ID, err)
			}
			body, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			// Dovecot stores what it is given with LF line endings; the
			// source serves the file as stored.
			var want *mailtest.SeedMessage
			for i := range msgs {
				if strings.ReplaceAll(string(msgs[i].Body), "\r\n", "\n") == string(body) {
					want = &msgs[i]
				}
			}
			if want == nil {
				t.Errorf("%s/%s: unexpected body %q", mb, e.ID, body)
				continue
			}
			if flags(e.Flags) != flagsIMAP(want.Flags) {
				t.Errorf("%s %q: flags %v, want %v", mb, body, e.Flags, want.Flags)
			}
			if !e.Date.Equal(want.Date) || e.Size != int64(len(body)) {
				t.Errorf("%s %q: date %v size %d, want %v %d", mb, body, e.Date, e.Size, want.Date, len(body))
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func flags(fs []mail.Flag) string {
	var s []string
	for _, f := range fs {
		s = append(s, strings.ToLower(string(f)))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func flagsIMAP(fs []imap.Flag) string {
	var m []mail.Flag
	for _, f := range fs {
		m = append(m, mail.Flag(f))
	}
	return flags(m)
}
