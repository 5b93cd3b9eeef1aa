package mail

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
