package imapconn

import (
	"bufio"
	"strconv"
	"strings"
)

// Response is one server response line, split into its parts: what the
// connections the program drives by hand (the IMAP sink's MULTIAPPEND,
// the Gmail preset's X-GM-MSGID fetch) read.
type Response struct {
	Tag  string // "*" untagged, "+" continuation, otherwise the command's tag
	Kind string // OK, NO, BAD, BYE, PREAUTH, or the untagged data keyword (EXISTS, FLAGS, ...)
	Num  uint32 // the number of "* n EXISTS"
	Code string // response code atom, upper case ("APPENDUID", "TRYCREATE")
	Args string // response code arguments
	Text string // human-readable text
}

func (r Response) String() string {
	s := r.Kind
	if r.Code != "" {
		s += " [" + r.Code
		if r.Args != "" {
			s += " " + r.Args
		}
		s += "]"
	}
	if r.Text != "" {
		s += " " + r.Text
	}
	return s
}

// ReadParsed reads one response with ReadResponse and splits it.
func ReadParsed(r *bufio.Reader, lineMax int, literalMax int64) (Response, error) {
	line, err := ReadResponse(r, lineMax, literalMax)
	if err != nil {
		return Response{}, err
	}
	return ParseResponse(line), nil
}

// ParseResponse splits a response line into its parts.
func ParseResponse(line string) Response {
	var r Response
	word := func() string {
		w, rest, _ := strings.Cut(line, " ")
		line = rest
		return w
	}
	r.Tag = word()
	if r.Tag == "+" {
		r.Text = line
		return r
	}
	k := word()
	if n, err := strconv.ParseUint(k, 10, 32); err == nil && r.Tag == "*" {
		r.Num = uint32(n)
		k = word()
	}
	r.Kind = strings.ToUpper(k)
	switch r.Kind {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		if strings.HasPrefix(line, "[") {
			if end := strings.IndexByte(line, ']'); end > 0 {
				code := line[1:end]
				c, args, _ := strings.Cut(code, " ")
				r.Code, r.Args = strings.ToUpper(c), args
				line = strings.TrimPrefix(line[end+1:], " ")
			}
		}
	}
	r.Text = line
	return r
}

// AppendUIDs parses APPENDUID arguments (RFC 4315 §3): UIDVALIDITY and the
// UIDs in message order. It returns nil when the code is absent or bad.
func AppendUIDs(r Response) (uint32, []uint32) {
	if r.Code != "APPENDUID" {
		return 0, nil
	}
	v, set, ok := strings.Cut(r.Args, " ")
	uidv, err := strconv.ParseUint(v, 10, 32)
	if !ok || err != nil {
		return 0, nil
	}
	var uids []uint32
	for _, part := range strings.Split(set, ",") {
		lo, hi, rng := strings.Cut(part, ":")
		a, err1 := strconv.ParseUint(lo, 10, 32)
		b := a
		var err2 error
		if rng {
			b, err2 = strconv.ParseUint(hi, 10, 32)
		}
		if err1 != nil || err2 != nil || a == 0 || b < a || b-a > 1<<20 {
			return 0, nil
		}
		for u := a; u <= b; u++ {
			uids = append(uids, uint32(u))
		}
	}
	return uint32(uidv), uids
}
