package imapconn

// The conditional flag write of two-way sync (RFC 7162 §3.1.3): UID STORE
// with UNCHANGEDSINCE, on the raw path because go-imap v2 beta.8 discards
// the [MODIFIED] response code that says a message was not stored
// (docs/library-notes.md).

import (
	"fmt"
	"strings"
)

// SelectCondStore opens box read-write with CONDSTORE (RFC 7162 §3.1.8)
// where the server offers it, for StoreIf (and for whatever else the
// session then does there: appends, removals, fetches). A mailbox that
// keeps no mod-sequences answers NOMODSEQ: Selected.NoModSeq, and StoreIf
// cannot be used there.
func (s *Session) SelectCondStore(box string) (Selected, error) {
	var sel Selected
	s.exists, s.expunged, s.vanished = 0, false, nil
	s.selected, s.cur = false, current{}
	cmd := "SELECT " + Quote(EncodeMUTF7(box))
	if s.Has("CONDSTORE") {
		cmd += " (CONDSTORE)"
	}
	err := s.run1(cmd, func(u Untagged) error {
		return sel.take(u)
	})
	if err != nil {
		return sel, err
	}
	s.selected = true
	sel.Exists = s.exists
	if r := s.doneStatus; len(r) == 1 && r[0].Code == "READ-ONLY" {
		sel.ReadOnly = true
	}
	s.cur = current{box: box, rw: true, sel: sel}
	return sel, nil
}

// SelectedCondStore returns the mailbox SelectCondStore last opened and
// what it said, while that mailbox is still selected (ok false: none).
func (s *Session) SelectedCondStore() (box string, sel Selected, ok bool) {
	if !s.cur.rw {
		return "", Selected{}, false
	}
	return s.cur.box, s.cur.sel, s.cur.box != ""
}

// StoreResult is what a conditional store did to one message.
type StoreResult struct {
	// Found is false when the mailbox no longer holds the UID.
	Found bool
	// Stored is false when the message changed since the mod-sequence
	// given ([MODIFIED]): nothing was written.
	Stored bool
	// Flags and ModSeq are the message's after the command: what to merge
	// with again when it was not stored.
	Flags  []string
	ModSeq uint64
}

// StoreIf replaces the flags of message uid of the selected mailbox
// (SelectCondStore) unless its mod-sequence is above since, and reads the
// message's flags and mod-sequence back in the same round trip.
func (s *Session) StoreIf(uid uint32, since uint64, flags []string) (StoreResult, error) {
	store := fmt.Sprintf("UID STORE %d (UNCHANGEDSINCE %d) FLAGS.SILENT (%s)", uid, since, strings.Join(flags, " "))
	fetch := fmt.Sprintf("UID FETCH %d (UID FLAGS MODSEQ)", uid)
	var fds []FetchData
	errs, err := s.run([]string{store, fetch}, fetchEach(func(fd FetchData) error {
		fds = append(fds, fd)
		return nil
	}))
	if err != nil {
		return StoreResult{}, err
	}
	for _, e := range errs {
		if e != nil {
			return StoreResult{}, e
		}
	}
	return storeResult(uid, s.doneStatus[0], fds)
}

// storeResult reads a conditional store's outcome: its tagged answer
// (a [MODIFIED] code naming uid: not stored) and the FETCH replies that
// came with it and the read-back (the last one naming uid wins: it is the
// read-back's).
func storeResult(uid uint32, tagged Response, fds []FetchData) (StoreResult, error) {
	res := StoreResult{Stored: true}
	set, modified, err := Modified(tagged)
	if err != nil {
		return res, fmt.Errorf("imap: conditional store: %w", err)
	}
	if modified {
		if !set.Contains(uid) {
			return res, fmt.Errorf("imap: conditional store of UID %d: [MODIFIED %s] names other messages", uid, Clip(set.String(), 80))
		}
		res.Stored = false
	}
	for _, fd := range fds {
		if fd.UID != uid {
			continue
		}
		res.Found = true
		if fd.HasFlags {
			res.Flags = fd.Flags
		}
		if fd.ModSeq != 0 {
			res.ModSeq = fd.ModSeq
		}
	}
	if res.Found && res.ModSeq == 0 {
		return res, fmt.Errorf("imap: conditional store of UID %d: the read-back has no MODSEQ", uid)
	}
	if !res.Found {
		res.Stored = false
	}
	return res, nil
}

// FlagWrite is one message's conditional flag write (StoreIfAll).
type FlagWrite struct {
	UID   uint32
	Since uint64
	Flags []string
}

// StoreIfAll is StoreIf for many messages of the selected mailbox in one
// round trip: the writes of the same flags and mod-sequence share one UID
// STORE over their UIDs, all pipelined, and one UID FETCH reads every
// message's flags and mod-sequence back. The results are in the order of
// ws; a UID given twice gets the later write's flags on the server.
func (s *Session) StoreIfAll(ws []FlagWrite) ([]StoreResult, error) {
	if len(ws) == 0 {
		return nil, nil
	}
	type group struct {
		set   UIDSet
		since uint64
		flags string
	}
	var groups []*group
	byKey := map[string]*group{}
	var all UIDSet
	for _, w := range ws {
		flags := strings.Join(w.Flags, " ")
		k := fmt.Sprintf("%d (%s)", w.Since, flags)
		g := byKey[k]
		if g == nil {
			g = &group{since: w.Since, flags: flags}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.set, all = g.set.Add(w.UID), all.Add(w.UID)
	}
	cmds := make([]string, 0, len(groups)+1)
	for _, g := range groups {
		cmds = append(cmds, fmt.Sprintf("UID STORE %s (UNCHANGEDSINCE %d) FLAGS.SILENT (%s)", g.set, g.since, g.flags))
	}
	cmds = append(cmds, fmt.Sprintf("UID FETCH %s (UID FLAGS MODSEQ)", all))
	got := map[uint32]FetchData{}
	errs, err := s.run(cmds, fetchEach(func(fd FetchData) error {
		if fd.UID == 0 {
			return nil // not ours to place
		}
		// The read-back comes last: it wins over the STORE's own replies.
		old := got[fd.UID]
		if !fd.HasFlags {
			fd.Flags, fd.HasFlags = old.Flags, old.HasFlags
		}
		if fd.ModSeq == 0 {
			fd.ModSeq = old.ModSeq
		}
		got[fd.UID] = fd
		return nil
	}))
	if err != nil {
		return nil, err
	}
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	var modified UIDSet
	for i, g := range groups {
		set, ok, err := Modified(s.doneStatus[i])
		if err != nil {
			return nil, fmt.Errorf("imap: conditional store: %w", err)
		}
		if ok {
			if !within(set, g.set) {
				return nil, fmt.Errorf("imap: conditional store of UIDs %s: [MODIFIED %s] names other messages", Clip(g.set.String(), 80), Clip(set.String(), 80))
			}
			modified = modified.Union(set)
		}
	}
	out := make([]StoreResult, len(ws))
	for i, w := range ws {
		fd, found := got[w.UID]
		res := StoreResult{Found: found, Stored: found && !modified.Contains(w.UID)}
		if found {
			res.Flags, res.ModSeq = fd.Flags, fd.ModSeq
			if res.ModSeq == 0 {
				return nil, fmt.Errorf("imap: conditional store of UID %d: the read-back has no MODSEQ", w.UID)
			}
		}
		out[i] = res
	}
	return out, nil
}

// within reports whether every UID of sub is in set (a server's MODIFIED
// code must name only messages of the command's set).
func within(sub, set UIDSet) bool {
	for _, r := range sub {
		if r.Hi < r.Lo || uint64(r.Hi-r.Lo) >= set.Len() {
			return false // more UIDs than set holds
		}
		for u := uint64(r.Lo); u <= uint64(r.Hi); u++ {
			if !set.Contains(uint32(u)) {
				return false
			}
		}
	}
	return true
}
