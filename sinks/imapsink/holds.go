package imapsink

import (
	"context"
	"fmt"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.Holder = (*Sink)(nil)

// Holds implements mail.Holder by the final IDs the sink returned: EXAMINE
// the folder, then one UID SEARCH for every UID of stored. A message is
// held while its UIDVALIDITY is still the folder's and the server still
// lists its UID (a message the user deleted or moved is not). A folder
// that does not exist holds nothing.
func (s *Sink) Holds(ctx context.Context, mailbox string, stored []mail.Stored) ([]bool, error) {
	op := fmt.Sprintf("holds %s", mailbox)
	out := make([]bool, len(stored))
	if len(stored) == 0 {
		return out, nil
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	c, done, err := s.control(ctx)
	if err != nil {
		return nil, err
	}
	sel, err := c.Select(s.boxName(mailbox), &imapv2.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		if isNo(err) && ctx.Err() == nil {
			done(true)
			return out, nil
		}
		done(false)
		return nil, s.ctlErr(ctx, op, err)
	}
	var set imapv2.UIDSet
	for _, st := range stored {
		if uidv, uid, ok := parseID(st.ID); ok && uidv == sel.UIDValidity {
			set.AddNum(imapv2.UID(uid))
		}
	}
	if len(set) == 0 {
		done(true)
		return out, nil
	}
	sd, err := c.UIDSearch(&imapv2.SearchCriteria{UID: []imapv2.UIDSet{set}}, nil).Wait()
	if err != nil {
		done(isNo(err))
		return nil, s.ctlErr(ctx, op, err)
	}
	done(true)
	found := map[uint32]bool{}
	for _, u := range sd.AllUIDs() {
		found[uint32(u)] = true
	}
	for i, st := range stored {
		uidv, uid, ok := parseID(st.ID)
		out[i] = ok && uidv == sel.UIDValidity && found[uid]
	}
	return out, nil
}

var _ mail.AnyHolder = (*Sink)(nil)

// HoldsAny implements mail.AnyHolder with one EXAMINE on the control
// connection: the copy engine asks it about every folder it skipped as
// unchanged, and listing the folder instead would cost what the folder
// holds. EXAMINE, not STATUS: the control connection may have the folder
// selected already, and a server may answer STATUS on the selected
// mailbox from that session's stale view (Dovecot does: the conformance
// subtest saw 0 messages after an APPEND on another connection). A folder
// that does not exist (NO) holds nothing.
func (s *Sink) HoldsAny(ctx context.Context, mailbox string) (bool, error) {
	if err := s.connect(ctx); err != nil {
		return false, err
	}
	c, done, err := s.control(ctx)
	if err != nil {
		return false, err
	}
	sel, err := c.Select(s.boxName(mailbox), &imapv2.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		if isNo(err) && ctx.Err() == nil {
			done(true)
			return false, nil
		}
		done(false)
		return false, s.ctlErr(ctx, "examine "+mailbox, err)
	}
	done(true)
	return sel.NumMessages > 0, nil
}
