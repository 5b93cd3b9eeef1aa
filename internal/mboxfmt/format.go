package mboxfmt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// DefaultSender is the envelope sender written in the From_ lines of entries
// whose sender is unknown or unusable.
const DefaultSender = "MAILER-DAEMON"

// MaxFromLine bounds a From_ separator line. A longer line starting with
// "From " is not a separator we can parse: the file is refused as malformed.
const MaxFromLine = 4096

// bufSize is the size of the buffered readers and writers; it bounds the
// memory used per open entry, whatever the message size.
const bufSize = 64 << 10

// ErrFormat is returned (wrapped) by Reader when the data is not an mbox:
// something other than a From_ line where an entry must start.
var ErrFormat = errors.New("mbox: not an mbox file")

var fromPrefix = []byte("From ")

var bufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
var wbufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}

// FromLine returns the From_ separator line for an entry, with its LF:
// "From <sender> <date in asctime form, UTC>\n" (RFC 4155 §2). An empty or
// unusable sender (one with white space or control characters) becomes
// DefaultSender, and a zero date becomes now.
func FromLine(sender string, date time.Time) string {
	if sender == "" || strings.IndexFunc(sender, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 || len(sender) > 512 {
		sender = DefaultSender
	}
	if date.IsZero() {
		date = time.Now()
	}
	return "From " + sender + " " + date.UTC().Format(time.ANSIC) + "\n"
}

// WriteEntry writes body to w as one entry of the exact mboxrd variant
// described in the package documentation: the From_ line, the body with one
// '>' added to every line matching ^>*From , and one LF. Line endings are
// kept as they are. It returns the number of bytes written to w; on error
// part of the entry may have been written, and the caller cuts it off.
//
// Memory is bounded: the body is streamed through fixed-size buffers.
func WriteEntry(w io.Writer, sender string, date time.Time, body io.Reader) (int64, error) {
	br := bufPool.Get().(*bufio.Reader)
	br.Reset(body)
	bw := wbufPool.Get().(*bufio.Writer)
	cw := &countWriter{w: w}
	bw.Reset(cw)
	defer func() {
		br.Reset(nil)
		bufPool.Put(br)
		bw.Reset(nil)
		wbufPool.Put(bw)
	}()
	_, _ = bw.WriteString(FromLine(sender, date)) // bufio: an error sticks and Flush reports it
	if err := quote(bw, br); err != nil {
		_ = bw.Flush() // the quoting error is the one to report
		return cw.n, err
	}
	_ = bw.WriteByte('\n') // bufio: an error sticks and Flush reports it
	err := bw.Flush()
	return cw.n, err
}

// quote copies br to bw adding one '>' to each line matching ^>*From .
func quote(bw *bufio.Writer, br *bufio.Reader) error {
	bol := true
	for {
		if bol {
			// Copy the run of '>' (usually empty), then look for "From ".
			// The added '>' goes after the run: all '>' are alike, so the
			// result is the same as prefixing one, and nothing is buffered.
			for {
				p, err := br.Peek(1)
				if err != nil {
					if err == io.EOF {
						return nil
					}
					return err
				}
				if p[0] != '>' {
					break
				}
				_, _ = br.Discard(1)  // already peeked: cannot fail
				_ = bw.WriteByte('>') // bufio: an error sticks and Flush reports it
			}
			p, err := br.Peek(len(fromPrefix))
			if err != nil && err != io.EOF {
				return err
			}
			if bytes.Equal(p, fromPrefix) {
				_ = bw.WriteByte('>') // bufio: an error sticks and Flush reports it
			}
			bol = false
		}
		line, err := br.ReadSlice('\n')
		if _, werr := bw.Write(line); werr != nil {
			return werr
		}
		if len(line) > 0 && line[len(line)-1] == '\n' {
			bol = true
		}
		switch err {
		case nil, bufio.ErrBufferFull:
		case io.EOF:
			return nil
		default:
			return err
		}
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Entry describes one entry of an mbox file: where it starts and what its
// From_ line says.
type Entry struct {
	// Offset is the byte offset of the From_ line from the start of the
	// reader (plus the base given to NewReaderAt).
	Offset int64
	// Sender is the envelope sender of the From_ line.
	Sender string
	// Date is the From_ line's date in UTC; zero if it cannot be parsed.
	Date time.Time
}

// Reader reads the entries of an mbox file in the exact mboxrd variant of
// this package (and ordinary mboxrd files written by other tools). Call Next
// to advance to an entry, then Read its unquoted body. It never holds more
// than a fixed-size buffer in memory.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	// Lenient accepts a last entry whose final line has no LF (a file cut
	// short, or written by a tool that omits it): its bytes are returned as
	// they are. Otherwise such an entry fails with io.ErrUnexpectedEOF.
	Lenient bool

	cr    countReader
	br    *bufio.Reader
	base  int64
	state int
	crlf  bool   // the current entry's From_ line ended in CRLF
	pend  []byte // line ending held back: the entry's terminator if a separator follows
	small []byte // bytes decided but not yet returned
	tmp   [2]byte
	err   error // sticky error of the current entry
	n     int   // entries seen
}

const (
	stNone = iota // before the first entry, or between Next calls
	stBOL         // at the start of a body line
	stRun         // inside a run of '>' at the start of a line; one '>' held back
	stMid         // inside a line
	stEnd         // the entry ended (separator or EOF)
)

// NewReader returns a Reader for r; offsets count from r's start.
func NewReader(r io.Reader) *Reader { return NewReaderAt(r, 0) }

// NewReaderAt returns a Reader for r whose entry offsets start at base: use it
// to read from the middle of a file.
func NewReaderAt(r io.Reader, base int64) *Reader {
	rd := &Reader{base: base}
	rd.cr.r = r
	rd.br = bufio.NewReaderSize(&rd.cr, bufSize)
	return rd
}

func (r *Reader) offset() int64 { return r.base + r.cr.n - int64(r.br.Buffered()) }

// Next skips the rest of the current entry and returns the next one's From_
// line. It returns io.EOF after the last entry, and an error wrapping
// ErrFormat when the data does not start with a From_ line (blank lines
// before the first one are skipped).
func (r *Reader) Next() (Entry, error) {
	if r.state != stNone && r.state != stEnd {
		if _, err := io.Copy(io.Discard, struct{ io.Reader }{r}); err != nil {
			return Entry{}, err
		}
	}
	if r.err != nil {
		return Entry{}, r.err
	}
	if r.n == 0 {
		if err := r.skipBlankLines(); err != nil {
			return Entry{}, err
		}
	}
	e := Entry{Offset: r.offset()}
	line, err := r.br.ReadSlice('\n')
	if len(line) == 0 && err == io.EOF {
		return Entry{}, io.EOF
	}
	if !bytes.HasPrefix(line, fromPrefix) {
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return Entry{}, err
		}
		return Entry{}, fmt.Errorf("%w: no From_ line at offset %d", ErrFormat, e.Offset)
	}
	if err == bufio.ErrBufferFull || len(line) > MaxFromLine {
		return Entry{}, fmt.Errorf("%w: From_ line at offset %d is too long", ErrFormat, e.Offset)
	}
	if err != nil && err != io.EOF {
		return Entry{}, err
	}
	r.n++
	r.crlf = bytes.HasSuffix(line, []byte("\r\n"))
	r.state, r.pend, r.small, r.err = stBOL, nil, nil, nil
	e.Sender, e.Date = parseFromLine(line)
	if err == io.EOF {
		// A From_ line without LF at the very end: an entry cut short.
		r.state = stEnd
		if !r.Lenient {
			r.err = io.ErrUnexpectedEOF
		}
	}
	return e, nil
}

// skipBlankLines discards the blank lines (LF or CRLF) before the first
// entry: they are tolerated, as other readers do. It returns the read error
// that left nothing to peek at.
func (r *Reader) skipBlankLines() error {
	for {
		p, err := r.br.Peek(2)
		if len(p) > 0 && p[0] == '\n' {
			_, _ = r.br.Discard(1) // already peeked: cannot fail
			continue
		}
		if len(p) == 2 && p[0] == '\r' && p[1] == '\n' {
			_, _ = r.br.Discard(2) // already peeked: cannot fail
			continue
		}
		if len(p) == 0 && err != nil {
			return err
		}
		return nil
	}
}

// Read reads the current entry's body, unquoted, and returns io.EOF at its
// end. It fills p as far as the buffered data allows.
func (r *Reader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.small) > 0 {
			c := copy(p[n:], r.small)
			r.small = r.small[c:]
			n += c
			continue
		}
		switch r.state {
		case stNone, stEnd:
			switch {
			case n > 0:
				return n, nil
			case r.state == stEnd && r.err != nil:
				return 0, r.err
			}
			return 0, io.EOF
		case stBOL:
			b, err := r.br.Peek(len(fromPrefix))
			if len(b) == 0 {
				r.endAtEOF(err)
				continue
			}
			if err != nil && err != io.EOF {
				r.fail(err)
				continue
			}
			if bytes.Equal(b, fromPrefix) {
				// The next entry's From_ line: the held-back line ending
				// was this entry's terminator.
				r.state = stEnd
				continue
			}
			r.small, r.pend = r.pend, nil
			if b[0] == '>' {
				_, _ = r.br.Discard(1) // already peeked: cannot fail
				r.state = stRun
			} else {
				r.state = stMid
			}
		case stRun:
			b, err := r.br.Peek(1)
			if len(b) == 0 {
				if err != nil && err != io.EOF {
					r.fail(err)
					continue
				}
				r.small = append(r.tmp[:0], '>')
				r.state = stMid
				continue
			}
			if b[0] == '>' {
				// Copy the run straight through, up to what is buffered.
				avail, _ := r.br.Peek(r.br.Buffered())
				c := 0
				for c < len(avail) && n+c < len(p) && avail[c] == '>' {
					p[n+c] = '>'
					c++
				}
				_, _ = r.br.Discard(c) // already peeked: cannot fail
				n += c
				continue
			}
			b, err = r.br.Peek(len(fromPrefix))
			if err != nil && err != io.EOF {
				r.fail(err)
				continue
			}
			if !bytes.Equal(b, fromPrefix) {
				r.small = append(r.tmp[:0], '>') // not a quoted From_: keep the '>'
			}
			r.state = stMid
		case stMid:
			n += r.readMid(p[n:])
		}
	}
	return n, nil
}

// readMid copies bytes of the current line into p. At the line's end it holds
// the line ending back and moves to stBOL. It returns 0 when it only changed
// state.
func (r *Reader) readMid(p []byte) int {
	b, err := r.br.Peek(1)
	if len(b) == 0 {
		r.endAtEOF(err)
		return 0
	}
	avail, _ := r.br.Peek(r.br.Buffered())
	if len(avail) > len(p) {
		avail = avail[:len(p)]
	}
	// Fast path: a line followed by one that starts with neither 'F' nor
	// '>' can be neither the last line nor followed by a quoted line, so it
	// goes through with its line ending. (CRLF files take the slow path.)
	start := 0
	for !r.crlf {
		i := bytes.IndexByte(avail[start:], '\n')
		if i < 0 {
			break
		}
		j := start + i + 1
		if j >= len(avail) || avail[j] == 'F' || avail[j] == '>' {
			break
		}
		start = j
	}
	i := bytes.IndexByte(avail[start:], '\n')
	if i < 0 {
		n := len(avail)
		if r.crlf && avail[n-1] == '\r' {
			// In a CRLF file a CR may start the terminator: decide once
			// the next byte is known.
			if n > 1 {
				n--
			} else {
				b, err := r.br.Peek(2)
				if len(b) == 2 && b[1] == '\n' {
					_, _ = r.br.Discard(2) // already peeked: cannot fail
					r.pend = append(r.tmp[:0], '\r', '\n')
					r.state = stBOL
					return 0
				}
				if len(b) < 2 && err != nil && err != io.EOF {
					r.fail(err)
					return 0
				}
				avail = b // Peek may have moved the buffered bytes
			}
		}
		copy(p, avail[:n])
		_, _ = r.br.Discard(n) // already peeked: cannot fail
		return n
	}
	i += start
	end, term := i, 1
	if r.crlf && i > 0 && avail[i-1] == '\r' {
		end, term = i-1, 2
	}
	copy(p, avail[:end])
	_, _ = r.br.Discard(end + term) // already peeked: cannot fail
	if term == 2 {
		r.pend = append(r.tmp[:0], '\r', '\n')
	} else {
		r.pend = append(r.tmp[:0], '\n')
	}
	r.state = stBOL
	return end
}

// endAtEOF ends the entry at the end of the data. An entry must end with its
// terminator line ending, held back in pend; without one it was cut short.
func (r *Reader) endAtEOF(err error) {
	if err != nil && err != io.EOF {
		r.fail(err)
		return
	}
	r.state = stEnd
	if r.pend == nil && !r.Lenient {
		r.err = io.ErrUnexpectedEOF
	}
	r.pend = nil
}

func (r *Reader) fail(err error) {
	r.state = stEnd
	r.err = err
	r.pend = nil
}

// StartsEntry reports whether a From_ line starts at off in f: at the
// start of the file, or after an LF.
func StartsEntry(f io.ReaderAt, off int64) bool {
	var b [6]byte
	if off == 0 {
		n, _ := f.ReadAt(b[1:], 0)
		return bytes.Equal(b[1:1+n], fromPrefix)
	}
	n, _ := f.ReadAt(b[:], off-1)
	return n == len(b) && b[0] == '\n' && bytes.Equal(b[1:], fromPrefix)
}

// parseFromLine splits a From_ line into the sender and the date. Dates in
// asctime form, optionally with a zone name or numeric offset before or after
// the year, are understood; others give a zero time.
func parseFromLine(line []byte) (string, time.Time) {
	s := strings.TrimRight(string(line[len(fromPrefix):]), "\r\n")
	s = strings.TrimLeft(s, " ")
	sender, rest, _ := strings.Cut(s, " ")
	rest = strings.Join(strings.Fields(rest), " ")
	for _, layout := range []string{time.ANSIC, "Mon Jan 2 15:04:05 2006", "Mon Jan 2 15:04:05 MST 2006", "Mon Jan 2 15:04:05 2006 -0700", "Mon Jan 2 15:04:05 -0700 2006", "Mon Jan 2 15:04 2006"} {
		if t, err := time.Parse(layout, rest); err == nil {
			return sender, t.UTC()
		}
	}
	return sender, time.Time{}
}
