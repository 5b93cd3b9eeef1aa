package imap

import (
	"context"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// statusesWithIDs is FolderStatuses on a server that offers OBJECTID (RFC
// 8474): the statuses with each folder's MAILBOXID, which a two-way sync
// follows a folder's rename by. imapclient (go-imap v2 beta.8) does not
// parse MAILBOXID, so they are asked on the raw connection of the change
// listing (imapconn.Session.StatusAll asks it where OBJECTID is offered);
// a server without OBJECTID keeps the one-login path of status.go.
func (s *Source) statusesWithIDs(ctx context.Context, boxes []string, byServer map[string]string) (map[string]mail.FolderStatus, error) {
	out := make(map[string]mail.FolderStatus, len(boxes))
	err := s.withRaw(ctx, "status", !s.raw.on, func(sess *imapconn.Session) error {
		sts, err := sess.StatusAll(boxes)
		condstore := sess.Has("CONDSTORE")
		for box, st := range sts {
			out[byServer[box]] = mail.FolderStatus{
				UIDValidity: st.UIDValidity, UIDNext: st.UIDNext, Messages: st.Messages,
				HighestModSeq: st.HighestModSeq, NoModSeq: condstore && st.HighestModSeq == 0,
				MailboxID: st.MailboxID,
			}
		}
		return err
	})
	return out, err
}
