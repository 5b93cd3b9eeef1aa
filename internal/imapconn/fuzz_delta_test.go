package imapconn

import (
	"bufio"
	"bytes"
	"testing"
	"time"
)

// FuzzDeltaResponse runs arbitrary server bytes through what the
// incremental listing reads (ReadFull, parseResponse and every parser on
// its result): no panic, a kept literal never longer than asked, a parsed
// UID set always sorted, disjoint and without 0, and each input under a
// second.
func FuzzDeltaResponse(f *testing.F) {
	for _, s := range []string{
		"* VANISHED (EARLIER) 1:3,7\r\n",
		"* VANISHED 405,407,410:412\r\n",
		`* STATUS "INBOX" (UIDVALIDITY 7 UIDNEXT 12 MESSAGES 11 HIGHESTMODSEQ 9)` + "\r\n",
		"* STATUS {5}\r\nINBOX (MESSAGES 1)\r\n",
		`* LIST (\HasNoChildren) "/" "Entw&APw-rfe"` + "\r\n",
		"* 1 FETCH (UID 6 FLAGS (\\Seen) MODSEQ (4) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 44 BODY[HEADER.FIELDS (MESSAGE-ID)] {19}\r\nMessage-ID: <a@b>\r\n)\r\n",
		"* OK [HIGHESTMODSEQ 715194045007] x\r\n",
		"* OK [NOMODSEQ] x\r\n",
		"D4 OK [MODIFIED 7,9:11] x\r\n",
		"* OK [CLOSED]\r\n",
		`* ESEARCH (TAG "D3") UID ALL 1:3,5` + "\r\n",
		"* SEARCH 1 5 (MODSEQ 9)\r\n",
		"* 5 EXPUNGE\r\n* 3 EXISTS\r\n",
		"* 1 FETCH (BODY[] ~{3}\r\nabc)\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		start := time.Now()
		r := bufio.NewReader(bytes.NewReader(in))
		s := &Session{}
		for i := 0; i < 20; i++ {
			b, err := ReadFull(r, 1<<16, 1<<16, 8)
			if err != nil {
				break
			}
			tag, u, err := parseResponse(b)
			if err != nil {
				continue
			}
			fuzzParsers(t, tag, u)
			s.track(u)
		}
		checkSet(t, s.vanished)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %v", d)
		}
	})
}

// fuzzParsers applies every parser that could meet u.
func fuzzParsers(t *testing.T, tag string, u Untagged) {
	if tag != "*" {
		set, _, err := Modified(u.Status)
		if err == nil {
			checkSet(t, set)
		}
		return
	}
	var sel Selected
	sel.take(u)
	if fd, err := ParseFetch(u.Num, u.Args); err == nil && len(fd.Header) > 8 {
		t.Fatalf("a literal kept %d bytes, more than the 8 asked", len(fd.Header))
	}
	ParseStatus(u.Args)
	if set, _, err := Vanished(u.Args); err == nil {
		checkSet(t, set)
	}
	if set, err := SearchUIDs(u.Kind, u.Args); err == nil {
		checkSet(t, set)
	}
	ModSeqCode(u.Status)
}

// checkSet fails unless set is in normal form.
func checkSet(t *testing.T, set UIDSet) {
	t.Helper()
	for i, r := range set {
		if r.Lo == 0 || r.Hi < r.Lo || (i > 0 && uint64(set[i-1].Hi)+1 >= uint64(r.Lo)) {
			t.Fatalf("UID set not in normal form: %v", set)
		}
	}
}

// FuzzUIDSet checks ParseUIDSet against a direct reading of the text:
// every UID the text names is in the set, the set's String parses back to
// the same set, and Contains agrees with Clip.
func FuzzUIDSet(f *testing.F) {
	for _, s := range []string{"1", "1:3,7", "9:8,1,2,3", "5:7,6:10,11", "1:4294967295", "0", "1:*", "1,,2"} {
		f.Add(s, uint32(3))
	}
	f.Fuzz(func(t *testing.T, in string, probe uint32) {
		set, err := ParseUIDSet(in)
		if err != nil {
			return
		}
		checkSet(t, set)
		again, err := ParseUIDSet(set.String())
		if err != nil || again.String() != set.String() {
			t.Fatalf("%q: %v does not parse back (%v, %v)", in, set, again, err)
		}
		if set.Contains(probe) != (len(set.Clip(probe, probe)) == 1) {
			t.Fatalf("%v: Contains(%d) and Clip disagree", set, probe)
		}
		if probe != 0 && !set.Add(probe).Contains(probe) {
			t.Fatalf("%v: Add(%d) lost it", set, probe)
		}
	})
}

// FuzzMUTF7 checks that decoding undoes encoding for any UTF-8 name.
func FuzzMUTF7(f *testing.F) {
	for _, s := range []string{"INBOX", "Entwürfe", "&", "日本語/&x", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		DecodeMUTF7(s) // no panic on anything
		if !validUTF8NoSurrogates(s) {
			return
		}
		if got := DecodeMUTF7(EncodeMUTF7(s)); got != s {
			t.Fatalf("DecodeMUTF7(EncodeMUTF7(%q)) = %q", s, got)
		}
	})
}

func validUTF8NoSurrogates(s string) bool {
	for _, r := range s {
		if r == '\uFFFD' {
			return false
		}
	}
	return true
}
