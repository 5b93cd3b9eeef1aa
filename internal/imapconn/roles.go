package imapconn

import (
	"strings"

	imap "github.com/emersion/go-imap/v2"
)

// SpecialUse returns the RFC 6154 role a names, in its canonical spelling,
// or "".
func SpecialUse(a imap.MailboxAttr) string {
	for _, r := range []imap.MailboxAttr{imap.MailboxAttrAll, imap.MailboxAttrArchive, imap.MailboxAttrDrafts,
		imap.MailboxAttrFlagged, imap.MailboxAttrJunk, imap.MailboxAttrSent, imap.MailboxAttrTrash} {
		if strings.EqualFold(string(a), string(r)) {
			return string(r)
		}
	}
	return ""
}
