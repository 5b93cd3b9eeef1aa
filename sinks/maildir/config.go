package maildir

import (
	"context"
	"net/url"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// Config is a parsed maildir: destination URL; it is the source's Config
// (maildirfmt.Config), as both take the same URL.
type Config = maildirfmt.Config

// ParseURL parses a maildir: URL (see maildirfmt.ParseURL).
func ParseURL(u *url.URL) (Config, error) { return maildirfmt.ParseURL(u) }

// Register adds the "maildir" sink scheme to r.
func Register(r *mail.Registry) {
	r.AddSink("maildir", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Sink, error) {
		c, err := ParseURL(u)
		if err != nil {
			return nil, err
		}
		return New(ctx, c.Root, o)
	})
}
