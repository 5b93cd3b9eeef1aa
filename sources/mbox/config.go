package mbox

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// ParseURL parses mbox:/path, mbox:///path, mbox:relative or mbox:~/path
// (see mail.LocalPath) into the folder's absolute path. The source takes no
// query option, so any is refused.
func ParseURL(u *url.URL) (string, error) {
	if u.Scheme != "mbox" {
		return "", &mail.ConfigError{Msg: fmt.Sprintf("mbox: scheme %q is not mbox", u.Scheme)}
	}
	if q := u.Query(); len(q) > 0 {
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return "", &mail.ConfigError{Msg: fmt.Sprintf("%s: unknown option %s", mail.Redact(u), strings.Join(keys, ", ")), Hint: "an mbox source takes no options"}
	}
	return mail.LocalPath(u)
}

// DirHint explains what an mbox: path must be when it names a file.
const DirHint = "an mbox endpoint is a folder holding one <mailbox>.mbox file per mailbox: to read a single file, move it into a folder as INBOX.mbox"

// Register adds the "mbox" source scheme to r.
func Register(r *mail.Registry) {
	r.Add(mail.Factory{Scheme: "mbox", Kind: mail.KindLocal, Source: mail.NewSource(ParseURL, New), DirHint: DirHint})
}
