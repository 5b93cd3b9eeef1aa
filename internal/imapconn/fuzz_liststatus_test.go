package imapconn

import (
	"bufio"
	"bytes"
	"slices"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzListStatus runs arbitrary server bytes through what Session.Account
// reads (ReadFull, parseResponse, ParseList, ParseNamespace, ParseStatus):
// no panic, a delimiter is one character or none, and each input under a
// second.
func FuzzListStatus(f *testing.F) {
	for _, s := range []string{
		`* LIST (\HasNoChildren) "/" "Entw&APw-rfe"` + "\r\n",
		`* LIST (\Noselect \HasChildren) "." INBOX` + "\r\n",
		`* LIST () NIL "flat"` + "\r\n",
		"* LIST (\\Sent) \"/\" {9}\r\nBrace {5}\r\n",
		`* LIST (\HasNoChildren) "/" "a" ("CHILDINFO" ("SUBSCRIBED"))` + "\r\n",
		`* NAMESPACE (("INBOX." ".")) NIL (("#shared." "."))` + "\r\n",
		`* NAMESPACE NIL NIL NIL` + "\r\n",
		`* NAMESPACE (("" "/" "X-PARAM" ("FLAG1"))) NIL NIL` + "\r\n",
		`* STATUS "&ZeVnLIqe-" (UIDVALIDITY 7 UIDNEXT 12 MESSAGES 11 HIGHESTMODSEQ 9 MAILBOXID (F12))` + "\r\n",
		`* LIST (\X) "" ""` + "\r\n",
		`* LIST (\X) "ab" "x"` + "\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		start := time.Now()
		r := bufio.NewReader(bytes.NewReader(in))
		for i := 0; i < 20; i++ {
			b, err := ReadFull(r, 1<<16, 1<<16, 8)
			if err != nil {
				break
			}
			_, u, err := parseResponse(b)
			if err != nil {
				continue
			}
			if e, err := ParseList(u.Args); err == nil && e.Delim != 0 && !utf8.ValidRune(e.Delim) {
				t.Fatalf("ParseList delimiter %q", e.Delim)
			}
			if _, d, ok, err := ParseNamespace(u.Args); err == nil && ok && d != 0 && !utf8.ValidRune(d) {
				t.Fatalf("ParseNamespace delimiter %q", d)
			}
			_, _ = ParseStatus(u.Args)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %v", d)
		}
	})
}

// TestParseListNamespace: the LIST and NAMESPACE replies Account reads,
// decoded as imapclient decodes them.
func TestParseListNamespace(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    ListEntry
		bad     bool
		prefix  string
		delim   rune
		nsFound bool
	}{
		{in: `* LIST (\HasNoChildren) "/" "Entw&APw-rfe"`, want: ListEntry{Mailbox: "Entwürfe", Delim: '/', Attrs: []string{`\HasNoChildren`}}},
		{in: `* LIST (\Noselect) "." inbox`, want: ListEntry{Mailbox: "INBOX", Delim: '.', Attrs: []string{`\Noselect`}}},
		{in: `* LIST () NIL "flat"`, want: ListEntry{Mailbox: "flat"}},
		{in: "* LIST (\\Sent) \"/\" {9}\r\nBrace {5}", want: ListEntry{Mailbox: "Brace {5}", Delim: '/', Attrs: []string{`\Sent`}}},
		{in: `* LIST (\X) "/" "a&-b" ("CHILDINFO" ("SUBSCRIBED"))`, want: ListEntry{Mailbox: "a&b", Delim: '/', Attrs: []string{`\X`}}},
		{in: `* LIST (\X) "ab" "x"`, bad: true},
		{in: `* LIST (\X) "/" NIL`, bad: true},
		{in: `* LIST "/" "x"`, bad: true},
		{in: `* NAMESPACE (("INBOX." ".")) NIL NIL`, prefix: "INBOX.", delim: '.', nsFound: true},
		{in: `* NAMESPACE (("" "/")) NIL NIL`, delim: '/', nsFound: true},
		{in: `* NAMESPACE NIL NIL NIL`},
		{in: `* NAMESPACE ("x") NIL NIL`, bad: true},
	} {
		_, u, err := parseResponse([]byte(tc.in))
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if u.Kind == "NAMESPACE" {
			p, d, ok, err := ParseNamespace(u.Args)
			if (err != nil) != tc.bad || p != tc.prefix || d != tc.delim || ok != tc.nsFound {
				t.Errorf("%q: ParseNamespace = %q %q %v %v", tc.in, p, d, ok, err)
			}
			continue
		}
		e, err := ParseList(u.Args)
		if (err != nil) != tc.bad || !tc.bad && (e.Mailbox != tc.want.Mailbox || e.Delim != tc.want.Delim || !slices.Equal(e.Attrs, tc.want.Attrs)) {
			t.Errorf("%q: ParseList = %+v, %v; want %+v", tc.in, e, err, tc.want)
		}
	}
}
