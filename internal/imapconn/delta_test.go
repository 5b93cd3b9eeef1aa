package imapconn

import (
	"errors"
	"strings"
	"testing"
)

// deltaFake answers the incremental listing's commands with the quirks a
// real server may show: a [CLOSED] after what belonged to the mailbox
// closed, NOMODSEQ, VANISHED and EXISTS arriving during a FETCH, a
// STATUS refused for one mailbox, and "n:*" naming the last message when
// n is past it.
func deltaFake(t *testing.T, caps string) (*Session, *fakeServer) {
	t.Helper()
	f := startFake(t, &fakeServer{caps: caps, handle: func(fc *fakeConn, tag, cmd, args string) bool {
		switch {
		case cmd == "ENABLE":
			fc.send("* ENABLED QRESYNC\r\n%s OK enabled\r\n", tag)
		case cmd == "EXAMINE" && strings.HasPrefix(args, `"NoMod"`):
			fc.send("* 2 EXISTS\r\n* OK [UIDVALIDITY 9] v\r\n* OK [UIDNEXT 3] n\r\n* OK [NOMODSEQ] none\r\n%s OK [READ-ONLY] done\r\n", tag)
		case cmd == "EXAMINE":
			fc.send("%s", "* VANISHED 99\r\n* OK [CLOSED] previous mailbox closed\r\n"+
				"* 4 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 11] n\r\n* OK [HIGHESTMODSEQ 50] m\r\n"+
				"* VANISHED (EARLIER) 2,5:6\r\n* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (45))\r\n"+
				tag+" OK [READ-ONLY] done\r\n")
		case cmd == "UID FETCH" && strings.HasPrefix(args, "11:*"):
			fc.send("* 4 FETCH (UID 10 FLAGS ())\r\n* VANISHED 3\r\n* 4 EXISTS\r\n%s OK done\r\n", tag)
		case cmd == "STATUS" && strings.HasPrefix(args, `"Gone"`):
			fc.send("%s NO [NONEXISTENT] no such mailbox\r\n", tag)
		case cmd == "STATUS" && strings.HasPrefix(args, `"Busy"`):
			fc.send("%s NO [UNAVAILABLE] try later\r\n", tag)
		case cmd == "LIST" && strings.Contains(args, "RETURN (STATUS"):
			fc.send("%s NO [SERVERBUG] oops\r\n", tag)
		case cmd == "STATUS":
			name, _, _ := strings.Cut(args, " ")
			fc.send("* STATUS %s (UIDVALIDITY 7 UIDNEXT 11 MESSAGES 4 HIGHESTMODSEQ 50)\r\n%s OK done\r\n", name, tag)
		default:
			return false
		}
		return true
	}})
	return fakeSession(t, f), f
}

func TestSessionExamineQResync(t *testing.T) {
	s, _ := deltaFake(t, "IMAP4rev1 ENABLE CONDSTORE QRESYNC")
	if err := s.EnableQResync(); err != nil || !s.QResync() {
		t.Fatalf("EnableQResync() = %v, QResync %v", err, s.QResync())
	}
	sel, err := s.Examine("INBOX", &Mark{UIDValidity: 7, UIDNext: 9, HighestModSeq: 40})
	if err != nil {
		t.Fatal(err)
	}
	// VANISHED 99 came before [CLOSED]: it was the previous mailbox's.
	if sel.UIDValidity != 7 || sel.UIDNext != 11 || sel.Exists != 4 || sel.HighestModSeq != 50 || sel.NoModSeq ||
		sel.Vanished.String() != "2,5:6" || len(sel.Changed) != 1 || sel.Changed[0].UID != 1 {
		t.Fatalf("Examine = %+v", sel)
	}
	var uids []uint32
	if err := s.FetchNew(11, 0, func(fd FetchData) error { uids = append(uids, fd.UID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(uids) != 0 {
		t.Errorf("FetchNew(11) passed %v: 11:* named the last message, UID 10, which is older", uids)
	}
	if v := s.TakeVanished(); v.String() != "3" || s.Exists() != 4 {
		t.Errorf("after FETCH: vanished %v, exists %d; want 3 and 4", v, s.Exists())
	}
	sel, err = s.Examine("NoMod", nil)
	if err != nil || !sel.NoModSeq || sel.HighestModSeq != 0 {
		t.Fatalf("Examine(NoMod) = %+v, %v", sel, err)
	}
}

func TestSessionStatusPipelined(t *testing.T) {
	s, f := deltaFake(t, "IMAP4rev1 CONDSTORE")
	boxes := []string{"INBOX", "Gone", "Entwürfe"}
	for i := 0; i < 100; i++ { // more than pipeMax
		boxes = append(boxes, "B"+strings.Repeat("x", i))
	}
	got, err := s.StatusAll(boxes)
	if err != nil {
		t.Fatalf("StatusAll() = %v", err)
	}
	if len(got) != len(boxes)-1 || got["Entwürfe"].HighestModSeq != 50 || got["INBOX"].UIDNext != 11 {
		t.Fatalf("StatusAll() = %d mailboxes, %+v", len(got), got["Entwürfe"])
	}
	if _, ok := got["Gone"]; ok {
		t.Error("a mailbox the server refused is in the result")
	}
	var statuses int
	for _, l := range f.sent() {
		if strings.Contains(l, " STATUS ") {
			statuses++
			if !strings.HasSuffix(l, "(UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)") {
				t.Errorf("sent %q", l)
			}
		}
		if strings.Contains(l, "Entw") && !strings.Contains(l, `"Entw&APw-rfe"`) {
			t.Errorf("name not in modified UTF-7: %q", l)
		}
	}
	if statuses != len(boxes) {
		t.Errorf("sent %d STATUS, want %d", statuses, len(boxes))
	}
}

// TestSessionStatusRefused checks that a refusal other than "no such
// mailbox" is an error, never an empty answer that would read as folders
// deleted.
func TestSessionStatusRefused(t *testing.T) {
	tests := []struct {
		name  string
		caps  string
		boxes []string
	}{
		{"STATUS UNAVAILABLE", "IMAP4rev1", []string{"INBOX", "Busy"}},
		{"LIST-STATUS NO", "IMAP4rev1 LIST-STATUS", []string{"INBOX", "Work"}},
	}
	for _, tt := range tests {
		s, _ := deltaFake(t, tt.caps)
		if got, err := s.StatusAll(tt.boxes); err == nil {
			t.Errorf("%s: StatusAll() = %v, nil; want an error", tt.name, got)
		}
	}
}

func TestSessionNoQResync(t *testing.T) {
	s, f := deltaFake(t, "IMAP4rev1 ENABLE QRESYNC")
	s.Ignore = map[string]bool{"QRESYNC": true}
	if err := s.EnableQResync(); err != nil || s.QResync() {
		t.Fatalf("EnableQResync with QRESYNC ignored: %v, %v", err, s.QResync())
	}
	for _, l := range f.sent() {
		if strings.Contains(l, "ENABLE") {
			t.Fatalf("sent %q although QRESYNC is ignored", l)
		}
	}
	err := s.run1("FOO", nil)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Resp.Kind != "BAD" {
		t.Fatalf("run1(FOO) = %v, want a *CommandError", err)
	}
}

// TestSessionStatusMailboxID: where the server offers OBJECTID (RFC 8474)
// STATUS and LIST-STATUS ask MAILBOXID too, and each mailbox's is read;
// without OBJECTID it is not asked.
func TestSessionStatusMailboxID(t *testing.T) {
	for _, tc := range []struct {
		name, caps string
		boxes      []string
		want       map[string]string
	}{
		{"STATUS", "IMAP4rev1 OBJECTID", []string{"INBOX"}, map[string]string{"INBOX": "F2212ea87-6097-4256"}},
		{"LIST-STATUS", "IMAP4rev1 OBJECTID LIST-STATUS", []string{"INBOX", "Work"}, map[string]string{"INBOX": "F2212ea87-6097-4256", "Work": "Fwork-1"}},
		{"no OBJECTID", "IMAP4rev1 LIST-STATUS", []string{"INBOX", "Work"}, map[string]string{"INBOX": "", "Work": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status := func(box, items string) string {
				id := map[string]string{"INBOX": "F2212ea87-6097-4256", "Work": "Fwork-1"}[box]
				extra := ""
				if strings.Contains(items, "MAILBOXID") {
					extra = " MAILBOXID (" + id + ")"
				}
				return `* STATUS "` + box + `" (UIDVALIDITY 7 UIDNEXT 11 MESSAGES 4` + extra + ")\r\n"
			}
			f := startFake(t, &fakeServer{caps: tc.caps, handle: func(fc *fakeConn, tag, cmd, args string) bool {
				switch cmd {
				case "STATUS":
					box, items, _ := strings.Cut(args, " ")
					fc.send("%s%s OK done\r\n", status(strings.Trim(box, `"`), items), tag)
				case "LIST":
					fc.send("* LIST () \"/\" \"INBOX\"\r\n%s* LIST () \"/\" \"Work\"\r\n%s%s OK done\r\n",
						status("INBOX", args), status("Work", args), tag)
				default:
					return false
				}
				return true
			}})
			got, err := fakeSession(t, f).StatusAll(tc.boxes)
			if err != nil {
				t.Fatalf("StatusAll() = %v", err)
			}
			for box, id := range tc.want {
				if got[box].MailboxID != id || got[box].UIDNext != 11 {
					t.Errorf("StatusAll()[%s] = %+v, want MAILBOXID %q", box, got[box], id)
				}
			}
		})
	}
}
