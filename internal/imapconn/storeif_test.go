package imapconn

import (
	"reflect"
	"strings"
	"testing"
)

// parseStore runs the lines of a conditional store's answer (untagged
// responses, then the tagged one) through the session's parsers and
// storeResult.
func parseStore(uid uint32, lines []string) (StoreResult, error) {
	var fds []FetchData
	var tagged Response
	for _, l := range lines {
		tag, u, err := parseResponse([]byte(l))
		if err != nil {
			return StoreResult{}, err
		}
		if tag != "*" {
			tagged = u.Status
			continue
		}
		if err := fetchEach(func(fd FetchData) error { fds = append(fds, fd); return nil })(u); err != nil {
			return StoreResult{}, err
		}
	}
	return storeResult(uid, tagged, fds)
}

func TestStoreResult(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  StoreResult
		err   bool
	}{
		{"stored", []string{
			`* 3 FETCH (UID 7 MODSEQ (12))`,
			`* 3 FETCH (UID 7 FLAGS (\Seen $Work) MODSEQ (12))`,
			`D1 OK Conditional Store completed`,
		}, StoreResult{Found: true, Stored: true, Flags: []string{`\Seen`, `$Work`}, ModSeq: 12}, false},
		{"modified under us", []string{
			`* 3 FETCH (UID 7 FLAGS (\Flagged) MODSEQ (15))`,
			`D1 OK [MODIFIED 7] Conditional STORE failed`,
		}, StoreResult{Found: true, Stored: false, Flags: []string{`\Flagged`}, ModSeq: 15}, false},
		{"modified, a set", []string{
			`* 3 FETCH (UID 7 FLAGS () MODSEQ (15))`,
			`D1 OK [MODIFIED 2:9] done`,
		}, StoreResult{Found: true, Stored: false, Flags: []string{}, ModSeq: 15}, false},
		{"modified, lower case code", []string{
			`* 3 FETCH (UID 7 FLAGS () MODSEQ (15))`,
			`D1 OK [modified 7] done`,
		}, StoreResult{Found: true, Stored: false, Flags: []string{}, ModSeq: 15}, false},
		{"expunged meanwhile", []string{`D1 OK done`}, StoreResult{}, false},
		{"another message's FETCH only", []string{
			`* 4 FETCH (UID 8 FLAGS () MODSEQ (15))`,
			`D1 OK done`,
		}, StoreResult{}, false},
		{"MODIFIED naming other messages", []string{
			`* 3 FETCH (UID 7 FLAGS () MODSEQ (15))`,
			`D1 OK [MODIFIED 9] done`,
		}, StoreResult{}, true},
		{"bad MODIFIED set", []string{`D1 OK [MODIFIED 0] done`}, StoreResult{}, true},
		{"read-back without MODSEQ", []string{
			`* 3 FETCH (UID 7 FLAGS (\Seen))`,
			`D1 OK done`,
		}, StoreResult{}, true},
		{"bad MODSEQ", []string{`* 3 FETCH (UID 7 FLAGS () MODSEQ (x))`, `D1 OK done`}, StoreResult{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStore(7, tc.lines)
			if (err != nil) != tc.err {
				t.Fatalf("storeResult = %+v, %v; want error %v", got, err, tc.err)
			}
			if !tc.err && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("storeResult = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzStoreResult: whatever the server answers, storeResult neither
// panics nor reports a store of a message it did not find, nor a found
// message without a mod-sequence.
func FuzzStoreResult(f *testing.F) {
	f.Add("* 3 FETCH (UID 7 FLAGS (\\Seen) MODSEQ (12))\nD1 OK done")
	f.Add("* 3 FETCH (UID 7 FLAGS () MODSEQ (15))\nD1 OK [MODIFIED 7] failed")
	f.Add("D1 OK [MODIFIED 1:4294967295] x")
	f.Fuzz(func(t *testing.T, answer string) {
		res, err := parseStore(7, strings.Split(answer, "\n"))
		if err != nil {
			return
		}
		if res.Stored && !res.Found || res.Found && res.ModSeq == 0 {
			t.Fatalf("storeResult(%q) = %+v", answer, res)
		}
	})
}

// TestStoreIfAll: writes of the same flags and mod-sequence share one UID
// STORE over their UIDs, the STOREs' own FETCH answers (MODSEQ) say what
// was stored, one UID FETCH reads back only the messages left in doubt,
// and a [MODIFIED] code marks exactly the messages it names as not stored.
func TestStoreIfAll(t *testing.T) {
	f := startFake(t, &fakeServer{caps: "IMAP4rev1 CONDSTORE", handle: func(fc *fakeConn, tag, cmd, args string) bool {
		switch {
		case cmd == "UID STORE" && strings.HasPrefix(args, "3,5:6 "):
			fc.send("* 1 FETCH (UID 3 MODSEQ (20))\r\n* 3 FETCH (UID 6 MODSEQ (21))\r\n%s OK [MODIFIED 5] some not stored\r\n", tag)
		case cmd == "UID STORE":
			fc.send("* 4 FETCH (UID 9 MODSEQ (22))\r\n%s OK done\r\n", tag)
		case cmd == "UID FETCH":
			fc.send("%s", "* 1 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ (20))\r\n* 2 FETCH (UID 5 FLAGS (\\Seen) MODSEQ (19))\r\n"+
				"* 3 FETCH (UID 6 FLAGS (\\Flagged) MODSEQ (21))\r\n* 4 FETCH (UID 9 FLAGS () MODSEQ (22))\r\n"+tag+" OK done\r\n")
		default:
			return false
		}
		return true
	}})
	got, err := fakeSession(t, f).StoreIfAll([]FlagWrite{
		{UID: 5, Since: 10, Flags: []string{`\Flagged`}}, {UID: 9, Since: 10, Flags: nil},
		{UID: 3, Since: 10, Flags: []string{`\Flagged`}}, {UID: 6, Since: 10, Flags: []string{`\Flagged`}},
		{UID: 8, Since: 10, Flags: nil}, // gone: not in the read-back
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []StoreResult{
		{Found: true, Stored: false, Flags: []string{`\Seen`}, ModSeq: 19},
		{Found: true, Stored: true, Flags: []string{}, ModSeq: 22},
		{Found: true, Stored: true, Flags: []string{`\Flagged`}, ModSeq: 20},
		{Found: true, Stored: true, Flags: []string{`\Flagged`}, ModSeq: 21},
		{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("StoreIfAll = %+v\nwant %+v", got, want)
	}
	var cmds []string
	for _, l := range f.sent() {
		if _, c, ok := strings.Cut(l, " "); ok && strings.HasPrefix(c, "UID ") {
			cmds = append(cmds, c)
		}
	}
	// Only the messages the STOREs' answers leave in doubt are read back:
	// 5 (MODIFIED) and 8 (no FETCH: gone).
	wantCmds := []string{`UID STORE 3,5:6 (UNCHANGEDSINCE 10) FLAGS.SILENT (\Flagged)`, `UID STORE 8:9 (UNCHANGEDSINCE 10) FLAGS.SILENT ()`,
		`UID FETCH 5,8 (UID FLAGS MODSEQ)`}
	if !reflect.DeepEqual(cmds, wantCmds) {
		t.Errorf("sent %q\nwant %q", cmds, wantCmds)
	}
}

// TestStoreIfAllModifiedElsewhere: a [MODIFIED] code naming a message
// outside the command's set is an error, not a guess.
func TestStoreIfAllModifiedElsewhere(t *testing.T) {
	f := startFake(t, &fakeServer{caps: "IMAP4rev1 CONDSTORE", handle: func(fc *fakeConn, tag, cmd, args string) bool {
		switch cmd {
		case "UID STORE":
			fc.send("%s OK [MODIFIED 1:4294967295] no\r\n", tag)
		case "UID FETCH":
			fc.send("* 1 FETCH (UID 3 FLAGS () MODSEQ (20))\r\n%s OK done\r\n", tag)
		default:
			return false
		}
		return true
	}})
	if got, err := fakeSession(t, f).StoreIfAll([]FlagWrite{{UID: 3, Since: 10}}); err == nil {
		t.Fatalf("StoreIfAll = %+v, nil; want an error", got)
	}
}
