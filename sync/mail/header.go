package mail

import (
	"bytes"
	"io"
)

// HeaderScanLimit bounds how much of a message's start HeaderScanner keeps
// while it looks for the Message-ID: the header section, or its first 64
// KiB when it is longer. Memory per scanner stays that.
const HeaderScanLimit = 64 << 10

// HeaderScanner passes a message through while it keeps the start of it,
// up to the end of the header section or HeaderScanLimit bytes, to find
// the Message-ID field (RFC 5322 §3.6.4) without a second read. The engine
// wraps every body whose listing gave no Message-ID in one, so that its
// checkpoint record can name the message by Message-ID later; a
// HeaderFetcher source runs one over each header it reads.
type HeaderScanner struct {
	r     io.Reader
	head  []byte
	n     int64 // bytes passed through
	ended bool  // head holds the whole header section and its blank line
	eof   bool  // r returned io.EOF
}

// NewHeaderScanner wraps r.
func NewHeaderScanner(r io.Reader) *HeaderScanner { return &HeaderScanner{r: r} }

// Read reads from the wrapped reader, keeping what the scan needs.
func (s *HeaderScanner) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.note(p[:n])
	if err == io.EOF {
		s.eof = true
	}
	return n, err
}

// note keeps the bytes of b that belong to the header section, up to the
// limit.
func (s *HeaderScanner) note(b []byte) {
	s.n += int64(len(b))
	if s.ended || len(s.head) >= HeaderScanLimit || len(b) == 0 {
		return
	}
	from := max(len(s.head)-2, 0) // the blank line may start in an earlier piece
	s.head = append(s.head, b[:min(len(b), HeaderScanLimit-len(s.head))]...)
	if end := headerEnd(s.head, from); end >= 0 {
		s.head, s.ended = s.head[:end], true
	}
}

// headerEnd returns the length of the header section and the blank line
// that ends it in head, looking for that line from offset from on; -1 when
// head does not hold it. A message that starts with a blank line has an
// empty header section.
func headerEnd(head []byte, from int) int {
	if from == 0 {
		switch {
		case bytes.HasPrefix(head, []byte("\r\n")):
			return 2
		case bytes.HasPrefix(head, []byte("\n")):
			return 1
		}
	}
	for i := from; i < len(head); i++ {
		if head[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(head) && head[i+1] == '\n':
			return i + 2
		case i+2 < len(head) && head[i+1] == '\r' && head[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// MessageID returns the value of the message's first Message-ID field with
// folded lines unfolded and surrounding white space trimmed, or "" when it
// has none or the scan cannot tell yet: the field is not within the first
// HeaderScanLimit bytes, or the reader has not yet passed the header
// section (or the end of a message without one). Two scanners fed the same
// message's start agree, whether or not a body follows the header section.
func (s *HeaderScanner) MessageID() string {
	// Everything in head is complete when the blank line was seen, or the
	// message ended within the limit; otherwise its last field may go on
	// past what was kept.
	whole := s.ended || (s.eof && s.n <= HeaderScanLimit)
	if !whole && s.n <= HeaderScanLimit {
		return "" // not read far enough
	}
	return fieldMessageID(s.head, whole)
}

// fieldMessageID finds the first Message-ID field in a header section
// (head, without anything after its blank line). When whole is false, head
// may be cut inside a field, and a field that reaches its end is not used.
func fieldMessageID(head []byte, whole bool) string {
	const name = "message-id"
	var val []byte
	found := false
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		var line []byte
		switch {
		case i >= 0:
			line, head = head[:i], head[i+1:]
		case whole:
			line, head = head, nil
		default:
			return "" // the line goes on past head
		}
		line = bytes.TrimRight(line, "\r")
		if found {
			if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
				val = append(append(val, ' '), bytes.TrimSpace(line)...)
				continue
			}
			return string(bytes.TrimSpace(val))
		}
		if len(line) == 0 {
			return "" // the end of the header section
		}
		if len(line) < len(name) || !bytes.EqualFold(line[:len(name)], []byte(name)) {
			continue
		}
		rest := bytes.TrimLeft(line[len(name):], " \t") // RFC 5322 §4.5.3 allows space before the colon
		if len(rest) == 0 || rest[0] != ':' {
			continue
		}
		found = true
		val = append([]byte(nil), bytes.TrimSpace(rest[1:])...)
	}
	if found && whole {
		return string(bytes.TrimSpace(val))
	}
	return ""
}
