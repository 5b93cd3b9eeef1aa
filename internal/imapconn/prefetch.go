package imapconn

// The change listings of many mailboxes in one round trip: a sync after a
// few changes lists each changed folder by EXAMINE (QRESYNC), plus a UID
// FETCH of the new messages where there are some, and waited for each
// EXAMINE in turn. Nothing in one folder's commands depends on another's
// answers, so they go out together; each FETCH right after its own
// EXAMINE, which a server runs in order (RFC 9051 §5.5): a FETCH whose
// EXAMINE failed finds no mailbox selected (§6.3.2) and fails too, and it
// only reads.

import (
	"errors"
	"fmt"
	"strings"
)

// ChangeReq is one mailbox's change listing to start (PrefetchChanges).
type ChangeReq struct {
	Box  string
	Mark Mark
	// NewFrom, when not 0, asks right after the EXAMINE for the envelopes
	// of the messages from that UID on (as FetchNew(NewFrom, 0)).
	NewFrom uint32
	// Select, for the last request only, opens the mailbox read-write
	// (SELECT with the same QRESYNC parameter, which answers as EXAMINE
	// does): the writes that follow there need no SELECT of their own
	// (SelectedCondStore).
	Select bool
}

// Prefetched is what the server answered to one ChangeReq: what Examine,
// FetchNew, Exists, TakeVanished and Expunged would have said had the
// mailbox been listed on its own.
type Prefetched struct {
	Err error // the refusal of its EXAMINE or FETCH, if any
	Sel Selected
	// New holds the FETCH's messages from NewFrom on, when NewAsked.
	New      []FetchData
	NewAsked bool
	// Exists, Vanished and Expunged are what the server said about the
	// mailbox after its EXAMINE answered.
	Exists   uint32
	Vanished UIDSet
	Expunged bool
}

// ErrNoQResync is PrefetchChanges' answer on a session without QRESYNC
// (the changes come with the EXAMINE): nothing was sent, or every EXAMINE
// was refused; the caller lists the mailboxes one by one.
var ErrNoQResync = errors.New("imap: QRESYNC not enabled")

// PrefetchChanges sends the EXAMINE (QRESYNC) of every request, each
// followed by its FETCH of new messages where asked, in one round trip
// (with the ENABLE QRESYNC that EnableQResyncLater left pending, if any),
// and returns each mailbox's answers in the order of reqs. Without
// QRESYNC enabled (refused, or not offered) it returns an error and the
// caller lists the mailboxes one by one. The session ends with the last
// mailbox EXAMINEd, as Current says, when its EXAMINE succeeded.
func (s *Session) PrefetchChanges(reqs []ChangeReq) ([]Prefetched, error) {
	if !s.qres && !s.qresLater {
		return nil, ErrNoQResync
	}
	var cmds []string
	var owner []int // the request of each command, -1 for ENABLE
	var fetch []bool
	if s.qresLater {
		s.qresLater = false
		cmds, owner, fetch = append(cmds, "ENABLE QRESYNC"), append(owner, -1), append(fetch, false)
	}
	opened := make([]int, len(reqs)) // the index of each request's EXAMINE or SELECT
	for i, r := range reqs {
		cmd := s.examineCmd(r.Box, &r.Mark, true)
		if r.Select && i == len(reqs)-1 {
			cmd = "SELECT" + strings.TrimPrefix(cmd, "EXAMINE")
		}
		opened[i] = len(cmds)
		cmds, owner, fetch = append(cmds, cmd), append(owner, i), append(fetch, false)
		if r.NewFrom != 0 {
			cmds = append(cmds, fmt.Sprintf("UID FETCH %d:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", r.NewFrom))
			owner, fetch = append(owner, i), append(fetch, true)
		}
	}
	out := make([]Prefetched, len(reqs))
	s.exists, s.expunged, s.vanished = 0, false, nil
	s.selected, s.cur = false, current{}
	errs, err := s.runIndexed(cmds, func(c int, u Untagged) error {
		if owner[c] < 0 {
			s.takeEnabled(u)
			return nil
		}
		return out[owner[c]].take(fetch[c], reqs[owner[c]].NewFrom, u)
	})
	s.exists, s.expunged, s.vanished = 0, false, nil
	if err != nil {
		return nil, err
	}
	if !s.qres {
		return nil, ErrNoQResync // every EXAMINE assumed it
	}
	for c, e := range errs {
		if owner[c] >= 0 && e != nil && out[owner[c]].Err == nil {
			out[owner[c]].Err = e
		}
	}
	for i, r := range reqs {
		out[i].NewAsked = r.NewFrom != 0
	}
	if n := len(reqs); n > 0 && out[n-1].Err == nil {
		last := &out[n-1]
		rw := reqs[n-1].Select
		if r := s.doneStatus[opened[n-1]]; rw && strings.EqualFold(r.Code, "READ-ONLY") {
			last.Sel.ReadOnly = true
		}
		s.selected, s.exists = true, last.Exists
		s.cur = current{box: reqs[n-1].Box, rw: rw, sel: last.Sel}
		s.cur.sel.Vanished, s.cur.sel.Changed = nil, nil
	}
	return out, nil
}

// take reads one untagged response of the mailbox's EXAMINE (fetch false)
// or of its FETCH of new messages from newFrom on, following the
// mailbox's count and expunges as Session.track does.
func (p *Prefetched) take(fetch bool, newFrom uint32, u Untagged) error {
	switch u.Kind {
	case "EXISTS":
		p.Exists = u.Num
	case "EXPUNGE":
		p.Expunged = true
		p.Exists -= min(p.Exists, 1)
	case "VANISHED":
		set, earlier, err := Vanished(u.Args)
		if err != nil {
			return err
		}
		if fetch {
			p.Vanished = p.Vanished.Union(set)
		} else {
			p.Sel.Vanished = p.Sel.Vanished.Union(set)
		}
		if !earlier {
			p.Exists -= uint32(min(uint64(p.Exists), set.Len()))
		}
		return nil
	case "FETCH":
		if fetch {
			fd, err := ParseFetch(u.Num, u.Args)
			if err != nil || fd.UID < newFrom {
				return err // "n:*" names the last message even below n
			}
			p.New = append(p.New, fd)
			return nil
		}
	}
	if fetch {
		return nil
	}
	// EXAMINE: a [CLOSED] ends what belonged to the mailbox before
	// (Selected.take forgets it; the count too).
	if u.Kind == "OK" && u.Status.Code == "CLOSED" {
		p.Exists, p.Expunged = 0, false
	}
	if err := p.Sel.take(u); err != nil {
		return err
	}
	p.Sel.Exists = p.Exists
	return nil
}

// SelectFetchBodies is SelectCondStore(box) and FetchBodies(set) in one
// round trip, for a mailbox the caller expects at UIDVALIDITY uidv: a
// body reaches fn only when the SELECT answered that UIDVALIDITY (its
// answer comes before the FETCH's), so UIDs given under another one
// fetch nothing the caller sees. The FETCH only reads (BODY.PEEK); after
// a failed SELECT it finds no mailbox selected (RFC 9051 §6.3.2) and
// fails too. The SELECT's refusal is returned first.
func (s *Session) SelectFetchBodies(box string, uidv uint32, set UIDSet, fn func(FetchData) error) (Selected, error) {
	var sel Selected
	s.exists, s.expunged, s.vanished = 0, false, nil
	cmds := append(s.enableFirst(), s.selectCmd(box), "UID FETCH "+set.String()+" (UID BODY.PEEK[])")
	at := len(cmds) - 2 // the SELECT's index
	s.selected, s.cur = false, current{}
	s.keep = sessLitMax
	defer func() { s.keep = 0 }()
	bodies := fetchEach(func(fd FetchData) error {
		if fd.Body == nil || !set.Contains(fd.UID) || sel.UIDValidity != uidv {
			return nil // a flag update, not asked for, or another mailbox's UIDs
		}
		return fn(fd)
	})
	errs, err := s.runIndexed(cmds, func(i int, u Untagged) error {
		switch {
		case i < at:
			s.takeEnabled(u)
			return nil
		case i == at:
			return sel.take(u)
		}
		return bodies(u)
	})
	if err != nil {
		return sel, err
	}
	if errs[at] != nil {
		return sel, errs[at]
	}
	s.selected = true
	sel.Exists = s.exists
	if r := s.doneStatus[at]; strings.EqualFold(r.Code, "READ-ONLY") {
		sel.ReadOnly = true
	}
	s.cur = current{box: box, rw: true, sel: sel}
	return sel, errs[at+1]
}
