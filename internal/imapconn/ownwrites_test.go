package imapconn

import (
	"reflect"
	"strings"
	"testing"
)

// TestProveOwnWrites: per mailbox, an EXAMINE and a UID FETCH CHANGEDSINCE
// VANISHED, every mailbox in one round trip; a mailbox is proved only
// when every change the server reports is a write the pool logged.
func TestProveOwnWrites(t *testing.T) {
	const (
		examine = "* %d EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT %d] n\r\n* OK [HIGHESTMODSEQ 30] m\r\n"
		ours    = "* 1 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (20))\r\n* 9 FETCH (UID 10 FLAGS (\\Recent $Work) MODSEQ (21))\r\n* VANISHED (EARLIER) 5\r\n"
	)
	for _, tc := range []struct {
		name   string
		exists int
		next   int
		fetch  string // the FETCH's untagged answers
		proved bool
	}{
		{"all ours", 4, 11, ours, true},
		{"another client's flag change", 4, 11, ours + "* 2 FETCH (UID 4 FLAGS (\\Flagged) MODSEQ (22))\r\n", false},
		{"changed again after our STORE", 4, 11, strings.Replace(ours, "MODSEQ (20)", "MODSEQ (23)", 1), false},
		{"appended, flags changed since", 4, 11, strings.Replace(ours, "$Work", "$Work \\Seen", 1), false},
		{"another client's expunge", 3, 11, strings.Replace(ours, "EARLIER) 5", "EARLIER) 5:6", 1), false},
		{"another client's append", 5, 12, ours, false},
		{"an expunge during the FETCH", 4, 11, ours + "* 2 EXPUNGE\r\n", false},
		{"count does not add up", 5, 11, ours, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			box := ""
			s, f := heldFake(t, "IMAP4rev1 ENABLE CONDSTORE QRESYNC UIDPLUS", 4, func(tag, cmd, args string) string {
				switch {
				case cmd == "EXAMINE" && strings.HasPrefix(args, `"Other"`):
					box = "Other"
					return "* 2 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 3] n\r\n* OK [HIGHESTMODSEQ 9] m\r\n" + tag + " OK [READ-ONLY] done\r\n"
				case cmd == "EXAMINE":
					box = "INBOX"
					return strings.NewReplacer("%d EXISTS", itoa(tc.exists)+" EXISTS", "UIDNEXT %d", "UIDNEXT "+itoa(tc.next)).Replace(examine) +
						tag + " OK [READ-ONLY] done\r\n"
				case cmd == "UID FETCH" && box == "Other":
					return "* 2 FETCH (UID 2 FLAGS () MODSEQ (9))\r\n" + tag + " OK done\r\n"
				case cmd == "UID FETCH":
					return tc.fetch + tag + " OK done\r\n"
				}
				return tag + " BAD what\r\n"
			})
			s.qres = true
			p := &Pool{}
			p.NoteStored("INBOX", 7, 3, []string{`\Seen`}, 20)
			p.NoteAppended("INBOX", 7, 10, []string{"$Work"})
			p.NoteRemoved("INBOX", 7, UIDSet{{Lo: 5, Hi: 5}}, 0)
			p.NoteStored("Other", 7, 2, nil, 9)   // Other: ours too, but not since its mark
			p.NoteStored("Tainted", 7, 1, nil, 4) // a write in doubt: never asked
			p.NoteUnknown("Tainted")
			got, err := s.ProveOwnWrites(p, []OwnProof{
				{Box: "INBOX", Mark: Mark{UIDValidity: 7, UIDNext: 10, HighestModSeq: 15}, Messages: 4},
				{Box: "Other", Mark: Mark{UIDValidity: 7, UIDNext: 3, HighestModSeq: 8}, Messages: 1}, // a message came: not ours
				{Box: "Tainted", Mark: Mark{UIDValidity: 7, UIDNext: 3, HighestModSeq: 1}, Messages: 2},
				{Box: "Unwritten", Mark: Mark{UIDValidity: 7, UIDNext: 3, HighestModSeq: 1}, Messages: 2},
			})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]Proved{}
			if tc.proved {
				want["INBOX"] = Proved{UIDValidity: 7, UIDNext: 11, Messages: 4, HighestModSeq: 30}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ProveOwnWrites = %+v, want %+v", got, want)
			}
			wantCmds := []string{`EXAMINE "INBOX" (CONDSTORE)`, "UID FETCH 1:4294967295 (UID FLAGS MODSEQ) (CHANGEDSINCE 15 VANISHED)",
				`EXAMINE "Other" (CONDSTORE)`, "UID FETCH 1:4294967295 (UID FLAGS MODSEQ) (CHANGEDSINCE 8 VANISHED)"}
			if cmds := sentCmds(f); !reflect.DeepEqual(cmds, wantCmds) {
				t.Errorf("sent %q, want %q", cmds, wantCmds)
			}
		})
	}
}

// TestProveSelected: the proof in the mailbox the writes left open is a
// STATUS and a UID FETCH CHANGEDSINCE VANISHED there, sent with the
// SELECT of the next mailbox in one round trip (the fake answers once it
// holds all three). It proves only what ProveOwnWrites would, and only
// when the STATUS's HIGHESTMODSEQ is what the FETCH and the writes'
// answers account for (a server answering STATUS from a later state than
// the FETCH's would otherwise hide a change). Another mailbox open: no
// proof, only the SELECT.
func TestProveSelected(t *testing.T) {
	const ours = "* 1 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (20))\r\n* 9 FETCH (UID 10 FLAGS (\\Recent $Work) MODSEQ (21))\r\n* VANISHED (EARLIER) 5\r\n"
	for _, tc := range []struct {
		name   string
		open   string // the mailbox the session has open
		status string // the STATUS answer's values
		fetch  string
		proved bool
	}{
		{"all ours", "INBOX", "MESSAGES 4 UIDNEXT 11 UIDVALIDITY 7 HIGHESTMODSEQ 22", ours, true},
		{"STATUS from a later state than the FETCH", "INBOX", "MESSAGES 4 UIDNEXT 11 UIDVALIDITY 7 HIGHESTMODSEQ 23", ours, false},
		{"another client's flag change", "INBOX", "MESSAGES 4 UIDNEXT 11 UIDVALIDITY 7 HIGHESTMODSEQ 23", ours + "* 2 FETCH (UID 4 FLAGS (\\Flagged) MODSEQ (23))\r\n", false},
		{"another client's expunge", "INBOX", "MESSAGES 3 UIDNEXT 11 UIDVALIDITY 7 HIGHESTMODSEQ 22", strings.Replace(ours, "EARLIER) 5", "EARLIER) 5:6", 1), false},
		{"a message came during the FETCH", "INBOX", "MESSAGES 4 UIDNEXT 11 UIDVALIDITY 7 HIGHESTMODSEQ 22", ours + "* 5 EXISTS\r\n", false},
		{"another mailbox open", "Other", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hold := 3
			if tc.open != "INBOX" {
				hold = 1
			}
			s, f := heldFake(t, "IMAP4rev1 ENABLE CONDSTORE QRESYNC UIDPLUS", hold, func(tag, cmd, args string) string {
				switch cmd {
				case "STATUS":
					return "* STATUS INBOX (" + tc.status + ")\r\n" + tag + " OK [CLIENTBUG] done\r\n"
				case "UID FETCH":
					return tc.fetch + tag + " OK done\r\n"
				case "SELECT":
					return "* OK [CLOSED] c\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 9] v\r\n* OK [UIDNEXT 3] n\r\n* OK [HIGHESTMODSEQ 5] m\r\n" + tag + " OK [READ-WRITE] done\r\n"
				}
				return tag + " BAD what\r\n"
			})
			s.qres, s.selected = true, true
			s.cur = current{box: tc.open, rw: true, sel: Selected{UIDValidity: 7}}
			p := &Pool{}
			p.NoteStored("INBOX", 7, 3, []string{`\Seen`}, 20)
			p.NoteAppended("INBOX", 7, 10, []string{"$Work"})
			p.NoteRemoved("INBOX", 7, UIDSet{{Lo: 5, Hi: 5}}, 22)
			got, ok, err := s.ProveSelected(p, OwnProof{Box: "INBOX", Mark: Mark{UIDValidity: 7, UIDNext: 10, HighestModSeq: 15}, Messages: 4}, "Next")
			if err != nil {
				t.Fatal(err)
			}
			want := Proved{}
			if tc.proved {
				want = Proved{UIDValidity: 7, UIDNext: 11, Messages: 4, HighestModSeq: 22}
			}
			if ok != tc.proved || got != want {
				t.Errorf("ProveSelected = %+v, %v; want %+v, %v", got, ok, want, tc.proved)
			}
			wantCmds := []string{`STATUS "INBOX" (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)`,
				"UID FETCH 1:4294967295 (UID FLAGS MODSEQ) (CHANGEDSINCE 15 VANISHED)", `SELECT "Next" (CONDSTORE)`}
			if tc.open != "INBOX" {
				wantCmds = wantCmds[2:]
			}
			if cmds := sentCmds(f); !reflect.DeepEqual(cmds, wantCmds) {
				t.Errorf("sent %q, want %q", cmds, wantCmds)
			}
			if box, sel, ok := s.SelectedCondStore(); !ok || box != "Next" || sel.UIDValidity != 9 || sel.Exists != 2 {
				t.Errorf("SelectedCondStore() = %q, %+v, %v; want Next open at UIDVALIDITY 9 with 2 messages", box, sel, ok)
			}
		})
	}
}

// TestSelectEnablesQResync: a session dialled for writes (a full pass
// listed another way) enables QRESYNC with its first SELECT, in the same
// round trip (the fake answers once it holds both), so that the writes
// there can be proved in place (ProveSelected); a session with a mailbox
// selected, or a server without QRESYNC, sends the SELECT alone.
func TestSelectEnablesQResync(t *testing.T) {
	for _, tc := range []struct {
		name     string
		caps     string
		selected bool
		want     []string
	}{
		{"fresh session", "IMAP4rev1 ENABLE CONDSTORE QRESYNC", false, []string{"ENABLE QRESYNC", `SELECT "INBOX" (CONDSTORE)`}},
		{"a mailbox selected", "IMAP4rev1 ENABLE CONDSTORE QRESYNC", true, []string{`SELECT "INBOX" (CONDSTORE)`}},
		{"no QRESYNC", "IMAP4rev1 ENABLE CONDSTORE", false, []string{`SELECT "INBOX" (CONDSTORE)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := heldFake(t, tc.caps, len(tc.want), func(tag, cmd, args string) string {
				switch cmd {
				case "ENABLE":
					return "* ENABLED QRESYNC\r\n" + tag + " OK enabled\r\n"
				case "SELECT":
					return "* 3 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 4] n\r\n* OK [HIGHESTMODSEQ 9] m\r\n" + tag + " OK [READ-WRITE] done\r\n"
				}
				return tag + " BAD what\r\n"
			})
			s.selected = tc.selected
			sel, err := s.SelectCondStore("INBOX")
			if err != nil || sel.UIDValidity != 7 || sel.Exists != 3 {
				t.Fatalf("SelectCondStore = %+v, %v", sel, err)
			}
			if cmds := sentCmds(f); !reflect.DeepEqual(cmds, tc.want) {
				t.Errorf("sent %q, want %q", cmds, tc.want)
			}
			if got, want := s.QResync(), len(tc.want) == 2; got != want {
				t.Errorf("QResync() = %v, want %v", got, want)
			}
		})
	}
}
