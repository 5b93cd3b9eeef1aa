package imapconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/sync/mail"
)

// Default timeouts, used when OpenOptions.Timeout is zero.
const (
	// DefaultDialTimeout bounds the TCP connect, the TLS handshake, the
	// greeting and STARTTLS.
	DefaultDialTimeout = 30 * time.Second
	// DefaultIOTimeout is how long a connection may go without a single byte
	// moving in either direction before it is declared dead. It replaces
	// imapclient's hard-coded absolute deadlines (30 s per response, 5 min
	// per literal), which kill healthy transfers of big messages to slow
	// consumers (docs/library-notes.md §0.4, §11).
	DefaultIOTimeout = 2 * time.Minute
)

// Dial connects and logs in to the account in cfg and returns a client in
// the authenticated state, ready for SELECT or APPEND. It is shared by the
// IMAP source and sink.
//
// imaps:// uses implicit TLS; imap:// requires STARTTLS: a server that does
// not offer it is refused unless o.AllowPlaintext (o.NoStartTLS skips
// STARTTLS even when offered), and a PREAUTH greeting before TLS is always
// refused (RFC 9051 §7.1.4). Certificates are verified
// against the system roots plus o.CAFile. The password is asked from
// o.Password only once TLS is up (or plaintext was allowed), and is sent
// with AUTHENTICATE PLAIN when offered, LOGIN otherwise.
//
// Every read and write is bounded by o.Timeout (DefaultIOTimeout when zero)
// of inactivity rather than by imapclient's absolute deadlines, and a
// response, once begun, must keep arriving at MinRate (so a literal that
// trickles in cannot hold a worker for days); a connection
// that stays silent in both directions that long is closed (imapclient
// always waits for the next response, so this includes a connection kept
// idle: check Client.Closed before reusing one). Client.Close blocks while
// a FETCH literal is handed out and unread: read it to the end first.
//
// Errors: dial and TLS failures wrap mail.ErrUnreachable (via
// mail.DialError, with a --ca-file hint for certificate problems); rejected
// credentials wrap mail.ErrAuth and name user@host, never the password; a
// missing password source is a *mail.ConfigError; cancelling ctx returns an
// error wrapping ctx.Err(). ctx bounds only the dial: it is not kept.
func Dial(ctx context.Context, cfg *Config, o *mail.OpenOptions) (*imapclient.Client, error) {
	if o == nil {
		o = &mail.OpenOptions{}
	}
	c, _, err := DialConn(ctx, cfg, o, Logger(cfg, o))
	return c, err
}

// Logger returns o's logger with the fixed endpoint attributes.
func Logger(cfg *Config, o *mail.OpenOptions) *slog.Logger {
	side := o.Side
	if side == "" {
		side = "src"
	}
	return o.Log().With("side", side, "scheme", cfg.Scheme())
}

func timeouts(o *mail.OpenOptions) (dialT, ioT time.Duration) {
	if o.Timeout > 0 {
		return o.Timeout, o.Timeout
	}
	return DefaultDialTimeout, DefaultIOTimeout
}

// DialConn is Dial, logging to log, that also returns the connection
// under the client, to pause its inactivity limit while idle (SetIdle) and
// to close it without blocking (Client.Close blocks while a FETCH literal
// is unread).
func DialConn(ctx context.Context, cfg *Config, o *mail.OpenOptions, log *slog.Logger) (*imapclient.Client, *Conn, error) {
	start := time.Now()
	t, err := openTransport(ctx, cfg, o, log)
	if err != nil {
		return nil, nil, err
	}
	c := imapclient.New(t.top, nil)
	t.cleanup = func() { _ = c.Close() }
	t.phase = "greeting"
	if err := c.WaitGreeting(); err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeBye {
			// A BYE greeting is usually "too many connections": worth a retry.
			return nil, nil, t.fail(mail.Temp(fmt.Errorf("imap: connect %s: server refused the session: %s", t.addr, ie.Text)))
		}
		return nil, nil, t.fail(mail.DialError(t.addr, fmt.Errorf("greeting: %w", err)))
	}
	if c.State() == imap.ConnStateAuthenticated {
		if !t.secure {
			return nil, nil, t.fail(mail.DialError(t.addr, errors.New("unencrypted PREAUTH refused")))
		}
		// PREAUTH under implicit TLS: the server already knows who we are
		// (RFC 9051 §7.1.4); only the cleartext case is an attack vector.
		log.Debug("imap: server pre-authenticated the session", "elapsed", time.Since(start))
	} else {
		t.phase = "login"
		if c.Caps() == nil {
			err = mail.Temp(fmt.Errorf("imap: %s: no CAPABILITY answer", cfg.Addr()))
		} else {
			err = authenticate(ctx, clientAuth{c}, cfg, t.secret(o.Password), t.secret(o.Token), t.secure)
		}
		if err != nil {
			return nil, nil, t.fail(err)
		}
	}
	if !t.disarm() {
		return nil, nil, t.fail(errors.New("connection closed"))
	}
	log.Debug("imap: connected to "+cfg.Ident(), "elapsed", time.Since(start))
	return c, t.dc, nil
}

// transport is one connection attempt up to the protocol: TCP, then TLS or
// STARTTLS, under a dial budget. Dial (imapclient) and DialRaw (the IMAP
// sink's MULTIAPPEND) share it, so both fail, time out and report alike.
//
// The budget bounds everything up to the authenticated state except the
// secret lookup (secret pauses it: a password command may prompt, an OAuth2
// refresh is an HTTP request). Closing the socket is the only way to
// interrupt imapclient and the handshake, so a watchdog does that when ctx
// is cancelled or the budget runs out.
type transport struct {
	ctx     context.Context
	addr    string
	dialT   time.Duration
	phase   string // what was awaited, for the error when the budget runs out
	top     net.Conn
	dc      *Conn
	secure  bool
	cleanup func() // closes what the caller built on top, on failure

	mu     sync.Mutex // guards raw against the watchdog goroutine
	raw    net.Conn
	dctx   context.Context
	disarm func() bool
}

func (t *transport) closeRaw() {
	t.mu.Lock()
	if t.raw != nil {
		_ = t.raw.Close()
	}
	t.mu.Unlock()
}

// arm starts a fresh dial budget.
func (t *transport) arm() {
	dctx, cancel := context.WithTimeout(t.ctx, t.dialT)
	stop := context.AfterFunc(dctx, t.closeRaw)
	t.dctx = dctx
	t.disarm = func() bool { ok := stop(); cancel(); return ok }
}

// fail tears the attempt down and classifies err: cancellation, a budget
// that ran out (naming the phase and --timeout: what the closed socket
// then reports, "use of closed network connection", says nothing), or err.
func (t *transport) fail(err error) error {
	expired := t.dctx.Err() != nil
	t.disarm()
	if t.cleanup != nil {
		t.cleanup()
	}
	t.closeRaw()
	if t.ctx.Err() != nil {
		return fmt.Errorf("imap: connect %s: %w", t.addr, t.ctx.Err())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		expired = true // the idle deadline (also --timeout) fired first
	}
	if expired && !errors.Is(err, mail.ErrAuth) {
		return mail.DialError(t.addr, fmt.Errorf("%s: no answer within %v (--timeout)", t.phase, t.dialT))
	}
	return err
}

// secret adapts a secret lookup, pausing the dial budget while it runs.
func (t *transport) secret(get func(context.Context) (string, error)) func() (string, error) {
	if get == nil {
		return nil
	}
	return func() (string, error) {
		if !t.disarm() {
			return "", errors.New("connection closed")
		}
		s, err := get(t.ctx)
		t.arm()
		return s, err
	}
}

// openTransport connects to cfg and secures the connection (implicit TLS,
// or STARTTLS unless plaintext is allowed and not offered, or o.NoStartTLS
// asks for plain text). The caller
// finishes with t.disarm() on success or t.fail(err).
func openTransport(ctx context.Context, cfg *Config, o *mail.OpenOptions, log *slog.Logger) (*transport, error) {
	addr := cfg.Addr()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("imap: connect %s: %w", addr, err)
	}
	if o.Password == nil && o.Token == nil {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("imap: %s: no password source", cfg), Hint: passwordHint(o)}
	}
	noTLS := cfg.TLS == TLSStartTLS && o.NoStartTLS
	if noTLS && o.RefusePlaintextAuth {
		// A session in clear text asked for, credentials in clear not
		// allowed: no session could follow (PREAUTH in clear is refused
		// too), so say so before connecting (docs/failure-model.md F5).
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("imap: %s: --no-starttls would send the password in clear text", cfg), Hint: noStartTLSHint}
	}
	tlsCfg, err := mail.TLSConfig(cfg.Host, o)
	if err != nil {
		return nil, err
	}
	dialT, ioT := timeouts(o)
	t := &transport{ctx: ctx, addr: addr, dialT: dialT, phase: "TCP connect", secure: true}
	t.arm()
	conn, err := (&net.Dialer{}).DialContext(t.dctx, "tcp", addr)
	if err != nil {
		if ctx.Err() == nil {
			err = mail.DialError(addr, err)
		}
		return nil, t.fail(err)
	}
	t.mu.Lock()
	t.raw = conn
	t.mu.Unlock()
	t.dc = &Conn{Conn: conn, timeout: ioT}
	tr := newTracer(o.Trace)
	switch cfg.TLS {
	case TLSImplicit:
		t.phase = "TLS handshake"
		tc := tls.Client(t.dc, withALPN(tlsCfg))
		if err := tc.HandshakeContext(t.dctx); err != nil {
			return nil, t.fail(mail.DialError(addr, mail.TLSHandshakeError(fmt.Errorf("tls: %w", err))))
		}
		t.top = tc
	case TLSStartTLS:
		t.phase = "greeting, STARTTLS and TLS handshake"
		if noTLS {
			// The greeting is checked as before STARTTLS (a BYE keeps the
			// server's reason, PREAUTH in clear is refused); loginPolicy
			// then honours LOGINDISABLED since the session is not secure.
			t.phase = "greeting"
			// The CLI warns once per run; per connection it is detail.
			log.Debug("imap: plain text as requested (--no-starttls)")
		}
		t.top, t.secure, err = startTLS(t.dctx, t.dc, tlsCfg, o.AllowPlaintext, noTLS, tr, addr)
		if err != nil {
			return nil, t.fail(err)
		}
		if !t.secure && !noTLS && o.RefusePlaintextAuth {
			// Plaintext was allowed, credentials in clear were not; PREAUTH
			// in clear is refused anyway, so no session could follow
			// (docs/failure-model.md F5). Refused before LOGIN/AUTHENTICATE.
			return nil, t.fail(mail.DialError(addr, errors.New("server offers no STARTTLS; refusing to send credentials in clear text (--allow-plaintext-auth allows it)")))
		}
		if !t.secure && !noTLS {
			log.Warn("imap: server offers no STARTTLS; continuing in plain text as allowed (password sent unencrypted)")
		}
	default:
		return nil, t.fail(fmt.Errorf("imap: unknown TLS mode %d", cfg.TLS))
	}
	// Below the tracer, so a refused response is not traced in full.
	g := &respGuard{Conn: t.top, window: ioT}
	t.dc.guard, t.top = g, g
	if tr != nil {
		t.top = tr.wrap(t.top)
	}
	return t, nil
}

// noStartTLSHint is the remedy when NoStartTLS meets RefusePlaintextAuth.
const noStartTLSHint = "add --allow-plaintext-auth, only over loopback or a link that is already encrypted"

func passwordHint(o *mail.OpenOptions) string {
	side := o.Side
	if side == "" {
		side = "src"
	}
	return fmt.Sprintf("use --%s-password-file, --%s-password-cmd or MAILFERRY_%s_PASSWORD", side, side, strings.ToUpper(side))
}

func withALPN(c *tls.Config) *tls.Config {
	c = c.Clone()
	if c.NextProtos == nil {
		c.NextProtos = []string{"imap"}
	}
	return c
}

// startTLS runs the cleartext part of an imap:// session by hand: greeting,
// CAPABILITY, STARTTLS, handshake. imapclient.NewStartTLS sends STARTTLS
// without looking at the capabilities, so it cannot say "not offered"; doing
// it here also lets us refuse bytes a man in the middle injects after the
// STARTTLS response (RFC 9051 §6.2.1, CVE-2020-14954 class) and garbled,
// BYE or PREAUTH greetings. It returns the connection imapclient should use,
// with a synthetic greeting in front (imapclient waits for one), and
// whether it is encrypted.
func startTLS(ctx context.Context, dc net.Conn, tlsCfg *tls.Config, allowPlain, skip bool, tr *tracer, addr string) (net.Conn, bool, error) {
	p := &cleartext{br: bufio.NewReaderSize(dc, 8192), dc: dc, tr: tr, addr: addr}
	rest, err := p.greeting()
	if err != nil {
		return nil, false, err
	}
	if skip {
		return continuePlain(dc, p.br), false, nil
	}
	caps := capsFromText(rest)
	if caps == nil {
		if caps, err = p.capability(); err != nil {
			return nil, false, err
		}
	}
	if !caps["STARTTLS"] {
		if !allowPlain {
			return nil, false, mail.DialError(addr, errors.New("server does not offer STARTTLS; refusing to send credentials in clear text"))
		}
		return continuePlain(dc, p.br), false, nil
	}
	if err := p.starttls(); err != nil {
		return nil, false, err
	}
	tc := tls.Client(dc, tlsCfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, false, mail.DialError(addr, mail.TLSHandshakeError(err))
	}
	// imapclient waits for a greeting; the real one was consumed in clear
	// text. Its capabilities are discarded anyway (RFC 9051 §6.2.1): the
	// client asks for them again over TLS.
	return &prefixConn{Conn: tc, r: io.MultiReader(strings.NewReader(syntheticGreeting), tc)}, true, nil
}

// cleartext is the part of an imap:// session before TLS.
type cleartext struct {
	br    *bufio.Reader
	dc    net.Conn
	tr    *tracer
	addr  string
	lines int
}

// readLine reads one line, traced, of at most 8 KiB; at most 100 lines.
func (p *cleartext) readLine() (string, error) {
	if p.lines++; p.lines > 100 {
		// A server chattering without ever answering must not keep us
		// here: the inactivity limit alone would not end it.
		return "", mail.DialError(p.addr, errors.New("more than 100 lines before TLS"))
	}
	b, err := p.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return "", mail.DialError(p.addr, errors.New("server line longer than 8 KiB before TLS"))
	}
	if err != nil {
		return "", mail.DialError(p.addr, fmt.Errorf("before TLS: %w", err))
	}
	line := strings.TrimRight(string(b), "\r\n")
	p.tr.line("S: " + line)
	return line, nil
}

func (p *cleartext) send(line string) error {
	p.tr.line("C: " + line)
	if _, err := io.WriteString(p.dc, line+"\r\n"); err != nil {
		return mail.DialError(p.addr, fmt.Errorf("before TLS: %w", err))
	}
	return nil
}

// greeting reads the greeting and returns its text; BYE, PREAUTH and
// garbage are refused.
func (p *cleartext) greeting() (string, error) {
	greeting, err := p.readLine()
	if err != nil {
		return "", err
	}
	kind, rest := SplitStatus(greeting)
	switch kind {
	case "OK":
		return rest, nil
	case "PREAUTH":
		return "", mail.DialError(p.addr, errors.New("unencrypted PREAUTH refused (a PREAUTH greeting before STARTTLS means TLS can no longer be negotiated)"))
	case "BYE":
		return "", mail.Temp(fmt.Errorf("imap: connect %s: server refused the session: %s", p.addr, rest))
	default:
		return "", mail.DialError(p.addr, fmt.Errorf("invalid greeting %q", Clip(greeting, 80)))
	}
}

// capability asks for the capabilities the greeting did not carry.
func (p *cleartext) capability() (map[string]bool, error) {
	if err := p.send("M1 CAPABILITY"); err != nil {
		return nil, err
	}
	caps := map[string]bool{}
	for {
		line, err := p.readLine()
		if err != nil {
			return nil, err
		}
		if up := strings.ToUpper(line); strings.HasPrefix(up, "* CAPABILITY ") {
			for _, c := range strings.Fields(up[len("* CAPABILITY "):]) {
				caps[c] = true
			}
			continue
		}
		if strings.HasPrefix(line, "M1 ") {
			if k, rest := SplitStatus(line[3:]); k != "OK" {
				return nil, mail.DialError(p.addr, fmt.Errorf("CAPABILITY failed: %s %s", k, rest))
			}
			return caps, nil
		}
	}
}

// starttls sends STARTTLS and reads its OK; bytes after it are refused.
func (p *cleartext) starttls() error {
	if err := p.send("M2 STARTTLS"); err != nil {
		return err
	}
	for {
		line, err := p.readLine()
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "* ") {
			continue // untagged data before the answer is allowed and useless
		}
		if !strings.HasPrefix(line, "M2 ") {
			return mail.DialError(p.addr, fmt.Errorf("unexpected answer to STARTTLS: %q", Clip(line, 80)))
		}
		if k, rest := SplitStatus(line[3:]); k != "OK" {
			return mail.DialError(p.addr, fmt.Errorf("server refused STARTTLS: %s %s", k, rest))
		}
		break
	}
	if p.br.Buffered() > 0 {
		// Anything after the OK must be the start of TLS, which the server
		// only sends after our ClientHello: these are injected bytes.
		return mail.DialError(p.addr, errors.New("cleartext data after the STARTTLS answer (injection attempt?); refusing"))
	}
	return nil
}

const syntheticGreeting = "* OK mailferry: session continues\r\n"

// continuePlain goes on in clear text after the greeting was read: it hands
// imapclient a fresh greeting plus whatever is still buffered (nothing,
// normally).
func continuePlain(dc net.Conn, br *bufio.Reader) net.Conn {
	buf, _ := br.Peek(br.Buffered())
	return &prefixConn{Conn: dc, r: io.MultiReader(strings.NewReader(syntheticGreeting+string(buf)), dc)}
}

// SplitStatus splits "* OK [..] text" (or "OK text" for tagged lines with
// the tag removed) into the status word and the rest.
func SplitStatus(line string) (string, string) {
	line = strings.TrimPrefix(line, "* ")
	word, rest, _ := strings.Cut(line, " ")
	return strings.ToUpper(word), rest
}

// capsFromText returns the capabilities in a "[CAPABILITY ...]" response
// code at the start of resp-text, or nil when there is none.
func capsFromText(text string) map[string]bool {
	up := strings.ToUpper(text)
	if !strings.HasPrefix(up, "[CAPABILITY ") {
		return nil
	}
	end := strings.IndexByte(up, ']')
	if end < 0 {
		return nil
	}
	caps := map[string]bool{}
	for _, c := range strings.Fields(up[len("[CAPABILITY "):end]) {
		caps[c] = true
	}
	return caps
}

// Clip shortens s to n bytes for a message, marking the cut.
func Clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// loginPolicy decides, from the server's capabilities, whether
// credentials may go out at all and, for a password, whether by
// AUTHENTICATE PLAIN (usePlain) or LOGIN. authenticate applies it to both
// kinds of connection, imapclient's and the raw one, so neither can send
// what the other refuses (docs/failure-model.md F5). has reports a capability by its exact name, as
// the server spelled it in upper case.
//
// LOGINDISABLED without TLS refuses every credential, also AUTH=PLAIN and
// an OAuth2 token: the server says it wants none in clear text (RFC 9051
// §6.2.3), and a bearer token is as good as a password to whoever reads it.
// The refusal is a *mail.ConfigError (exit 2: the URL must change), found
// before the password or token is asked for.
func loginPolicy(cfg *Config, has func(capability string) bool, secure, token bool) (usePlain bool, err error) {
	disabled := has(string(imap.CapLoginDisabled))
	if disabled && !secure {
		return false, &mail.ConfigError{Msg: fmt.Sprintf("imap: %s: server disables login without TLS", cfg.Ident()), Hint: "use imaps://, or STARTTLS (a server offering it, without --no-starttls)"}
	}
	if token {
		return false, nil
	}
	usePlain = has(string(imap.AuthCap("PLAIN")))
	if !usePlain && disabled {
		return false, fmt.Errorf("imap: login %s: server offers neither LOGIN nor AUTHENTICATE PLAIN: %w", cfg.Ident(), mail.ErrUnsupported)
	}
	return usePlain, nil
}

// authVerdict classifies the outcome of LOGIN or AUTHENTICATE (mech names
// an OAuth2 mechanism, for the message).
func authVerdict(cfg *Config, mech string, err error) error {
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if !errors.As(err, &ie) {
		// Not the server's verdict: the connection failed mid-exchange.
		return mail.Temp(fmt.Errorf("imap: login %s: %v", cfg.Ident(), err))
	}
	// LIMIT (RFC 5530 section 3): too many sessions from this user or
	// address, a busy server rather than a wrong password
	// (docs/failure-model.md B5): retried, and a batch snoozes the account.
	if ie.Code == imap.ResponseCodeUnavailable || ie.Code == imap.ResponseCodeInUse || ie.Code == imap.ResponseCodeLimit {
		return mail.Temp(fmt.Errorf("imap: login %s: server temporarily unavailable: %s", cfg.Ident(), ie.Text))
	}
	text := ie.Text
	if text == "" {
		text = string(ie.Type)
	}
	if mech != "" {
		text = mech + ": " + text
	}
	// ie.Text is the server's message; it never echoes the password.
	return fmt.Errorf("imap: login %s rejected: %s: %w", cfg.Ident(), Clip(text, 200), mail.ErrAuth)
}

// Conn turns every deadline into an inactivity limit: each Read or
// Write re-arms both directions to now+timeout, and the absolute deadlines
// imapclient sets (30 s per response, 5 min per literal, docs/library-notes.md §1.1)
// are ignored. A big literal read slowly, or a long APPEND, keeps the
// connection alive as long as bytes move; a peer silent in both directions
// for timeout is dead. The TLS layer above forwards its deadlines here,
// where they are ignored the same way.
//
// While idle (no command outstanding, see SetIdle) there is no limit:
// imapclient always has a Read pending, and a connection waiting in a pool
// or for a slow List callback must not die of it.
type Conn struct {
	net.Conn
	timeout time.Duration
	mu      sync.Mutex
	idle    bool
	// closed is set once the connection is closed, by us or by imapclient
	// when its reader fails: imapclient closes the socket before it wakes
	// the commands waiting and before Client.Closed() fires, so Closed()
	// alone would let the pool hand out a closed connection in between.
	closed atomic.Bool
	// guard is the response guard reading above this connection (over
	// TLS), set once at dial: it tells why a read failed when imapclient
	// has flattened the error to text.
	guard *respGuard
}

// Closed reports whether the connection was closed, by us or by
// imapclient after its reader failed.
func (c *Conn) Closed() bool { return c.closed.Load() }

// TooLarge returns the error with which the response guard refused a
// message literal as over MaxBodyLiteral, or nil.
func (c *Conn) TooLarge() error {
	if c.guard == nil {
		return nil
	}
	return c.guard.tooLarge()
}

// Close closes the connection and marks it closed (see Closed).
func (c *Conn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func (c *Conn) arm() {
	c.mu.Lock()
	if !c.idle {
		_ = c.Conn.SetDeadline(time.Now().Add(c.timeout))
	}
	c.mu.Unlock()
}

// SetIdle lifts the limit (idle) or re-arms it (busy), also for a Read
// already waiting.
func (c *Conn) SetIdle(idle bool) {
	c.mu.Lock()
	c.idle = idle
	if idle {
		_ = c.Conn.SetDeadline(time.Time{})
	} else {
		_ = c.Conn.SetDeadline(time.Now().Add(c.timeout))
	}
	c.mu.Unlock()
}

func (c *Conn) Read(b []byte) (int, error) {
	c.arm()
	return c.Conn.Read(b)
}

func (c *Conn) Write(b []byte) (int, error) {
	c.arm()
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.arm() // progress out extends a read that is waiting for the answer
	}
	return n, err
}

// SetDeadline ignores the caller's absolute deadline: each Read and Write
// re-arms an inactivity limit instead (see Conn).
func (c *Conn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline ignores the deadline, as SetDeadline.
func (c *Conn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline ignores the deadline, as SetDeadline.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

// prefixConn reads r (a prefix, then the connection) instead of Conn.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// tracer records the protocol for --trace: one call per line, prefixed "C: "
// or "S: ". Literal contents (message bodies, LOGIN literals) are replaced
// by their size, lines are clipped, and LOGIN/AUTHENTICATE arguments and
// every client line of a SASL exchange are masked.
type tracer struct {
	fn      func(string)
	mu      chan struct{} // a one-slot lock usable from both directions
	authTag string
	in, out traceDir
}

type traceDir struct {
	prefix string
	buf    []byte
	long   bool
	skip   int64
}

const traceLineMax = 200

func newTracer(fn func(string)) *tracer {
	if fn == nil {
		return nil
	}
	return &tracer{fn: fn, mu: make(chan struct{}, 1), in: traceDir{prefix: "S: "}, out: traceDir{prefix: "C: "}}
}

func (t *tracer) line(s string) {
	if t == nil {
		return
	}
	t.mu <- struct{}{}
	t.fn(s)
	<-t.mu
}

func (t *tracer) wrap(c net.Conn) net.Conn { return &traceConn{Conn: c, t: t} }

type traceConn struct {
	net.Conn
	t *tracer
}

func (c *traceConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.t.feed(&c.t.in, b[:n])
	return n, err
}

// Write traces b before sending it: the server's answer, which imapclient's
// reader traces as soon as it arrives, must never come first. An
// AUTHENTICATE traced after its tagged OK left the masking waiting for an
// answer already seen, so --trace showed every later command as <redacted>.
func (c *traceConn) Write(b []byte) (int, error) {
	c.t.feed(&c.t.out, b)
	return c.Conn.Write(b)
}

func (t *tracer) feed(d *traceDir, b []byte) {
	t.mu <- struct{}{}
	defer func() { <-t.mu }()
	for len(b) > 0 {
		if d.skip > 0 {
			k := int64(len(b))
			if k > d.skip {
				k = d.skip
			}
			d.skip -= k
			b = b[k:]
			continue
		}
		i := strings.IndexByte(string(b), '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i+1]
		}
		b = b[len(chunk):]
		if room := traceLineMax - len(d.buf); room > 0 {
			c := chunk
			if len(c) > room {
				c, d.long = c[:room], true
			}
			d.buf = append(d.buf, c...)
		} else {
			d.long = true
		}
		if i < 0 {
			continue
		}
		line := strings.TrimRight(string(d.buf), "\r\n")
		if lit, ok := literalSuffix(line); ok && !d.long {
			d.skip = lit
		}
		t.fn(d.prefix + t.mask(d, line, d.long))
		if d.skip > 0 {
			t.fn(fmt.Sprintf("%s<%d literal bytes>", d.prefix, d.skip))
		}
		d.buf, d.long = d.buf[:0], false
	}
}

func (t *tracer) mask(d *traceDir, line string, long bool) string {
	if d == &t.in {
		if t.authTag != "" && strings.HasPrefix(line, t.authTag+" ") {
			t.authTag = ""
		}
		if long {
			line += "..."
		}
		return line
	}
	if t.authTag != "" {
		return "<redacted>"
	}
	f := strings.Fields(line)
	if len(f) >= 2 {
		switch strings.ToUpper(f[1]) {
		case "LOGIN":
			t.authTag = f[0]
			return f[0] + " LOGIN <redacted>"
		case "AUTHENTICATE":
			t.authTag = f[0]
			mech := ""
			if len(f) > 2 {
				mech = " " + f[2]
			}
			return f[0] + " AUTHENTICATE" + mech + " <redacted>"
		}
	}
	if long {
		line += "..."
	}
	return line
}

// literalSuffix reports the size of a literal announced at the end of line:
// {n}, {n+} or {n-}... with a literal8 "~" prefix allowed.
func literalSuffix(line string) (int64, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	num := strings.TrimRight(line[i+1:len(line)-1], "+-")
	var n int64
	if num == "" {
		return 0, false
	}
	for _, r := range num {
		if r < '0' || r > '9' || n > 1<<40 {
			return 0, false
		}
		n = n*10 + int64(r-'0')
	}
	return n, true
}

// Caps on what a server may send (docs/failure-model.md F8). imapclient has
// none: it buffers a whole response line, and every literal that is not a
// message body (a LIST name, an ENVELOPE string), in memory, and it loops
// for as long as untagged responses keep coming.
const (
	// MaxResponse is the most bytes one response may hold outside its
	// literals. The longest real ones are SEARCH results (about 8 bytes
	// per message; we only search for single UIDs) and FETCH lines with many
	// keywords. imapclient keeps the whole line, parsed, in memory.
	MaxResponse = 1 << 20
	// MaxDataLiteral caps a literal that imapclient would hold in memory:
	// any literal but a message body.
	MaxDataLiteral = 8 << 20
	// MaxBodyLiteral caps a message body literal (BODY[...], BINARY[...],
	// RFC822...), which is streamed: the cap bounds time and disk, not
	// memory.
	MaxBodyLiteral = 1 << 30
	// MaxStatusResponses is how many untagged responses that carry no
	// message data (OK, NO, BAD, EXISTS, RECENT, FLAGS, CAPABILITY...) may
	// arrive between two tagged ones; real servers send a handful.
	MaxStatusResponses = 10000
	// MinRate is the slowest a response may arrive once it has started,
	// in bytes per second of waiting, measured over each --timeout of
	// waiting (MinRate × timeout bytes per window: 60 KiB with the CLI's
	// default 60 s). The inactivity limit alone lets a server that sends
	// one byte every few seconds hold a message literal (up to
	// MaxBodyLiteral), a line (MaxResponse) or a LIST literal open for
	// days (docs/failure-model.md F8: "a literal declared and then streamed
	// slowly"). Only time spent waiting for bytes in the middle of a
	// response counts: a server thinking before it answers (a long
	// SEARCH), a connection idle between commands and a consumer slow to
	// read a body (the sink) are not the server being slow.
	MinRate = 1 << 10
)

// respGuard enforces the caps above on the bytes the server sends, below
// imapclient (and the sink's raw reader). It follows the response framing
// (RFC 9051 §4.3, §7: lines, and literals announced by {n} at a line's
// end) without parsing further, and fails the read that would cross a cap
// with an error naming it; the connection is then unusable, as a desynced
// one would be. It is only read from by one goroutine at a time.
type respGuard struct {
	net.Conn
	// window is the span over which MinRate is measured (--timeout);
	// zero turns the rate rule off.
	window time.Duration
	waited time.Duration // spent in Read mid-response since the window began
	got    int64         // bytes read since the window began

	err    error
	lit    int64  // literal bytes still to pass through
	resp   int64  // bytes of the current response outside literals
	head   []byte // the response's first bytes, to classify it
	tail   []byte // the current line's last bytes, to find a literal
	status int    // status responses since the last tagged one

	// tooBig is err when it refused a message literal over MaxBodyLiteral
	// (it wraps mail.ErrTooLarge). Atomic: the Source reads it from the
	// goroutine whose command failed, not from imapclient's reader.
	tooBig atomic.Pointer[error]
}

// tooLarge returns the error with which g refused a message literal as
// over MaxBodyLiteral, or nil.
func (g *respGuard) tooLarge() error {
	if p := g.tooBig.Load(); p != nil {
		return *p
	}
	return nil
}

const guardTail = 64

func (g *respGuard) Read(b []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	mid := g.window > 0 && (g.lit > 0 || g.resp > 0)
	var start time.Time
	if mid {
		start = time.Now()
	}
	n, err := g.Conn.Read(b)
	if mid {
		g.waited += time.Since(start)
	}
	gerr := g.scan(b[:n])
	if gerr == nil {
		gerr = g.pace(n)
	}
	if gerr != nil {
		g.err = gerr
		if errors.Is(gerr, mail.ErrTooLarge) {
			g.tooBig.Store(&gerr)
		}
		return 0, gerr
	}
	return n, err
}

// pace applies MinRate: a window closes, and a new one starts, as soon as
// it has carried MinRate × window bytes; it fails once that much waiting
// mid-response brought less. A tagged response also starts a new window
// (see endResponse).
func (g *respGuard) pace(n int) error {
	if g.window <= 0 {
		return nil
	}
	g.got += int64(n)
	need := int64(MinRate * g.window.Seconds())
	if g.got >= need {
		g.waited, g.got = 0, 0
		return nil
	}
	if g.waited >= g.window {
		what := "a response"
		if g.lit > 0 {
			what = "a literal"
		}
		return fmt.Errorf("imap: server sent only %d bytes of %s in %v of waiting, under the minimum rate of %d KiB/s over --timeout %v (cap)",
			g.got, what, g.waited.Round(time.Millisecond), MinRate>>10, g.window)
	}
	return nil
}

func (g *respGuard) scan(b []byte) error {
	for len(b) > 0 {
		if g.lit > 0 {
			k := min(int64(len(b)), g.lit)
			g.lit -= k
			b = b[k:]
			continue
		}
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i+1]
		}
		b = b[len(chunk):]
		if g.resp += int64(len(chunk)); g.resp > MaxResponse {
			return fmt.Errorf("imap: server response longer than %d MiB without its end (cap)", MaxResponse>>20)
		}
		if room := 32 - len(g.head); room > 0 {
			g.head = append(g.head, chunk[:min(room, len(chunk))]...)
		}
		g.tail = append(g.tail, chunk...)
		if len(g.tail) > guardTail {
			g.tail = append(g.tail[:0], g.tail[len(g.tail)-guardTail:]...)
		}
		if i < 0 {
			continue
		}
		n, body, ok, err := guardLiteral(g.tail)
		g.tail = g.tail[:0]
		if err != nil {
			return err
		}
		if ok {
			limit, what := int64(MaxDataLiteral), "non-message"
			if body {
				limit, what = MaxBodyLiteral, "message"
			}
			if n > limit && body {
				return fmt.Errorf("imap: server announced a %d-byte %s literal, over the %d MiB cap: %w", n, what, limit>>20, mail.ErrTooLarge)
			}
			if n > limit {
				return fmt.Errorf("imap: server announced a %d-byte %s literal, over the %d MiB cap", n, what, limit>>20)
			}
			g.lit = n
			continue // the response goes on after the literal
		}
		if err := g.endResponse(); err != nil {
			return err
		}
	}
	return nil
}

// endResponse classifies the response just ended by its first bytes.
func (g *respGuard) endResponse() error {
	head := g.head
	g.head, g.resp = g.head[:0], 0
	switch {
	case bytes.HasPrefix(head, []byte("+")):
	case bytes.HasPrefix(head, []byte("* ")):
		f := bytes.Fields(head[2:])
		if len(f) > 1 && f[0][0] >= '0' && f[0][0] <= '9' {
			f = f[1:]
		}
		if len(f) == 0 {
			break
		}
		switch string(bytes.ToUpper(f[0])) {
		case "OK", "NO", "BAD", "BYE", "EXISTS", "RECENT", "FLAGS", "CAPABILITY", "ENABLED", "ID", "PREAUTH":
			if g.status++; g.status > MaxStatusResponses {
				return fmt.Errorf("imap: server sent more than %d untagged status responses without completing a command (cap)", MaxStatusResponses)
			}
		}
	default: // tagged: a command completed
		g.status = 0
		g.waited, g.got = 0, 0
	}
	return nil
}

// guardLiteral reports whether line (the end of a response line, CRLF
// included) announces a literal, its size, and whether it is a message
// body. A size too long to parse is an error rather than "no literal":
// imapclient would read it as a uint64 and wrap it to a negative int64.
func guardLiteral(line []byte) (n int64, body, ok bool, err error) {
	line = bytes.TrimRight(line, "\r\n")
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0, false, false, nil
	}
	end := len(line) - 1
	if end > 0 && (line[end-1] == '+' || line[end-1] == '-') {
		end--
	}
	start := end
	for start > 0 && line[start-1] >= '0' && line[start-1] <= '9' {
		start--
	}
	if start == 0 && len(line) >= guardTail-2 {
		// Digits fill the kept tail: a size far too long to be real.
		return 0, false, false, fmt.Errorf("imap: server announced a literal with a size of %d digits or more, over the %d MiB cap: %w", end, MaxBodyLiteral>>20, mail.ErrTooLarge)
	}
	if start == end || start == 0 || line[start-1] != '{' {
		return 0, false, false, nil
	}
	if end-start > 19 {
		return 0, false, false, fmt.Errorf("imap: server announced a literal with a %d-digit size, over the %d MiB cap: %w", end-start, MaxBodyLiteral>>20, mail.ErrTooLarge)
	}
	n, perr := strconv.ParseInt(string(line[start:end]), 10, 64)
	if perr != nil {
		return 0, false, false, fmt.Errorf("imap: server announced a literal of %s bytes, over the %d MiB cap: %w", line[start:end], MaxBodyLiteral>>20, mail.ErrTooLarge)
	}
	pre := bytes.TrimSuffix(line[:start-1], []byte("~"))
	pre = bytes.ToUpper(bytes.TrimRight(pre, " "))
	body = bytes.HasSuffix(pre, []byte("]")) || bytes.HasSuffix(pre, []byte(">")) ||
		bytes.HasSuffix(pre, []byte("RFC822")) || bytes.HasSuffix(pre, []byte("RFC822.TEXT")) || bytes.HasSuffix(pre, []byte("RFC822.HEADER"))
	return n, body, true, nil
}
