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
	cmds := append(s.enableFirst(), s.selectCmd(box))
	s.selected, s.cur = false, current{}
	last := len(cmds) - 1
	errs, err := s.runIndexed(cmds, func(i int, u Untagged) error {
		if i < last {
			s.takeEnabled(u)
			return nil
		}
		return sel.take(u)
	})
	if err != nil {
		return sel, err
	}
	s.selectedAs(box, sel, errs[last])
	return s.cur.sel, errs[last]
}

// enableFirst is the ENABLE QRESYNC to send before a first SELECT on a
// session that has not enabled it (one dialled for writes when the
// listing went another way: a full pass), in the same round trip, so that
// the run's own writes there can be proved where they were made
// (ProveSelected, which needs FETCH's VANISHED modifier): nil when it is
// on already, the server lacks it, or a mailbox is selected (RFC 5161
// allows ENABLE in the authenticated state only).
func (s *Session) enableFirst() []string {
	if s.qres || s.selected || s.cur.box != "" || !s.Has("QRESYNC") || !s.Has("ENABLE") {
		return nil
	}
	s.qresLater = false
	return []string{"ENABLE QRESYNC"}
}

// selectCmd is SelectCondStore's command.
func (s *Session) selectCmd(box string) string {
	cmd := "SELECT " + Quote(EncodeMUTF7(box))
	if s.Has("CONDSTORE") {
		cmd += " (CONDSTORE)"
	}
	return cmd
}

// selectedAs takes in the answer to a SELECT of box (selectCmd) that
// said sel and ended with refused (nil: OK): box is open read-write,
// else nothing is (a failed SELECT leaves none, RFC 9051 §6.3.2).
func (s *Session) selectedAs(box string, sel Selected, refused error) {
	if refused != nil {
		s.selected, s.cur = false, current{}
		return
	}
	s.selected = true
	sel.Exists = s.exists
	if r := s.doneStatus; len(r) > 0 && r[len(r)-1].Code == "READ-ONLY" {
		sel.ReadOnly = true
	}
	s.cur = current{box: box, rw: true, sel: sel}
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
// STORE over their UIDs, all pipelined. What each STORE did comes from
// its own answers (RFC 7162 §3.1.3): the tagged [MODIFIED] code names the
// messages not stored, and the untagged FETCH the server sends for each
// message it changed, .SILENT or not, carries its new MODSEQ. Only the
// messages that leaves in doubt are read back, in a second round trip:
// those MODIFIED names (their flags now, to merge with again), and those
// without a FETCH (gone, or a server that did not say). The results are
// in the order of ws; a UID given twice gets the later write's flags on
// the server.
func (s *Session) StoreIfAll(ws []FlagWrite) ([]StoreResult, error) {
	if len(ws) == 0 {
		return nil, nil
	}
	groups := groupWrites(ws)
	cmds := make([]string, 0, len(groups))
	for _, g := range groups {
		cmds = append(cmds, fmt.Sprintf("UID STORE %s (UNCHANGEDSINCE %d) FLAGS.SILENT (%s)", g.set, g.since, g.flags))
	}
	got := map[uint32]FetchData{}
	errs, err := s.run(cmds, fetchEach(collectFetch(got)))
	if err != nil {
		return nil, err
	}
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	modified, err := modifiedOf(groups, s.doneStatus)
	if err != nil {
		return nil, err
	}
	out := make([]StoreResult, len(ws))
	var doubt UIDSet
	for i, w := range ws {
		fd, seen := got[w.UID]
		if modified.Contains(w.UID) || !seen || fd.ModSeq == 0 || fd.HasFlags && !sameFlags(fd.Flags, w.Flags) {
			doubt = doubt.Add(w.UID)
			continue
		}
		out[i] = StoreResult{Found: true, Stored: true, Flags: append([]string{}, w.Flags...), ModSeq: fd.ModSeq}
	}
	if len(doubt) == 0 {
		return out, nil
	}
	return out, s.readBack(ws, out, doubt, modified)
}

// writeGroup is the writes of StoreIfAll sharing one UID STORE.
type writeGroup struct {
	set   UIDSet
	since uint64
	flags string
}

// groupWrites groups ws by mod-sequence and flags, in the order first seen.
func groupWrites(ws []FlagWrite) []*writeGroup {
	var groups []*writeGroup
	byKey := map[string]*writeGroup{}
	for _, w := range ws {
		flags := strings.Join(w.Flags, " ")
		k := fmt.Sprintf("%d (%s)", w.Since, flags)
		g := byKey[k]
		if g == nil {
			g = &writeGroup{since: w.Since, flags: flags}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.set = g.set.Add(w.UID)
	}
	return groups
}

// collectFetch keeps, per UID, the last MODSEQ and FLAGS the FETCH
// responses gave (a later response wins, item by item).
func collectFetch(got map[uint32]FetchData) func(FetchData) error {
	return func(fd FetchData) error {
		old := got[fd.UID]
		if !fd.HasFlags {
			fd.Flags, fd.HasFlags = old.Flags, old.HasFlags
		}
		if fd.ModSeq == 0 {
			fd.ModSeq = old.ModSeq
		}
		got[fd.UID] = fd
		return nil
	}
}

// modifiedOf is the union of the [MODIFIED] sets of the groups' tagged
// answers; one naming a message outside its command's set is an error.
func modifiedOf(groups []*writeGroup, tagged []Response) (UIDSet, error) {
	var modified UIDSet
	for i, g := range groups {
		set, ok, err := Modified(tagged[i])
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
	return modified, nil
}

// sameFlags reports whether a and b hold the same flags, in any order
// and case.
func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	in := map[string]bool{}
	for _, f := range a {
		in[strings.ToLower(f)] = true
	}
	for _, f := range b {
		if !in[strings.ToLower(f)] {
			return false
		}
	}
	return true
}

// readBack reads the flags and mod-sequence of the messages of doubt
// (UID FETCH) into their results in out: one MODIFIED names was not
// stored; one without an answer is gone.
func (s *Session) readBack(ws []FlagWrite, out []StoreResult, doubt, modified UIDSet) error {
	got := map[uint32]FetchData{}
	if err := s.run1(fmt.Sprintf("UID FETCH %s (UID FLAGS MODSEQ)", doubt), fetchEach(collectFetch(got))); err != nil {
		return err
	}
	for i, w := range ws {
		if !doubt.Contains(w.UID) {
			continue
		}
		fd, found := got[w.UID]
		res := StoreResult{Found: found, Stored: found && !modified.Contains(w.UID)}
		if found {
			res.Flags, res.ModSeq = fd.Flags, fd.ModSeq
			if res.ModSeq == 0 {
				return fmt.Errorf("imap: conditional store of UID %d: the read-back has no MODSEQ", w.UID)
			}
		}
		out[i] = res
	}
	return nil
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
