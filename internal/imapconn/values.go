package imapconn

// A reader and parser for whole server responses, literals included, for
// the raw path's incremental listing (delta.go): FETCH replies carrying a
// header literal, STATUS and LIST replies whose mailbox name may be a
// literal, VANISHED and SEARCH replies. ReadResponse (wire.go) skips
// literals, which is right where only the line matters; here the literal's
// bytes are the data.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ReadFull reads one server response with its literals. Each literal is
// kept up to keep bytes (the rest is read past, at most literalMax bytes in
// all) and stands in the result as "{k}\r\n" followed by the k bytes kept,
// so Parse reads the result as IMAP syntax. The text outside literals is
// capped at lineMax bytes. The final CRLF is removed.
func ReadFull(r *bufio.Reader, lineMax int, literalMax int64, keep int) ([]byte, error) {
	var out []byte
	text := 0 // bytes of out outside literals
	for {
		line, err := readLine(r, lineMax-text)
		if err == errLineTooLong {
			return nil, fmt.Errorf("server response longer than %d bytes", lineMax)
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line = []byte(strings.TrimRight(string(line), "\r\n"))
		n, ok := LiteralSize(string(line))
		if !ok {
			return append(out, line...), nil
		}
		if n > literalMax {
			return nil, fmt.Errorf("server sent a %d-byte literal where at most %d were expected", n, literalMax)
		}
		k := min(n, int64(keep))
		open := strings.LastIndexByte(string(line), '{')
		out = append(out, line[:open]...)
		text += open
		out = append(out, "{"+strconv.FormatInt(k, 10)+"}\r\n"...)
		start := len(out)
		out = append(out, make([]byte, k)...)
		if _, err := io.ReadFull(r, out[start:]); err != nil {
			return nil, unexpectedEOF(err)
		}
		if _, err := io.CopyN(io.Discard, r, n-k); err != nil {
			return nil, unexpectedEOF(err)
		}
	}
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Kind is the kind of a Value.
type Kind uint8

// The kinds of Value.
const (
	KindAtom   Kind = iota // an atom or a number (Text)
	KindString             // a quoted string or a literal (Text, unescaped)
	KindNil                // NIL
	KindList               // a parenthesised list (List)
)

// Value is one piece of a parsed response: an atom, a string, NIL or a
// list. An atom with a bracketed part keeps it whole: BODY[HEADER.FIELDS
// (MESSAGE-ID)] is one atom.
type Value struct {
	Kind Kind
	Text string
	List []Value
}

// Num returns the value as an unsigned number of at most bits bits.
func (v Value) Num(bits int) (uint64, bool) {
	if v.Kind != KindAtom {
		return 0, false
	}
	n, err := strconv.ParseUint(v.Text, 10, bits)
	return n, err == nil
}

// Str returns the text of an atom or a string; NIL is "".
func (v Value) Str() (string, bool) {
	switch v.Kind {
	case KindAtom, KindString:
		return v.Text, true
	case KindNil:
		return "", true
	}
	return "", false
}

// maxDepth bounds list nesting, so a hostile response cannot exhaust the stack.
const maxDepth = 32

var errSyntax = errors.New("response syntax")

// Parse splits b (response text after the tag, as ReadFull returns it)
// into values.
func Parse(b []byte) ([]Value, error) {
	p := parser{b: b}
	vals, err := p.values(0)
	if err != nil {
		return nil, err
	}
	if p.i != len(p.b) {
		return nil, fmt.Errorf("%w: unexpected %q at %d", errSyntax, p.b[p.i], p.i)
	}
	return vals, nil
}

type parser struct {
	b []byte
	i int
}

// values reads values separated by spaces up to the end or a ')'.
func (p *parser) values(depth int) ([]Value, error) {
	var out []Value
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ':
			p.i++
			continue
		case ')':
			return out, nil
		}
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (p *parser) value(depth int) (Value, error) {
	switch c := p.b[p.i]; c {
	case '(':
		if depth >= maxDepth {
			return Value{}, fmt.Errorf("%w: lists nested too deep", errSyntax)
		}
		p.i++
		list, err := p.values(depth + 1)
		if err != nil {
			return Value{}, err
		}
		if p.i >= len(p.b) {
			return Value{}, fmt.Errorf("%w: unclosed list", errSyntax)
		}
		p.i++ // ')'
		if list == nil {
			list = []Value{}
		}
		return Value{Kind: KindList, List: list}, nil
	case '"':
		return p.quoted()
	case '{':
		return p.literal()
	case '~':
		if p.i+1 < len(p.b) && p.b[p.i+1] == '{' { // literal8 (RFC 3516)
			p.i++
			return p.literal()
		}
	}
	return p.atom()
}

func (p *parser) quoted() (Value, error) {
	var sb strings.Builder
	for p.i++; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; c {
		case '\\':
			p.i++
			if p.i >= len(p.b) {
				return Value{}, fmt.Errorf("%w: unterminated string", errSyntax)
			}
			sb.WriteByte(p.b[p.i])
		case '"':
			p.i++
			return Value{Kind: KindString, Text: sb.String()}, nil
		default:
			sb.WriteByte(c)
		}
	}
	return Value{}, fmt.Errorf("%w: unterminated string", errSyntax)
}

func (p *parser) literal() (Value, error) {
	end := strings.Index(string(p.b[p.i:]), "}\r\n")
	if end < 0 {
		return Value{}, fmt.Errorf("%w: bad literal", errSyntax)
	}
	n, err := strconv.Atoi(strings.TrimRight(string(p.b[p.i+1:p.i+end]), "+-"))
	start := p.i + end + 3
	if err != nil || n < 0 || n > len(p.b)-start {
		return Value{}, fmt.Errorf("%w: bad literal", errSyntax)
	}
	p.i = start + n
	return Value{Kind: KindString, Text: string(p.b[start:p.i])}, nil
}

// atom reads up to a space, a parenthesis or the end; a '[' takes in
// everything to its matching ']' (a FETCH section, a response code).
func (p *parser) atom() (Value, error) {
	start := p.i
	brackets := 0
	for ; p.i < len(p.b); p.i++ {
		c := p.b[p.i]
		switch {
		case c == '[':
			brackets++
		case c == ']' && brackets > 0:
			brackets--
		case brackets > 0:
		case c == ' ' || c == '(' || c == ')' || c == '"' || c == '\r' || c == '\n':
			return p.endAtom(start)
		}
	}
	if brackets > 0 {
		return Value{}, fmt.Errorf("%w: unclosed '['", errSyntax)
	}
	return p.endAtom(start)
}

func (p *parser) endAtom(start int) (Value, error) {
	if p.i == start {
		return Value{}, fmt.Errorf("%w: unexpected %q at %d", errSyntax, p.b[p.i], p.i)
	}
	t := string(p.b[start:p.i])
	if strings.EqualFold(t, "NIL") {
		return Value{Kind: KindNil}, nil
	}
	return Value{Kind: KindAtom, Text: t}, nil
}
