package imapconn

// Parsers for what CONDSTORE and QRESYNC (RFC 7162), LIST-STATUS (RFC 5819)
// and SEARCH add to responses, for the raw path's incremental listing
// (delta.go). go-imap v2 beta.8 cannot read VANISHED (its client drops the
// connection on it), refuses ENABLE QRESYNC and discards the [MODIFIED]
// response code, so the whole incremental listing runs here; see delta.go
// for the upstream change that would let it move to imapclient.

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"encoding/base64"
)

// UIDRange is the UIDs Lo to Hi, both included.
type UIDRange struct{ Lo, Hi uint32 }

// UIDSet is a set of UIDs as sorted, disjoint, non-adjacent ranges.
type UIDSet []UIDRange

// maxSetRanges bounds how many ranges ParseUIDSet accepts, so that a
// hostile response cannot make the set unbounded (a set of 1:4294967295
// is one range and costs nothing).
const maxSetRanges = 1 << 20

// ParseUIDSet parses a sequence set of UIDs ("1:3,7,9:8") as VANISHED,
// [MODIFIED] and ESEARCH send it. '*' and 0 are refused: servers send
// concrete UIDs there.
func ParseUIDSet(s string) (UIDSet, error) {
	if s == "" {
		return nil, fmt.Errorf("imap: empty UID set")
	}
	var set UIDSet
	for _, part := range strings.Split(s, ",") {
		if len(set) >= maxSetRanges {
			return nil, fmt.Errorf("imap: UID set of more than %d ranges", maxSetRanges)
		}
		lo, hi, rng := strings.Cut(part, ":")
		a, err1 := strconv.ParseUint(lo, 10, 32)
		b, err2 := a, error(nil)
		if rng {
			b, err2 = strconv.ParseUint(hi, 10, 32)
		}
		if err1 != nil || err2 != nil || a == 0 || b == 0 {
			return nil, fmt.Errorf("imap: bad UID set %q", Clip(s, 80))
		}
		set = append(set, UIDRange{uint32(min(a, b)), uint32(max(a, b))})
	}
	return set.normal(), nil
}

// normal sorts and merges the ranges.
func (s UIDSet) normal() UIDSet {
	sort.Slice(s, func(i, j int) bool { return s[i].Lo < s[j].Lo })
	out := s[:0]
	for _, r := range s {
		if n := len(out); n > 0 && uint64(r.Lo) <= uint64(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Union returns the set of UIDs in s or t.
func (s UIDSet) Union(t UIDSet) UIDSet {
	return append(append(UIDSet(nil), s...), t...).normal()
}

// Add returns s with uid added.
func (s UIDSet) Add(uid uint32) UIDSet {
	if n := len(s); n > 0 && s[n-1].Hi+1 == uid && uid != 0 {
		s[n-1].Hi = uid // the common case: UIDs arrive ascending
		return s
	}
	if s.Contains(uid) {
		return s
	}
	return append(s, UIDRange{uid, uid}).normal()
}

// Contains reports whether uid is in s.
func (s UIDSet) Contains(uid uint32) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].Hi >= uid })
	return i < len(s) && s[i].Lo <= uid
}

// Clip returns the UIDs of s from lo to hi.
func (s UIDSet) Clip(lo, hi uint32) UIDSet {
	var out UIDSet
	for _, r := range s {
		if r.Hi < lo || r.Lo > hi {
			continue
		}
		out = append(out, UIDRange{max(r.Lo, lo), min(r.Hi, hi)})
	}
	return out
}

// Len counts the UIDs in s.
func (s UIDSet) Len() uint64 {
	var n uint64
	for _, r := range s {
		n += uint64(r.Hi-r.Lo) + 1
	}
	return n
}

func (s UIDSet) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = strconv.FormatUint(uint64(r.Lo), 10)
		if r.Hi != r.Lo {
			parts[i] += ":" + strconv.FormatUint(uint64(r.Hi), 10)
		}
	}
	return strings.Join(parts, ",")
}

// Vanished reads the arguments of a VANISHED response (RFC 7162 §3.2.10),
// the values after the keyword: "(EARLIER) 1:3,7" or "5".
func Vanished(args []Value) (set UIDSet, earlier bool, err error) {
	if len(args) > 0 && args[0].Kind == KindList {
		if len(args[0].List) != 1 || !strings.EqualFold(args[0].List[0].Text, "EARLIER") {
			return nil, false, fmt.Errorf("imap: bad VANISHED tag")
		}
		earlier, args = true, args[1:]
	}
	if len(args) != 1 || args[0].Kind != KindAtom {
		return nil, false, fmt.Errorf("imap: bad VANISHED response")
	}
	set, err = ParseUIDSet(args[0].Text)
	return set, earlier, err
}

// Status is one mailbox's STATUS reply (RFC 9051 §7.2.4), with
// HIGHESTMODSEQ (RFC 7162 §3.1.2.2). A field the reply lacked is 0.
type Status struct {
	Mailbox       string // as the server sent it, modified UTF-7 decoded
	UIDValidity   uint32
	UIDNext       uint32
	Messages      uint32
	HighestModSeq uint64
	HasModSeq     bool // the reply carried HIGHESTMODSEQ
	// MailboxID is the mailbox's MAILBOXID (RFC 8474 OBJECTID), which
	// stays with it across RENAME; "" when not asked or not said.
	MailboxID string
}

// ParseStatus reads the arguments of a STATUS response, the values after
// the keyword: mailbox and attribute list.
func ParseStatus(args []Value) (Status, error) {
	var st Status
	if len(args) != 2 || args[1].Kind != KindList || len(args[1].List)%2 != 0 {
		return st, fmt.Errorf("imap: bad STATUS response")
	}
	name, ok := args[0].Str()
	if !ok {
		return st, fmt.Errorf("imap: bad STATUS mailbox")
	}
	st.Mailbox = DecodeMUTF7(name)
	l := args[1].List
	for i := 0; i < len(l); i += 2 {
		if err := st.set(strings.ToUpper(l[i].Text), l[i+1]); err != nil {
			return st, err
		}
	}
	return st, nil
}

func (st *Status) set(item string, v Value) error {
	if item == "MAILBOXID" { // "MAILBOXID (F2212ea87-6097-4256-9d51-71338625)"
		var id string
		ok := v.Kind == KindList && len(v.List) == 1
		if ok {
			id, ok = v.List[0].Str()
		}
		if !ok || id == "" {
			return fmt.Errorf("imap: bad STATUS MAILBOXID %q", Clip(v.Text, 40))
		}
		st.MailboxID = id
		return nil
	}
	bits := 32
	if item == "HIGHESTMODSEQ" || item == "SIZE" {
		bits = 63
	}
	n, ok := v.Num(bits)
	if !ok {
		return fmt.Errorf("imap: bad STATUS %s %q", item, Clip(v.Text, 40))
	}
	switch item {
	case "UIDVALIDITY":
		st.UIDValidity = uint32(n)
	case "UIDNEXT":
		st.UIDNext = uint32(n)
	case "MESSAGES":
		st.Messages = uint32(n)
	case "HIGHESTMODSEQ":
		st.HighestModSeq, st.HasModSeq = n, true
	}
	return nil
}

// FetchData is what one FETCH reply says about a message.
type FetchData struct {
	Seq          uint32
	UID          uint32
	Flags        []string
	HasFlags     bool
	InternalDate time.Time
	Size         int64 // RFC822.SIZE, -1 when absent
	ModSeq       uint64
	Header       []byte // the BODY[HEADER.FIELDS ...] section, nil when absent
	Body         []byte // the whole message, BODY[] (FetchBodies), nil when absent
}

// ParseFetch reads the item list of "* seq FETCH (...)".
func ParseFetch(seq uint32, args []Value) (FetchData, error) {
	fd := FetchData{Seq: seq, Size: -1}
	if len(args) != 1 || args[0].Kind != KindList || len(args[0].List)%2 != 0 {
		return fd, fmt.Errorf("imap: bad FETCH response for message %d", seq)
	}
	l := args[0].List
	for i := 0; i < len(l); i += 2 {
		if l[i].Kind != KindAtom {
			return fd, fmt.Errorf("imap: bad FETCH item in message %d", seq)
		}
		if err := fd.set(strings.ToUpper(l[i].Text), l[i+1]); err != nil {
			return fd, fmt.Errorf("imap: message %d: %w", seq, err)
		}
	}
	return fd, nil
}

func (fd *FetchData) set(item string, v Value) error {
	var ok bool
	switch {
	case item == "UID":
		var n uint64
		n, ok = v.Num(32)
		fd.UID = uint32(n)
		ok = ok && n > 0
	case item == "FLAGS":
		fd.Flags, ok = flagList(v)
		fd.HasFlags = ok
	case item == "RFC822.SIZE":
		var n uint64
		n, ok = v.Num(63)
		fd.Size = int64(n)
	case item == "INTERNALDATE":
		fd.InternalDate, ok = internalDate(v)
	case item == "MODSEQ":
		ok = len(v.List) == 1
		if ok {
			fd.ModSeq, ok = v.List[0].Num(63)
		}
	case item == "BODY[]":
		var b string
		b, ok = v.Str()
		if ok && v.Kind != KindNil {
			fd.Body = []byte(b)
		}
	case strings.HasPrefix(item, "BODY["):
		var s string
		s, ok = v.Str()
		if ok && v.Kind != KindNil {
			fd.Header = []byte(s)
		}
	default:
		ok = true // an item we did not ask for
	}
	if !ok {
		return fmt.Errorf("bad FETCH %s", item)
	}
	return nil
}

func flagList(v Value) ([]string, bool) {
	if v.Kind != KindList {
		return nil, false
	}
	flags := make([]string, 0, len(v.List))
	for _, f := range v.List {
		if f.Kind != KindAtom {
			return nil, false
		}
		flags = append(flags, f.Text)
	}
	return flags, true
}

func internalDate(v Value) (time.Time, bool) {
	if v.Kind != KindString {
		return time.Time{}, false
	}
	t, err := time.Parse("_2-Jan-2006 15:04:05 -0700", v.Text)
	return t, err == nil
}

// ModSeqCode reads the HIGHESTMODSEQ response code (RFC 7162 §3.1.2.1)
// of a status response; NOMODSEQ (§3.1.2.2) gives 0, true.
func ModSeqCode(r Response) (modseq uint64, ok bool) {
	switch r.Code {
	case "HIGHESTMODSEQ":
		n, err := strconv.ParseUint(strings.TrimSpace(r.Args), 10, 63)
		return n, err == nil
	case "NOMODSEQ":
		return 0, true
	}
	return 0, false
}

// Modified reads the MODIFIED response code (RFC 7162 §3.1.3) of a STORE
// with UNCHANGEDSINCE: the messages (UIDs for UID STORE) that were not
// stored because they changed meanwhile. ok is false without the code.
func Modified(r Response) (set UIDSet, ok bool, err error) {
	if r.Code != "MODIFIED" {
		return nil, false, nil
	}
	set, err = ParseUIDSet(strings.TrimSpace(r.Args))
	return set, true, err
}

// CodeNum reads a numeric response code such as [UIDVALIDITY 3].
func CodeNum(r Response, code string) (uint32, bool) {
	if r.Code != code {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(r.Args), 10, 32)
	return uint32(n), err == nil
}

// SearchUIDs reads the numbers of a SEARCH response (a trailing
// "(MODSEQ n)" is skipped) or the ALL set of an ESEARCH response
// (RFC 4731).
func SearchUIDs(kind string, args []Value) (UIDSet, error) {
	var set UIDSet
	if kind == "ESEARCH" {
		for i := 0; i+1 < len(args); i++ {
			if args[i].Kind == KindAtom && strings.EqualFold(args[i].Text, "ALL") {
				return ParseUIDSet(args[i+1].Text)
			}
		}
		return nil, nil
	}
	for _, a := range args {
		if a.Kind == KindList {
			continue
		}
		n, ok := a.Num(32)
		if !ok || n == 0 {
			return nil, fmt.Errorf("imap: bad SEARCH response")
		}
		set = set.Add(uint32(n))
	}
	return set, nil
}

// DecodeMUTF7 decodes a mailbox name in modified UTF-7 (RFC 3501
// §5.1.3). A name that is not valid modified UTF-7 is returned as it is.
func DecodeMUTF7(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	for s != "" {
		i := strings.IndexByte(s, '&')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '-')
		if j < 0 {
			return s
		}
		dec, ok := decodeShift(s[i+1 : i+j])
		if !ok {
			return s
		}
		b.WriteString(dec)
		s = s[i+j+1:]
	}
	return b.String()
}

// decodeShift decodes the base64 between '&' and '-'; "" is "&".
func decodeShift(enc string) (string, bool) {
	if enc == "" {
		return "&", true
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.ReplaceAll(enc, ",", "/"))
	if err != nil || len(raw)%2 != 0 {
		return "", false
	}
	u := make([]uint16, len(raw)/2)
	for k := range u {
		u[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
	}
	return string(utf16.Decode(u)), true
}
