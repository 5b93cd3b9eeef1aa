package mail

import "context"

// Special-use roles of mailboxes (RFC 6154 §2), as RoleLister reports them.
const (
	RoleAll     = `\All`
	RoleArchive = `\Archive`
	RoleDrafts  = `\Drafts`
	RoleFlagged = `\Flagged`
	RoleJunk    = `\Junk`
	RoleSent    = `\Sent`
	RoleTrash   = `\Trash`
)

// RoleLister is implemented by endpoints that know which mailbox serves
// which purpose (IMAP SPECIAL-USE, RFC 6154), so a copy can put the source's
// "Sent Items" into the destination's "Sent" (see sync.RoleMap).
//
// MailboxRoles maps mailbox names, spelt as the endpoint's Mailboxes, List
// or Put take them (UTF-8, '/' separators), to a role such as RoleSent.
// Mailboxes without a role are absent. It is safe for concurrent use;
// cancelling ctx returns an error wrapping ctx.Err().
type RoleLister interface {
	MailboxRoles(ctx context.Context) (map[string]string, error)
}
