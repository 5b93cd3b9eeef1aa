package imap

import (
	"context"
	"sort"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.WriteProver = (*Source)(nil)

// ProveOwnWrites implements mail.WriteProver for a source sharing its
// account's pool (a two-way sync): the pool logs what the side's source
// and sink wrote, as the server answered it, and the check runs on the
// change listing's session, every mailbox in one round trip
// (imapconn.Session.ProveOwnWrites). Without a pool nothing is logged and
// nothing proved.
func (s *Source) ProveOwnWrites(ctx context.Context, since map[string]mail.FolderStatus) (map[string]mail.FolderStatus, error) {
	out := map[string]mail.FolderStatus{}
	if s.pool == nil {
		return out, nil
	}
	var ps []imapconn.OwnProof
	names := map[string]string{} // server name -> mailbox
	for name, st := range since {
		box, ok := s.known(name)
		if !ok || st.NoModSeq || !s.pool.Written(box) {
			continue
		}
		ps = append(ps, imapconn.OwnProof{Box: box, Messages: st.Messages,
			Mark: imapconn.Mark{UIDValidity: st.UIDValidity, UIDNext: st.UIDNext, HighestModSeq: st.HighestModSeq}})
		names[box] = name
	}
	if len(ps) == 0 {
		return out, nil
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Box < ps[j].Box })
	var got map[string]imapconn.Proved
	err := s.withSession(ctx, "prove own writes", func(sess *imapconn.Session) error {
		var err error
		got, err = sess.ProveOwnWrites(s.pool, ps)
		return err
	})
	if err != nil {
		return nil, err
	}
	for box, p := range got {
		out[names[box]] = mail.FolderStatus{UIDValidity: p.UIDValidity, UIDNext: p.UIDNext, Messages: p.Messages, HighestModSeq: p.HighestModSeq}
	}
	return out, nil
}

var _ mail.FolderWriteProver = (*Source)(nil)

// ProveFolderWrites implements mail.FolderWriteProver on the shared
// pool's session, where the folder's writes left the folder selected
// (imapconn.Session.ProveSelected: a STATUS and a UID FETCH CHANGEDSINCE
// there, and the SELECT of next in the same round trip, also when
// nothing is to be proved). Without a pool, or with the folder not open
// there, nothing is proved now.
func (s *Source) ProveFolderWrites(ctx context.Context, mailbox string, since mail.FolderStatus, next string) (mail.FolderStatus, bool, error) {
	if s.pool == nil {
		return mail.FolderStatus{}, false, nil
	}
	box, known := s.known(mailbox)
	nextBox := ""
	if next != "" {
		nextBox, _ = s.known(next)
	}
	if nextBox == "" && (!known || since.NoModSeq || !s.pool.Written(box)) {
		return mail.FolderStatus{}, false, nil
	}
	pr := imapconn.OwnProof{Box: box, Messages: since.Messages,
		Mark: imapconn.Mark{UIDValidity: since.UIDValidity, UIDNext: since.UIDNext, HighestModSeq: since.HighestModSeq}}
	var got imapconn.Proved
	ok := false
	err := s.withPooled(ctx, func(sess *imapconn.Session) error {
		var err error
		got, ok, err = sess.ProveSelected(s.pool, pr, nextBox)
		return err
	})
	if err != nil || !ok || !known {
		return mail.FolderStatus{}, false, err
	}
	return mail.FolderStatus{UIDValidity: got.UIDValidity, UIDNext: got.UIDNext, Messages: got.Messages, HighestModSeq: got.HighestModSeq}, true, nil
}
