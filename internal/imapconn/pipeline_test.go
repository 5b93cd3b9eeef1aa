package imapconn

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// heldFake answers nothing until the first hold commands arrived, then
// their answers in order, and every later command at once. A client that
// waits for an answer before sending the next command of that first
// pipeline never gets one (the connection's deadline fails it): the test
// proves those commands share one round trip. answer gives each
// command's reply text.
func heldFake(t *testing.T, caps string, hold int, answer func(tag, cmd, args string) string) (*Session, *fakeServer) {
	t.Helper()
	var held []string
	f := startFake(t, &fakeServer{caps: caps, handle: func(fc *fakeConn, tag, cmd, args string) bool {
		switch cmd {
		case "CAPABILITY", "LOGIN":
			return false
		}
		held = append(held, answer(tag, cmd, args))
		if len(held) < hold {
			return true
		}
		for _, a := range held {
			fc.send("%s", a)
		}
		held, hold = held[:0], 1
		return true
	}})
	s := fakeSession(t, f)
	if err := s.rc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return s, f
}

// sentCmds are the commands f received after the login, tags cut.
func sentCmds(f *fakeServer) []string {
	var cmds []string
	for _, l := range f.sent() {
		if _, c, ok := strings.Cut(l, " "); ok && !strings.HasPrefix(c, "CAPABILITY") && !strings.HasPrefix(c, "LOGIN") {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// TestDeleteExpunge: the STORE \Deleted and the UID EXPUNGE go out in one
// round trip, and the removal is done only when both answered OK.
func TestDeleteExpunge(t *testing.T) {
	for _, tc := range []struct {
		name         string
		store, expng string // tagged answers' text
		wantErr      string // prefix of the command in error, "" none
	}{
		{"both OK", "OK done", "OK done", ""},
		{"store refused", "NO no permission", "OK done", "UID STORE"},
		{"expunge refused", "OK done", "NO no permission", "UID EXPUNGE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := heldFake(t, "IMAP4rev1 UIDPLUS", 2, func(tag, cmd, _ string) string {
				if cmd == "UID STORE" {
					return tag + " " + tc.store + "\r\n"
				}
				return "* VANISHED 3:4\r\n" + tag + " " + tc.expng + "\r\n"
			})
			_, err := s.DeleteExpunge(UIDSet{{Lo: 3, Hi: 4}})
			var ce *CommandError
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("DeleteExpunge = %v, want nil", err)
			case tc.wantErr != "" && (!errors.As(err, &ce) || !strings.HasPrefix(ce.Cmd, tc.wantErr)):
				t.Fatalf("DeleteExpunge = %v, want a refusal of %s", err, tc.wantErr)
			}
			want := []string{`UID STORE 3:4 +FLAGS.SILENT (\Deleted)`, "UID EXPUNGE 3:4"}
			if got := sentCmds(f); !reflect.DeepEqual(got, want) {
				t.Errorf("sent %q, want %q", got, want)
			}
		})
	}
}

// TestExamineEnablesQResync: a pending ENABLE QRESYNC goes out with the
// first EXAMINE in one round trip; refused, the EXAMINE that assumed it
// is sent again without QRESYNC's parameter.
func TestExamineEnablesQResync(t *testing.T) {
	examine := "* 4 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 11] n\r\n* OK [HIGHESTMODSEQ 50] m\r\n"
	for _, tc := range []struct {
		name   string
		enable string // ENABLE's answer
		qres   bool
		want   []string
	}{
		{"enabled", "* ENABLED QRESYNC\r\n%s OK enabled\r\n", true,
			[]string{"ENABLE QRESYNC", `EXAMINE "INBOX" (QRESYNC (7 40 1:8))`}},
		{"refused", "%s NO not now\r\n", false,
			[]string{"ENABLE QRESYNC", `EXAMINE "INBOX" (QRESYNC (7 40 1:8))`, `EXAMINE "INBOX" (CONDSTORE)`}},
		{"not named", "* ENABLED\r\n%s OK nothing\r\n", false,
			[]string{"ENABLE QRESYNC", `EXAMINE "INBOX" (QRESYNC (7 40 1:8))`, `EXAMINE "INBOX" (CONDSTORE)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := heldFake(t, "IMAP4rev1 ENABLE CONDSTORE QRESYNC", 2, func(tag, cmd, args string) string {
				switch {
				case cmd == "ENABLE":
					return strings.ReplaceAll(tc.enable, "%s", tag)
				case strings.Contains(args, "QRESYNC") && !tc.qres:
					return tag + " BAD QRESYNC not enabled\r\n"
				}
				return examine + tag + " OK [READ-ONLY] done\r\n"
			})
			s.EnableQResyncLater()
			sel, err := s.Examine("INBOX", &Mark{UIDValidity: 7, UIDNext: 9, HighestModSeq: 40})
			if err != nil || sel.HighestModSeq != 50 || s.QResync() != tc.qres {
				t.Fatalf("Examine = %+v, %v; QResync %v, want %v", sel, err, s.QResync(), tc.qres)
			}
			if got := sentCmds(f); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("sent %q, want %q", got, tc.want)
			}
		})
	}
}
