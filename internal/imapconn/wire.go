package imapconn

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
)

// The few pieces of IMAP syntax that connections driven by hand (the Gmail
// preset's X-GM-MSGID fetch here, the IMAP sink's MULTIAPPEND connections)
// need and imapclient does for its own: one copy for the whole program.

// EncodeMUTF7 encodes a mailbox name in modified UTF-7 (RFC 3501 §5.1.3).
func EncodeMUTF7(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		u := utf16.Encode(run)
		buf := make([]byte, 0, 2*len(u))
		for _, c := range u {
			buf = append(buf, byte(c>>8), byte(c))
		}
		b.WriteByte('&')
		b.WriteString(strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(buf), "/", ","))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			b.WriteString("&-")
		case r >= 0x20 && r <= 0x7e:
			flush()
			b.WriteRune(r)
		default:
			run = append(run, r)
		}
	}
	flush()
	return b.String()
}

// Quote returns s as an IMAP quoted string. Callers pass 7-bit text without
// CR or LF (mailbox names after EncodeMUTF7).
func Quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// LiteralSize reports the size of a literal announced at the end of a
// response line: {n}, {n+} (LITERAL+) or {n-} (LITERAL-).
func LiteralSize(line string) (int64, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimRight(line[i+1:len(line)-1], "+-"), 10, 64)
	return n, err == nil && n >= 0
}

// ReadResponse reads one server response: its line, and the lines that
// follow each literal in it. Literals are read past (each at most
// literalMax bytes) and stand as "" in the returned text, without CRLF, so
// a literal's bytes can never pass for a tagged reply. The whole text is
// capped at lineMax bytes.
func ReadResponse(r *bufio.Reader, lineMax int, literalMax int64) (string, error) {
	var prefix []byte // the text so far, each literal as ""
	for {
		line, err := readLine(r, lineMax-len(prefix))
		if err == errLineTooLong {
			return "", fmt.Errorf("server response longer than %d bytes", lineMax)
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		text := strings.TrimRight(string(append(prefix, line...)), "\r\n")
		n, ok := LiteralSize(text)
		if !ok {
			return text, nil
		}
		if n > literalMax {
			return "", fmt.Errorf("server sent a %d-byte literal where at most %d were expected", n, literalMax)
		}
		if _, err := io.CopyN(io.Discard, r, n); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		prefix = append([]byte(text[:strings.LastIndexByte(text, '{')]), `""`...)
	}
}

// errLineTooLong is readLine's refusal of a line over its cap.
var errLineTooLong = errors.New("server line too long")

// readLine reads one line, CRLF included, of at most limit bytes (lines
// longer than the reader's buffer are joined).
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > limit {
			return nil, errLineTooLong
		}
		if err != bufio.ErrBufferFull {
			return b, err
		}
	}
}
