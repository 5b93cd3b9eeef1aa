package imapconn

// Own-write evidence (two-way sync, issue 12): what this process wrote to
// each mailbox of an account, as the server answered it (the MODSEQ of a
// conditional STORE's FETCH, the APPENDUID of an APPEND, the UIDs of a UID
// EXPUNGE that answered OK), and the check that every change the server
// reports in a mailbox since a listing is one of those writes. A sync
// that passes the check records the mailbox's status after its own
// writes, so the next run does not list the mailbox again only to find
// its own changes there.

import (
	"fmt"
	"maps"
	"strings"
)

// ownWrites are the writes to one mailbox (server name) at one UIDVALIDITY.
type ownWrites struct {
	uidv     uint32
	stored   map[uint32]storedFlags // conditional flag writes stored
	appended map[uint32][]string    // APPENDUID -> the flags appended
	removed  UIDSet                 // UID EXPUNGE answered OK
	// highest is the highest mod-sequence a write here was answered with
	// (a STORE's MODSEQ, a UID EXPUNGE's HIGHESTMODSEQ code): what
	// ProveSelected accounts a STATUS's HIGHESTMODSEQ with.
	highest uint64
	// tainted: a write whose outcome nobody knows, or under another
	// UIDVALIDITY: nothing is proved in the mailbox.
	tainted bool
}

type storedFlags struct {
	flags  []string
	modSeq uint64
}

// writesOf returns box's log at uidv, made on first use; called with
// p.mu held.
func (p *Pool) writesOf(box string, uidv uint32) *ownWrites {
	if p.writes == nil {
		p.writes = map[string]*ownWrites{}
	}
	w := p.writes[box]
	if w == nil {
		w = &ownWrites{uidv: uidv, stored: map[uint32]storedFlags{}, appended: map[uint32][]string{}}
		p.writes[box] = w
	}
	if w.uidv != uidv || uidv == 0 {
		w.tainted = true
	}
	return w
}

// NoteStored logs a conditional flag write the server stored: message uid
// of box at UIDVALIDITY uidv now has flags, at mod-sequence modSeq (the
// STORE's own FETCH answer, or the read-back of it).
func (p *Pool) NoteStored(box string, uidv, uid uint32, flags []string, modSeq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.writesOf(box, uidv)
	if modSeq == 0 {
		w.tainted = true
		return
	}
	w.stored[uid] = storedFlags{flags: append([]string(nil), flags...), modSeq: modSeq}
	w.highest = max(w.highest, modSeq)
}

// NoteAppended logs an APPEND the server answered with APPENDUID uidv uid
// (uid 0: it did not say, and nothing is proved in box).
func (p *Pool) NoteAppended(box string, uidv, uid uint32, flags []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.writesOf(box, uidv)
	if uid == 0 {
		w.tainted = true
		return
	}
	w.appended[uid] = append([]string(nil), flags...)
}

// NoteRemoved logs a UID EXPUNGE of set in box at UIDVALIDITY uidv that
// answered OK, with the HIGHESTMODSEQ its answer carried (0: none).
func (p *Pool) NoteRemoved(box string, uidv uint32, set UIDSet, modSeq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.writesOf(box, uidv)
	w.removed = w.removed.Union(set)
	w.highest = max(w.highest, modSeq)
}

// NoteUnknown logs a write to box whose outcome is unknown (a connection
// lost while it was in flight, a write not logged otherwise): nothing is
// proved there.
func (p *Pool) NoteUnknown(box string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writesOf(box, 0).tainted = true
}

// written returns a copy of box's log, nil when nothing was written or a
// write is in doubt.
func (p *Pool) written(box string) *ownWrites {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.writes[box]
	if w == nil || w.tainted {
		return nil
	}
	c := *w
	c.stored, c.appended = maps.Clone(w.stored), maps.Clone(w.appended)
	return &c
}

// Written reports whether this process wrote to box (logged, none in
// doubt): ProveOwnWrites has something to prove there.
func (p *Pool) Written(box string) bool { return p.written(box) != nil }

// OwnProof is one mailbox to check (ProveOwnWrites): its server name and
// the status its listing recorded.
type OwnProof struct {
	Box  string
	Mark Mark
	// Messages is the count the listing recorded.
	Messages uint32
}

// Proved is the status of a mailbox whose every change since its mark is
// one of this process's writes.
type Proved struct {
	UIDValidity   uint32
	UIDNext       uint32
	Messages      uint32
	HighestModSeq uint64
}

// proofRun is what the server said about one mailbox of ProveOwnWrites.
type proofRun struct {
	sel      Selected
	changed  []FetchData
	vanished UIDSet
	moved    bool // EXISTS, EXPUNGE or a VANISHED without EARLIER during the FETCH
}

// ProveOwnWrites checks each mailbox of ps against p's log of this
// process's writes there, on s (with QRESYNC enabled: the FETCH VANISHED
// modifier), all in one round trip: per mailbox an EXAMINE and a UID
// FETCH of every message changed since the mark, with the UIDs expunged
// since (RFC 7162 §3.1.4, §3.2.6). A mailbox is proved when every change
// is explained by the log: a message stored by us whose MODSEQ is still
// the one our STORE got (a later change by anyone raises it), a message
// we appended that still has the flags we appended, an expunge of a UID
// we removed, and the count and UIDNEXT those imply. The result holds
// the status of the mailboxes proved; the others are left out (the next
// run lists them as before). s ends with no known mailbox selected.
func (s *Session) ProveOwnWrites(p *Pool, ps []OwnProof) (map[string]Proved, error) {
	if s.qresLater {
		if err := s.EnableQResync(); err != nil {
			return nil, err
		}
	}
	var cmds []string
	var logs []*ownWrites
	var boxes []OwnProof
	for _, pr := range ps {
		w := p.written(pr.Box)
		if w == nil || !s.qres || pr.Mark.HighestModSeq == 0 || w.uidv != pr.Mark.UIDValidity {
			continue
		}
		cmds = append(cmds, "EXAMINE "+Quote(EncodeMUTF7(pr.Box))+" (CONDSTORE)",
			fmt.Sprintf("UID FETCH 1:4294967295 (UID FLAGS MODSEQ) (CHANGEDSINCE %d VANISHED)", pr.Mark.HighestModSeq))
		logs, boxes = append(logs, w), append(boxes, pr)
	}
	out := map[string]Proved{}
	if len(cmds) == 0 {
		return out, nil
	}
	runs := make([]proofRun, len(boxes))
	s.exists, s.expunged, s.vanished = 0, false, nil
	s.selected, s.cur = false, current{}
	errs, err := s.runIndexed(cmds, func(i int, u Untagged) error {
		return runs[i/2].take(i%2 == 1, u)
	})
	s.exists, s.expunged, s.vanished = 0, false, nil
	if err != nil {
		return nil, err
	}
	// The last EXAMINE decides what is selected now (a failed one leaves
	// nothing selected, RFC 9051 §6.3.2).
	if last := len(boxes) - 1; errs[2*last] == nil {
		s.selected = true
	}
	for i, pr := range boxes {
		if errs[2*i] != nil || errs[2*i+1] != nil {
			continue
		}
		if st, ok := runs[i].proves(pr, logs[i]); ok {
			out[pr.Box] = st
		}
	}
	return out, nil
}

// take reads one untagged response of a mailbox's EXAMINE (fetch false)
// or its FETCH.
func (r *proofRun) take(fetch bool, u Untagged) error {
	if !fetch {
		if u.Kind == "EXISTS" {
			r.sel.Exists = u.Num
		}
		return r.sel.take(u)
	}
	switch u.Kind {
	case "FETCH":
		fd, err := ParseFetch(u.Num, u.Args)
		if err != nil {
			return err
		}
		r.changed = append(r.changed, fd)
	case "VANISHED":
		set, earlier, err := Vanished(u.Args)
		if err != nil {
			return err
		}
		if !earlier {
			r.moved = true
		}
		r.vanished = r.vanished.Union(set)
	case "EXISTS", "EXPUNGE":
		r.moved = true
	}
	return nil
}

// proves checks the server's report against the log w (see
// ProveOwnWrites) and returns the status after the writes.
func (r *proofRun) proves(pr OwnProof, w *ownWrites) (Proved, bool) {
	sel := r.sel
	if r.moved || sel.NoModSeq || sel.HighestModSeq == 0 || sel.UIDValidity != pr.Mark.UIDValidity || sel.UIDNext == 0 {
		return Proved{}, false
	}
	for _, fd := range r.changed {
		if !w.explains(fd) {
			return Proved{}, false
		}
	}
	if !within(r.vanished, w.removed) {
		return Proved{}, false // an expunge not ours
	}
	next := pr.Mark.UIDNext
	for uid := range w.appended {
		next = max(next, uid+1)
	}
	want := uint64(pr.Messages) + uint64(len(w.appended))
	if gone := r.vanished.Len(); gone > want || want-gone != uint64(sel.Exists) || sel.UIDNext != next {
		return Proved{}, false // a message came or went that the log does not explain
	}
	return Proved{UIDValidity: sel.UIDValidity, UIDNext: sel.UIDNext, Messages: sel.Exists, HighestModSeq: sel.HighestModSeq}, true
}

// explains reports whether a message's change since the mark is ours: we
// stored its flags and nobody changed it since (the same MODSEQ), or we
// appended it and it has the flags we gave it.
func (w *ownWrites) explains(fd FetchData) bool {
	if fd.UID == 0 || !fd.HasFlags {
		return false
	}
	flags := withoutRecent(fd.Flags)
	if st, ok := w.stored[fd.UID]; ok {
		return fd.ModSeq == st.modSeq && sameFlags(flags, st.flags)
	}
	if fl, ok := w.appended[fd.UID]; ok {
		return sameFlags(flags, fl)
	}
	return false
}

// withoutRecent drops \Recent: a session-only flag (RFC 3501 §2.3.2) that
// no write sets.
func withoutRecent(flags []string) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if !strings.EqualFold(f, `\Recent`) {
			out = append(out, f)
		}
	}
	return out
}

// ProveSelected is ProveOwnWrites for the mailbox the session has open,
// read-write, from the run's writes there (SelectCondStore, or what the
// sink's appends left: Resume), without opening it again: a STATUS of it
// and a UID FETCH of every message changed since the mark with the UIDs
// expunged since, in one round trip, checked as ProveOwnWrites checks an
// EXAMINE and its FETCH. Opening the mailbox again costs a server a
// rescan of a Maildir folder it just changed (Dovecot: any folder changed
// in the last seconds), and a round trip at the end of the run.
//
// Dovecot answers a STATUS of the selected mailbox from the session's
// view, which the FETCH reads too. A server that answered from a later
// state could count a change the FETCH does not show: so the proof also
// holds only when the STATUS's HIGHESTMODSEQ is the highest mod-sequence
// the FETCH, the mark and the answers to the writes account for (a change
// by anyone raises it above all of them).
//
// With next not "", next is SELECTed read-write (CONDSTORE) in the same
// round trip, for the caller's writes there (its UIDVALIDITY is checked
// before any, as after SelectCondStore). ok is false when nothing is
// proved: pr.Box is not the mailbox open read-write, nothing was logged
// there or a write is in doubt, no QRESYNC, or a change the log does not
// explain.
func (s *Session) ProveSelected(p *Pool, pr OwnProof, next string) (proved Proved, ok bool, err error) {
	box, sel, open := s.SelectedCondStore()
	w := p.written(pr.Box)
	prove := open && box == pr.Box && !sel.ReadOnly && s.qres && w != nil && w.uidv == pr.Mark.UIDValidity && pr.Mark.HighestModSeq > 0
	var cmds []string
	if prove {
		cmds = append(cmds, "STATUS "+Quote(EncodeMUTF7(pr.Box))+" (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)",
			fmt.Sprintf("UID FETCH 1:4294967295 (UID FLAGS MODSEQ) (CHANGEDSINCE %d VANISHED)", pr.Mark.HighestModSeq))
	}
	selectAt := -1
	if next != "" && (!open || box != next) {
		if !open {
			cmds = append(cmds, s.enableFirst()...) // nothing to prove, nothing selected
		}
		selectAt = len(cmds)
		cmds = append(cmds, s.selectCmd(next))
	}
	if len(cmds) == 0 {
		return Proved{}, false, nil
	}
	var run proofRun
	var status Status
	var nextSel Selected
	errs, err := s.runIndexed(cmds, func(i int, u Untagged) error {
		switch {
		case i == selectAt:
			return nextSel.take(u)
		case !prove:
			s.takeEnabled(u) // enableFirst's
			return nil
		case i == 0:
			return takeStatus(&status, &run, u)
		}
		return run.take(true, u)
	})
	if err != nil {
		s.selected, s.cur = false, current{}
		return Proved{}, false, err
	}
	if selectAt >= 0 {
		s.selectedAs(next, nextSel, errs[selectAt])
	}
	if !prove || errs[0] != nil || errs[1] != nil || status.Mailbox == "" || !status.HasModSeq {
		return Proved{}, false, nil
	}
	run.sel = Selected{UIDValidity: status.UIDValidity, UIDNext: status.UIDNext, Exists: status.Messages, HighestModSeq: status.HighestModSeq}
	proved, ok = run.proves(pr, w)
	if !ok || status.HighestModSeq != run.accounted(pr, w) {
		return Proved{}, false, nil
	}
	return proved, true, nil
}

// takeStatus reads the STATUS answer of ProveSelected; anything else the
// server says meanwhile about the mailbox (a count that moved) refuses
// the proof, as during ProveOwnWrites's FETCH.
func takeStatus(st *Status, r *proofRun, u Untagged) error {
	if u.Kind != "STATUS" {
		return r.take(true, u)
	}
	got, err := ParseStatus(u.Args)
	if err != nil {
		return err
	}
	*st = got
	return nil
}

// accounted is the highest mod-sequence the mark, the FETCH's answers
// and the log's writes account for.
func (r *proofRun) accounted(pr OwnProof, w *ownWrites) uint64 {
	m := max(pr.Mark.HighestModSeq, w.highest)
	for _, fd := range r.changed {
		m = max(m, fd.ModSeq)
	}
	return m
}
