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

// dirHint explains what a maildir: path must be when it names a file.
const dirHint = "a maildir endpoint is a directory (holding cur/, new/ and tmp/)"

// Register adds the "maildir" sink scheme to r. The sink keeps each
// message's delivery key in its file name, so a lost checkpoint can be
// rebuilt from it (KeepsKeys).
func Register(r *mail.Registry) {
	open := func(ctx context.Context, c Config, o *mail.OpenOptions) (*Sink, error) { return New(ctx, c.Root, o) }
	r.Add(mail.Factory{Scheme: "maildir", Kind: mail.KindLocal, Sink: mail.NewSink(ParseURL, open), DirHint: dirHint, KeepsKeys: true})
}
