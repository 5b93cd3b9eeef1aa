package state

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"sync"

	"github.com/mailferry/mailferry/sync/mail"
)

// Message is what the state knows about one message of a folder: the pair
// of identifiers on the two sides and what a later run needs to skip,
// re-map or merge it without reading it again.
type Message struct {
	// Src is the message's id on side A (the source of a copy).
	Src mail.ID
	// Dst is its id on side B (the destination), "" when not known.
	Dst mail.ID
	// Flags are the base flags, space separated: for a copy the source
	// flags last given to the destination, for two-way sync the flags both
	// sides last agreed on. FlagsKnown false means none were recorded
	// (a sink that cannot change flags later), which is not the same as
	// "no flags".
	Flags      string
	FlagsKnown bool
	// Size is the source's size hint in octets, -1 if unknown.
	Size int64
	// Date is the internal date the source listed, Unix seconds; 0 unknown.
	Date int64
	// MsgID is checkpoint.MsgIDSum of the Message-ID ("" unknown).
	MsgID string
	// SHA256 is the hex SHA-256 of the bytes copied ("" unknown).
	SHA256 string
	// Stored is when mailferry made the message durable on side B, Unix
	// seconds (for --delete-after). Put fills in the current time when 0.
	Stored int64
	// Evidence is what two-way sync keeps of the files behind the message
	// on a side whose files can be edited in place (a Maildir), to tell
	// an edit from a rename; package twoway writes and reads it, "" none.
	Evidence string
	// Vanished says side A (a copy's source) reported the message expunged:
	// the record stays, for the copy it names (a message restored later is
	// re-mapped onto it, not copied again), but no later listing is to
	// count the message as present or vanish it again (V lines).
	Vanished bool
}

// A folder log is a text file of lines, each "CCCCCCCC\t" (the CRC-32C of
// the rest of the line, in hex) and tab-separated fields:
//
//	H  mailferry-state  <version>  <gen>  <folder name>   first line
//	P  src  dst  flags  size  date  msgid  sha256  stored [evidence]   a message put
//	F  src                                                    a message forgotten
//	V  src                                                    the message vanished from side A (after its P)
//
// flags is "" when unknown and "=" followed by the flags otherwise. Fields
// escape '%', tab, CR and LF as %25 %09 %0D %0A. A line is whole only with
// its newline and a matching CRC: a write cut by a crash fails one or the
// other, and zeros a file system leaves after a crash fail the CRC.
const (
	opHeader = "H"
	opPut    = "P"
	opForget = "F"
	opVanish = "V"
	magic    = "mailferry-state"
)

var (
	// crcTable is made on first use: making it at start would cost every
	// run (a no-op too, which reads no log) the Castagnoli setup, about
	// 1.5 MB of CRC computed into the tables of its SSE4.2 path.
	crcTable = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })
	escaper  = strings.NewReplacer("%", "%25", "\t", "%09", "\r", "%0D", "\n", "%0A")

	errBadLine = errors.New("bad line")
)

// appendLine appends one CRC-framed line of fields to buf.
func appendLine(buf []byte, fields ...string) []byte {
	start := len(buf)
	buf = append(buf, "00000000\t"...)
	body := len(buf)
	for i, f := range fields {
		if i > 0 {
			buf = append(buf, '\t')
		}
		buf = append(buf, escape(f)...)
	}
	sum := crc32.Checksum(buf[body:], crcTable())
	const hexd = "0123456789abcdef"
	for i := 7; i >= 0; i-- {
		buf[start+7-i] = hexd[(sum>>(4*uint(i)))&0xf]
	}
	return append(buf, '\n')
}

func escape(s string) string {
	if !strings.ContainsAny(s, "%\t\r\n") {
		return s
	}
	return escaper.Replace(s)
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errBadLine
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errBadLine
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// splitLine checks the CRC of line (without its newline) and returns its
// fields, unescaped, in fields[:0] (reused across lines). The fields share
// one string: loading a folder allocates once per line.
func splitLine(line []byte, fields []string) ([]string, error) {
	if len(line) < 9 || line[8] != '\t' {
		return nil, errBadLine
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil || uint32(want) != crc32.Checksum(line[9:], crcTable()) {
		return nil, errBadLine
	}
	fields = fields[:0]
	for rest := string(line[9:]); ; {
		f, tail, more := strings.Cut(rest, "\t")
		if f, err = unescape(f); err != nil {
			return nil, err
		}
		fields = append(fields, f)
		if !more {
			return fields, nil
		}
		rest = tail
	}
}

func headerLine(buf []byte, gen uint64, name string) []byte {
	return appendLine(buf, opHeader, magic, strconv.Itoa(Version), strconv.FormatUint(gen, 10), name)
}

// headerLen is len(headerLine(nil, gen, name)), without computing its CRC
// (State.Empty asks it of every folder, on a no-op run too).
func headerLen(gen uint64, name string) int {
	return len("00000000\t"+opHeader+"\t"+magic+"\t"+strconv.Itoa(Version)+"\t"+strconv.FormatUint(gen, 10)+"\t") + len(escape(name)) + 1
}

func putLine(buf []byte, m Message) []byte {
	flags := ""
	if m.FlagsKnown {
		flags = "=" + m.Flags
	}
	fields := []string{opPut, string(m.Src), string(m.Dst), flags,
		strconv.FormatInt(m.Size, 10), strconv.FormatInt(m.Date, 10), m.MsgID, m.SHA256,
		strconv.FormatInt(m.Stored, 10)}
	if m.Evidence != "" { // a copy's records keep their nine fields
		fields = append(fields, m.Evidence)
	}
	buf = appendLine(buf, fields...)
	if m.Vanished {
		buf = appendLine(buf, opVanish, string(m.Src))
	}
	return buf
}

func forgetLine(buf []byte, src mail.ID) []byte {
	return appendLine(buf, opForget, string(src))
}

// parseHeader checks a folder log's first line.
func parseHeader(fields []string, gen uint64, name string) error {
	if len(fields) != 5 || fields[0] != opHeader || fields[1] != magic {
		return errors.New("not a mailferry folder log")
	}
	if fields[2] != strconv.Itoa(Version) {
		return fmt.Errorf("format version %s, this mailferry reads %d", fields[2], Version)
	}
	if fields[3] != strconv.FormatUint(gen, 10) || fields[4] != name {
		return fmt.Errorf("holds folder %q generation %s, the summary expects %q generation %d", fields[4], fields[3], name, gen)
	}
	return nil
}

// parseRecord decodes a P or F line; forget is true for F.
func parseRecord(fields []string) (m Message, forget bool, err error) {
	switch {
	case len(fields) == 2 && fields[0] == opForget && fields[1] != "":
		return Message{Src: mail.ID(fields[1])}, true, nil
	case len(fields) != 9 && len(fields) != 10 || fields[0] != opPut || fields[1] == "":
		return m, false, errBadLine
	}
	m = Message{Src: mail.ID(fields[1]), Dst: mail.ID(fields[2]), MsgID: fields[6], SHA256: fields[7]}
	if len(fields) == 10 {
		m.Evidence = fields[9]
	}
	if f := fields[3]; f != "" {
		if f[0] != '=' {
			return m, false, errBadLine
		}
		m.Flags, m.FlagsKnown = f[1:], true
	}
	var e1, e2, e3 error
	m.Size, e1 = strconv.ParseInt(fields[4], 10, 64)
	m.Date, e2 = strconv.ParseInt(fields[5], 10, 64)
	m.Stored, e3 = strconv.ParseInt(fields[8], 10, 64)
	if e1 != nil || e2 != nil || e3 != nil {
		return m, false, errBadLine
	}
	return m, false, nil
}
