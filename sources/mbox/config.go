package mbox

import (
	"context"
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

// Register adds the "mbox" source scheme to r.
func Register(r *mail.Registry) {
	r.AddSource("mbox", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Source, error) {
		root, err := ParseURL(u)
		if err != nil {
			return nil, err
		}
		return New(ctx, root, o)
	})
}
