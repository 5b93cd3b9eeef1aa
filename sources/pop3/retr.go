package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/mailferry/mailferry/sync/mail"
)

// MaxLine is the longest line a RETR body may hold (1 MiB). RFC 5322 allows
// 998 octets; the cap only stops a hostile server from sending one endless
// line (docs/failure-model.md F8). Memory does not depend on it: lines stream.
const MaxLine = 1 << 20

// dotReader streams a multi-line response (RFC 1939 §3) from br: it removes
// the byte-stuffing dot from lines that begin with '.', ends at the line
// holding only "." (CRLF, or a bare LF from a sloppy server), and leaves
// every byte after that terminator in br. Everything else passes through
// unchanged, so the caller gets the lines exactly as the server sent them.
// Memory is br's buffer, whatever the message or line size.
//
// go-pop3's RetrRaw reads the whole response into a bytes.Buffer instead
// (TestGoPOP3RetrBuffersWholeMessage), which is why the source does not use
// it.
type dotReader struct {
	br      *bufio.Reader
	bol     bool // at the beginning of a line
	lineLen int  // bytes of the current line so far
	done    bool
	err     error
}

func newDotReader(br *bufio.Reader) *dotReader { return &dotReader{br: br, bol: true} }

// errLineTooLong reports a body line over MaxLine.
var errLineTooLong = fmt.Errorf("body line longer than %d bytes: %w", MaxLine, mail.ErrTooLarge)

var dotNL = []byte("\n.")

// Read fills p with as much of the body as br holds, blocking only when it
// has nothing to return yet. It returns io.EOF after the terminator, and
// io.ErrUnexpectedEOF when the connection ends before it: a cut body is an
// error, never a short message.
func (d *dotReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.done {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) {
		if d.bol {
			if n > 0 {
				// Deciding whether a '.' line ends the body may need bytes
				// that have not arrived: return what we have first.
				b := d.br.Buffered()
				if b == 0 {
					break
				}
				if c, _ := d.br.Peek(1); c[0] == '.' && b < 3 {
					break
				}
			}
			end, err := d.lineStart()
			if err != nil {
				d.err = err
				return n, err
			}
			if end {
				d.done = true
				return n, io.EOF
			}
		}
		if n > 0 && d.br.Buffered() == 0 {
			break
		}
		m, err := d.copyOut(p[n:])
		n += m
		if err != nil {
			d.err = err
			return n, err
		}
	}
	return n, nil
}

// lineStart handles the first bytes of a line: the terminator ends the
// body; any other leading '.' is byte-stuffing and is dropped.
func (d *dotReader) lineStart() (end bool, err error) {
	c, err := d.br.Peek(1)
	if err != nil {
		return false, unexpected(err)
	}
	d.bol = false
	d.lineLen = 0
	if c[0] != '.' {
		return false, nil
	}
	if c, err = d.br.Peek(2); err != nil {
		return false, unexpected(err)
	}
	switch c[1] {
	case '\n':
		_, _ = d.br.Discard(2) // already peeked: cannot fail
		return true, nil
	case '\r':
		if c, err = d.br.Peek(3); err != nil {
			return false, unexpected(err)
		}
		if c[2] == '\n' {
			_, _ = d.br.Discard(3) // already peeked: cannot fail
			return true, nil
		}
	}
	_, _ = d.br.Discard(1) // already peeked: cannot fail
	return false, nil
}

// copyOut copies buffered bytes into p, up to the end of the buffer or the
// first line that starts with '.', whichever comes first, waiting for data
// only when br is empty.
func (d *dotReader) copyOut(p []byte) (int, error) {
	if d.br.Buffered() == 0 {
		if _, err := d.br.Peek(1); err != nil {
			return 0, unexpected(err)
		}
	}
	buf, _ := d.br.Peek(d.br.Buffered())
	if len(buf) > len(p) {
		buf = buf[:len(p)]
	}
	if i := bytes.Index(buf, dotNL); i >= 0 {
		buf = buf[:i+1]
	}
	// Only the first line of buf continues an earlier piece; the others are
	// shorter than the buffer and so than MaxLine.
	if i := bytes.IndexByte(buf, '\n'); i < 0 {
		d.lineLen += len(buf)
	} else {
		if d.lineLen+i > MaxLine {
			return 0, errLineTooLong
		}
		d.lineLen = len(buf) - 1 - bytes.LastIndexByte(buf, '\n')
	}
	if d.lineLen > MaxLine+1 { // +1: a CR waiting for its LF
		return 0, errLineTooLong
	}
	d.bol = len(buf) > 0 && buf[len(buf)-1] == '\n'
	n := copy(p, buf)
	_, _ = d.br.Discard(n) // already peeked: cannot fail
	return n, nil
}

// unexpected turns the end of the connection inside a response into
// io.ErrUnexpectedEOF, which the engine retries.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
