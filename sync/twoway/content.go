package twoway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	gosync "sync"

	"github.com/mailferry/mailferry/sync/mail"
)

// maxContentReads bounds how many messages without a Message-ID a folder
// side may read to pair them by content (a first sync or a lost state of a
// folder full of them costs a download each; past the bound they are
// copied, as they would be without the state).
const maxContentReads = 1000

// fillContent sets the content hash of the unrecorded messages without a
// Message-ID on both sides of f, when both sides have some: the only way
// to pair them after a lost state (or a copy whose record a kill lost)
// instead of copying them again.
func (r *run) fillContent(f *Folder, recorded [2]map[mail.ID]bool) {
	var need [2][]int
	for s := range f.Side {
		for i, m := range f.Side[s].Msgs {
			if m.MsgID == "" && !m.OutOfScope && !recorded[s][m.ID] {
				need[s] = append(need[s], i)
			}
		}
	}
	if len(need[A]) == 0 || len(need[B]) == 0 || len(need[A]) > maxContentReads || len(need[B]) > maxContentReads {
		return
	}
	for s := range need {
		for _, i := range need[s] {
			m := &f.Side[s].Msgs[i]
			m.Content = contentHash(r.ctx, r.stores[s].Source, r.env(Side(s), f.Name, m.ID))
		}
	}
}

// contentHash is the SHA-256 of a message with CRLF line ends read as LF
// (a Maildir keeps what a client wrote, a server sends CRLF), "" when it
// cannot be read.
func contentHash(ctx context.Context, src mail.Source, env mail.Envelope) string {
	rc, err := src.Open(ctx, env)
	if err != nil {
		return ""
	}
	defer func() { _ = rc.Close() }() // read-only
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return hashRest(&lfWriter{h: sha256.New()}, rc, *buf)
}

// readMessageIDAndContent is readMessageID and contentHash from one read
// of the message: what the header scan reads is hashed as it goes, and the
// rest after it. The content is "" when the message cannot be read to
// its end.
func readMessageIDAndContent(ctx context.Context, src mail.Source, env mail.Envelope) (msgID, content string) {
	rc, err := src.Open(ctx, env)
	if err != nil {
		return "", ""
	}
	defer func() { _ = rc.Close() }() // read-only
	w := &lfWriter{h: sha256.New()}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	msgID, err = scanMessageID(io.TeeReader(rc, w), *buf)
	if err != nil && err != io.EOF {
		return msgID, ""
	}
	return msgID, hashRest(w, rc, *buf)
}

// hashRest hashes what is left of r into w and returns w's hash, "" when
// r cannot be read to its end.
func hashRest(w *lfWriter, r io.Reader, buf []byte) string {
	if _, err := io.CopyBuffer(w, r, buf); err != nil {
		return ""
	}
	w.end()
	return hex.EncodeToString(w.h.Sum(nil))
}

// copyBufs are the read buffers of contentHash, readMessageID and
// readMessageIDAndContent, not one allocated per message.
var copyBufs = gosync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// lfWriter hashes what it is given with every CR that precedes an LF left
// out, across writes.
type lfWriter struct {
	h  hash.Hash
	cr bool // the last byte given was a CR, not yet hashed
}

func (w *lfWriter) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil // a CR pending stays pending
	}
	if w.cr && p[0] != '\n' {
		w.h.Write(crByte)
	}
	w.cr = false
	// The runs between CRs go to the hash as they are, not copied: a
	// change sync hashes every file it put and every racy one.
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			w.h.Write(p)
			break
		}
		w.h.Write(p[:i])
		if i+1 == len(p) {
			w.cr = true // the next write tells
			break
		}
		if p[i+1] != '\n' {
			w.h.Write(crByte)
		}
		p = p[i+1:]
	}
	return n, nil
}

var crByte = []byte{'\r'}

// end hashes a CR left at the very end.
func (w *lfWriter) end() {
	if w.cr {
		w.h.Write(crByte)
		w.cr = false
	}
}
