package imapconn

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestPrefetchChanges: the pending ENABLE QRESYNC, every mailbox's EXAMINE
// and the FETCH of new messages asked for one of them go out in one round
// trip; each answer is told apart by the command it came with (a [CLOSED]
// ends the mailbox before), and the session is left in the last mailbox,
// SELECTed read-write as asked.
func TestPrefetchChanges(t *testing.T) {
	s, f := heldFake(t, "IMAP4rev1 ENABLE CONDSTORE QRESYNC", 4, func(tag, cmd, args string) string {
		switch {
		case cmd == "ENABLE":
			return "* ENABLED QRESYNC\r\n" + tag + " OK enabled\r\n"
		case cmd == "EXAMINE" && strings.HasPrefix(args, `"INBOX"`):
			return "* 5 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 12] n\r\n* OK [HIGHESTMODSEQ 50] m\r\n" +
				"* VANISHED (EARLIER) 2\r\n* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (45))\r\n" + tag + " OK [READ-ONLY] done\r\n"
		case cmd == "UID FETCH":
			return "* 3 FETCH (UID 9 FLAGS ())\r\n* 4 FETCH (UID 10 FLAGS () RFC822.SIZE 20)\r\n* 6 EXISTS\r\n* 5 FETCH (UID 11 FLAGS (\\Seen) RFC822.SIZE 30)\r\n" +
				tag + " OK done\r\n"
		case cmd == "SELECT":
			return "* OK [CLOSED] previous closed\r\n* 3 EXISTS\r\n* OK [UIDVALIDITY 8] v\r\n* OK [UIDNEXT 4] n\r\n* OK [HIGHESTMODSEQ 9] m\r\n" +
				tag + " OK [READ-WRITE] done\r\n"
		}
		return tag + " BAD what\r\n"
	})
	s.EnableQResyncLater()
	got, err := s.PrefetchChanges([]ChangeReq{
		{Box: "INBOX", Mark: Mark{UIDValidity: 7, UIDNext: 10, HighestModSeq: 40}, NewFrom: 10},
		{Box: "Work", Mark: Mark{UIDValidity: 8, UIDNext: 4, HighestModSeq: 9}, Select: true},
	})
	if err != nil || len(got) != 2 || !s.QResync() {
		t.Fatalf("PrefetchChanges = %+v, %v; QResync %v", got, err, s.QResync())
	}
	in, work := got[0], got[1]
	if in.Err != nil || in.Sel.UIDNext != 12 || in.Sel.Exists != 5 || in.Sel.Vanished.String() != "2" || len(in.Sel.Changed) != 1 ||
		!in.NewAsked || len(in.New) != 2 || in.New[0].UID != 10 || in.New[1].UID != 11 || in.Exists != 6 || in.Vanished != nil {
		t.Errorf("INBOX: %+v", in)
	}
	if work.Err != nil || work.Sel.UIDValidity != 8 || work.Sel.Exists != 3 || work.NewAsked || work.Exists != 3 || len(work.Sel.Changed) != 0 {
		t.Errorf("Work: %+v", work)
	}
	if box, rw, sel, ok := s.Current(); !ok || box != "Work" || !rw || sel.ReadOnly || sel.UIDValidity != 8 {
		t.Errorf("Current() = %q, %v, %+v, %v; want Work SELECTed read-write", box, rw, sel, ok)
	}
	want := []string{"ENABLE QRESYNC", `EXAMINE "INBOX" (QRESYNC (7 40 1:9))`,
		"UID FETCH 10:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", `SELECT "Work" (QRESYNC (8 9 1:3))`}
	if cmds := sentCmds(f); !reflect.DeepEqual(cmds, want) {
		t.Errorf("sent %q, want %q", cmds, want)
	}
}

// TestPrefetchChangesRefused: without QRESYNC (not offered, or the ENABLE
// refused) nothing is prefetched: the caller lists one mailbox at a time.
func TestPrefetchChangesRefused(t *testing.T) {
	for _, tc := range []struct {
		name, caps string
		hold       int
	}{
		{"not offered", "IMAP4rev1 CONDSTORE", 1},
		{"refused", "IMAP4rev1 ENABLE CONDSTORE QRESYNC", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := heldFake(t, tc.caps, tc.hold, func(tag, cmd, _ string) string {
				if cmd == "ENABLE" {
					return tag + " NO not today\r\n"
				}
				return tag + " BAD QRESYNC not enabled\r\n"
			})
			s.EnableQResyncLater()
			got, err := s.PrefetchChanges([]ChangeReq{{Box: "INBOX", Mark: Mark{UIDValidity: 7, UIDNext: 10, HighestModSeq: 40}}})
			if !errors.Is(err, ErrNoQResync) {
				t.Fatalf("PrefetchChanges = %+v, %v; want ErrNoQResync", got, err)
			}
			if _, _, _, ok := s.Current(); ok {
				t.Errorf("a mailbox is taken as selected after refused EXAMINEs")
			}
		})
	}
}

// TestSelectFetchBodies: the SELECT and the FETCH of bodies go out in one
// round trip; a body reaches the caller only when the SELECT answered the
// UIDVALIDITY it expects (the negative control: another UIDVALIDITY, the
// same bodies sent, none passed), and a refused SELECT is the error.
func TestSelectFetchBodies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		uidv    uint32
		selAns  string
		want    []uint32
		wantErr bool
	}{
		{"expected UIDVALIDITY", 7, "OK [READ-WRITE] done", []uint32{5}, false},
		{"another UIDVALIDITY", 8, "OK [READ-WRITE] done", nil, false},
		{"refused", 7, "NO no such mailbox", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := heldFake(t, "IMAP4rev1 CONDSTORE", 2, func(tag, cmd, _ string) string {
				if cmd == "SELECT" {
					if strings.HasPrefix(tc.selAns, "NO") {
						return tag + " " + tc.selAns + "\r\n"
					}
					return "* 2 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 9] n\r\n" + tag + " " + tc.selAns + "\r\n"
				}
				if strings.HasPrefix(tc.selAns, "NO") {
					return tag + " BAD no mailbox selected\r\n"
				}
				return "* 1 FETCH (UID 5 BODY[] {4}\r\nbody)\r\n* 2 FETCH (UID 6 FLAGS (\\Seen))\r\n" + tag + " OK done\r\n"
			})
			var got []uint32
			sel, err := s.SelectFetchBodies("INBOX", tc.uidv, UIDSet{{Lo: 5, Hi: 5}}, func(fd FetchData) error {
				got = append(got, fd.UID)
				return nil
			})
			var ce *CommandError
			if tc.wantErr != (err != nil) || tc.wantErr && (!errors.As(err, &ce) || !strings.HasPrefix(ce.Cmd, "SELECT")) {
				t.Fatalf("SelectFetchBodies = %+v, %v; want a SELECT error %v", sel, err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("bodies of UIDs %v passed, want %v", got, tc.want)
			}
			if box, rw, _, ok := s.Current(); ok != !tc.wantErr || ok && (box != "INBOX" || !rw) {
				t.Errorf("Current() = %q, %v, %v", box, rw, ok)
			}
			if cmds := sentCmds(f); !reflect.DeepEqual(cmds, []string{`SELECT "INBOX" (CONDSTORE)`, "UID FETCH 5 (UID BODY.PEEK[])"}) {
				t.Errorf("sent %q", cmds)
			}
		})
	}
}
