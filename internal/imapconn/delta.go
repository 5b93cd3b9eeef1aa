package imapconn

// The incremental listing's protocol side (issue 11 item 2): STATUS for
// many mailboxes in one round trip (LIST-STATUS, RFC 5819, else pipelined
// STATUS), and the change listing of one mailbox: EXAMINE with QRESYNC
// (VANISHED (EARLIER), RFC 7162 §3.2.5), FETCH CHANGEDSINCE (CONDSTORE),
// UID FETCH last+1:* for new messages, UID SEARCH for expunges without
// QRESYNC.
//
// Why the raw path: go-imap v2 beta.8 drops the connection on a VANISHED
// response, refuses ENABLE QRESYNC and discards the [MODIFIED] response
// code, so QRESYNC must never be enabled on an imapclient connection. The
// upstream change that would let this move to imapclient is
// emersion/go-imap pull request #757 ("imapclient: support QRESYNC": it
// parses VANISHED (EARLIER) into a UnilateralDataHandler.Vanished callback
// and adds the FETCH VANISHED modifier; the SELECT (QRESYNC ...) parameter
// is left to a follow-up, and #720 is an earlier attempt at the same
// parser). Once a release has both and lets ENABLE QRESYNC through, EXAMINE
// and FETCH here can become imapclient calls; STATUS HIGHESTMODSEQ and
// CHANGEDSINCE imapclient already has.

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Session drives a RawConn for the incremental listing: it tags and
// pipelines commands, parses every response, and follows what the server
// says unasked (EXISTS, EXPUNGE, VANISHED) about the selected mailbox. It
// is not safe for concurrent use.
type Session struct {
	rc  *RawConn
	w   *bufio.Writer
	tag int
	// Ignore hides capabilities from the session (upper case), as if the
	// server did not offer them: tests of the fallbacks, and a way out
	// around a server whose extension misbehaves.
	Ignore map[string]bool
	qres   bool // ENABLE QRESYNC succeeded
	// qresLater: ENABLE QRESYNC is to go out with the next Examine, in
	// the same round trip (EnableQResyncLater).
	qresLater bool
	// selected is set while a mailbox is EXAMINEd: STATUS on it would
	// answer from the session's view (Dovecot does), not the mailbox's.
	selected bool
	// cur is the mailbox Examine or SelectCondStore opened, while it stays
	// selected: the next command there, perhaps by another taker of a
	// pooled session, needs no SELECT or EXAMINE of its own.
	cur current
	// doneStatus holds the tagged answers of the last run, by command:
	// StoreIf reads its [MODIFIED] code there.
	doneStatus []Response

	// keep is how much of a literal read keeps: sessKeep (a header field)
	// unless FetchBodies is reading whole messages.
	keep int

	// What the server said about the selected mailbox since EXAMINE.
	exists   uint32
	expunged bool   // a sequence-number EXPUNGE arrived (no QRESYNC)
	vanished UIDSet // VANISHED, EARLIER or not
}

// Session limits: a response's text (a SEARCH of 100,000 UIDs fits), a
// literal read past, a literal kept (a Message-ID header field).
const (
	sessLineMax = 4 << 20
	sessLitMax  = 16 << 20
	sessKeep    = 8 << 10
	// pipeMax is the most commands in flight, so that neither side's
	// buffers fill while the other is not reading.
	pipeMax = 64
)

// NewSession starts a session on rc; ignore lists capabilities to act as
// if the server lacked (nil for none).
func NewSession(rc *RawConn, ignore map[string]bool) *Session {
	return &Session{rc: rc, w: bufio.NewWriter(rc.Conn), Ignore: ignore}
}

// Has reports whether the server offers capability c and it is not ignored.
func (s *Session) Has(c string) bool {
	c = strings.ToUpper(c)
	return s.rc.Has(c) && !s.Ignore[c]
}

// QResync reports whether QRESYNC is enabled on the session.
func (s *Session) QResync() bool { return s.qres }

// CommandError is a NO or BAD answer to one command.
type CommandError struct {
	Cmd  string
	Resp Response
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: %s", strings.SplitN(e.Cmd, " ", 2)[0], Clip(e.Resp.String(), 200))
}

// Untagged is one untagged response, parsed.
type Untagged struct {
	Num    uint32  // the number before the keyword ("* 3 FETCH"), 0 if none
	Kind   string  // the keyword, upper case
	Args   []Value // the values after the keyword (not for status responses)
	Status Response
}

// run sends cmds, at most pipeMax in flight, and hands every untagged
// response to fn. It returns each command's NO or BAD as a *CommandError
// in errs (nil for OK), and err for a failure of the connection or of fn.
func (s *Session) run(cmds []string, fn func(Untagged) error) (errs []error, err error) {
	var each func(int, Untagged) error
	if fn != nil {
		each = func(_ int, u Untagged) error { return fn(u) }
	}
	return s.runIndexed(cmds, each)
}

// runIndexed is run, telling fn which command an untagged response
// belongs to: the oldest one not yet answered. A server runs pipelined
// commands that select a mailbox, or depend on the one selected, one
// after the other (RFC 9051 §5.5), so what it says between two tagged
// answers is the later command's.
func (s *Session) runIndexed(cmds []string, fn func(int, Untagged) error) (errs []error, err error) {
	errs = make([]error, len(cmds))
	s.doneStatus = make([]Response, len(cmds))
	tags := map[string]int{}
	sent, done, first := 0, 0, 0
	for done < len(cmds) {
		for sent < len(cmds) && sent-done < pipeMax {
			s.tag++
			t := "D" + strconv.Itoa(s.tag)
			tags[t] = sent
			_, _ = s.w.WriteString(t + " " + cmds[sent] + "\r\n") // bufio: an error sticks and Flush reports it
			sent++
		}
		if err := s.w.Flush(); err != nil {
			return errs, err
		}
		tag, u, err := s.read()
		if err != nil {
			return errs, err
		}
		if tag == "*" {
			if err := s.track(u); err != nil {
				return errs, err
			}
			if fn != nil {
				for first < len(cmds)-1 && s.doneStatus[first].Kind != "" {
					first++ // the oldest command not answered yet
				}
				if err := fn(first, u); err != nil {
					return errs, err
				}
			}
			continue
		}
		i, ok := tags[tag]
		if !ok {
			return errs, fmt.Errorf("imap: answer with unknown tag %q", Clip(tag, 20))
		}
		delete(tags, tag)
		done++
		s.doneStatus[i] = u.Status
		if u.Status.Kind != "OK" {
			errs[i] = &CommandError{Cmd: cmds[i], Resp: u.Status}
		}
	}
	return errs, nil
}

// run1 runs one command; a NO or BAD is its error.
func (s *Session) run1(cmd string, fn func(Untagged) error) error {
	errs, err := s.run([]string{cmd}, fn)
	if err != nil {
		return err
	}
	return errs[0]
}

// read reads and parses one response; tag is "*" for untagged ones.
func (s *Session) read() (tag string, u Untagged, err error) {
	keep := s.keep
	if keep == 0 {
		keep = sessKeep
	}
	b, err := ReadFull(s.rc.R, sessLineMax, sessLitMax, keep)
	if err != nil {
		return "", u, err
	}
	return parseResponse(b)
}

// parseResponse splits one response as ReadFull returns it.
func parseResponse(b []byte) (tag string, u Untagged, err error) {
	tag, rest, _ := strings.Cut(string(b), " ")
	if tag == "+" {
		return "", u, errors.New("imap: unexpected continuation request")
	}
	word, after, _ := strings.Cut(rest, " ")
	if n, err := strconv.ParseUint(word, 10, 32); err == nil && tag == "*" {
		u.Num = uint32(n)
		word, after, _ = strings.Cut(after, " ")
	}
	u.Kind = strings.ToUpper(word)
	switch u.Kind {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		u.Status = ParseResponse("* " + rest)
		if tag != "*" && tag != "" {
			u.Status = ParseResponse(tag + " " + rest)
		}
		return tag, u, nil
	}
	if tag != "*" {
		return "", u, fmt.Errorf("imap: bad tagged answer %q", Clip(string(b), 80))
	}
	u.Args, err = Parse([]byte(after))
	if err != nil {
		return "", u, fmt.Errorf("imap: %s response: %w", u.Kind, err)
	}
	return tag, u, nil
}

// track follows the selected mailbox through unilateral responses.
func (s *Session) track(u Untagged) error {
	switch u.Kind {
	case "BYE":
		return fmt.Errorf("imap: server closed the connection: %s", Clip(u.Status.Text, 200))
	case "EXISTS":
		s.exists = u.Num
	case "EXPUNGE":
		s.expunged = true
		if s.exists > 0 {
			s.exists--
		}
	case "VANISHED":
		set, earlier, err := Vanished(u.Args)
		if err != nil {
			return err
		}
		s.vanished = s.vanished.Union(set)
		if !earlier {
			s.exists -= uint32(min(uint64(s.exists), set.Len()))
		}
	case "OK":
		if u.Status.Code == "CLOSED" {
			// QRESYNC: what came before belongs to the mailbox closed (RFC
			// 7162 §3.2.11).
			s.exists, s.expunged, s.vanished = 0, false, nil
		}
	}
	return nil
}

// EnableQResync sends ENABLE QRESYNC when the server offers it; QResync
// then reports whether it took. Call it before any EXAMINE.
func (s *Session) EnableQResync() error {
	if s.qres || !s.Has("QRESYNC") || !s.Has("ENABLE") {
		return nil
	}
	s.qresLater = false
	return s.run1("ENABLE QRESYNC", func(u Untagged) error {
		s.takeEnabled(u)
		return nil
	})
}

// takeEnabled notes an ENABLED response naming QRESYNC.
func (s *Session) takeEnabled(u Untagged) {
	if u.Kind != "ENABLED" {
		return
	}
	for _, v := range u.Args {
		if strings.EqualFold(v.Text, "QRESYNC") {
			s.qres = true
		}
	}
}

// EnableQResyncLater is EnableQResync sent with the next Examine, in one
// round trip instead of two. Examine asks for QRESYNC's report only once
// the ENABLE answered OK and named QRESYNC; if it did not, the EXAMINE
// that assumed it is sent again without.
func (s *Session) EnableQResyncLater() {
	if !s.qres && s.Has("QRESYNC") && s.Has("ENABLE") {
		s.qresLater = true
	}
}

// StatusAll asks UIDVALIDITY, UIDNEXT, MESSAGES (and HIGHESTMODSEQ when
// CONDSTORE is offered, MAILBOXID when OBJECTID is) for each of boxes
// (server names) in one round
// trip: one LIST-STATUS where offered, else pipelined STATUS commands. A
// mailbox the server does not have is absent from the result; any other
// refusal is an error.
func (s *Session) StatusAll(boxes []string) (map[string]Status, error) {
	items := "UIDVALIDITY UIDNEXT MESSAGES"
	if s.Has("CONDSTORE") {
		items += " HIGHESTMODSEQ"
	}
	if s.Has("OBJECTID") {
		items += " MAILBOXID"
	}
	want := make(map[string]bool, len(boxes))
	for _, b := range boxes {
		want[b] = true
	}
	out := make(map[string]Status, len(boxes))
	collect := func(u Untagged) error {
		if u.Kind != "STATUS" {
			return nil
		}
		st, err := ParseStatus(u.Args)
		if err != nil {
			return err
		}
		if want[st.Mailbox] {
			out[st.Mailbox] = st
		}
		return nil
	}
	var cmds []string
	if s.selected {
		cmds = append(cmds, s.unselect())
		s.selected, s.cur = false, current{}
	}
	if s.Has("LIST-STATUS") && len(boxes) > 1 {
		cmds = append(cmds, `LIST "" "*" RETURN (STATUS (`+items+`))`)
	} else {
		for _, b := range boxes {
			cmds = append(cmds, "STATUS "+Quote(EncodeMUTF7(b))+" ("+items+")")
		}
	}
	errs, err := s.run(cmds, collect)
	if err != nil {
		return nil, err
	}
	for i, e := range errs {
		if e != nil && !missing(cmds[i], e) {
			return nil, e
		}
	}
	return out, nil
}

// missing reports whether err, the answer to cmd, says that the mailbox
// does not exist: a NO to STATUS without a response code, or with
// NONEXISTENT (RFC 5530) or TRYCREATE. A NO with another code
// (UNAVAILABLE, SERVERBUG...) is trouble, not absence: a caller could
// take an absent folder for a deleted one.
func missing(cmd string, err error) bool {
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Resp.Kind != "NO" || !strings.HasPrefix(cmd, "STATUS ") {
		return false
	}
	switch ce.Resp.Code {
	case "", "NONEXISTENT", "TRYCREATE":
		return true
	}
	return false
}

// unselect is the command that leaves the selected mailbox: UNSELECT
// (RFC 3691), else CLOSE, which expunges nothing after EXAMINE.
func (s *Session) unselect() string {
	if s.Has("UNSELECT") {
		return "UNSELECT"
	}
	return "CLOSE"
}

// Mark is what the last complete listing of a mailbox saw.
type Mark struct {
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
}

// Selected is what EXAMINE said about a mailbox.
type Selected struct {
	UIDValidity   uint32
	UIDNext       uint32
	Exists        uint32
	HighestModSeq uint64
	NoModSeq      bool
	// Vanished and Changed are QRESYNC's report (EXAMINE with since): the
	// UIDs expunged and the messages whose flags changed since the mark.
	Vanished UIDSet
	Changed  []FetchData
	// PermanentFlags are the flags the session may store there
	// (PERMANENTFLAGS: empty after EXAMINE); Permanent says the server
	// named them (without, RFC 9051 §7.1 lets every flag be stored).
	PermanentFlags []string
	Permanent      bool
	// ReadOnly: the server answered [READ-ONLY] (EXAMINE, or a mailbox
	// this user may not change).
	ReadOnly bool
}

// current is the mailbox a Session has selected and what opening it said.
type current struct {
	box string
	rw  bool // SELECT, not EXAMINE
	sel Selected
}

// Current returns the mailbox the session has selected (Examine, else
// SelectCondStore: rw), with what opening it said; ok false when none
// is, or the session cannot tell.
func (s *Session) Current() (box string, rw bool, sel Selected, ok bool) {
	return s.cur.box, s.cur.rw, s.cur.sel, s.cur.box != ""
}

// Resume tells the session what a caller that drove its connection by
// other means (the sink's append connection) left selected: box
// read-write, as sel describes it, or "" for none (a SELECT that failed
// leaves none, RFC 9051 §6.3.2); the next taker then selects again only
// where it must.
func (s *Session) Resume(box string, sel Selected) {
	s.exists, s.expunged, s.vanished = 0, false, nil
	s.selected, s.cur = box != "", current{}
	if box != "" {
		s.cur = current{box: box, rw: true, sel: sel}
	}
}

// Examine opens box read-only. With since non-nil and QRESYNC enabled it
// asks for the changes since that mark, known UIDs 1:since.UIDNext-1
// (RFC 7162 §3.2.5); else with CONDSTORE it asks for HIGHESTMODSEQ.
func (s *Session) Examine(box string, since *Mark) (Selected, error) {
	if !s.qresLater {
		return s.examine(box, since, false)
	}
	s.qresLater = false
	sel, err := s.examine(box, since, true)
	if s.qres {
		return sel, err
	}
	var ce *CommandError
	if err != nil && !errors.As(err, &ce) || err == nil && s.examineCmd(box, since, true) == s.examineCmd(box, since, false) {
		return sel, err // the connection failed, or QRESYNC was not assumed
	}
	// ENABLE was refused or did not name QRESYNC: the EXAMINE assumed it
	// (and was refused, or answered without QRESYNC's report).
	return s.examine(box, since, false)
}

// examineCmd is the EXAMINE of box; qres: with QRESYNC's parameter when
// since allows (RFC 7162 §3.2.5).
func (s *Session) examineCmd(box string, since *Mark, qres bool) string {
	cmd := "EXAMINE " + Quote(EncodeMUTF7(box))
	switch {
	case since != nil && qres && since.HighestModSeq > 0 && since.UIDValidity > 0:
		cmd += fmt.Sprintf(" (QRESYNC (%d %d", since.UIDValidity, since.HighestModSeq)
		if since.UIDNext > 1 {
			cmd += fmt.Sprintf(" 1:%d", since.UIDNext-1)
		}
		cmd += "))"
	case s.Has("CONDSTORE"):
		cmd += " (CONDSTORE)"
	}
	return cmd
}

// examine is Examine, with ENABLE QRESYNC sent first in the same round
// trip when enable is set; an error of either command is returned.
func (s *Session) examine(box string, since *Mark, enable bool) (Selected, error) {
	var sel Selected
	cmds := []string{s.examineCmd(box, since, s.qres || enable)}
	if enable {
		cmds = []string{"ENABLE QRESYNC", cmds[0]}
	}
	s.exists, s.expunged, s.vanished = 0, false, nil
	s.selected, s.cur = false, current{} // also when EXAMINE fails (RFC 9051 §6.3.2)
	errs, err := s.run(cmds, func(u Untagged) error {
		s.takeEnabled(u)
		return sel.take(u)
	})
	if err == nil {
		err = errs[len(errs)-1] // a refused ENABLE: Examine sends the EXAMINE again
	}
	if err != nil {
		return sel, err
	}
	s.selected = true
	sel.Exists, sel.Vanished = s.exists, s.vanished
	s.vanished = nil
	s.cur = current{box: box, sel: sel}
	s.cur.sel.Vanished, s.cur.sel.Changed = nil, nil
	return sel, nil
}

// take reads one untagged response of EXAMINE.
func (sel *Selected) take(u Untagged) error {
	switch u.Kind {
	case "OK":
		if u.Status.Code == "CLOSED" {
			*sel = Selected{}
		}
		if n, ok := CodeNum(u.Status, "UIDVALIDITY"); ok {
			sel.UIDValidity = n
		}
		if n, ok := CodeNum(u.Status, "UIDNEXT"); ok {
			sel.UIDNext = n
		}
		if m, ok := ModSeqCode(u.Status); ok {
			sel.HighestModSeq, sel.NoModSeq = m, u.Status.Code == "NOMODSEQ"
		}
		if u.Status.Code == "PERMANENTFLAGS" {
			sel.PermanentFlags, sel.Permanent = strings.Fields(strings.Trim(u.Status.Args, "()")), true
		}
	case "FETCH":
		fd, err := ParseFetch(u.Num, u.Args)
		if err != nil {
			return err
		}
		if fd.UID != 0 && fd.HasFlags {
			sel.Changed = append(sel.Changed, fd)
		}
	}
	return nil
}

// Exists returns the number of messages in the selected mailbox as the
// server last said; Expunged whether a message was expunged by sequence
// number since EXAMINE (the count may then no longer match a UID listing).
func (s *Session) Exists() uint32 { return s.exists }

// Expunged reports whether an EXPUNGE arrived since EXAMINE.
func (s *Session) Expunged() bool { return s.expunged }

// TakeVanished returns the UIDs reported vanished since EXAMINE returned,
// and forgets them.
func (s *Session) TakeVanished() UIDSet {
	v := s.vanished
	s.vanished = nil
	return v
}

// FetchFlags lists UID and FLAGS of the messages set names (a UID set),
// only those changed since changedSince when it is not 0 (CHANGEDSINCE,
// RFC 7162 §3.1.4), calling fn for each.
func (s *Session) FetchFlags(set string, changedSince uint64, fn func(FetchData) error) error {
	cmd := "UID FETCH " + set + " (UID FLAGS)"
	if changedSince > 0 {
		cmd += fmt.Sprintf(" (CHANGEDSINCE %d)", changedSince)
	}
	return s.run1(cmd, fetchEach(fn))
}

// FetchNew lists the messages with UIDs from from to to (to 0: to the
// last) with what a listing needs: UID, FLAGS, INTERNALDATE, RFC822.SIZE
// and the Message-ID header field. Only messages in that range reach fn:
// "from:*" names the last message even when its UID is lower (RFC 9051
// §6.4.8).
func (s *Session) FetchNew(from, to uint32, fn func(FetchData) error) error {
	set := fmt.Sprintf("%d:*", from)
	if to != 0 {
		set = fmt.Sprintf("%d:%d", from, to)
	}
	cmd := "UID FETCH " + set + " (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
	return s.run1(cmd, fetchEach(func(fd FetchData) error {
		if fd.UID < from || (to != 0 && fd.UID > to) {
			return nil
		}
		return fn(fd)
	}))
}

// FetchNewSet is FetchNew for the UIDs of set (a caller that knows some
// of the new messages fetches the envelopes of the others only).
func (s *Session) FetchNewSet(set UIDSet, fn func(FetchData) error) error {
	cmd := "UID FETCH " + set.String() + " (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
	return s.run1(cmd, fetchEach(func(fd FetchData) error {
		if !set.Contains(fd.UID) {
			return nil
		}
		return fn(fd)
	}))
}

// FetchBodies fetches the whole messages of set (UID BODY.PEEK[]) in the
// selected mailbox, calling fn with each one's UID and Body. A body is
// read whole into memory (at most sessLitMax bytes, else the command
// fails), so the caller keeps set small: this is for the few new
// messages of a change listing, fetched on the connection that already
// has their mailbox open, instead of a second login and EXAMINE (which
// on a 50,000-message Dovecot folder costs the server 90 ms).
func (s *Session) FetchBodies(set UIDSet, fn func(FetchData) error) error {
	s.keep = sessLitMax
	defer func() { s.keep = 0 }()
	return s.run1("UID FETCH "+set.String()+" (UID BODY.PEEK[])", fetchEach(func(fd FetchData) error {
		if fd.Body == nil || !set.Contains(fd.UID) {
			return nil // a flag update the server added, or not asked for
		}
		return fn(fd)
	}))
}

func fetchEach(fn func(FetchData) error) func(Untagged) error {
	return func(u Untagged) error {
		if u.Kind != "FETCH" {
			return nil
		}
		fd, err := ParseFetch(u.Num, u.Args)
		if err != nil {
			return err
		}
		if fd.UID == 0 {
			return nil // a flag update the server sent unasked, without UID
		}
		return fn(fd)
	}
}

// searchChunk is how many UIDs one UID SEARCH covers without ESEARCH, so
// that its reply stays under sessLineMax.
const searchChunk = 100000

// SearchUIDs returns the UIDs from 1 to last the selected mailbox holds:
// UID SEARCH RETURN (ALL) with ESEARCH (RFC 4731), which answers in
// ranges, else plain UID SEARCH in pipelined chunks.
func (s *Session) SearchUIDs(last uint32) (UIDSet, error) {
	var set UIDSet
	collect := func(u Untagged) error {
		if u.Kind != "SEARCH" && u.Kind != "ESEARCH" {
			return nil
		}
		got, err := SearchUIDs(u.Kind, u.Args)
		set = set.Union(got)
		return err
	}
	if last == 0 {
		return nil, nil
	}
	if s.Has("ESEARCH") {
		return set, s.run1(fmt.Sprintf("UID SEARCH RETURN (ALL) UID 1:%d", last), collect)
	}
	var cmds []string
	for lo := uint64(1); lo <= uint64(last); lo += searchChunk {
		cmds = append(cmds, fmt.Sprintf("UID SEARCH UID %d:%d", lo, min(uint64(last), lo+searchChunk-1)))
	}
	errs, err := s.run(cmds, collect)
	if err == nil {
		err = errors.Join(errs...)
	}
	return set, err
}
