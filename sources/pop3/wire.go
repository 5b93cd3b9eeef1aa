package pop3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The wire: every byte the server sends after TLS is read through the
// session's one bufio.Reader (session.br), by the functions here (status
// lines and listings) and by dotReader (RETR and TOP bodies); every command
// is written by send. One reader is what makes pipelining possible: the
// responses to commands sent ahead wait in br for whoever reads next.

// send writes command lines in one write (several only when pipelining).
func (ss *session) send(lines ...string) error {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	traceCmds(ss.trace, b.Bytes())
	_, err := ss.conn.Write(b.Bytes())
	return err
}

// traceCmds reports the command lines in p to trace, with the PASS argument
// masked (docs/style.md §7: never log passwords).
func traceCmds(trace func(string), p []byte) {
	if trace == nil {
		return
	}
	for _, line := range strings.Split(strings.TrimRight(string(p), "\r\n"), "\r\n") {
		if len(line) >= 5 && strings.EqualFold(line[:5], "PASS ") {
			line = "PASS <redacted>"
		}
		trace("C: " + line)
	}
}

// traceServer reports a line the server sent.
func (ss *session) traceServer(line string) {
	if ss.trace != nil {
		ss.trace("S: " + line)
	}
}

// status reads one status line: ok with the text after +OK, or not ok with
// the text after -ERR. Anything else is a protocol error.
func (ss *session) status() (ok bool, text string, err error) {
	line, err := readLine(ss.br)
	if err != nil {
		return false, "", err
	}
	ss.traceServer(line)
	return parseStatus(line)
}

// cmd sends one command and reads its status line. A broken connection,
// and a reply that is neither +OK nor -ERR (the session is then out of
// step), kill the session: err is ioErr's. A -ERR is ok false with its text.
func (ss *session) cmd(ctx context.Context, op, line string) (ok bool, text string, err error) {
	if err := ss.send(line); err != nil {
		return false, "", ss.ioErr(ctx, op, err)
	}
	if ok, text, err = ss.status(); err != nil {
		return false, "", ss.ioErr(ctx, op, err)
	}
	return ok, text, nil
}

// listing sends a command answered by a multi-line listing (UIDL, LIST)
// and returns its lines; ok false is a -ERR with its text. Errors kill the
// session, as in cmd.
func (ss *session) listing(ctx context.Context, op, line string) (lines []string, ok bool, text string, err error) {
	if ok, text, err = ss.cmd(ctx, op, line); err != nil || !ok {
		return nil, ok, text, err
	}
	if lines, err = ss.readListing(); err != nil {
		return nil, false, "", ss.ioErr(ctx, op, err)
	}
	return lines, true, text, nil
}

// readListing reads the lines of a multi-line response (RFC 1939 §3) up to
// its "." line, without line endings or byte-stuffing. Each line is at
// most the reader's buffer, the whole at most maxListing bytes.
func (ss *session) readListing() ([]string, error) {
	var out []string
	total := 0
	for {
		b, err := readRawLine(ss.br)
		if err != nil {
			return nil, err
		}
		if total += len(b); total > maxListing {
			return nil, fmt.Errorf("response longer than %d bytes", maxListing)
		}
		line := string(trimEOL(b))
		ss.traceServer(line)
		if line == "." {
			return out, nil
		}
		out = append(out, strings.TrimPrefix(line, "."))
	}
}

// command is one line of a pipeline and the operation its errors name;
// sent, if set, runs just before the line is written.
type command struct {
	line, op string
	sent     func()
}

// pipeline sends cmds, in groups of up to group when the server allows
// pipelining (RFC 2449 §6.6) and one at a time otherwise, and reads their
// responses in order: after each status line it calls each, which must read
// the rest of a multi-line response when ok. Every response is read, also
// after a -ERR, to stay in step. An I/O failure kills the session; an error
// from each is returned as it is.
func (ss *session) pipeline(ctx context.Context, cmds []command, group int, each func(i int, ok bool, text string) error) error {
	if !ss.pipelining() {
		group = 1
	}
	for start := 0; start < len(cmds); start += group {
		end := min(start+group, len(cmds))
		lines := make([]string, 0, end-start)
		for _, c := range cmds[start:end] {
			if c.sent != nil {
				c.sent()
			}
			lines = append(lines, c.line)
		}
		if err := ss.send(lines...); err != nil {
			return ss.ioErr(ctx, cmds[start].op, err)
		}
		for i := start; i < end; i++ {
			ok, text, err := ss.status()
			if err != nil {
				return ss.ioErr(ctx, cmds[i].op, err)
			}
			if err := each(i, ok, text); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseStatus(line string) (ok bool, text string, err error) {
	switch {
	case line == "+OK" || strings.HasPrefix(line, "+OK "):
		return true, strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " "), nil
	case line == "-ERR" || strings.HasPrefix(line, "-ERR "):
		return false, strings.TrimPrefix(strings.TrimPrefix(line, "-ERR"), " "), nil
	}
	return false, "", fmt.Errorf("reply %q is neither +OK nor -ERR", clip(line))
}

// readLine reads one line of at most the reader's buffer size, without its
// CRLF. A longer line is an error: status lines are short (RFC 2449 §4).
func readLine(r *bufio.Reader) (string, error) {
	b, err := readRawLine(r)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// readRawLine reads one line, with its line ending, of at most r's buffer size.
// The slice is valid until the next read.
func readRawLine(r *bufio.Reader) ([]byte, error) {
	b, err := r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("response line longer than %d bytes", r.Size())
	case err != nil:
		return nil, err
	}
	return b, nil
}

// trimEOL removes one line ending, CRLF or a sloppy server's bare LF.
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// capa issues CAPA (RFC 2449 §5) over w/br and returns the tags in upper
// case, each also with its arguments ("EXPIRE 0") when it has some, or nil
// when the server answers -ERR (it predates CAPA). It runs before the
// session exists too, on the clear-text connection before STLS.
func capa(w io.Writer, br *bufio.Reader, trace func(string)) (map[string]bool, error) {
	traceCmds(trace, []byte("CAPA\r\n"))
	if _, err := io.WriteString(w, "CAPA\r\n"); err != nil {
		return nil, err
	}
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	if trace != nil {
		trace("S: " + line)
	}
	ok, _, err := parseStatus(line)
	if err != nil || !ok {
		return nil, err
	}
	caps := map[string]bool{}
	for i := 0; ; i++ {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if line == "." {
			return caps, nil
		}
		if i >= maxCapaLines {
			return nil, fmt.Errorf("CAPA response longer than %d lines", maxCapaLines)
		}
		if f := strings.Fields(line); len(f) > 0 {
			caps[strings.ToUpper(f[0])] = true
			// Tags with arguments are also kept whole ("EXPIRE 0"),
			// for the few whose argument matters.
			if len(f) > 1 {
				caps[strings.ToUpper(strings.Join(f, " "))] = true
			}
		}
	}
}

// clip shortens server text quoted in an error.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
