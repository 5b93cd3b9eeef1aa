package imap

import (
	"net/url"

	"github.com/mailferry/mailferry/internal/imapconn"
)

// The account, its URL and the connection stack are internal/imapconn's,
// shared with the IMAP sink; these names keep the source's API.
type (
	// Config is an IMAP account as an endpoint URL names it (imapconn.Config).
	Config = imapconn.Config
	// TLSMode says how a connection is protected (imapconn.TLSMode).
	TLSMode = imapconn.TLSMode
)

// The TLS modes and default ports, as in imapconn.
const (
	TLSImplicit         = imapconn.TLSImplicit
	TLSStartTLS         = imapconn.TLSStartTLS
	DefaultPortTLS      = imapconn.DefaultPortTLS
	DefaultPortStartTLS = imapconn.DefaultPortStartTLS
)

// ParseURL reads an imaps:// or imap:// URL (imapconn.ParseURL).
func ParseURL(u *url.URL) (*Config, error) { return imapconn.ParseURL(u) }
