package pop3

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// TLSMode says how a connection is protected.
type TLSMode int

const (
	// TLSImplicit starts TLS before any POP3 byte (pop3s://, port 995,
	// RFC 8314).
	TLSImplicit TLSMode = iota
	// TLSSTLS connects in clear text and upgrades with STLS before
	// authenticating (pop3://, port 110, RFC 2595 §4). A server that does not
	// offer STLS is refused unless OpenOptions.AllowPlaintext.
	TLSSTLS
)

// Default ports (RFC 8314 §7, RFC 1939 §3).
const (
	DefaultPortTLS  = 995
	DefaultPortSTLS = 110
)

// Config is a POP3 maildrop as an endpoint URL names it. It holds no secret:
// the password comes from OpenOptions.Password when a connection needs it.
type Config struct {
	// Host is the server name; it is also the name the certificate must match.
	Host string
	// Port is the TCP port.
	Port int
	// User is the login name sent with USER.
	User string
	// TLS is how the connection is protected.
	TLS TLSMode
	// NoPipelining stops the source from pipelining RETR commands even when
	// the server announces PIPELINING (RFC 2449 §6.6): an escape hatch for a
	// server whose pipelining is broken. URL option pipelining=0.
	NoPipelining bool
}

// ParseURL reads pop3s://USER@HOST[:PORT] (implicit TLS, default port 995)
// or pop3://USER@HOST[:PORT] (STLS required, default port 110). A user name
// holding '@' is written percent-encoded (pop3s://alice%40example.org@host).
// A path other than "/" or "/INBOX" is refused: a maildrop has one mailbox.
// The one known query parameter is pipelining=0|1 (default 1); any other is
// refused. Errors are *mail.ConfigError.
func ParseURL(u *url.URL) (*Config, error) {
	bad := func(msg, hint string) error {
		return &mail.ConfigError{Msg: "pop3: " + mail.Redact(u) + ": " + msg, Hint: hint}
	}
	cfg := &Config{}
	switch strings.ToLower(u.Scheme) {
	case "pop3s":
		cfg.TLS, cfg.Port = TLSImplicit, DefaultPortTLS
	case "pop3":
		cfg.TLS, cfg.Port = TLSSTLS, DefaultPortSTLS
	default:
		return nil, bad(fmt.Sprintf("scheme %q is not pop3 or pop3s", u.Scheme), "write pop3s://user@host")
	}
	srv, err := mail.ParseServer(u, "pop3")
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Host = srv.User, srv.Host
	if srv.Port != 0 {
		cfg.Port = srv.Port
	}
	if p := strings.Trim(u.Path, "/"); p != "" && !strings.EqualFold(p, "INBOX") {
		return nil, bad(fmt.Sprintf("path %q: a POP3 maildrop has only INBOX", p), "drop the path")
	}
	q := u.Query()
	var unknown []string
	for k, vs := range q {
		switch k {
		case "pipelining":
			if len(vs) != 1 {
				return nil, bad("pipelining given more than once", "")
			}
			switch strings.ToLower(vs[0]) {
			case "1", "on", "true", "yes":
				cfg.NoPipelining = false
			case "0", "off", "false", "no":
				cfg.NoPipelining = true
			default:
				return nil, bad(fmt.Sprintf("pipelining=%q is not 0 or 1", vs[0]), "")
			}
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 || (u.ForceQuery && len(q) == 0) {
		sort.Strings(unknown)
		return nil, bad(fmt.Sprintf("unknown option(s) %q", strings.Join(unknown, ",")), "pop3 URLs take only pipelining=0|1")
	}
	return cfg, nil
}

// Addr returns host:port for dialing.
func (c *Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Scheme returns "pop3s" for implicit TLS and "pop3" for STLS.
func (c *Config) Scheme() string {
	if c.TLS == TLSSTLS {
		return "pop3"
	}
	return "pop3s"
}

// String returns the maildrop as a URL, for logs and messages. A Config holds
// no secret, so none can be printed.
func (c *Config) String() string {
	u := url.URL{Scheme: c.Scheme(), User: url.User(c.User), Host: c.Addr()}
	if c.NoPipelining {
		u.RawQuery = "pipelining=0"
	}
	return u.String()
}

// ident names the maildrop in one-line messages: user@host.
func (c *Config) ident() string { return c.User + "@" + c.Host }
