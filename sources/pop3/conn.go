package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// Bounds on what a server may send (docs/failure-model.md rule 7).
const (
	// DefaultTimeout bounds dialing and every read or write without progress
	// when OpenOptions.Timeout is zero.
	DefaultTimeout = 60 * time.Second
	// maxListing bounds the bytes of one UIDL, LIST or CAPA response, about
	// 1.5 million messages.
	maxListing = 64 << 20
	// maxCapaLines bounds the lines of a CAPA response.
	maxCapaLines = 1000
	// readBufSize is the session's read buffer. It bounds a status or
	// listing line (RFC 2449 §4 caps a response line at 512 octets; this
	// leaves room for sloppy servers); body lines longer than it stream
	// through in pieces.
	readBufSize = 64 << 10
)

// deadlineConn gives every Read and Write an idle deadline, so a silent
// server cannot hang a run.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(b)
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	_ = c.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(b)
}

// session is one authenticated POP3 connection in the TRANSACTION state
// (RFC 1939 §5). It is used under Source.mu only.
type session struct {
	cfg  *Config
	log  *slog.Logger
	raw  net.Conn      // the TCP connection: closing it aborts any I/O
	conn net.Conn      // TLS (or, if allowed, plain) on top of raw
	br   *bufio.Reader // every byte the server sends after TLS (wire.go)
	// trace gets the protocol lines (OpenOptions.Trace), or is nil.
	trace func(string)
	// caps holds the CAPA tags (upper case) after login; nil when the server
	// does not implement CAPA (RFC 2449 §5).
	caps map[string]bool
	// greeting is the server's greeting line, which names some servers.
	greeting string

	// The listing, loaded once per session: the maildrop is locked while
	// the session lasts, so it changes only through our own DELEs.
	listed bool
	list   []entry
	byID   map[mail.ID]int

	// queue holds the listing indexes whose RETR was sent and whose response
	// was not read yet, in the order sent (RFC 2449 §6.6 pipelining).
	queue  []int
	active *body // the RETR response being read by a caller, if any
	// twins maps the ID of a message listed by content (a server without
	// UIDL) to the listing indexes of its byte-identical copies: they share
	// the ID, are listed once and deleted together.
	twins map[mail.ID][]int
	// byContent: the listing identifies messages by content (no UIDL).
	byContent bool
	// deleted holds the UIDLs whose DELE got +OK in this session.
	deleted map[mail.ID]bool
	// Readahead: the last listing index opened and how many opens in a row
	// followed the listing order.
	last, streak int

	dead error // set once the connection is unusable
}

// entry is one message of the listing.
type entry struct {
	num  int // message number in this session
	uidl mail.ID
	size int64
	twin bool // a byte-identical copy of an earlier entry (listed by content)
}

// nums returns the message numbers of id: one, or more for a message
// listed by content that the maildrop holds several identical copies of.
func (ss *session) nums(id mail.ID) []int {
	out := []int{ss.list[ss.byID[id]].num}
	for _, i := range ss.twins[id] {
		out = append(out, ss.list[i].num)
	}
	return out
}

// readAway reports whether the server is known to hide a message from later
// sessions once it was retrieved, whether or not it was deleted: Gmail
// (greeting "+OK Gpop ready for requests from ..."), or any server
// announcing EXPIRE 0 (RFC 2449 §6.7: messages are not kept once
// retrieved).
func (ss *session) readAway() bool {
	return strings.Contains(ss.greeting, "Gpop") || ss.caps["EXPIRE 0"] || ss.caps["EXPIRE 0 USER"]
}

// pipelining reports whether commands may be sent without waiting.
func (ss *session) pipelining() bool {
	return !ss.cfg.NoPipelining && ss.caps["PIPELINING"]
}

// kill closes the connection and marks the session unusable; it returns err.
func (ss *session) kill(err error) error {
	if ss.dead == nil {
		ss.dead = err
		_ = ss.raw.Close()
	}
	return err
}

// watch closes the connection when ctx is done, so blocked I/O returns.
func (ss *session) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = ss.raw.Close() })
}

// ioErr kills the session after an I/O failure during op and returns the
// error to report: ctx's error when ctx is why the connection closed,
// otherwise err marked temporary (a new connection may well succeed).
func (ss *session) ioErr(ctx context.Context, op string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	_ = ss.kill(err)
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("pop3: %s: %w", op, cerr)
	}
	return mail.Temp(fmt.Errorf("pop3: %s: %w", op, err))
}

// dialer opens the connection: it dials with ctx, applies the idle
// deadlines, does implicit TLS or STLS with a fully verifying tls.Config and
// reads the greeting.
type dialer struct {
	ctx     context.Context
	cfg     *Config
	o       *mail.OpenOptions
	tls     *tls.Config
	timeout time.Duration
	log     *slog.Logger
	trace   func(string)

	stop func() bool // stops ctx from closing the connection
}

// dial returns a greeted session, not logged in yet.
func (d *dialer) dial() (*session, error) {
	addr := d.cfg.Addr()
	nd := net.Dialer{Timeout: d.timeout}
	raw, err := nd.DialContext(d.ctx, "tcp", addr)
	if err != nil {
		return nil, d.fail(nil, err)
	}
	d.stop = context.AfterFunc(d.ctx, func() { _ = raw.Close() })
	conn, br, greeting, err := d.protect(&deadlineConn{Conn: raw, timeout: d.timeout})
	if err != nil {
		return nil, d.fail(raw, err)
	}
	return &session{cfg: d.cfg, log: d.log, raw: raw, conn: conn, br: br, trace: d.trace, greeting: greeting, byID: map[mail.ID]int{}, twins: map[mail.ID][]int{}, deleted: map[mail.ID]bool{}, last: -1}, nil
}

// protect puts TLS on dc as cfg.TLS says and reads the greeting: implicit
// TLS before it, STLS after it.
func (d *dialer) protect(dc net.Conn) (conn net.Conn, br *bufio.Reader, greeting string, err error) {
	if d.cfg.TLS == TLSImplicit {
		tc := tls.Client(dc, d.tls)
		if err := tc.HandshakeContext(d.ctx); err != nil {
			return nil, nil, "", mail.TLSHandshakeError(fmt.Errorf("tls: %w", err))
		}
		br = bufio.NewReaderSize(tc, readBufSize)
		greeting, err = d.greeting(br)
		return tc, br, greeting, err
	}
	pre := bufio.NewReaderSize(dc, readBufSize)
	if greeting, err = d.greeting(pre); err != nil {
		return nil, nil, "", err
	}
	if d.o.NoStartTLS {
		// Asked for (connect refused it without plaintext auth): no
		// CAPA or STLS here; the session's CAPA comes after login.
		// The CLI warns once per run; per connection it is detail.
		d.log.Debug("pop3: plain text as requested (--no-starttls)")
		return dc, pre, greeting, nil
	}
	conn, br, err = d.stls(dc, pre)
	return conn, br, greeting, err
}

// fail closes raw (if any) and classifies err: ctx's error when ctx ended
// the dial, otherwise an unreachable-endpoint error naming the address.
func (d *dialer) fail(raw net.Conn, err error) error {
	if raw != nil {
		_ = raw.Close()
	}
	if cerr := d.ctx.Err(); cerr != nil {
		return fmt.Errorf("pop3: connect %s: %w", d.cfg.Addr(), cerr)
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("pop3: %w", mail.DialError(d.cfg.Addr(), err))
}

// greeting reads the server greeting, which must be +OK (RFC 1939 §4); an
// empty or garbled one is refused (docs/failure-model.md F3).
func (d *dialer) greeting(br *bufio.Reader) (string, error) {
	line, err := readLine(br)
	if err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	if d.trace != nil {
		d.trace("S: " + line)
	}
	if ok, _, err := parseStatus(line); err != nil || !ok {
		return "", fmt.Errorf("greeting %q is not +OK", clip(line))
	}
	return line, nil
}

// stls upgrades a clear-text connection (RFC 2595 §4). It refuses to go on
// in clear text when the server does not offer STLS or refuses it, unless
// plaintext is allowed. Bytes that arrive with the +OK to STLS, before the
// handshake, are refused: they can only be a man in the middle's injected
// responses (docs/failure-model.md F2, CVE-2020-14954 class), and anything that
// arrives after is fed to the TLS handshake, which then fails.
func (d *dialer) stls(dc net.Conn, pre *bufio.Reader) (net.Conn, *bufio.Reader, error) {
	plain := func(why string) (net.Conn, *bufio.Reader, error) {
		if !d.o.AllowPlaintext {
			return nil, nil, fmt.Errorf("%s: refusing to log in without TLS (use pop3s:// on port %d, or allow plaintext explicitly)", why, DefaultPortTLS)
		}
		if d.o.RefusePlaintextAuth {
			// Plaintext was allowed, credentials in clear were not, and a
			// maildrop cannot be opened without them (docs/failure-model.md F5).
			return nil, nil, fmt.Errorf("%s: refusing to send the password in clear text (--allow-plaintext-auth allows it)", why)
		}
		d.log.Warn("pop3: continuing without TLS: the password crosses the network in clear text", "err", why)
		return dc, pre, nil
	}
	caps, err := capa(dc, pre, d.trace)
	if err != nil {
		return nil, nil, fmt.Errorf("capa: %w", err)
	}
	if !caps["STLS"] {
		return plain("server does not offer STLS in CAPA")
	}
	traceCmds(d.trace, []byte("STLS\r\n"))
	if _, err := io.WriteString(dc, "STLS\r\n"); err != nil {
		return nil, nil, fmt.Errorf("stls: %w", err)
	}
	line, err := readLine(pre)
	if err != nil {
		return nil, nil, fmt.Errorf("stls: %w", err)
	}
	if d.trace != nil {
		d.trace("S: " + line)
	}
	ok, text, err := parseStatus(line)
	if err != nil {
		return nil, nil, fmt.Errorf("stls: %w", err)
	}
	if !ok {
		return plain(fmt.Sprintf("server refused STLS: %q", clip(text)))
	}
	if n := pre.Buffered(); n > 0 {
		return nil, nil, fmt.Errorf("stls: %d unexpected bytes after +OK, before the TLS handshake (injected by a man in the middle?)", n)
	}
	tc := tls.Client(dc, d.tls)
	if err := tc.HandshakeContext(d.ctx); err != nil {
		return nil, nil, fmt.Errorf("stls: %w", mail.TLSHandshakeError(fmt.Errorf("tls: %w", err)))
	}
	return tc, bufio.NewReaderSize(tc, readBufSize), nil
}

// connect opens an authenticated session: dial, TLS, greeting, USER/PASS
// (or AUTH XOAUTH2), then CAPA. The password is asked for only once TLS is up
// (or plaintext was explicitly allowed).
func connect(ctx context.Context, cfg *Config, o *mail.OpenOptions, log *slog.Logger) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pop3: connect %s: %w", cfg.Addr(), err)
	}
	if cfg.TLS == TLSSTLS && o.NoStartTLS && o.RefusePlaintextAuth {
		// Clear text asked for, credentials in clear not allowed: a
		// maildrop cannot be opened, so say so before connecting
		// (docs/failure-model.md F5).
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("pop3: %s: --no-starttls would send the password in clear text", cfg), Hint: "add --allow-plaintext-auth, only over loopback or a link that is already encrypted"}
	}
	tcfg, err := mail.TLSConfig(cfg.Host, o)
	if err != nil {
		return nil, err
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	d := &dialer{ctx: ctx, cfg: cfg, o: o, tls: tcfg, timeout: timeout, log: log, trace: o.Trace}
	ss, err := d.dial()
	if d.stop != nil {
		defer d.stop()
	}
	if err != nil {
		return nil, err
	}
	if err := ss.login(ctx, o); err != nil {
		_ = ss.kill(err)
		return nil, err
	}
	caps, err := capa(ss.conn, ss.br, ss.trace)
	if err != nil {
		return nil, ss.ioErr(ctx, "capa", err)
	}
	ss.caps = caps
	if d.stop != nil && !d.stop() {
		return nil, ss.ioErr(ctx, "connect", ctx.Err())
	}
	log.Debug("pop3: logged in")
	return ss, nil
}

// login sends USER and PASS (RFC 1939 §7), or AUTH XOAUTH2 when the options
// carry an OAuth2 token. A -ERR is an authentication failure naming
// user@host, never the password.
func (ss *session) login(ctx context.Context, o *mail.OpenOptions) error {
	if o.Token != nil {
		return ss.loginXOAUTH2(ctx, o)
	}
	if o.Password == nil {
		return &mail.ConfigError{Msg: "pop3: " + ss.cfg.ident() + ": no password source", Hint: "give a password file, command or environment variable"}
	}
	pw, err := o.Password(ctx)
	if err != nil {
		return fmt.Errorf("pop3: password for %s: %w", ss.cfg.ident(), err)
	}
	if pw == "" || strings.ContainsAny(pw, "\r\n\x00") {
		return &mail.ConfigError{Msg: "pop3: the password for " + ss.cfg.ident() + " is empty or holds a line break or NUL"}
	}
	op := "login " + ss.cfg.ident()
	for _, step := range []struct{ name, arg string }{{"USER", ss.cfg.User}, {"PASS", pw}} {
		ok, text, err := ss.cmd(ctx, op, step.name+" "+step.arg)
		if err != nil {
			return err
		}
		if !ok {
			return ss.denied(step.name, strings.ReplaceAll(text, pw, "<redacted>"))
		}
	}
	return nil
}

// denied turns the -ERR text to USER or PASS (step) into an error.
func (ss *session) denied(step, text string) error {
	// RFC 2449 §8.1.1, RFC 3206: the credentials were fine, but the
	// maildrop is locked by another session or the server has a passing
	// problem. Worth retrying, and no reason to exit 4.
	if code := strings.ToUpper(text); strings.HasPrefix(code, "[IN-USE]") || strings.HasPrefix(code, "[SYS/TEMP]") {
		return mail.Temp(fmt.Errorf("pop3: login %s: maildrop not available now (%s: server says %q)", ss.cfg.ident(), step, clip(text)))
	}
	return fmt.Errorf("pop3: login %s: %w (%s: server says %q)", ss.cfg.ident(), mail.ErrAuth, step, clip(text))
}

// quit sends QUIT (RFC 1939 §6: the server commits the DELEs then) and
// reports whether the server said +OK.
func (ss *session) quit(ctx context.Context) error {
	ok, text, err := ss.cmd(ctx, "quit", "QUIT")
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("server says %q", clip(text))
	}
	return nil
}
