package mail

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// OpenOptions carries what every endpoint factory needs besides its URL.
type OpenOptions struct {
	// Logger receives the endpoint's log records; nil discards them.
	Logger *slog.Logger
	// Side is "src" or "dst"; it names the flags and variables in messages.
	Side string
	// Password returns the account's secret. It is called only when the
	// endpoint needs it (after TLS is up) and may run a command.
	Password func(ctx context.Context) (string, error)
	// Token, when set, returns an OAuth2 access token, and the endpoint logs
	// in with it (IMAP: SASL OAUTHBEARER or XOAUTH2; POP3: AUTH XOAUTH2)
	// instead of a password. It is called for every new connection, so a
	// token that expired is refreshed on reconnect; it may run a command or
	// make an HTTP request. Endpoints never log what it returns.
	Token func(ctx context.Context) (string, error)
	// CAFile is a PEM file of extra trusted roots, added to the system pool.
	CAFile string
	// PinSHA256 lists accepted server keys (base64 SHA-256 of the leaf
	// certificate's SubjectPublicKeyInfo); when set, a matching key is
	// trusted without chain, name or date checks and any other key is
	// refused (see TLSConfig).
	PinSHA256 []string
	// InsecureSkipVerify accepts any server certificate. TLS is still
	// required (AllowPlaintext is separate); the CLI warns on every run.
	InsecureSkipVerify bool
	// AllowPlaintext lets imap:// and pop3:// continue without STARTTLS/STLS.
	// Off by default: a server that does not offer it is refused.
	AllowPlaintext bool
	// RefusePlaintextAuth, with AllowPlaintext, still refuses to send any
	// credential (password or token) over a connection without TLS: the
	// session is refused before LOGIN, AUTHENTICATE, USER or AUTH. The CLI
	// sets it unless --allow-plaintext-auth is given; it is a refusal
	// rather than the zero value so that AllowPlaintext alone keeps its
	// older meaning for library callers and tests of plaintext fakes.
	RefusePlaintextAuth bool
	// NoStartTLS makes imap:// and pop3:// connect in plain text without
	// sending STARTTLS/STLS, even when the server offers it: for loopback
	// and links that are already encrypted (an SSH tunnel, WireGuard,
	// stunnel), where a second TLS layer only costs time. It implies
	// AllowPlaintext but not plaintext credentials: with RefusePlaintextAuth
	// the endpoint refuses before it even connects. Greeting checks and
	// LOGINDISABLED still apply. imaps:// and pop3s:// ignore it (implicit
	// TLS stays TLS).
	NoStartTLS bool
	// AllowUnsafeExpunge lets a source that deletes what it copied, on an
	// IMAP server without UIDPLUS, send a plain EXPUNGE: that also removes
	// messages other clients flagged \Deleted (docs/failure-model.md C9).
	// Without it those servers keep our copied messages flagged \Deleted.
	AllowUnsafeExpunge bool
	// Timeout bounds dialing and each network read or write without
	// progress; zero means the endpoint's default.
	Timeout time.Duration
	// Conns is the number of connections the caller would like to use.
	Conns int
	// Trace, when set, receives the protocol exchange with credentials masked.
	Trace func(line string)
	// AfterRemoveStore is for crash tests only and nil in production: an
	// IMAP source's Remove calls it with the mailbox name between UID STORE
	// \Deleted (confirmed by the server) and UID EXPUNGE, where the tests
	// SIGKILL the process (docs/failure-model.md A7).
	AfterRemoveStore func(mailbox string)
	// Lazy asks a server endpoint to connect on first use rather than when
	// opened: a caller that checks the account another way (a two-way
	// sync opens the same account as a source too) pays no login for a
	// side it ends up not writing to.
	Lazy bool
	// NoDedupe tells a sink that the caller pairs messages itself and
	// never puts one that is already there (a two-way sync: its state and
	// journal say what each side holds): Put stores without first reading
	// the folder to recognise a copy, which on IMAP is a FETCH of every
	// message's headers.
	NoDedupe bool
	// Share, when set, lets the endpoints opened with it share what they
	// can (an IMAP account's logged-in connections between its source and
	// its sink); nil: each endpoint connects on its own. See Share.
	Share *Share
	// Incremental says the run starts from recorded state: it asks the
	// folders' statuses and lists only what changed (mail.FolderStatuser,
	// mail.ChangeLister). An IMAP source then logs in on the session the
	// change listing needs and asks the statuses there, dialling its other
	// connection only if work needs it: one login for a rerun instead of
	// two. Without it (a first copy, which lists in full) it logs in as
	// before.
	Incremental bool
}

// Log returns the options' logger, or one that discards.
func (o *OpenOptions) Log() *slog.Logger {
	if o == nil || o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// SourceFactory opens a source for a parsed URL.
type SourceFactory func(ctx context.Context, u *url.URL, o *OpenOptions) (Source, error)

// SinkFactory opens a sink for a parsed URL.
type SinkFactory func(ctx context.Context, u *url.URL, o *OpenOptions) (Sink, error)

// Registry maps URL schemes to endpoint factories (see Factory). The CLI
// builds one in cmd/mailferry/backends.go; tests build their own with
// fakes. There is no global registry.
type Registry struct {
	schemes map[string]*Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{schemes: map[string]*Factory{}}
}

// AddSource registers f for scheme as a source of unknown kind (told from
// each URL's shape); Add registers a full factory. Registering a side of a
// scheme twice is a programming error and panics.
func (r *Registry) AddSource(scheme string, f SourceFactory) {
	r.Add(Factory{Scheme: scheme, Source: &Side[Source]{
		Parse: func(u *url.URL) (any, error) { return u, nil },
		Open: func(ctx context.Context, u any, o *OpenOptions) (Source, error) {
			return f(ctx, u.(*url.URL), o)
		},
	}})
}

// AddSink registers f for scheme as a sink of unknown kind; twice panics.
func (r *Registry) AddSink(scheme string, f SinkFactory) {
	r.Add(Factory{Scheme: scheme, Sink: &Side[Sink]{
		Parse: func(u *url.URL) (any, error) { return u, nil },
		Open: func(ctx context.Context, u any, o *OpenOptions) (Sink, error) {
			return f(ctx, u.(*url.URL), o)
		},
	}})
}

// Schemes lists the registered source and sink schemes, sorted.
func (r *Registry) Schemes() (sources, sinks []string) {
	for s, f := range r.schemes {
		if f.Source != nil {
			sources = append(sources, s)
		}
		if f.Sink != nil {
			sinks = append(sinks, s)
		}
	}
	sort.Strings(sources)
	sort.Strings(sinks)
	return sources, sinks
}

// Check reports whether u's scheme can be a source (or a sink), without
// opening anything.
func (r *Registry) Check(u *url.URL, source bool) error {
	_, err := r.factory(u, roleOf(source))
	return err
}

// OpenSource parses raw and opens it as a source.
func (r *Registry) OpenSource(ctx context.Context, raw string, o *OpenOptions) (Source, error) {
	e, err := r.Parse(raw, o, AsSource)
	if err != nil {
		return nil, err
	}
	return e.OpenSource(ctx, o)
}

// OpenSink parses raw and opens it as a sink.
func (r *Registry) OpenSink(ctx context.Context, raw string, o *OpenOptions) (Sink, error) {
	e, err := r.Parse(raw, o, AsSink)
	if err != nil {
		return nil, err
	}
	return e.OpenSink(ctx, o)
}

// ParseEndpoint parses an endpoint URL and refuses what no endpoint accepts:
// a missing scheme and a password inside the URL (it would show in ps and
// shell history).
func ParseEndpoint(raw string, o *OpenOptions) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the input, which may hold a password: say less.
		return nil, &ConfigError{Msg: "endpoint is not a valid URL", Hint: "use e.g. imaps://user@host or maildir:/path"}
	}
	if u.Scheme == "" {
		return nil, &ConfigError{Msg: fmt.Sprintf("endpoint %q has no scheme", raw), Hint: "use e.g. imaps://user@host, pop3s://user@host, maildir:/path or mbox:/path"}
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if _, has := u.User.Password(); has {
		side := "src"
		if o != nil && o.Side != "" {
			side = o.Side
		}
		u.User = url.User(u.User.Username())
		return nil, &ConfigError{
			Msg:  fmt.Sprintf("%s: a password in the URL is refused (it would show in ps and shell history)", Redact(u)),
			Hint: fmt.Sprintf("use --%s-password-file, --%s-password-cmd or MAILFERRY_%s_PASSWORD", side, side, strings.ToUpper(side)),
		}
	}
	return u, nil
}

// Redact returns u as text without any password or query values, for logs
// and messages.
func Redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	if c.RawQuery != "" {
		q := c.Query()
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		c.RawQuery = strings.Join(keys, "&")
	}
	return c.String()
}

// LocalPath returns the file system path of a local endpoint URL, which may
// be written maildir:relative/path, maildir:/abs/path, maildir:///abs/path or
// maildir:~/path. The result is absolute and cleaned.
func LocalPath(u *url.URL) (string, error) {
	p := u.Opaque
	if p == "" {
		p = u.Path
		if u.Host != "" && u.Host != "localhost" {
			return "", &ConfigError{Msg: fmt.Sprintf("%s: a host is not allowed in a local path", Redact(u)), Hint: fmt.Sprintf("write %s:/path or %s:///path", u.Scheme, u.Scheme)}
		}
	} else if unq, err := url.PathUnescape(p); err == nil {
		p = unq
	}
	if p == "" {
		return "", &ConfigError{Msg: fmt.Sprintf("%s: no path", Redact(u)), Hint: fmt.Sprintf("write %s:/path/to/dir", u.Scheme)}
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", &ConfigError{Msg: "cannot expand ~: " + err.Error()}
		}
		p = filepath.Join(home, p[1:])
	}
	return filepath.Abs(p)
}

// DeliveryKey is the engine's stable per-message key (see Envelope.Key): a
// hex SHA-256 prefix of the source endpoint, the mailbox and the ID.
func DeliveryKey(endpoint, mailbox string, id ID) string {
	h := sha256.New()
	for _, s := range []string{endpoint, mailbox, string(id)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// ValidHost reports whether h can name a mail server: an IP address
// without an IPv6 zone (a zone means nothing to a remote server, and its
// free-form text would not survive printing the URL back), or a DNS name
// of letters, digits, '.', '-' and '_' (internationalised names in their
// xn-- form).
func ValidHost(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == ""
	}
	if h == "" {
		return false
	}
	for _, r := range h {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '.' && r != '-' && r != '_' {
			return false
		}
	}
	return true
}

// Server is the account part of a server URL: USER@HOST[:PORT].
type Server struct {
	User string
	Host string
	Port int // 0 when the URL has none: the caller's default applies
}

// ParseServer reads and checks the account part of a server endpoint URL
// the same way for every protocol: not opaque, a user name without control
// characters (a CR or LF in it would smuggle a command), no password, a
// valid host (ValidHost), a port from 1 to 65535 if any, no fragment. Path
// and query are the caller's. Errors are *ConfigError whose message starts
// with proto and the redacted URL.
func ParseServer(u *url.URL, proto string) (Server, error) {
	bad := func(msg, hint string) error {
		return &ConfigError{Msg: proto + ": " + Redact(u) + ": " + msg, Hint: hint}
	}
	var s Server
	switch {
	case u.Opaque != "":
		return s, bad("not a server URL", "write "+u.Scheme+"://user@host")
	case u.User == nil || u.User.Username() == "":
		return s, bad("no user name", "write "+u.Scheme+"://user@host; percent-encode an '@' in the user name as %40")
	}
	if _, has := u.User.Password(); has {
		return s, bad("a password in the URL is refused (it would show in ps and shell history)", "use a password file, command or environment variable")
	}
	s.User = u.User.Username()
	if strings.ContainsAny(s.User, "\r\n\x00") {
		return s, bad("the user name holds a control character", "")
	}
	s.Host = u.Hostname()
	if s.Host == "" {
		return s, bad("no host", "write "+u.Scheme+"://user@host")
	}
	if !ValidHost(s.Host) {
		return s, bad(fmt.Sprintf("host %q is neither a DNS name nor an IP address", s.Host), "write internationalised names in their xn-- form")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return s, bad(fmt.Sprintf("port %q is not a number from 1 to 65535", p), "")
		}
		s.Port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return s, bad("empty port", "drop the ':' or give a port")
	}
	if u.Fragment != "" {
		return s, bad("a #fragment is not allowed", "")
	}
	return s, nil
}
