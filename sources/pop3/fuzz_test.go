package pop3

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzCapaResponse (F10) feeds arbitrary server bytes to the CAPA reader
// and status-line parser, which run before TLS on pop3:// (STLS) and so
// see whatever a man in the middle sends: no panic, a bounded result
// (at most maxCapaLines capabilities, upper case, no CR/LF), STLS only
// when a "+OK" status line came first, and each input under a second.
func FuzzCapaResponse(f *testing.F) {
	for _, s := range []string{
		"+OK\r\nUIDL\r\nSTLS\r\n.\r\n", "-ERR no\r\n", "+OK caps\r\nSASL PLAIN XOAUTH2\r\nEXPIRE 0\r\n.\r\n",
		"+OK\r\n", "STLS\r\n.\r\n", "+OKSTLS\r\n.\r\n", "+OK\r\n" + strings.Repeat("X\r\n", 300) + ".\r\n", "+OK\r\n\x00\r\n.\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		start := time.Now()
		var w bytes.Buffer
		caps, err := capa(&w, bufio.NewReaderSize(strings.NewReader(in), readBufSize), nil)
		if w.String() != "CAPA\r\n" {
			t.Fatalf("capa wrote %q", w.String())
		}
		// The status line as readLine gives it: a line ends at LF, and
		// every CR before it is trimmed ("+OK\r\r\n" is a +OK line).
		first, _, _ := strings.Cut(in, "\n")
		first = strings.TrimRight(first, "\r")
		if err == nil && caps != nil && first != "+OK" && !strings.HasPrefix(first, "+OK ") {
			t.Fatalf("capabilities %v accepted without a +OK status line in %q", caps, in)
		}
		if len(caps) > 2*maxCapaLines {
			t.Fatalf("%d capabilities", len(caps))
		}
		for c := range caps {
			if c != strings.ToUpper(c) || strings.ContainsAny(c, "\r\n") {
				t.Fatalf("capability %q is not an upper-case one-line tag", c)
			}
		}
		for _, line := range strings.Split(in, "\n") {
			ok, text, perr := parseStatus(strings.TrimRight(line, "\r"))
			if perr == nil && !strings.HasPrefix(line, "+OK") && !strings.HasPrefix(line, "-ERR") {
				t.Fatalf("parseStatus(%q) = %v, %q, nil", line, ok, text)
			}
			if ok && !strings.HasPrefix(line, "+OK") {
				t.Fatalf("parseStatus(%q) says +OK", line)
			}
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%d bytes took %v", len(in), d)
		}
	})
}
