package mbox

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

func TestNewRefusesBadRoot(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "INBOX.mbox")
	os.WriteFile(file, nil, 0o600)
	for _, root := range []string{file, filepath.Join(dir, "missing")} {
		_, err := New(context.Background(), root, nil)
		var ce *mail.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("New(%q) = %v, want a *mail.ConfigError", root, err)
		}
	}
}

func TestRegister(t *testing.T) {
	r := mail.NewRegistry()
	Register(r)
	src, err := r.OpenSource(context.Background(), "mbox:"+t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := r.OpenSource(context.Background(), "mbox:"+t.TempDir()+"?x=1", nil); err == nil {
		t.Error("OpenSource with an unknown option succeeded")
	}
}

// TestOpenOnlyAtEntries: IDs that are not entry offsets are not found, even
// where the bytes look like a From_ line.
func TestOpenOnlyAtEntries(t *testing.T) {
	src := seed(t, []mailtest.Fixture{{Mailbox: "INBOX", Body: []byte("S: 1\n\nxFrom y\n")}, {Mailbox: "INBOX", Body: []byte("b\n")}})
	var ids []mail.ID
	src.List(context.Background(), "INBOX", func(e mail.Envelope) error { ids = append(ids, e.ID); return nil })
	if len(ids) != 2 || ids[0] != "0" {
		t.Fatalf("listed %v", ids)
	}
	for _, id := range []mail.ID{"1", "00", "+0", "-1", "52", "999999", "x"} {
		if _, err := src.Open(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: id}); !errors.Is(err, mail.ErrNotFound) {
			t.Errorf("Open(%s) = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := src.Open(context.Background(), mail.Envelope{Mailbox: "Nope", ID: "0"}); !errors.Is(err, mail.ErrMailboxNotFound) {
		t.Errorf("Open in a missing mailbox = %v, want ErrMailboxNotFound", err)
	}
	if err := src.List(context.Background(), "../x", func(mail.Envelope) error { return nil }); !errors.Is(err, mail.ErrMailboxNotFound) {
		t.Errorf("List(../x) = %v, want ErrMailboxNotFound", err)
	}
	rc, err := src.Open(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: ids[1]})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "b\n" {
		t.Errorf("Open(%s) = %q", ids[1], b)
	}
}

func TestMailboxesSkipsOthers(t *testing.T) {
	src := seed(t, []mailtest.Fixture{{Mailbox: "INBOX", Body: []byte("a\n")}, {Mailbox: "A/B", Body: []byte("b\n")}}).(*Source)
	for _, p := range []string{"notes.txt", "INBOX.mbox.lock", ".mbox", "X.mbox/Y.mbox"} {
		os.MkdirAll(filepath.Dir(filepath.Join(src.root, p)), 0o700)
		os.WriteFile(filepath.Join(src.root, p), []byte("From x\n"), 0o600)
	}
	os.Symlink(filepath.Join(src.root, "INBOX.mbox"), filepath.Join(src.root, "Link.mbox"))
	got, err := src.Mailboxes(context.Background())
	if err != nil || len(got) != 2 || got[0] != "A/B" || got[1] != "INBOX" {
		t.Fatalf("Mailboxes() = %q, %v; want [A/B INBOX]", got, err)
	}
}

func TestMessageID(t *testing.T) {
	for head, want := range map[string]string{
		"Subject: x\r\nMessage-ID: <a@b>\r\n\r\n":       "<a@b>",
		"message-id:<a@b>\n\n":                          "<a@b>",
		"Message-ID:\r\n <folded@b>\r\nX: y\r\n\r\n":    "<folded@b>",
		"Subject: x\n\nMessage-ID: <in body@b>\n":       "",
		"Subject: x\r\nMessage-ID: <cut off at the end": "",
	} {
		if got := messageID([]byte(head)); got != want {
			t.Errorf("messageID(%q) = %q, want %q", head, got, want)
		}
	}
}
