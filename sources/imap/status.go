package imap

import (
	"context"
	"errors"
	"fmt"
	"strings"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.FolderStatuser = (*Source)(nil)

// FolderStatuses implements mail.FolderStatuser (issue 11 item 1): one
// LIST-STATUS (RFC 5819) where the server offers it, else pipelined STATUS
// commands, asking UIDVALIDITY, UIDNEXT, MESSAGES and, with CONDSTORE,
// HIGHESTMODSEQ. It runs on the control connection, the one New logged in
// with: a run whose folders did not move then costs one login, not two.
// STATUS needs no QRESYNC (RFC 7162 §3.1.2), so imapclient can ask it;
// ListChanges keeps its raw connection (delta.go), dialled only when a
// folder moved. A mailbox the server does not have is absent from the
// result.
func (s *Source) FolderStatuses(ctx context.Context, mailboxes []string) (map[string]mail.FolderStatus, error) {
	byServer := make(map[string]string, len(mailboxes))
	boxes := make([]string, 0, len(mailboxes))
	for _, name := range mailboxes {
		box, err := s.serverName(ctx, name)
		if errors.Is(err, mail.ErrMailboxNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		byServer[box] = name
		boxes = append(boxes, box)
	}
	out := make(map[string]mail.FolderStatus, len(boxes))
	if len(boxes) == 0 {
		return out, nil
	}
	if s.raw.on { // New logged in on the raw session: ask there (rawfirst.go)
		if sts, ok := s.prefetchedStatuses(boxes, byServer); ok {
			return sts, nil
		}
		return s.statusesWithIDs(ctx, boxes, byServer)
	}
	cn, done, err := s.control(ctx)
	if err != nil {
		return nil, err
	}
	if s.has(cn, imap.CapObjectID) { // MAILBOXID, which imapclient does not parse: objectid.go
		done(true)
		return s.statusesWithIDs(ctx, boxes, byServer)
	}
	stop := watch(ctx, cn)
	sts, keep, err := s.statusAll(ctx, cn, boxes)
	if !stop() {
		keep = false
		if err == nil {
			err = fmt.Errorf("imap: status %s: %w", s.cfg.Ident(), ctx.Err())
		}
	}
	done(keep)
	if err != nil {
		return nil, err
	}
	condstore := s.has(cn, imap.CapCondStore)
	for box, st := range sts {
		out[byServer[box]] = folderStatus(st, condstore)
	}
	return out, nil
}

// has reports whether the server offers c on cn, unless a test hides it
// (delta.ignore, which hides it from the raw connection too).
func (s *Source) has(cn *conn, c imap.Cap) bool {
	return cn.c.Caps().Has(c) && !s.dl.ignore[strings.ToUpper(string(c))]
}

// statusAll asks the status of boxes (server names) on cn in one round
// trip. keep says whether cn is still usable.
func (s *Source) statusAll(ctx context.Context, cn *conn, boxes []string) (map[string]*imap.StatusData, bool, error) {
	if keep, err := s.leaveSelected(ctx, cn); err != nil {
		return nil, keep, err
	}
	opts := &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true, HighestModSeq: s.has(cn, imap.CapCondStore)}
	enabling := s.enableCondStore(cn)
	var (
		out  map[string]*imap.StatusData
		keep bool
		err  error
	)
	if s.has(cn, imap.CapListStatus) && len(boxes) > 1 {
		out, keep, err = s.listStatus(ctx, cn, boxes, opts)
	} else {
		out, keep, err = s.pipedStatus(ctx, cn, boxes, opts)
	}
	if enabling != nil {
		// Its answer (NO: no such mailbox) says nothing; it was sent.
		var ie *imap.Error
		if _, werr := enabling.Wait(); werr == nil || errors.As(werr, &ie) {
			cn.condstore = true
		}
	}
	return out, keep, err
}

// condStoreProbe is the mailbox enableCondStore asks the status of: any
// name does, one that exists only costs its status.
const condStoreProbe = "mailferry-condstore-probe"

// enableCondStore enables CONDSTORE on cn once, where the server offers
// it, with the STATUS (HIGHESTMODSEQ) of a mailbox that is not there:
// RFC 7162 §3.1 makes that a CONDSTORE enabling command, and imapclient
// refuses ENABLE CONDSTORE. It matters on Dovecot: it keeps a mod-sequence
// per message only in mailboxes opened by a session with CONDSTORE
// enabled, and its first STATUS (HIGHESTMODSEQ) opens the mailbox before
// enabling it. Without a mod-sequence per message, the first FETCH
// CHANGEDSINCE after a change would list every message of the folder
// (ListChanges), so the statuses that follow this one, and the EXAMINE of
// a full listing on cn, turn it on. QRESYNC is never enabled on cn (see
// internal/imapconn/delta.go); imapclient reads the MODSEQ items and
// HIGHESTMODSEQ codes CONDSTORE adds. It returns the command in flight,
// or nil when there is nothing to enable.
func (s *Source) enableCondStore(cn *conn) *imapclient.StatusCommand {
	if cn.condstore || !s.has(cn, imap.CapCondStore) {
		return nil
	}
	return cn.c.Status(condStoreProbe, &imap.StatusOptions{HighestModSeq: true})
}

// leaveSelected leaves the mailbox selected on cn, if any: STATUS of the
// selected mailbox may answer from the session's view, not the mailbox's
// (Dovecot does). CLOSE after EXAMINE expunges nothing.
func (s *Source) leaveSelected(ctx context.Context, cn *conn) (bool, error) {
	if cn.box == "" && cn.c.State() != imap.ConnStateSelected {
		return true, nil
	}
	leave := cn.c.UnselectAndExpunge
	if s.has(cn, imap.CapUnselect) {
		leave = cn.c.Unselect
	}
	if err := leave().Wait(); err != nil {
		return s.wrap(ctx, "unselect "+s.cfg.Ident(), err)
	}
	cn.box = ""
	return true, nil
}

// pipedStatus sends one STATUS per mailbox, every one before the first
// answer is read.
func (s *Source) pipedStatus(ctx context.Context, cn *conn, boxes []string, opts *imap.StatusOptions) (map[string]*imap.StatusData, bool, error) {
	cmds := make([]*imapclient.StatusCommand, len(boxes))
	for i, b := range boxes {
		cmds[i] = cn.c.Status(b, opts)
	}
	out := make(map[string]*imap.StatusData, len(boxes))
	var first error
	keep := true
	for i, c := range cmds {
		data, err := c.Wait()
		switch {
		case err == nil && data.UIDValidity != 0:
			out[boxes[i]] = data
		case err == nil || missingBox(err):
			// No STATUS came back (status unknown: the folder is listed in
			// full), or the server does not have the mailbox.
		case first == nil:
			keep, first = s.wrap(ctx, fmt.Sprintf("status %q", boxes[i]), err)
		}
	}
	if first != nil {
		return nil, keep, first
	}
	return out, true, nil
}

// listStatus asks every mailbox's status with one LIST "" "*" RETURN
// (STATUS ...) and keeps those of boxes.
func (s *Source) listStatus(ctx context.Context, cn *conn, boxes []string, opts *imap.StatusOptions) (map[string]*imap.StatusData, bool, error) {
	want := make(map[string]bool, len(boxes))
	for _, b := range boxes {
		want[b] = true
	}
	out := make(map[string]*imap.StatusData, len(boxes))
	lc := cn.c.List("", "*", &imap.ListOptions{ReturnStatus: opts})
	for d := lc.Next(); d != nil; d = lc.Next() {
		if d.Status != nil && want[d.Mailbox] && d.Status.UIDValidity != 0 {
			out[d.Mailbox] = d.Status
		}
	}
	if err := lc.Close(); err != nil {
		keep, err := s.wrap(ctx, "list-status "+s.cfg.Ident(), err)
		return nil, keep, err
	}
	return out, true, nil
}

// missingBox reports whether err, the answer to STATUS, says that the
// mailbox does not exist: a NO without a response code, or with
// NONEXISTENT (RFC 5530) or TRYCREATE. A NO with another code
// (UNAVAILABLE, SERVERBUG...) is trouble, not absence: the run could take
// an absent folder for a deleted one.
func missingBox(err error) bool {
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
		return false
	}
	switch ie.Code {
	case "", imap.ResponseCodeNonExistent, imap.ResponseCodeTryCreate:
		return true
	}
	return false
}

// folderStatus converts a STATUS reply. With CONDSTORE, HIGHESTMODSEQ 0 is
// the STATUS form of NOMODSEQ (RFC 7162 §3.1.2.2).
func folderStatus(st *imap.StatusData, condstore bool) mail.FolderStatus {
	var n uint32
	if st.NumMessages != nil {
		n = *st.NumMessages
	}
	return mail.FolderStatus{
		UIDValidity: st.UIDValidity, UIDNext: uint32(st.UIDNext), Messages: n,
		HighestModSeq: st.HighestModSeq, NoModSeq: condstore && st.HighestModSeq == 0,
	}
}
