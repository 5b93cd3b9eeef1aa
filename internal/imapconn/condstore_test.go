package imapconn

import (
	"bufio"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseUIDSet(t *testing.T) {
	tests := []struct {
		in   string
		want string // normal form, "" for an error
		n    uint64
	}{
		{"1", "1", 1},
		{"1:3,7", "1:3,7", 4},
		{"9:8,1,2,3", "1:3,8:9", 5},
		{"5:7,6:10,11", "5:11", 7},
		{"4294967295", "4294967295", 1},
		{"1:4294967295", "1:4294967295", 4294967295},
		{"0", "", 0},
		{"1:*", "", 0},
		{"", "", 0},
		{"1,,2", "", 0},
		{"a", "", 0},
		{"4294967296", "", 0},
	}
	for _, tt := range tests {
		set, err := ParseUIDSet(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ParseUIDSet(%q) = %v, want an error", tt.in, set)
			}
			continue
		}
		if err != nil || set.String() != tt.want || set.Len() != tt.n {
			t.Errorf("ParseUIDSet(%q) = %v (%d), %v; want %s (%d)", tt.in, set, set.Len(), err, tt.want, tt.n)
		}
	}
}

func TestUIDSetOps(t *testing.T) {
	set, _ := ParseUIDSet("2:4,8,10:12")
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"contains 1", set.Contains(1), false},
		{"contains 3", set.Contains(3), true},
		{"contains 9", set.Contains(9), false},
		{"contains 12", set.Contains(12), true},
		{"contains 13", set.Contains(13), false},
		{"clip", set.Clip(3, 10).String(), "3:4,8,10"},
		{"clip empty", len(set.Clip(5, 7)), 0},
		{"add next", set.Clone().Add(13).String(), "2:4,8,10:13"},
		{"add inside", set.Clone().Add(3).String(), "2:4,8,10:12"},
		{"add gap", set.Clone().Add(9).String(), "2:4,8:12"},
		{"add before", set.Clone().Add(1).String(), "1:4,8,10:12"},
		{"union", set.Union(UIDSet{{5, 7}}).String(), "2:8,10:12"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if set.String() != "2:4,8,10:12" {
		t.Errorf("the operations changed the set: %v", set)
	}
}

// Clone returns a copy of s, for tests.
func (s UIDSet) Clone() UIDSet { return append(UIDSet(nil), s...) }

// untagged parses one untagged response line for the tests.
func untagged(t *testing.T, line string) Untagged {
	t.Helper()
	tag, u, err := parseResponse([]byte(line))
	if err != nil || tag != "*" {
		t.Fatalf("parseResponse(%q) = %q, %v", line, tag, err)
	}
	return u
}

func TestVanished(t *testing.T) {
	tests := []struct {
		line    string
		set     string
		earlier bool
		bad     bool
	}{
		{"* VANISHED (EARLIER) 1:3,7", "1:3,7", true, false},
		{"* VANISHED 405,407,410:412", "405,407,410:412", false, false},
		{"* VANISHED (earlier) 5", "5", true, false},
		{"* VANISHED (LATER) 5", "", false, true},
		{"* VANISHED", "", false, true},
		{"* VANISHED 1 2", "", false, true},
		{"* VANISHED (EARLIER) *", "", false, true},
	}
	for _, tt := range tests {
		u := untagged(t, tt.line)
		set, earlier, err := Vanished(u.Args)
		if tt.bad != (err != nil) || (!tt.bad && (set.String() != tt.set || earlier != tt.earlier)) {
			t.Errorf("%q: %v %v %v", tt.line, set, earlier, err)
		}
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		line string
		want Status
		bad  bool
	}{
		{`* STATUS "INBOX" (UIDVALIDITY 7 UIDNEXT 12 MESSAGES 11 HIGHESTMODSEQ 90000000000)`,
			Status{Mailbox: "INBOX", UIDValidity: 7, UIDNext: 12, Messages: 11, HighestModSeq: 90000000000, HasModSeq: true}, false},
		{`* STATUS Work (MESSAGES 0 UIDNEXT 1)`, Status{Mailbox: "Work", UIDNext: 1}, false},
		{"* STATUS {9}\r\nArchiv &- (MESSAGES 2)", Status{Mailbox: "Archiv &", Messages: 2}, false},
		{`* STATUS "Entw&APw-rfe" (HIGHESTMODSEQ 0 SIZE 123)`, Status{Mailbox: "Entwürfe", HasModSeq: true}, false},
		{`* STATUS "x" (MESSAGES)`, Status{}, true},
		{`* STATUS "x" (MESSAGES -1)`, Status{}, true},
		{`* STATUS "x" (UIDNEXT 4294967296)`, Status{}, true},
		{`* STATUS "x"`, Status{}, true},
		{`* STATUS ("x") (MESSAGES 1)`, Status{}, true},
	}
	for _, tt := range tests {
		u := untagged(t, tt.line)
		got, err := ParseStatus(u.Args)
		if tt.bad != (err != nil) || (!tt.bad && got != tt.want) {
			t.Errorf("%q: %+v, %v", tt.line, got, err)
		}
	}
}

func TestParseFetch(t *testing.T) {
	date := time.Date(1996, 7, 7, 2, 44, 25, 0, time.FixedZone("", -7*3600))
	tests := []struct {
		line string
		want FetchData
		bad  bool
	}{
		{`* 3 FETCH (UID 7 FLAGS (\Seen $Label1) MODSEQ (12))`,
			FetchData{Seq: 3, UID: 7, Flags: []string{`\Seen`, "$Label1"}, HasFlags: true, Size: -1, ModSeq: 12}, false},
		{"* 1 FETCH (UID 6 FLAGS () INTERNALDATE \" 7-Jul-1996 02:44:25 -0700\" RFC822.SIZE 44 BODY[HEADER.FIELDS (MESSAGE-ID)] {21}\r\nMessage-ID: <a@b>\r\n\r\n)",
			FetchData{Seq: 1, UID: 6, Flags: []string{}, HasFlags: true, InternalDate: date, Size: 44, Header: []byte("Message-ID: <a@b>\r\n\r\n")}, false},
		{`* 2 FETCH (BODY[HEADER.FIELDS ("MESSAGE-ID")] NIL UID 9)`, FetchData{Seq: 2, UID: 9, Size: -1}, false},
		{`* 2 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] "" UID 9 X-GM-MSGID 123)`, FetchData{Seq: 2, UID: 9, Size: -1, Header: []byte{}}, false},
		{"* 4 FETCH (UID 8 BODY[] {13}\r\nA: b\r\n\r\n) x\r\n)",
			FetchData{Seq: 4, UID: 8, Size: -1, Body: []byte("A: b\r\n\r\n) x\r\n")}, false},
		{`* 4 FETCH (BODY[] NIL UID 8)`, FetchData{Seq: 4, UID: 8, Size: -1}, false},
		{`* 2 FETCH (FLAGS (\Seen))`, FetchData{Seq: 2, Flags: []string{`\Seen`}, HasFlags: true, Size: -1}, false},
		{`* 2 FETCH (UID 0)`, FetchData{}, true},
		{`* 2 FETCH (UID 1 FLAGS \Seen)`, FetchData{}, true},
		{`* 2 FETCH (UID 1 MODSEQ 5)`, FetchData{}, true},
		{`* 2 FETCH (UID 1 INTERNALDATE "yesterday")`, FetchData{}, true},
		{`* 2 FETCH (UID)`, FetchData{}, true},
		{`* 2 FETCH UID 1`, FetchData{}, true},
	}
	for _, tt := range tests {
		u := untagged(t, tt.line)
		got, err := ParseFetch(u.Num, u.Args)
		if tt.bad != (err != nil) || (!tt.bad && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("%q:\n got %+v, %v\nwant %+v", tt.line, got, err, tt.want)
		}
	}
}

func TestResponseCodes(t *testing.T) {
	tests := []struct {
		line     string
		modseq   uint64
		hasMod   bool
		modified string
		uidv     uint32
	}{
		{"* OK [HIGHESTMODSEQ 715194045007] Highest", 715194045007, true, "", 0},
		{"* OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences", 0, true, "", 0},
		{"D4 OK [MODIFIED 7,9:11] Conditional STORE failed", 0, false, "7,9:11", 0},
		{"D4 NO [MODIFIED 12] Some of the messages no longer exist.", 0, false, "12", 0},
		{"* OK [UIDVALIDITY 3857529045] UIDs valid", 0, false, "", 3857529045},
		{"* OK [HIGHESTMODSEQ x] bad", 0, false, "", 0},
	}
	for _, tt := range tests {
		_, u, err := parseResponse([]byte(tt.line))
		if err != nil {
			t.Fatalf("%q: %v", tt.line, err)
		}
		m, ok := ModSeqCode(u.Status)
		set, hasSet, err := Modified(u.Status)
		uidv, _ := CodeNum(u.Status, "UIDVALIDITY")
		if m != tt.modseq || ok != tt.hasMod || err != nil || hasSet != (tt.modified != "") || set.String() != tt.modified || uidv != tt.uidv {
			t.Errorf("%q: modseq %d %v, modified %v %v %v, uidvalidity %d", tt.line, m, ok, set, hasSet, err, uidv)
		}
	}
}

func TestSearchUIDs(t *testing.T) {
	tests := []struct {
		line string
		want string
		bad  bool
	}{
		{"* SEARCH 2 3 4 9", "2:4,9", false},
		{"* SEARCH", "", false},
		{"* SEARCH 1 5 (MODSEQ 917162500)", "1,5", false},
		{`* ESEARCH (TAG "D3") UID ALL 1:3,5`, "1:3,5", false},
		{`* ESEARCH (TAG "D3") UID`, "", false},
		{"* SEARCH 0", "", true},
		{"* SEARCH x", "", true},
	}
	for _, tt := range tests {
		u := untagged(t, tt.line)
		got, err := SearchUIDs(u.Kind, u.Args)
		if tt.bad != (err != nil) || (!tt.bad && got.String() != tt.want) {
			t.Errorf("%q: %v, %v", tt.line, got, err)
		}
	}
}

func TestDecodeMUTF7(t *testing.T) {
	tests := []struct{ in, want string }{
		{"INBOX", "INBOX"},
		{"Entw&APw-rfe", "Entwürfe"},
		{"&-", "&"},
		{"&ZeVnLIqe-", "日本語"},
		{"Archiv/&ANw-bersicht", "Archiv/Übersicht"},
		{"bad&", "bad&"},
		{"bad&***-", "bad&***-"},
	}
	for _, tt := range tests {
		if got := DecodeMUTF7(tt.in); got != tt.want {
			t.Errorf("DecodeMUTF7(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := DecodeMUTF7(EncodeMUTF7(tt.want)); got != tt.want {
			t.Errorf("round trip of %q gives %q", tt.want, got)
		}
	}
}

func TestReadFull(t *testing.T) {
	tests := []struct {
		name string
		in   string
		keep int
		want string
		bad  bool
	}{
		{"line", "* 3 EXISTS\r\nnext", 10, "* 3 EXISTS", false},
		{"literal kept", "* 1 FETCH (BODY[] {5}\r\nhello UID 4)\r\n", 10, "* 1 FETCH (BODY[] {5}\r\nhello UID 4)", false},
		{"literal cut", "* 1 FETCH (BODY[] {5}\r\nhello UID 4)\r\n", 2, "* 1 FETCH (BODY[] {2}\r\nhe UID 4)", false},
		{"two literals", "* LIST () {1}\r\n/ {3}\r\nabc\r\n", 10, "* LIST () {1}\r\n/ {3}\r\nabc", false},
		{"literal too big", "* 1 FETCH (BODY[] {500}\r\n", 10, "", true},
		{"cut short", "* 1 FETCH (BODY[] {50}\r\nabc", 100, "", true},
		{"no end", "* 1 EXISTS", 10, "", true},
	}
	for _, tt := range tests {
		got, err := ReadFull(bufio.NewReader(strings.NewReader(tt.in)), 1000, 100, tt.keep)
		if tt.bad != (err != nil) || string(got) != tt.want {
			t.Errorf("%s: %q, %v", tt.name, got, err)
		}
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		in   string
		want []Value
		bad  bool
	}{
		{`a "b c" NIL (d (e)) {2}` + "\r\nxy", []Value{{Kind: KindAtom, Text: "a"}, {Kind: KindString, Text: "b c"}, {Kind: KindNil},
			{Kind: KindList, List: []Value{{Kind: KindAtom, Text: "d"}, {Kind: KindList, List: []Value{{Kind: KindAtom, Text: "e"}}}}},
			{Kind: KindString, Text: "xy"}}, false},
		{`BODY[HEADER.FIELDS (A B)]<0> "q\"\\"`, []Value{{Kind: KindAtom, Text: "BODY[HEADER.FIELDS (A B)]<0>"}, {Kind: KindString, Text: `q"\`}}, false},
		{`()`, []Value{{Kind: KindList, List: []Value{}}}, false},
		{`(a`, nil, true},
		{`a)`, nil, true},
		{`"a`, nil, true},
		{`{5}` + "\r\nab", nil, true},
		{`x[`, nil, true},
		{strings.Repeat("(", 40) + strings.Repeat(")", 40), nil, true},
	}
	for _, tt := range tests {
		got, err := Parse([]byte(tt.in))
		if tt.bad != (err != nil) || (!tt.bad && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("Parse(%q) = %+v, %v", tt.in, got, err)
		}
	}
}
