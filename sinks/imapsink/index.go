package imapsink

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// What the identity looks at; see doc.go for the definition and its limits.
const (
	// textPrefix is how many bytes of the body text (after the header)
	// take part in the identity: enough to tell apart two messages that
	// share every header, cheap to fetch for a whole folder.
	textPrefix = 256
	// headerMax bounds the header bytes kept to find the identity fields.
	headerMax = 256 << 10
)

// identityFields are the header fields the identity hashes, in the order
// the server is asked for them.
var identityFields = []string{"MESSAGE-ID", "DATE", "FROM", "SUBJECT"}

// identity is what decides that a message the engine Puts is already in
// the destination folder.
type identity struct {
	key     string // canonical Message-ID, NUL, hash of Date, From, Subject (8-bit bytes as 'X')
	exact   uint64 // hash of the identity fields with their 8-bit bytes as sent
	size    int64  // bytes as Put
	crlf    int64  // bytes once every bare LF became CRLF (what Dovecot stores)
	date    int64  // INTERNALDATE, Unix seconds; 0 = unknown, not compared
	text    []byte // canonical body text prefix, up to textPrefix+1 bytes
	textEnd bool   // text holds the whole canonical body text
	// noFinalNL: the message does not end with a line break, so a server
	// may add one (see alteration).
	noFinalNL bool
}

// entry is one message of a destination folder, as the index fetched it.
type entry struct {
	uid      uint32
	exact    uint64 // as identity.exact, of the fields the server holds
	size     int64
	date     int64
	textHash uint64 // of the canonical TEXT prefix the server sent
	textLen  int    // its length
	textEnd  bool   // the server's TEXT was shorter than asked: it is all of it
	claimed  bool   // paired with a Put of this run (multiset matching)
}

// alteration is what a server changed in a message on APPEND, as far as
// the identity can tell; the identity absorbs these changes, so a rerun
// without checkpoint still pairs the stored copy with its Put:
//
//   - Cyrus IMAP rewrites every 8-bit byte of the header to 'X' when
//     imapd.conf's munge8bit is on, its default (the size stays). The
//     identity therefore hashes its header fields with 8-bit bytes as 'X'
//     and keeps a hash of them as sent (exact) to see the change.
//   - Courier IMAP adds CRLF to a message that does not end with a line
//     break: the size grows by 2 and the text by one line end.
//
// Dovecot stores the bytes as sent, with bare LFs made CRLF, which the
// identity always allowed (identity.crlf) and which is not reported.
type alteration uint8

const (
	munged8bit alteration = 1 << iota // 8-bit header bytes rewritten to 'X' (Cyrus munge8bit)
	finalCRLF                         // CRLF added at the end (Courier)
)

func (a alteration) String() string {
	var parts []string
	if a&munged8bit != 0 {
		parts = append(parts, "8-bit header bytes rewritten to 'X', as Cyrus does with munge8bit")
	}
	if a&finalCRLF != 0 {
		parts = append(parts, "a final CRLF added, as Courier does")
	}
	return strings.Join(parts, "; ")
}

// matches reports whether the server's entry e is the message id describes.
func (id *identity) matches(e *entry) bool {
	ok, _ := id.match(e)
	return ok
}

// match reports whether the server's entry e is the message id describes
// (the caller compared their keys), and what the server changed in it on
// APPEND, if anything.
func (id *identity) match(e *entry) (bool, alteration) {
	if id.date != 0 && e.date != id.date {
		return false, 0
	}
	var alt alteration
	if e.exact != id.exact {
		alt = munged8bit // the keys agree: only 8-bit bytes differ
	}
	if (e.size == id.size || e.size == id.crlf) && id.textMatches(e, false) {
		return true, alt
	}
	grown := e.size == id.size+2 || e.size == id.crlf+2
	if id.noFinalNL && grown && (id.textMatches(e, true) || id.textMatches(e, false)) {
		return true, alt | finalCRLF
	}
	return false, 0
}

// textMatches compares the body text prefixes; addedNL compares id's text
// as if a line end had been added at its end.
func (id *identity) textMatches(e *entry, addedNL bool) bool {
	text, textEnd := id.text, id.textEnd
	if addedNL && textEnd {
		text = append(text[:len(text):len(text)], '\n')
		textEnd = len(text) <= textPrefix
	}
	if e.textLen > len(text) {
		return false
	}
	if e.textEnd && (!textEnd || len(text) != e.textLen) {
		return false
	}
	return hash64(text[:e.textLen]) == e.textHash
}

func hash64(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// canonText appends b to dst without CR and with NUL as 0x80 (Dovecot
// serves NUL that way, and CR LF vs LF is the other change servers make),
// up to limit bytes.
func canonText(dst, b []byte, limit int) []byte {
	for _, c := range b {
		if len(dst) >= limit {
			break
		}
		switch c {
		case '\r':
			continue
		case 0:
			c = 0x80
		}
		dst = append(dst, c)
	}
	return dst
}

// headerKey computes the identity key from a header block, with 8-bit
// bytes as 'X' (what Cyrus stores, see alteration), and a hash of the
// fields as they are, to tell whether a server changed them.
func headerKey(hdr []byte) (key string, exact uint64) {
	vals := headerFields(hdr)
	h, x := fnv.New64a(), fnv.New64a()
	for _, f := range identityFields {
		x.Write([]byte(vals[f]))
		x.Write([]byte{0})
	}
	for _, f := range identityFields[1:] {
		h.Write([]byte(munge8bit(vals[f])))
		h.Write([]byte{0})
	}
	return munge8bit(vals["MESSAGE-ID"]) + "\x00" + fmt.Sprintf("%016x", h.Sum64()), x.Sum64()
}

// munge8bit replaces every byte over 0x7f with 'X', as Cyrus does to
// header bytes with munge8bit on.
func munge8bit(s string) string {
	b := []byte(nil)
	for i := 0; i < len(s); i++ {
		if s[i] < 0x80 {
			continue
		}
		if b == nil {
			b = []byte(s)
		}
		b[i] = 'X'
	}
	if b == nil {
		return s
	}
	return string(b)
}

// headerFields returns the first value of each identity field in hdr,
// unfolded, with runs of white space as one space, trimmed, NUL as 0x80.
func headerFields(hdr []byte) map[string]string {
	out := map[string]string{}
	var name string
	var val []byte
	done := func() {
		if name == "" {
			return
		}
		if _, seen := out[name]; !seen {
			out[name] = strings.Join(strings.Fields(string(val)), " ")
		}
		name, val = "", val[:0]
	}
	sc := bufio.NewScanner(bytes.NewReader(hdr))
	sc.Buffer(make([]byte, 4096), headerMax+1)
	for sc.Scan() {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		if len(line) == 0 {
			break
		}
		line = bytes.ReplaceAll(line, []byte{0}, []byte{0x80})
		if line[0] == ' ' || line[0] == '\t' {
			if name != "" {
				val = append(append(val, ' '), line...)
			}
			continue
		}
		done()
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		key := strings.ToUpper(strings.TrimSpace(string(k)))
		for _, f := range identityFields {
			if key == f {
				name, val = f, append(val[:0], v...)
			}
		}
	}
	done()
	return out
}

// idWriter learns a message's identity while it is spooled: the header
// (up to headerMax), the bare-LF count and the canonical body-text prefix.
type idWriter struct {
	n        int64
	bareLF   int64
	prev     byte
	inBody   bool
	lineLen  int  // bytes of the current header line so far (0 = at line start)
	crAtHead bool // the current header line so far is a lone CR
	hdr      []byte
	text     []byte
}

func (w *idWriter) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		if w.inBody {
			// The rest is body: only the text prefix and the bare LFs
			// matter, and both can be had in bulk.
			rest := p[i:]
			if len(w.text) <= textPrefix {
				w.text = canonText(w.text, rest, textPrefix+1)
			}
			w.bareLF += countBareLF(w.prev, rest)
			w.prev = rest[len(rest)-1]
			break
		}
		c := p[i]
		if c == '\n' && w.prev != '\r' {
			w.bareLF++
		}
		w.prev = c
		if len(w.hdr) < headerMax {
			w.hdr = append(w.hdr, c)
		}
		switch {
		case c == '\n' && (w.lineLen == 0 || w.crAtHead):
			w.inBody = true // an empty line ends the header
		case c == '\n':
			w.lineLen, w.crAtHead = 0, false
		case c == '\r' && w.lineLen == 0:
			w.crAtHead = true
			w.lineLen++
		default:
			w.crAtHead = false
			w.lineLen++
		}
	}
	w.n += int64(len(p))
	return len(p), nil
}

// countBareLF counts the LFs in b not preceded by CR; prev is the byte
// before b.
func countBareLF(prev byte, b []byte) int64 {
	var n int64
	for off := 0; ; {
		j := bytes.IndexByte(b[off:], '\n')
		if j < 0 {
			return n
		}
		j += off
		before := prev
		if j > 0 {
			before = b[j-1]
		}
		if before != '\r' {
			n++
		}
		off = j + 1
	}
}

// identity returns what was learned, with internal date d.
func (w *idWriter) identity(d time.Time) identity {
	key, exact := headerKey(w.hdr)
	id := identity{key: key, exact: exact, size: w.n, crlf: w.n + w.bareLF, text: w.text, noFinalNL: w.n > 0 && w.prev != '\n'}
	if len(id.text) <= textPrefix {
		id.textEnd = true
	}
	if !d.IsZero() {
		id.date = d.Unix()
	}
	return id
}

// folder is the sink's view of one destination mailbox: what it held when
// first used (the index), what this run appended, and which held messages
// this run's Puts already paired with. It is guarded by its lock.
type folder struct {
	lock   chan struct{}
	server string
	loaded bool
	uidv   uint32
	next   uint32 // UIDNEXT when the index was last brought up to date
	stale  bool   // an APPEND's outcome is unknown: re-read the tail before trusting the index
	byKey  map[string][]*entry
	known  map[uint32]bool       // UIDs indexed or appended by this run
	unseen map[string][]identity // appended by this run without a UID (no UIDPLUS)
	// unsure counts, per identity key, this run's APPENDs whose outcome is
	// unknown (connection lost after the literal): a retried Put that finds
	// such a copy found its own store, and reports it stored, not present.
	unsure map[string]int
	alt    *alterations // where a server's changes to a message are reported
}

func newFolder(server string, alt *alterations) *folder {
	return &folder{lock: make(chan struct{}, 1), server: server, byKey: map[string][]*entry{}, known: map[uint32]bool{}, unseen: map[string][]identity{}, unsure: map[string]int{}, alt: alt}
}

// add records a message the server holds. A message this run appended
// without learning its UID is recognised here and stays paired with its Put.
func (f *folder) add(key string, e *entry) {
	if f.known[e.uid] {
		return
	}
	f.known[e.uid] = true
	if e.uid >= f.next {
		f.next = e.uid + 1
	}
	list := f.unseen[key]
	for i := range list {
		if ok, alt := list[i].match(e); ok {
			f.alt.note(alt, f.server)
			f.unseen[key] = append(list[:i:i], list[i+1:]...)
			return
		}
	}
	f.byKey[key] = append(f.byKey[key], e)
}

// drop forgets the message uid (moved away), so that no Put claims it.
func (f *folder) drop(uid uint32) {
	for key, list := range f.byKey {
		for i, e := range list {
			if e.uid == uid {
				f.byKey[key] = append(list[:i:i], list[i+1:]...)
				return
			}
		}
	}
}

// claim pairs id with an unclaimed message of the folder that matches it
// and returns that message's UID.
func (f *folder) claim(id *identity) (uint32, bool) {
	for _, e := range f.byKey[id.key] {
		if e.claimed {
			continue
		}
		if ok, alt := id.match(e); ok {
			e.claimed = true
			f.alt.note(alt, f.server)
			return e.uid, true
		}
	}
	return 0, false
}

// sentUnsure notes an APPEND of id whose outcome is unknown.
func (f *folder) sentUnsure(id *identity) { f.unsure[id.key]++ }

// ownUnsure reports whether a copy of id that claim found may be this run's
// own APPEND of unknown outcome, and takes that APPEND off the list. The
// identity key cannot tell our copy from another client's delivery of the
// same message in the same moments; counting it as stored by this run is
// the likelier truth, and either way the message is stored once.
func (f *folder) ownUnsure(id *identity) bool {
	if f.unsure[id.key] == 0 {
		return false
	}
	f.unsure[id.key]--
	return true
}

// appended records a message this run stored, so the index never offers
// it to another Put: by UID when the server said it (APPENDUID), otherwise
// by identity until a tail read finds it.
func (f *folder) appended(id *identity, uidv, uid uint32) {
	if uid == 0 {
		f.unseen[id.key] = append(f.unseen[id.key], *id)
		return
	}
	if f.uidv == 0 {
		f.uidv = uidv
	}
	if f.known[uid] {
		// A tail read saw it before the APPENDUID arrived: take it back.
		for _, e := range f.byKey[id.key] {
			if e.uid == uid {
				e.claimed = true
			}
		}
		return
	}
	f.known[uid] = true
}

// entryFrom builds an index entry from what the server sent for one message.
func entryFrom(uid uint32, size int64, date time.Time, hdr, text []byte) (string, *entry) {
	e := &entry{uid: uid, size: size, textEnd: len(text) < textPrefix}
	if !date.IsZero() {
		e.date = date.Unix()
	}
	canon := canonText(nil, text, len(text))
	e.textHash, e.textLen = hash64(canon), len(canon)
	key, exact := headerKey(hdr)
	e.exact = exact
	return key, e
}

// alterations counts the messages a server was found to have changed on
// APPEND (see alteration) and warns once per Sink, that is once per run.
type alterations struct {
	n    atomic.Int64
	once sync.Once
	log  *slog.Logger
}

// note records one message the server changed as alt says (0: unchanged).
func (a *alterations) note(alt alteration, box string) {
	if a == nil || alt == 0 {
		return
	}
	a.n.Add(1)
	a.once.Do(func() {
		if a.log != nil {
			a.log.Warn(fmt.Sprintf("imapsink: the server changed messages when it stored them (%s); their copies were recognised and not appended again", alt), "mailbox", box)
		}
	})
}
