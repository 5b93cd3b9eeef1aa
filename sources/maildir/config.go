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

// DirHint explains what a maildir: path must be when it names a file.
const DirHint = "a maildir endpoint is a directory (holding cur/, new/ and tmp/)"

// Register adds the "maildir" source scheme to r.
func Register(r *mail.Registry) {
	open := func(ctx context.Context, c Config, o *mail.OpenOptions) (*Source, error) { return New(ctx, c.Root, o) }
	r.Add(mail.Factory{Scheme: "maildir", Kind: mail.KindLocal, Source: mail.NewSource(ParseURL, open), DirHint: DirHint})
}
