package imap

import (
	"bufio"
	"context"
	"errors"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// TestC11GmailOwner: each message goes to the first folder (by rank) that
// holds it, unless the checkpoint says an earlier run copied it from a
// later one, which then keeps it (a label added after the first run must
// not copy the message again).
func TestC11GmailOwner(t *testing.T) {
	type meet struct {
		rank   int
		sticky bool
	}
	for _, tc := range []struct {
		name  string
		meets []meet
		want  int
	}{
		{"only in All Mail", []meet{{4, false}}, 4},
		{"INBOX, label, All Mail", []meet{{0, false}, {1, false}, {4, false}}, 0},
		{"label added after All Mail was copied", []meet{{1, false}, {4, true}}, 4},
		{"copied from INBOX and a label: the first stays", []meet{{0, true}, {1, true}}, 0},
		{"copied from the label: INBOX added later", []meet{{0, false}, {1, true}, {4, false}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := gmailOwners{}
			for _, m := range tc.meets {
				o.meet(42, m.rank, m.sticky)
			}
			if got, ok := o.owner(42); !ok || got != tc.want {
				t.Errorf("owner = %d, %v, want %d", got, ok, tc.want)
			}
			if _, ok := o.owner(43); ok {
				t.Error("owner(unknown message) found one")
			}
		})
	}
}

func TestC11GmailRank(t *testing.T) {
	for _, tc := range []struct {
		name, role string
		keep       bool
		want       int
	}{
		{"INBOX", "", false, 0},
		{"Label1", "", false, 1},
		{"Work/2024", "", false, 1},
		{"[Gmail]/Sent Mail", mail.RoleSent, false, 2},
		{"[Gmail]/Drafts", mail.RoleDrafts, false, 3},
		{"[Gmail]/All Mail", mail.RoleAll, false, 4},
		{"[Gmail]/Spam", mail.RoleJunk, false, -1},
		{"[Gmail]/Spam", mail.RoleJunk, true, 5},
		{"[Gmail]/Trash", mail.RoleTrash, true, 5},
		{"[Gmail]/Starred", mail.RoleFlagged, true, -1},
		{"[Gmail]/Important", string(imap.MailboxAttrImportant), false, -1},
	} {
		if got := gmailRank(tc.name, tc.role, tc.keep); got != tc.want {
			t.Errorf("gmailRank(%q, %q, %v) = %d, want %d", tc.name, tc.role, tc.keep, got, tc.want)
		}
	}
}

func TestC11ParseGmailFetch(t *testing.T) {
	for _, tc := range []struct {
		line string
		uid  imap.UID
		gm   uint64
		ok   bool
	}{
		{"* 1 FETCH (X-GM-MSGID 1278455344230334865 UID 4)", 4, 1278455344230334865, true},
		{"* 12 FETCH (UID 7 X-GM-MSGID 18446744073709551615)", 7, 18446744073709551615, true},
		{"* 3 FETCH (FLAGS (\\Seen \\Flagged) UID 9 X-GM-MSGID 5)", 9, 5, true},
		{"* 3 FETCH (FLAGS (\\Seen))", 0, 0, false},
		{"* 3 FETCH (UID 9)", 0, 0, false},
		{"* 3 FETCH (UID 0 X-GM-MSGID 5)", 0, 0, false},
		{"* 3 FETCH (UID 9 X-GM-MSGID x)", 0, 0, false},
		{"* 3 EXPUNGE", 0, 0, false},
	} {
		uid, gm, ok := parseGmailFetch(tc.line)
		if ok != tc.ok || (ok && (uid != tc.uid || gm != tc.gm)) {
			t.Errorf("parseGmailFetch(%q) = %d, %d, %v, want %d, %d, %v", tc.line, uid, gm, ok, tc.uid, tc.gm, tc.ok)
		}
	}
}

func TestGmailResponses(t *testing.T) {
	if v, ok := respCode("* OK [UIDVALIDITY 3857529045] UIDs valid", "UIDVALIDITY"); !ok || v != 3857529045 {
		t.Errorf("respCode = %d, %v", v, ok)
	}
	if _, ok := respCode("* OK [UIDNEXT 4] next", "UIDVALIDITY"); ok {
		t.Error("respCode found UIDVALIDITY in UIDNEXT")
	}
	if n, ok := existsCount("* 172 EXISTS"); !ok || n != 172 {
		t.Errorf("existsCount = %d, %v", n, ok)
	}
	if _, ok := existsCount("* 172 RECENT"); ok {
		t.Error("existsCount read RECENT")
	}
	// A literal inside a response is skipped whole, even when it holds
	// what looks like a tagged reply.
	r := bufio.NewReader(strings.NewReader("* 1 FETCH (BODY[] {12}\r\nG1 OK fake\r\n)\r\nG1 OK done\r\n"))
	for _, want := range []string{`* 1 FETCH (BODY[] "")`, "G1 OK done"} {
		if got, err := imapconn.ReadResponse(r, 64<<10, gmailLiteralMax); err != nil || got != want {
			t.Errorf("ReadResponse = %q, %v, want %q", got, err, want)
		}
	}
	if got := imapconn.EncodeMUTF7("Entwürfe & [Gmail]/Gesendet"); got != "Entw&APw-rfe &- [Gmail]/Gesendet" {
		t.Errorf("EncodeMUTF7 = %q", got)
	}
}

// TestGmailRefusesOtherServers: the preset on a server without X-GM-EXT-1
// is a configuration error (exit 2), not a silent plain copy.
func TestGmailRefusesOtherServers(t *testing.T) {
	m := startMem(t, nil)
	s := m.source(t, m.opts(testPass))
	if gm, err := s.IsGmail(context.Background()); err != nil || gm {
		t.Fatalf("IsGmail() = %v, %v, want false", gm, err)
	}
	if _, err := NewGmail(context.Background(), s, nil); !errors.Is(err, mail.ErrConfig) {
		t.Errorf("NewGmail() = %v, want mail.ErrConfig", err)
	}
}
