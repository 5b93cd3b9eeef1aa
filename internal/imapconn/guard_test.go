package imapconn

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestF8GuardFraming checks the response guard's framing on its own:
// real responses, literals of every announced form, and body literals up
// to the body cap pass; each cap is hit exactly one byte past it.
func TestF8GuardFraming(t *testing.T) {
	big := bytes.Repeat([]byte("x"), MaxDataLiteral+10) // over the data cap, but a body
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" = passes
	}{
		{"Greeting", []byte("* OK [CAPABILITY IMAP4rev1] hi\r\nA1 OK done\r\n"), ""},
		{"BodyLiteral", append(append([]byte("* 1 FETCH (UID 5 BODY[] {"+itoa(len(big))+"}\r\n"), big...), ")\r\nA1 OK\r\n"...), ""},
		{"HeaderFieldsLiteral", append(append([]byte("* 1 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {"+itoa(len(big))+"}\r\n"), big...), ")\r\n"...), ""},
		{"Literal8", append(append([]byte("* 1 FETCH (BINARY[1] ~{"+itoa(len(big))+"}\r\n"), big...), ")\r\n"...), ""},
		{"RFC822", append(append([]byte("* 1 FETCH (RFC822 {"+itoa(len(big))+"}\r\n"), big...), ")\r\n"...), ""},
		{"PartialBody", append(append([]byte("* 1 FETCH (BODY[]<0> {"+itoa(len(big))+"}\r\n"), big...), ")\r\n"...), ""},
		{"LiteralWithCRLFInside", []byte("* LIST () \"/\" {4}\r\na\r\nb\r\nA1 OK\r\n"), ""},
		{"TwoLiteralsOneResponse", []byte("* 1 FETCH (BODY[1] {2}\r\nab BODY[2] {3}\r\ncde)\r\n"), ""},
		{"BracesNotALiteral", []byte("* OK [ALERT] {5} is not a literal here\r\n* OK x}\r\n"), ""},
		{"StatusUpToCap", bytes.Repeat([]byte("* 3 EXISTS\r\n"), MaxStatusResponses), ""},
		{"StatusCapResetByTagged", append(append(bytes.Repeat([]byte("* OK x\r\n"), MaxStatusResponses), "A1 OK\r\n"...), bytes.Repeat([]byte("* OK x\r\n"), MaxStatusResponses)...), ""},
		{"FetchesAreNotStatus", bytes.Repeat([]byte("* 1 FETCH (FLAGS ())\r\n"), 2*MaxStatusResponses), ""},

		{"StatusOverCap", bytes.Repeat([]byte("* 3 EXISTS\r\n"), MaxStatusResponses+1), "untagged status"},
		{"DataLiteralOverCap", []byte("* LIST () \"/\" {" + itoa(MaxDataLiteral+1) + "}\r\n"), "non-message literal"},
		{"BodyLiteralOverCap", []byte("* 1 FETCH (BODY[] {" + itoa(MaxBodyLiteral+1) + "}\r\n"), "message literal"},
		{"NegativeWrap", []byte("* 1 FETCH (BODY[] {9223372036854775808}\r\n"), "over the 1024 MiB cap"},
		{"LineOverCap", bytes.Repeat([]byte("a"), MaxResponse+1), "longer than 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &respGuard{}
			var err error
			// Feed in odd-sized pieces: framing must not depend on reads.
			for in := tc.in; len(in) > 0 && err == nil; {
				k := min(len(in), 4093)
				err = g.scan(in[:k])
				in = in[k:]
			}
			if tc.want == "" && err != nil {
				t.Fatalf("scan = %v, want no error", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("scan = %v, want an error naming %q", err, tc.want)
			}
			// Only an oversized message is "too large": the other caps
			// name a broken or hostile server, not a message to skip.
			if body := tc.want == "message literal" || strings.Contains(tc.want, "1024 MiB"); err != nil && errors.Is(err, mail.ErrTooLarge) != body {
				t.Errorf("errors.Is(%v, ErrTooLarge) = %v, want %v", err, !body, body)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
