package maildir

import (
	"context"
	"net/url"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// Config is a parsed maildir: source URL (maildirfmt.Config).
type Config = maildirfmt.Config

// ParseURL parses maildir:/path, maildir:///path, maildir:relative or
// maildir:~/path (see maildirfmt.ParseURL).
func ParseURL(u *url.URL) (Config, error) { return maildirfmt.ParseURL(u) }

// Register adds the "maildir" source scheme to r.
func Register(r *mail.Registry) {
	r.AddSource("maildir", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Source, error) {
		c, err := ParseURL(u)
		if err != nil {
			return nil, err
		}
		return New(ctx, c.Root, o)
	})
}
