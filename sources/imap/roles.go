package imap

import (
	"context"
	"errors"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
)

// MailboxRoles implements mail.RoleLister: it maps each selectable mailbox
// (named as Mailboxes names it) that carries a special-use attribute
// (RFC 6154: \Sent, \Drafts, \Trash, \Junk, \Archive, \All, \Flagged) to
// that attribute. It asks with LIST RETURN (SPECIAL-USE) when the server
// has SPECIAL-USE, and reads the attributes of a plain LIST otherwise (some
// servers send them anyway).
func (s *Source) MailboxRoles(ctx context.Context) (map[string]string, error) {
	cn, done, err := s.control(ctx)
	if err != nil {
		return nil, err
	}
	stop := watch(ctx, cn)
	var opts *imap.ListOptions
	if cn.c.Caps().Has(imap.CapSpecialUse) {
		opts = &imap.ListOptions{ReturnSpecialUse: true}
	}
	byServer := map[string]string{}
	lc := cn.c.List("", "*", opts)
	for d := lc.Next(); d != nil; d = lc.Next() {
		if hasAttr(d.Attrs, imap.MailboxAttrNoSelect) || hasAttr(d.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		for _, a := range d.Attrs {
			if role := imapconn.SpecialUse(a); role != "" {
				byServer[d.Mailbox] = role
			}
		}
	}
	err = lc.Close()
	ok := stop()
	if err != nil || !ok {
		if err == nil {
			err = errors.New("connection closed")
		}
		keep, err := s.wrap(ctx, "list roles "+s.cfg.Ident(), err)
		done(keep && ok)
		return nil, err
	}
	done(true)
	// Name the mailboxes as Mailboxes does (prefix and collisions included).
	boxes, err := s.refresh(ctx)
	if err != nil {
		return nil, err
	}
	roles := map[string]string{}
	for name, box := range boxes {
		if role, ok := byServer[box]; ok {
			roles[name] = role
		}
	}
	return roles, nil
}
