package twoway

import (
	"encoding/binary"
	"github.com/mailferry/mailferry/internal/maildirfmt"
	"hash/fnv"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mailferry/mailferry/internal/fsevidence"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// A Maildir file a mail client edited in place keeps its name, so its id:
// only its file tells (rule 4: it is copied again, never deleted). Its
// evidence, kept in the record (state.Message.Evidence) per Maildir side,
// is a stamp of the file's size and mtime in nanoseconds, the rules of
// internal/fsevidence:
//
//   - A write moves the mtime; a rename (every flag change) does not, so a
//     flag change is no edit. The ctime is left out for that reason (a
//     rename sets it), and so is the inode: a Maildir restored from a
//     backup or moved to another disk (cp -a, rsync -a) has new inodes
//     and the same mtimes, and nobody edited its files. What this misses
//     is an edit in place whose tool then sets the mtime back (touch -r).
//   - An mtime within fsevidence.SettleWindow of the moment the stamp was
//     taken is not trusted: a second write in the same tick of the file
//     system's clock (1 s on many, 2 s on FAT) leaves it as it was. Such a
//     stamp is kept with the content hash of the file (contentHash), and a
//     later run that finds the stamp unchanged compares the content.
//
// A stamp that changed is an edit, unless a content hash was kept and the
// content is the same (the record is then stamped again). A record
// without evidence (written before it existed, or by settle after a kill)
// falls back to the size, and gets evidence the next time the file is
// listed.

// fileStamp is what a listing found of a Maildir file: its stamp (0: not
// listed from a file) and whether its mtime was too recent to trust.
type fileStamp struct {
	stamp uint64
	racy  bool
}

// stampFile stamps what fi describes, at now.
func stampFile(fi fs.FileInfo, now time.Time) fileStamp {
	st := fsevidence.FromInfo(fi)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(st.Size))
	binary.LittleEndian.PutUint64(b[8:], uint64(st.MTime.UnixNano()))
	h := fnv.New64a()
	_, _ = h.Write(b[:])
	st.CTime = st.MTime // a rename's ctime says nothing of the content
	return fileStamp{stamp: h.Sum64() | 1, racy: !fsevidence.Settled(now, st)}
}

// sideEvidence is one side's part of a record's Evidence.
type sideEvidence struct {
	stamp   uint64
	content string // the content hash, kept when the stamp was racy
}

// evidenceKey prefixes a side's part of Evidence: "a=" or "b=".
func evidenceKey(s Side) string { return evidenceKeys[s] }

var evidenceKeys = [2]string{A: "a=", B: "b="}

// evidenceOf reads side s's part of a record's Evidence. It allocates
// nothing: a listing asks it of every record of a changed folder.
func evidenceOf(ev string, s Side) (sideEvidence, bool) {
	for tok := range strings.FieldsSeq(ev) {
		rest, ok := strings.CutPrefix(tok, evidenceKey(s))
		if !ok {
			continue
		}
		hexStamp, content, _ := strings.Cut(rest, "/")
		v, err := strconv.ParseUint(hexStamp, 16, 64)
		if err != nil || v == 0 {
			return sideEvidence{}, false
		}
		return sideEvidence{stamp: v, content: content}, true
	}
	return sideEvidence{}, false
}

// withEvidence returns ev with side s's part replaced by se.
func withEvidence(ev string, s Side, se sideEvidence) string {
	var toks []string
	for _, tok := range strings.Fields(ev) {
		if !strings.HasPrefix(tok, evidenceKey(s)) {
			toks = append(toks, tok)
		}
	}
	tok := evidenceKey(s) + strconv.FormatUint(se.stamp, 16)
	if se.content != "" {
		tok += "/" + se.content
	}
	toks = append(toks, tok)
	if len(toks) == 2 && toks[0] > toks[1] {
		toks[0], toks[1] = toks[1], toks[0]
	}
	return strings.Join(toks, " ")
}

// listedEvidence is the evidence of a listed file m; false when the
// listing gave none, or the stamp is racy and the content is unknown.
func listedEvidence(m *Msg) (sideEvidence, bool) {
	if m.Stamp == 0 || m.Racy && m.Content == "" {
		return sideEvidence{}, false
	}
	se := sideEvidence{stamp: m.Stamp}
	if m.Racy {
		se.content = m.Content
	}
	return se, true
}

// fileEdited judges side s's file m of record r: edited when its content
// is no longer the one the record names, and stale when the record's
// evidence should be written again (none yet, or a content hash no longer
// needed, or a stamp that moved while the content did not).
func fileEdited(r state.Message, s Side, m *Msg) (edited, stale bool) {
	sizeChanged := r.Size >= 0 && m.Size >= 0 && m.Size != r.Size
	if m.Stamp == 0 { // not listed from the file (a rebuilt listing)
		return sizeChanged, false
	}
	ev, ok := evidenceOf(r.Evidence, s)
	switch {
	case !ok:
		return sizeChanged, !sizeChanged
	case ev.stamp == m.Stamp && ev.content == "":
		return false, false
	case ev.content == "":
		return true, false // moved, and nothing to tell the content by
	case m.Content == "":
		return false, false // not read this time: judged when it can be
	case m.Content != ev.content:
		return true, false
	}
	return false, ev.stamp != m.Stamp || !m.Racy
}

// fillEvidence reads the content hash of side s's listed files that are
// judged by it: few, those whose stamp is racy (a new record keeps their
// content) or whose record kept a content hash (a stamp that was racy).
func (r *run) fillEvidence(f *Folder) {
	for s := range f.Side {
		if r.stores[s].Maildir == nil {
			continue
		}
		kept := map[mail.ID]bool{} // records with a content hash: rare, no index of all
		for i := range f.Base {
			if ev, ok := evidenceOf(f.Base[i].Evidence, Side(s)); ok && ev.content != "" {
				kept[sideID(f.Base[i], Side(s))] = true
			}
		}
		for i := range f.Side[s].Msgs {
			m := &f.Side[s].Msgs[i]
			if m.Stamp != 0 && m.Content == "" && (m.Racy || kept[m.ID]) {
				env := mail.Envelope{Mailbox: f.Name, ID: m.ID, Flags: m.Flags, Size: m.Size}
				m.Content = contentHash(r.ctx, r.stores[s].Source, env)
			}
		}
	}
}

// listFiles lists folder name of side s: a Maildir through its tree, with
// each file's stamp; any other store through its Source (no stamps). When
// the folder's evidence waits for its hash (pendingHash), the listing
// hashes the names it saw (hashNames), the dovecot-keywords bytes read
// before it: a keyword file changed meanwhile makes the next run's hash
// differ.
func (r *run) listFiles(s Side, name string, fn func(mail.Envelope)) (map[mail.ID]fileStamp, string, error) {
	st := r.stores[s]
	if st.Maildir == nil || !isDir(st.Maildir.Root) {
		return nil, "", st.Source.List(r.ctx, name, func(env mail.Envelope) error { fn(env); return nil })
	}
	kw, hashing, herr := r.hashStart(s, name)
	now := time.Now()
	stamps := map[mail.ID]fileStamp{}
	var names []string
	var ids []mail.ID
	err := st.Maildir.files().ListFiles(r.ctx, name, func(env mail.Envelope, fi fs.FileInfo) error {
		fn(env)
		stamps[env.ID] = stampFile(fi, now)
		names, ids = append(names, fi.Name()), append(ids, env.ID)
		return nil
	})
	if err == nil {
		r.prepareSink(s, name, ids)
	}
	if !hashing || herr != nil || err != nil {
		return stamps, "", err
	}
	return stamps, hashNames(names, kw), nil
}

// hashStart reads, when side s's folder name waits for its evidence hash,
// the folder's dovecot-keywords bytes before it is listed.
func (r *run) hashStart(s Side, name string) (kw []byte, hashing bool, err error) {
	if _, hashing = pendingHash(r.sts[s][name].Evidence); !hashing {
		return nil, false, nil
	}
	dir, err := maildirfmt.FolderDir(r.stores[s].Maildir.Root, name)
	if err == nil {
		kw, err = readKeywordBytes(dir)
	}
	return kw, true, err
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// stamped returns rec with the evidence of its files on each Maildir side:
// the file as this run listed it, else as it is now (a file this run put
// or moved there), else what rec had.
func (r *run) stamped(folder string, rec state.Message) state.Message {
	for _, s := range []Side{A, B} {
		id := sideID(rec, s)
		if r.stores[s].Maildir == nil || id == "" {
			continue
		}
		if m := r.listed(s, folder, id); m != nil && m.Stamp != 0 {
			if se, ok := listedEvidence(m); ok {
				rec.Evidence = withEvidence(rec.Evidence, s, se)
			}
			continue
		}
		if _, had := evidenceOf(rec.Evidence, s); had {
			continue
		}
		if se, ok := r.stampNow(s, folder, id, rec.Flags); ok {
			rec.Evidence = withEvidence(rec.Evidence, s, se)
		}
	}
	return rec
}

// listed returns side s's listed message id of folder, nil when not listed.
func (r *run) listed(s Side, folder string, id mail.ID) *Msg {
	msgs := r.msgs[s][folder]
	lo, hi := 0, len(msgs)
	for lo < hi {
		mid := (lo + hi) / 2
		if msgs[mid].ID < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(msgs) && msgs[lo].ID == id {
		return &msgs[lo]
	}
	return nil
}

// stampNow stamps side s's file of message id in folder as it is now
// (with flags, the name a put gave it is tried first: a folder the run
// puts thousands into is not read again after each batch), reading its
// content when its mtime is too recent to trust.
func (r *run) stampNow(s Side, folder string, id mail.ID, flags string) (sideEvidence, bool) {
	fi, err := r.stores[s].Maildir.stat(r.ctx, folder, id, flags)
	if err != nil {
		return sideEvidence{}, false
	}
	fs := stampFile(fi, time.Now())
	se := sideEvidence{stamp: fs.stamp}
	if fs.racy {
		env := mail.Envelope{Mailbox: folder, ID: id, Size: fi.Size()}
		if se.content = contentHash(r.ctx, r.stores[s].Source, env); se.content == "" {
			return sideEvidence{}, false
		}
	}
	return se, true
}
