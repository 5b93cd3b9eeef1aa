package imap

// The IMAP source's incremental listing (issue 11 item 2): ListChanges,
// on a raw connection of its own (imapconn.Session) with QRESYNC enabled
// where offered (FolderStatuses, item 1, is in status.go). QRESYNC is never
// enabled on the imapclient connections (see internal/imapconn/delta.go
// for why and for the upstream change that would lift it).

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

var (
	_ mail.FolderStatuser = (*Source)(nil)
	_ mail.ChangeLister   = (*Source)(nil)
)

// delta holds the incremental listing's connection. mu serialises its use;
// Close may break the connection at any time.
type delta struct {
	mu     sync.Mutex
	sess   *imapconn.Session // guarded by mu
	rc     atomic.Pointer[imapconn.RawConn]
	ignore map[string]bool // capabilities to act as if absent (tests)
	// open is the folder the last ListChanges left EXAMINEd on sess, with
	// its UIDVALIDITY: OpenBatch fetches that folder's bodies here, not on
	// a pooled connection that would log in and EXAMINE it again. Any
	// other use of sess clears it (guarded by mu).
	open     string
	openUIDV uint32
}

// close breaks the connection without waiting for mu, failing a command
// in flight.
func (d *delta) close() {
	if rc := d.rc.Load(); rc != nil {
		_ = rc.Close()
	}
}

// drop forgets the connection after closing it; called with mu held.
func (d *delta) drop(rc *imapconn.RawConn) {
	_ = rc.Close()
	d.sess = nil
	d.rc.CompareAndSwap(rc, nil)
}

// withSession runs fn on the delta connection, dialling it (and enabling
// QRESYNC) when there is none. A failure other than a refused command
// drops the connection and is temporary; cancelling ctx breaks it.
func (s *Source) withSession(ctx context.Context, op string, fn func(*imapconn.Session) error) error {
	return s.withRaw(ctx, op, true, fn)
}

// withRaw is withSession, enabling QRESYNC on a session New left without
// it only when qresync is set: the statuses and the LIST a no-op run asks
// there need none.
func (s *Source) withRaw(ctx context.Context, op string, qresync bool, fn func(*imapconn.Session) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("imap: %s: %w", op, err)
	}
	if s.isClosed() {
		return fmt.Errorf("imap: %s: %w", op, mail.ErrClosed)
	}
	d := &s.dl
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess == nil {
		if err := s.dialDelta(ctx, qresync); err != nil {
			return err
		}
	} else if qresync && !d.sess.QResync() {
		if err := s.enableQResync(ctx, d.rc.Load(), d.sess); err != nil {
			return err
		}
	}
	d.open, d.openUIDV = "", 0
	defer s.lendDelta() // a shared session goes back to the pool (pooled.go)
	return s.runSession(ctx, op, fn)
}

// runSession runs fn on the open delta connection; called with s.dl.mu
// held. See withSession for what an error does to the connection.
func (s *Source) runSession(ctx context.Context, op string, fn func(*imapconn.Session) error) error {
	d := &s.dl
	rc := d.rc.Load()
	d.sess.Ignore = s.dl.ignore // a test may hide capabilities after New
	stop := context.AfterFunc(ctx, func() { _ = rc.Close() })
	err := fn(d.sess)
	if !stop() {
		err = ctx.Err()
	}
	var ce *imapconn.CommandError
	if err == nil {
		return nil
	}
	if errors.As(err, &ce) { // the connection is fine
		return fmt.Errorf("imap: %s %s: %w", s.cfg.Ident(), op, err)
	}
	// Also after an error of the caller's fn: the rest of the reply is
	// unread, so the connection is out of step.
	d.drop(rc)
	switch {
	case isFnError(err):
		return unwrapFn(err)
	case s.isClosed():
		return fmt.Errorf("imap: %s: %w", op, mail.ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("imap: %s: %w", op, ctx.Err())
	}
	return mail.Temp(fmt.Errorf("imap: %s: %w", op, err))
}

// dialDelta opens the delta connection, with QRESYNC enabled where
// offered when qresync is set; called with s.dl.mu held.
func (s *Source) dialDelta(ctx context.Context, qresync bool) error {
	rc, sess, err := s.dialRaw(ctx)
	if err != nil {
		return err
	}
	if qresync {
		if err := s.enableQResync(ctx, rc, sess); err != nil {
			return err
		}
	}
	s.dl.sess = sess
	s.dl.rc.Store(rc)
	if s.isClosed() { // Close ran meanwhile and missed it
		s.dl.drop(rc)
		return fmt.Errorf("imap: %w", mail.ErrClosed)
	}
	return nil
}

// enableQResync has QRESYNC enabled on sess where offered: the ENABLE
// goes out with the session's next EXAMINE, in the same round trip
// (imapconn.Session.EnableQResyncLater), which falls back to an EXAMINE
// without QRESYNC if the server does not enable it.
func (s *Source) enableQResync(_ context.Context, _ *imapconn.RawConn, sess *imapconn.Session) error {
	sess.EnableQResyncLater()
	return nil
}

// fnError marks an error of the caller's fn, to be returned unchanged.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func isFnError(err error) bool {
	var fe fnError
	return errors.As(err, &fe)
}

func unwrapFn(err error) error {
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	return err
}

// ListChanges implements mail.ChangeLister. The folder is EXAMINEd (with
// QRESYNC, which reports expunges and flag changes since the mark);
// new messages come from UID FETCH since.UIDNext:*; flag changes from
// FETCH CHANGEDSINCE (CONDSTORE) or, without mod-sequences, the flags of
// every known message (as mbsync does); expunges from VANISHED (EARLIER),
// else by comparing UID SEARCH (or that flag listing) with known.
// Vanished messages are passed only once the counts agree: the messages
// now equal since.Messages, minus those vanished, plus those new.
func (s *Source) ListChanges(ctx context.Context, mailbox string, since mail.FolderStatus, known iter.Seq[mail.ID], fn func(mail.Change) error) (mail.ChangeSummary, error) {
	box, err := s.serverName(ctx, mailbox)
	if err != nil {
		return mail.ChangeSummary{}, err
	}
	cl := &changeListing{s: s, name: normInbox(mailbox), since: since, known: known, fn: fn}
	cl.readKnown()
	defer cl.knownUIDs() // known is not used after ListChanges returns
	if p := s.takePrefetched(cl.name, since); p != nil && cl.usable(p) {
		cl.pre, cl.view = p, prefetchedView{p}
		err := cl.run("")
		return cl.sum, unwrapFn(err)
	}
	err = s.withSession(ctx, fmt.Sprintf("list changes %q", mailbox), func(sess *imapconn.Session) error {
		cl.sess, cl.view = sess, sess
		if err := cl.run(box); err != nil {
			return err
		}
		s.dl.open, s.dl.openUIDV = cl.name, cl.sel.UIDValidity
		return nil
	})
	if err != nil {
		var ce *imapconn.CommandError
		if errors.As(err, &ce) && strings.HasPrefix(ce.Cmd, "EXAMINE") && ce.Resp.Kind == "NO" {
			return mail.ChangeSummary{}, fmt.Errorf("imap: %s: mailbox %q: %s: %w", s.cfg.Ident(), mailbox, ce.Resp.Text, mail.ErrMailboxNotFound)
		}
		return cl.sum, err
	}
	return cl.sum, nil
}

// changeListing is one ListChanges call.
type changeListing struct {
	s    *Source
	sess *imapconn.Session
	// view answers what the server said about the mailbox since its
	// EXAMINE: the session, or what PrefetchChanges fetched (pre, then
	// sess is nil: nothing more is asked).
	view  listingView
	pre   *imapconn.Prefetched
	name  string
	since mail.FolderStatus
	known iter.Seq[mail.ID]
	fn    func(mail.Change) error

	sel imapconn.Selected
	// known's UIDs of since's UIDVALIDITY (nil: known is nil), parsed once
	// on another goroutine while the connection is dialled and the folder
	// EXAMINEd (readKnown): a copy's 50,000 known IDs cost more to read
	// (the caller may still be loading them) and parse than its change.
	// knownUIDs waits for them.
	knownReady  chan struct{}
	knownParsed []uint32
	sum         mail.ChangeSummary
	maxNew      uint32
	knownNew    imapconn.UIDSet // known UIDs from since.UIDNext on (a two-way sync's own copies)
	newKnown    int             // of those, how many are still there (ChangeFlags)
	goneNew     []uint32        // and which are gone
	present     imapconn.UIDSet // UIDs below since.UIDNext still there (no QRESYNC)
	vanished    imapconn.UIDSet // QRESYNC's report
}

func (cl *changeListing) run(box string) error {
	if cl.pre != nil {
		cl.sel = cl.pre.Sel
	} else {
		mark := &imapconn.Mark{UIDValidity: cl.since.UIDValidity, UIDNext: cl.since.UIDNext, HighestModSeq: cl.since.HighestModSeq}
		sel, err := cl.sess.Examine(box, mark)
		if err != nil {
			return err
		}
		cl.sel = sel
	}
	sel := cl.sel
	cl.sum.Status = mail.FolderStatus{UIDValidity: sel.UIDValidity, UIDNext: sel.UIDNext, Messages: sel.Exists,
		HighestModSeq: sel.HighestModSeq, NoModSeq: sel.NoModSeq}
	if reason := cl.fullBefore(); reason != "" {
		cl.sum.Full, cl.sum.Reason = true, reason
		return nil
	}
	if cl.unchanged() {
		return nil
	}
	cl.knownNew = cl.knownFrom(cl.since.UIDNext)
	if err := cl.listNew(); err != nil {
		return err
	}
	if err := cl.listFlags(); err != nil {
		return err
	}
	return cl.listVanished()
}

// fullBefore returns why the folder must be listed in full, from EXAMINE
// alone, or "".
func (cl *changeListing) fullBefore() string {
	since, sel := cl.since, cl.sel
	switch {
	case since.UIDValidity == 0 || since.UIDNext == 0:
		return "no earlier listing"
	case sel.UIDValidity != since.UIDValidity:
		return fmt.Sprintf("UIDVALIDITY changed from %d to %d", since.UIDValidity, sel.UIDValidity)
	case sel.UIDNext != 0 && sel.UIDNext < since.UIDNext:
		return fmt.Sprintf("UIDNEXT went backwards from %d to %d", since.UIDNext, sel.UIDNext)
	case since.HighestModSeq > 0 && sel.NoModSeq:
		return "the server says NOMODSEQ"
	case since.HighestModSeq > 0 && sel.HighestModSeq < since.HighestModSeq:
		return fmt.Sprintf("HIGHESTMODSEQ went backwards from %d to %d", since.HighestModSeq, sel.HighestModSeq)
	}
	return ""
}

// modSeqs reports whether flag changes can be asked by mod-sequence.
func (cl *changeListing) modSeqs() bool {
	return cl.since.HighestModSeq > 0 && cl.sel.HighestModSeq > 0 && !cl.sel.NoModSeq
}

// unchanged reports a folder whose mod-sequence, UIDNEXT and count did not
// move: nothing to list.
func (cl *changeListing) unchanged() bool {
	return cl.modSeqs() && cl.sel.HighestModSeq == cl.since.HighestModSeq &&
		cl.sel.UIDNext == cl.since.UIDNext && cl.sel.Exists == cl.since.Messages && len(cl.sel.Vanished) == 0
}

// listNew passes the messages from since.UIDNext on, listChunk UIDs per
// FETCH (the last one open-ended, for mail that arrived since EXAMINE).
// Each FETCH is read whole before fn sees its messages, as List does: fn
// may block for long (the engine's queue is full of big messages), and a
// server whose output is not read times out.
func (cl *changeListing) listNew() error {
	hi := uint64(cl.sel.UIDNext) // UIDNEXT at EXAMINE, 0 if not said
	if cl.sel.Exists == 0 || (hi != 0 && hi <= uint64(cl.since.UIDNext)) {
		cl.goneNew = uidsOf(cl.knownNew)
		return nil
	}
	if cl.pre != nil {
		return cl.splitNew(cl.pre.New)
	}
	if len(cl.knownNew) > 0 {
		return cl.listNewKnown()
	}
	var batch []imapconn.FetchData
	for lo := uint64(cl.since.UIDNext); ; lo += listChunk {
		end := lo + listChunk - 1
		open := hi == 0 || end >= hi-1 || end >= 1<<32-1
		to := uint32(end)
		if open {
			to = 0
		}
		batch = batch[:0]
		err := cl.sess.FetchNew(uint32(lo), to, func(fd imapconn.FetchData) error {
			batch = append(batch, fd)
			return nil
		})
		if err != nil {
			return err
		}
		if err := cl.emitNew(batch); err != nil || open {
			return err
		}
	}
}

// readKnown starts parsing the known IDs of since's UIDVALIDITY, if any.
// Only a listing that gets past fullBefore uses them, and there the
// folder's UIDVALIDITY is since's. known is iterated on that goroutine
// only while ListChanges runs, before fn is first called (knownUIDs).
func (cl *changeListing) readKnown() {
	if cl.known == nil {
		return
	}
	cl.knownReady = make(chan struct{})
	go func() {
		defer close(cl.knownReady)
		uids := []uint32{}
		for id := range cl.known {
			if v, uid, ok := imapconn.ParseID(id); ok && v == cl.since.UIDValidity {
				uids = append(uids, uid)
			}
		}
		cl.knownParsed = uids
	}()
}

// knownUIDs returns the known UIDs of this UIDVALIDITY (nil: known is
// nil), waiting for readKnown.
func (cl *changeListing) knownUIDs() []uint32 {
	if cl.knownReady == nil {
		return nil
	}
	<-cl.knownReady
	return cl.knownParsed
}

// knownFrom returns the known UIDs (of this UIDVALIDITY) from lo on:
// messages the caller holds that arrived after the last listing, such as a
// two-way sync's own copies into this folder.
func (cl *changeListing) knownFrom(lo uint32) imapconn.UIDSet {
	var uids []uint32
	for _, uid := range cl.knownUIDs() {
		if uid >= lo {
			uids = append(uids, uid)
		}
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	var set imapconn.UIDSet
	for _, u := range uids {
		set = set.Add(u)
	}
	return set
}

// listNewKnown lists the messages from since.UIDNext on when the caller
// holds some of them: the flags of all, then the envelopes (headers
// included) of the others only, listChunk per FETCH, so a two-way sync's
// own copies cost no header fetch. Known ones are passed as ChangeFlags;
// a known one the server no longer has is gone (listVanished passes it).
func (cl *changeListing) listNewKnown() error {
	lo := cl.since.UIDNext
	var known []imapconn.FetchData
	var present, unknown imapconn.UIDSet
	err := cl.sess.FetchFlags(fmt.Sprintf("%d:*", lo), 0, func(fd imapconn.FetchData) error {
		switch {
		case fd.UID < lo: // "lo:*" names the last message even below lo
		case cl.knownNew.Contains(fd.UID):
			known, present = append(known, fd), present.Add(fd.UID)
		default:
			unknown = unknown.Add(fd.UID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var batch []imapconn.FetchData
	for _, part := range splitUIDs(unknown, listChunk) {
		batch = batch[:0]
		err := cl.sess.FetchNewSet(part, func(fd imapconn.FetchData) error {
			batch = append(batch, fd)
			return nil
		})
		if err != nil {
			return err
		}
		if err := cl.emitNew(batch); err != nil {
			return err
		}
	}
	for _, fd := range known {
		cl.maxNew = max(cl.maxNew, fd.UID)
		cl.newKnown++
		cl.sum.Flags++
		if err := cl.emit(mail.ChangeFlags, mail.Envelope{Mailbox: cl.name,
			ID: imapconn.MakeID(cl.sel.UIDValidity, fd.UID), Size: -1, Flags: stringFlags(fd.Flags)}); err != nil {
			return err
		}
	}
	for _, u := range uidsOf(cl.knownNew) {
		if !present.Contains(u) {
			cl.goneNew = append(cl.goneNew, u)
		}
	}
	return nil
}

// splitNew passes the new messages fetched with their envelopes (from
// since.UIDNext on): those the caller knows as flag changes, the others as
// new, as listNewKnown does; a known one not among them is gone.
func (cl *changeListing) splitNew(fds []imapconn.FetchData) error {
	var fresh []imapconn.FetchData
	var present imapconn.UIDSet
	for _, fd := range fds {
		if !cl.knownNew.Contains(fd.UID) {
			fresh = append(fresh, fd)
			continue
		}
		present = present.Add(fd.UID)
		cl.maxNew = max(cl.maxNew, fd.UID)
		cl.newKnown++
		cl.sum.Flags++
		if err := cl.emit(mail.ChangeFlags, mail.Envelope{Mailbox: cl.name,
			ID: imapconn.MakeID(cl.sel.UIDValidity, fd.UID), Size: -1, Flags: stringFlags(fd.Flags)}); err != nil {
			return err
		}
	}
	if err := cl.emitNew(fresh); err != nil {
		return err
	}
	for _, u := range uidsOf(cl.knownNew) {
		if !present.Contains(u) {
			cl.goneNew = append(cl.goneNew, u)
		}
	}
	return nil
}

// uidsOf lists the UIDs of set.
func uidsOf(set imapconn.UIDSet) []uint32 {
	var out []uint32
	for _, r := range set {
		for u := uint64(r.Lo); u <= uint64(r.Hi); u++ {
			out = append(out, uint32(u))
		}
	}
	return out
}

// splitUIDs cuts set into parts of at most n UIDs.
func splitUIDs(set imapconn.UIDSet, n uint64) []imapconn.UIDSet {
	var parts []imapconn.UIDSet
	var cur imapconn.UIDSet
	var size uint64
	for _, r := range set {
		for lo := uint64(r.Lo); lo <= uint64(r.Hi); {
			hi := min(uint64(r.Hi), lo+n-size-1)
			cur = append(cur, imapconn.UIDRange{Lo: uint32(lo), Hi: uint32(hi)})
			size += hi - lo + 1
			if size == n {
				parts, cur, size = append(parts, cur), nil, 0
			}
			lo = hi + 1
		}
	}
	if len(cur) > 0 {
		parts = append(parts, cur)
	}
	return parts
}

// emitNew passes one FETCH's new messages.
func (cl *changeListing) emitNew(batch []imapconn.FetchData) error {
	uidv := cl.sel.UIDValidity
	for _, fd := range batch {
		e := mail.Envelope{Mailbox: cl.name, ID: imapconn.MakeID(uidv, fd.UID), Size: fd.Size,
			Date: fd.InternalDate, Flags: stringFlags(fd.Flags)}
		if fd.Header != nil {
			e.MessageID = messageID(strings.NewReader(string(fd.Header)))
		}
		cl.maxNew = max(cl.maxNew, fd.UID)
		cl.sum.New++
		if err := cl.emit(mail.ChangeNew, e); err != nil {
			return err
		}
	}
	return nil
}

// listFlags passes flag changes of the messages below since.UIDNext.
func (cl *changeListing) listFlags() error {
	last := cl.since.UIDNext - 1
	if last == 0 {
		return nil
	}
	each := func(fd imapconn.FetchData) error {
		if fd.UID > last {
			return nil
		}
		cl.sum.Flags++
		return cl.emit(mail.ChangeFlags, mail.Envelope{Mailbox: cl.name,
			ID: imapconn.MakeID(cl.sel.UIDValidity, fd.UID), Size: -1, Flags: stringFlags(fd.Flags)})
	}
	switch {
	case cl.view.QResync() && cl.modSeqs():
		cl.vanished = cl.sel.Vanished.Clip(1, last)
		for _, fd := range cl.sel.Changed {
			if err := each(fd); err != nil {
				return err
			}
		}
		return nil
	case cl.modSeqs():
		return cl.flagWindows(last, cl.since.HighestModSeq, each)
	}
	cl.sum.AllFlags = true
	return cl.flagWindows(last, 0, each)
}

// flagMsgs is about how many messages one flag FETCH covers.
const flagMsgs = 20000

// flagWindows lists the flags of UIDs 1 to last (changed since
// changedSince, when not 0) in UID windows of about flagMsgs messages at
// the folder's density, each FETCH read whole before fn sees it, for the
// reason listNew gives. Without mod-sequences it also notes the UIDs
// present.
func (cl *changeListing) flagWindows(last uint32, changedSince uint64, fn func(imapconn.FetchData) error) error {
	w := uint64(flagMsgs)
	if n := uint64(cl.since.Messages); n > 0 && uint64(last) > n {
		w = max(w, uint64(last)*flagMsgs/n)
	}
	var batch []imapconn.FetchData
	for lo := uint64(1); lo <= uint64(last); lo += w {
		batch = batch[:0]
		set := fmt.Sprintf("%d:%d", lo, min(uint64(last), lo+w-1))
		err := cl.sess.FetchFlags(set, changedSince, func(fd imapconn.FetchData) error {
			batch = append(batch, fd)
			if changedSince == 0 {
				cl.present = cl.present.Add(fd.UID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, fd := range batch {
			if err := fn(fd); err != nil {
				return err
			}
		}
	}
	return nil
}

// listVanished finds the messages gone, checks the counts, and only then
// passes them.
func (cl *changeListing) listVanished() error {
	last := cl.since.UIDNext - 1
	qres := cl.view.QResync() && cl.modSeqs()
	if !qres && !cl.sum.AllFlags && last > 0 {
		p, err := cl.sess.SearchUIDs(last)
		if err != nil {
			return err
		}
		cl.present = p
	}
	cl.vanished = cl.vanished.Union(cl.view.TakeVanished().Clip(1, last))
	gone, reason := cl.gone(qres, last)
	now := cl.view.Exists()
	cl.sum.Status.Messages = now
	// UIDNEXT never goes down; a server that left it out of EXAMINE still
	// had every UID below the last mark's and the new messages'.
	cl.sum.Status.UIDNext = max(cl.sum.Status.UIDNext, cl.maxNew+1, cl.since.UIDNext)
	switch {
	case reason != "":
		cl.sum.Full, cl.sum.Reason = true, reason
		return nil
	case cl.view.Expunged():
		cl.sum.Full, cl.sum.Reason = true, "messages were expunged during the listing"
		return nil
	case uint64(cl.since.Messages)+uint64(cl.sum.New)+uint64(cl.newKnown) != uint64(now)+uint64(len(gone)):
		cl.sum.Full, cl.sum.Reason = true, fmt.Sprintf("counts disagree: %d before, %d new, %d vanished, %d now",
			cl.since.Messages, cl.sum.New+cl.newKnown, len(gone), now)
		return nil
	}
	for _, uid := range append(gone, cl.goneNew...) {
		cl.sum.Vanished++
		if err := cl.emit(mail.ChangeVanished, mail.Envelope{Mailbox: cl.name, ID: imapconn.MakeID(cl.sel.UIDValidity, uid), Size: -1}); err != nil {
			return err
		}
	}
	return nil
}

// gone lists the vanished UIDs: QRESYNC's report, narrowed to known when
// given; else the known UIDs missing from present. Without known and
// without QRESYNC, a count that moved cannot be explained: reason says so.
func (cl *changeListing) gone(qres bool, last uint32) (uids []uint32, reason string) {
	if qres && cl.known == nil {
		if n := cl.vanished.Len(); n > uint64(cl.since.Messages) {
			return nil, fmt.Sprintf("VANISHED reports %d messages of %d", n, cl.since.Messages)
		}
		for _, r := range cl.vanished {
			for u := uint64(r.Lo); u <= uint64(r.Hi); u++ {
				uids = append(uids, uint32(u))
			}
		}
		return uids, ""
	}
	if cl.known == nil {
		if cl.present.Len() == uint64(cl.since.Messages) {
			return nil, ""
		}
		return nil, "expunges without QRESYNC need the known messages"
	}
	for _, uid := range cl.knownUIDs() {
		if uid > last {
			continue
		}
		if (qres && cl.vanished.Contains(uid)) || (!qres && !cl.present.Contains(uid)) {
			uids = append(uids, uid)
		}
	}
	return uids, ""
}

func (cl *changeListing) emit(kind mail.ChangeKind, e mail.Envelope) error {
	if err := cl.fn(mail.Change{Kind: kind, Envelope: e}); err != nil {
		return fnError{err}
	}
	return nil
}

// stringFlags converts flags as toFlags does, spelling the well-known
// ones as imapclient does (it matches them case-insensitively), so that a
// change listing and List agree on "\seen" and "\Seen".
func stringFlags(in []string) []mail.Flag {
	fl := make([]imap.Flag, len(in))
	for i, f := range in {
		fl[i] = imap.Flag(f)
		if c, ok := canonFlags[strings.ToLower(f)]; ok {
			fl[i] = c
		}
	}
	return toFlags(fl)
}

// canonFlags are the flags imapclient spells its own way (go-imap v2
// internal.canonicalFlag), by their lower-case form.
var canonFlags = func() map[string]imap.Flag {
	m := map[string]imap.Flag{}
	for _, f := range []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft,
		imap.FlagForwarded, imap.FlagMDNSent, imap.FlagJunk, imap.FlagNotJunk, imap.FlagPhishing, imap.FlagImportant} {
		m[strings.ToLower(string(f))] = f
	}
	return m
}()
