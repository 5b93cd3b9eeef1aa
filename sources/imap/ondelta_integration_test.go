package imap

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestDovecotBodiesOnChangeConnection: after a change listing, the new
// messages' bodies come byte for byte over the connection that listed them
// (one more UID FETCH there), not over a pooled connection that would log
// in and EXAMINE the folder again. A batch too large for memory, a folder
// the listing did not leave open, and a stale UIDVALIDITY go to the pool.
func TestDovecotBodiesOnChangeConnection(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	ctx := context.Background()
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(1), deltaMsg(2)})
	d.Seed(t, user, pw, "Work", []mailtest.SeedMessage{deltaMsg(9)})
	s, trace := deltaSource(t, d, user, pw, nil)
	st0, err := s.FolderStatuses(ctx, []string{"INBOX", "Work"})
	if err != nil {
		t.Fatal(err)
	}
	// Bytes a parser could trip on: a line like a tagged answer, a
	// parenthesis, a literal's announcement, 8-bit text, no final newline
	// (Dovecot turns a bare LF into CRLF on APPEND, so there is none).
	hostile := []byte("Message-ID: <m3@delta.test>\r\nSubject: x\r\n\r\nD9 OK done)\r\n* 1 FETCH (UID 1 BODY[] {5}\r\n\xc3\xbcber\r\nno final newline")
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{{Body: hostile}, deltaMsg(4)})
	got, _ := listChanges(t, s, "INBOX", st0["INBOX"], slices.Values([]mail.ID{}))
	var news []mail.Envelope
	for _, c := range got {
		if c.Kind == mail.ChangeNew {
			news = append(news, c.Envelope)
		}
	}
	if len(news) != 2 {
		t.Fatalf("new messages = %q", changeText(got))
	}
	logins := func() int { return strings.Count(trace(), "AUTHENTICATE") + strings.Count(trace(), " LOGIN ") }
	before := logins()

	rc, err := s.Open(ctx, news[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || !bytes.Equal(b, hostile) {
		t.Fatalf("Open = %q, %v; want %q", b, err, hostile)
	}
	var batch [][]byte
	err = s.OpenBatch(ctx, news, func(_ mail.Envelope, r io.Reader) error {
		b, err := io.ReadAll(r)
		batch = append(batch, b)
		return err
	})
	if err != nil || len(batch) != 2 || !bytes.Equal(batch[0], hostile) || !strings.Contains(string(batch[1]), "body 4") {
		t.Fatalf("OpenBatch = %v, bodies %q", err, batch)
	}
	if n := logins() - before; n != 0 {
		t.Errorf("fetching the listed folder's new bodies logged in %d more times, want 0:\n%s", n, trace())
	}
	if n := strings.Count(trace(), "(UID BODY.PEEK[])"); n != 2 {
		t.Errorf("%d body fetches on the change connection, want 2:\n%s", n, trace())
	}

	// Negative controls: each of these goes through the pool, which logs in once.
	var work mail.Envelope
	if err := s.List(ctx, "Work", func(e mail.Envelope) error { work = e; return nil }); err != nil {
		t.Fatal(err)
	}
	before = logins() // the full listing dialled the control connection New no longer opens
	big := news[1]
	big.Size = deltaFetchBytes + 1
	stale := news[1]
	stale.ID = mail.ID(strings.Replace(string(stale.ID), ".", "1.", 1)) // another UIDVALIDITY
	for _, c := range []struct {
		name string
		env  mail.Envelope
		want bool // found
	}{{"another folder", work, true}, {"too big for memory", big, true}, {"stale UIDVALIDITY", stale, false}} {
		rc, err := s.Open(ctx, c.env)
		if (err == nil) != c.want {
			t.Fatalf("%s: Open = %v", c.name, err)
		}
		if rc != nil {
			_ = rc.Close()
		}
	}
	if n := logins() - before; n != 1 {
		t.Errorf("the pool logged in %d times for the other fetches, want 1:\n%s", n, trace())
	}
}
