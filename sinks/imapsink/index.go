package imapsink

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/fnv"
	"strings"
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
	key     string // canonical Message-ID, NUL, hash of Date, From, Subject
	size    int64  // bytes as Put
	crlf    int64  // bytes once every bare LF became CRLF (what Dovecot stores)
	date    int64  // INTERNALDATE, Unix seconds; 0 = unknown, not compared
	text    []byte // canonical body text prefix, up to textPrefix+1 bytes
	textEnd bool   // text holds the whole canonical body text
}

// entry is one message of a destination folder, as the index fetched it.
type entry struct {
	uid      uint32
	size     int64
	date     int64
	textHash uint64 // of the canonical TEXT prefix the server sent
	textLen  int    // its length
	textEnd  bool   // the server's TEXT was shorter than asked: it is all of it
	claimed  bool   // paired with a Put of this run (multiset matching)
}

// matches reports whether the server's entry e is the message id describes.
func (id *identity) matches(e *entry) bool {
	if e.size != id.size && e.size != id.crlf {
		return false
	}
	if id.date != 0 && e.date != id.date {
		return false
	}
	if e.textLen > len(id.text) {
		return false
	}
	if e.textEnd && !(id.textEnd && len(id.text) == e.textLen) {
		return false
	}
	return hash64(id.text[:e.textLen]) == e.textHash
}

func hash64(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// canonText appends b to dst without CR and with NUL as 0x80 (Dovecot
// serves NUL that way, and CR LF vs LF is the other change servers make),
// up to max bytes.
func canonText(dst, b []byte, max int) []byte {
	for _, c := range b {
		if len(dst) >= max {
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

// headerKey computes the identity key from a header block.
func headerKey(hdr []byte) string {
	vals := headerFields(hdr)
	h := fnv.New64a()
	for _, f := range identityFields[1:] {
		h.Write([]byte(vals[f]))
		h.Write([]byte{0})
	}
	return vals["MESSAGE-ID"] + "\x00" + fmt.Sprintf("%016x", h.Sum64())
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
	id := identity{key: headerKey(w.hdr), size: w.n, crlf: w.n + w.bareLF, text: w.text}
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
}

func newFolder(server string) *folder {
	return &folder{lock: make(chan struct{}, 1), server: server, byKey: map[string][]*entry{}, known: map[uint32]bool{}, unseen: map[string][]identity{}}
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
		if list[i].matches(e) {
			f.unseen[key] = append(list[:i:i], list[i+1:]...)
			return
		}
	}
	f.byKey[key] = append(f.byKey[key], e)
}

// claim pairs id with an unclaimed message of the folder that matches it
// and returns that message's UID.
func (f *folder) claim(id *identity) (uint32, bool) {
	for _, e := range f.byKey[id.key] {
		if !e.claimed && id.matches(e) {
			e.claimed = true
			return e.uid, true
		}
	}
	return 0, false
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
	return headerKey(hdr), e
}
