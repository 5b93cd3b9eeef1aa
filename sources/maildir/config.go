package maildir

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// Config is a parsed maildir: endpoint URL.
type Config struct {
	// Root is the absolute path of the Maildir++ root (INBOX).
	Root string
}

// String returns the URL form of c.
func (c Config) String() string { return "maildir://" + c.Root }

// ParseURL parses maildir:/path, maildir:///path, maildir:relative or
// maildir:~/path (see mail.LocalPath). No query option is defined yet, so any
// is refused.
func ParseURL(u *url.URL) (Config, error) {
	if u.Scheme != "maildir" {
		return Config{}, &mail.ConfigError{Msg: fmt.Sprintf("maildir: scheme %q is not maildir", u.Scheme)}
	}
	if q := u.Query(); len(q) > 0 {
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return Config{}, &mail.ConfigError{Msg: fmt.Sprintf("%s: unknown option %s", mail.Redact(u), strings.Join(keys, ", ")), Hint: "maildir URLs take no options"}
	}
	root, err := mail.LocalPath(u)
	if err != nil {
		return Config{}, err
	}
	return Config{Root: root}, nil
}

// DirHint explains what a maildir: path must be when it names a file.
const DirHint = "a maildir endpoint is a directory (holding cur/, new/ and tmp/)"

// Register adds the "maildir" source scheme to r.
func Register(r *mail.Registry) {
	open := func(ctx context.Context, c Config, o *mail.OpenOptions) (*Source, error) { return New(ctx, c.Root, o) }
	r.Add(mail.Factory{Scheme: "maildir", Kind: mail.KindLocal, Source: mail.NewSource(ParseURL, open), DirHint: DirHint})
}
