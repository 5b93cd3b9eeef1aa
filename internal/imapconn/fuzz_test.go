package imapconn

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzRespGuard (F10) runs arbitrary server bytes through the response
// guard that sits under imapclient: no panic; the verdict (refused or not,
// and why) does not depend on how the bytes are split into reads, since
// TCP may split them anywhere; a literal it accepts is never negative or
// over its cap; and each input takes under a second.
func FuzzRespGuard(f *testing.F) {
	for _, s := range []string{
		"* OK [CAPABILITY IMAP4rev1] hi\r\nA1 OK done\r\n",
		"* 1 FETCH (UID 5 BODY[] {5}\r\nhello)\r\nA2 OK\r\n",
		"* LIST () \"/\" {3}\r\nabc\r\n",
		"* 1 FETCH (BODY[] {18446744073709551615}\r\n",
		"* 1 FETCH (BINARY[1] ~{4}\r\nabcd)\r\n",
		"* OK x}\r\n{}\r\n{+}\r\n{-1}\r\n",
		strings.Repeat("* 1 EXISTS\r\n", 50),
	} {
		f.Add([]byte(s), uint16(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		start := time.Now()
		whole := &respGuard{}
		errWhole := whole.scan(in)
		parts := &respGuard{}
		var errParts error
		step := int(split%64) + 1
		for rest := in; len(rest) > 0 && errParts == nil; {
			k := min(step, len(rest))
			errParts = parts.scan(rest[:k])
			rest = rest[k:]
		}
		if (errWhole == nil) != (errParts == nil) || (errWhole != nil && errWhole.Error() != errParts.Error()) {
			t.Fatalf("one read: %v; reads of %d bytes: %v", errWhole, step, errParts)
		}
		if whole.lit < 0 || whole.lit > MaxBodyLiteral || whole.resp > MaxResponse {
			t.Fatalf("guard state out of bounds: literal %d, response %d", whole.lit, whole.resp)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%d bytes took %v", len(in), d)
		}
	})
}

// FuzzLiteralSuffix (F10) checks the two literal-announcement parsers
// (the tracer's and the guard's) on arbitrary line ends: no panic, sizes
// never negative, and both agree on what they both accept.
func FuzzLiteralSuffix(f *testing.F) {
	for _, s := range []string{"A1 LOGIN {5}", "* 1 FETCH (BODY[] {12}", "{0}", "x {+}", "{99999999999999999999}", "~{3}", "{12-}", "} {"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		n1, ok1 := literalSuffix(line)
		n2, _, ok2, err := guardLiteral([]byte(line + "\r\n"))
		if n1 < 0 || n2 < 0 {
			t.Fatalf("negative literal size: %d, %d", n1, n2)
		}
		if ok1 && ok2 && err == nil && n1 != n2 && !bytes.Contains([]byte(line), []byte("\n")) {
			t.Fatalf("literalSuffix(%q) = %d, guardLiteral = %d", line, n1, n2)
		}
	})
}
