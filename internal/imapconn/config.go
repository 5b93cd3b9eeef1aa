package imapconn

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// TLSMode says how a connection is protected.
type TLSMode int

const (
	// TLSImplicit starts TLS before any IMAP byte (imaps://, port 993,
	// RFC 8314).
	TLSImplicit TLSMode = iota
	// TLSStartTLS connects in clear text and upgrades with STARTTLS before
	// authenticating (imap://, port 143, RFC 9051 §6.2.1). A server that
	// does not offer STARTTLS is refused unless OpenOptions.AllowPlaintext.
	TLSStartTLS
)

// Default ports (RFC 8314 §7, RFC 9051 §1).
const (
	DefaultPortTLS      = 993
	DefaultPortStartTLS = 143
)

// Config is an IMAP account as an endpoint URL names it. It holds no secret:
// the password comes from OpenOptions.Password when a connection needs it.
type Config struct {
	// Host is the server name; it is also the name the certificate must match.
	Host string
	// Port is the TCP port.
	Port int
	// User is the login name.
	User string
	// TLS is how the connection is protected.
	TLS TLSMode
	// Mailbox, when not empty, restricts the source to this mailbox and the
	// mailboxes below it (UTF-8, '/'-separated, as in the URL path).
	Mailbox string
	// AllowUnsafeExpunge lets Source.Remove send a plain EXPUNGE on a
	// server without UIDPLUS, which also expunges the messages other
	// clients marked \Deleted. Off, the removed messages are only flagged
	// \Deleted there. It is not part of the URL: it changes no endpoint.
	AllowUnsafeExpunge bool
}

// ParseURL reads imaps://USER@HOST[:PORT][/MAILBOX] (implicit TLS, default
// port 993) or imap://USER@HOST[:PORT][/MAILBOX] (STARTTLS, default port
// 143). A user name holding '@' is written percent-encoded
// (imaps://alice%40example.org@imap.example.org). The optional path names a
// mailbox in UTF-8 with '/' as separator (percent-encoded where needed);
// the source then lists only that mailbox and its children. No query
// parameter is known, so any is refused. Errors are *mail.ConfigError.
func ParseURL(u *url.URL) (*Config, error) {
	bad := func(msg, hint string) error {
		return &mail.ConfigError{Msg: "imap: " + mail.Redact(u) + ": " + msg, Hint: hint}
	}
	cfg := &Config{}
	switch strings.ToLower(u.Scheme) {
	case "imaps":
		cfg.TLS, cfg.Port = TLSImplicit, DefaultPortTLS
	case "imap":
		cfg.TLS, cfg.Port = TLSStartTLS, DefaultPortStartTLS
	default:
		return nil, bad(fmt.Sprintf("scheme %q is not imap or imaps", u.Scheme), "write imaps://user@host")
	}
	srv, err := mail.ParseServer(u, "imap")
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Host = srv.User, srv.Host
	if srv.Port != 0 {
		cfg.Port = srv.Port
	}
	if u.RawQuery != "" || u.ForceQuery {
		keys := make([]string, 0)
		for k := range u.Query() {
			keys = append(keys, k)
		}
		return nil, bad(fmt.Sprintf("unknown option(s) %q", strings.Join(keys, ",")), "imap URLs take no query parameters")
	}
	cfg.Mailbox = strings.Trim(u.Path, "/")
	if strings.Contains(cfg.Mailbox, "//") {
		return nil, bad(fmt.Sprintf("mailbox %q has an empty component", cfg.Mailbox), "")
	}
	return cfg, nil
}

// Addr returns host:port for dialing.
func (c *Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Scheme returns "imaps" for implicit TLS and "imap" for STARTTLS.
func (c *Config) Scheme() string {
	if c.TLS == TLSStartTLS {
		return "imap"
	}
	return "imaps"
}

// String returns the account as a URL, for logs and messages. A Config holds
// no secret, so none can be printed.
func (c *Config) String() string {
	u := url.URL{Scheme: c.Scheme(), User: url.User(c.User), Host: c.Addr()}
	if c.Mailbox != "" {
		u.Path = "/" + c.Mailbox
	}
	return u.String()
}

// Ident names the account in one-line messages: user@host.
func (c *Config) Ident() string { return c.User + "@" + c.Host }
