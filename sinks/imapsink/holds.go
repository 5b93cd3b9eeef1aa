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
