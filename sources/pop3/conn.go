package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	gopop3 "github.com/knadh/go-pop3"

	"github.com/mailferry/mailferry/sync/mail"
)

// Bounds on what a server may send (docs/failure-model.md rule 7).
const (
	// DefaultTimeout bounds dialing and every read or write without progress
	// when OpenOptions.Timeout is zero.
	DefaultTimeout = 60 * time.Second
	// maxStatusLine bounds a status or listing line. RFC 2449 §4 caps a
	// response line at 512 octets; leave room for sloppy servers.
	maxStatusLine = 64 << 10
	// maxListing bounds the bytes of one UIDL, LIST or CAPA response, about
	// 1.5 million messages.
	maxListing = 64 << 20
	// maxCapaLines bounds the lines of a CAPA response.
	maxCapaLines = 1000
	// readBufSize is the session's read buffer; body lines longer than it
	// stream through in pieces.
	readBufSize = 64 << 10
)

// deadlineConn gives every Read and Write an idle deadline: go-pop3 sets none
// after dialing (docs/library-notes.md §3), so a silent server would hang a run.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(b)
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(b)
}

// lineConn is the connection go-pop3 sees. Its reads come from the session's
// buffered reader and stop after each '\n', so go-pop3's own bufio.Reader
// never holds a byte past the line it asked for: when one of its commands
// returns, everything the server sent later is still in session.br, where
// the RETR reader and the status-line reader find it. Writes go straight to
// the (TLS) connection. It also bounds line length and response size, masks
// PASS in traces, and remembers the first I/O error, which tells a broken
// connection apart from a server's -ERR (go-pop3 returns both as plain
// errors).
type lineConn struct {
	net.Conn
	br      *bufio.Reader
	prefix  []byte // a replayed greeting: the dialer already read the real one
	lineLen int
	budget  int64 // bytes the current go-pop3 command may still read
	err     error
	trace   func(string)
	partial []byte // the trace of a line read in pieces
}

func (c *lineConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.br.Buffered() == 0 {
		if _, err := c.br.Peek(1); err != nil {
			c.err = err
			return 0, err
		}
	}
	buf, _ := c.br.Peek(c.br.Buffered())
	if len(buf) > len(p) {
		buf = buf[:len(p)]
	}
	eol := false
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i+1]
		eol = true
	}
	c.lineLen += len(buf)
	c.budget -= int64(len(buf))
	switch {
	case c.lineLen > maxStatusLine:
		c.err = fmt.Errorf("response line longer than %d bytes", maxStatusLine)
		return 0, c.err
	case c.budget < 0:
		c.err = fmt.Errorf("response longer than %d bytes", maxListing)
		return 0, c.err
	}
	n := copy(p, buf)
	c.br.Discard(n)
	if c.trace != nil {
		c.partial = append(c.partial, buf...)
		if eol {
			c.trace("S: " + strings.TrimRight(string(c.partial), "\r\n"))
			c.partial = c.partial[:0]
		}
	}
	if eol {
		c.lineLen = 0
	}
	return n, nil
}

func (c *lineConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	traceCmds(c.trace, p)
	n, err := c.Conn.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// traceCmds reports the command lines in p to trace, with the PASS argument
// masked (docs/style.md §7: never log passwords).
func traceCmds(trace func(string), p []byte) {
	if trace == nil {
		return
	}
	for _, line := range strings.Split(strings.TrimRight(string(p), "\r\n"), "\r\n") {
		if len(line) >= 5 && strings.EqualFold(line[:5], "PASS ") {
			line = "PASS <redacted>"
		}
		trace("C: " + line)
	}
}

// session is one authenticated POP3 connection in the TRANSACTION state
// (RFC 1939 §5). It is used under Source.mu only.
type session struct {
	cfg  *Config
	log  *slog.Logger
	raw  net.Conn      // the TCP connection: closing it aborts any I/O
	conn net.Conn      // TLS (or, if allowed, plain) on top of raw
	br   *bufio.Reader // every byte the server sends after TLS
	lc   *lineConn
	pc   *gopop3.Conn
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
		ss.raw.Close()
	}
	return err
}

// watch closes the connection when ctx is done, so blocked I/O returns.
func (ss *session) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { ss.raw.Close() })
}

// ioErr kills the session after an I/O failure during op and returns the
// error to report: ctx's error when ctx is why the connection closed,
// otherwise err marked temporary (a new connection may well succeed).
func (ss *session) ioErr(ctx context.Context, op string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	ss.kill(err)
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("pop3: %s: %w", op, cerr)
	}
	return mail.Temp(fmt.Errorf("pop3: %s: %w", op, err))
}

// cmdErr classifies an error from a go-pop3 call: an I/O failure (the
// lineConn saw it) kills the session; anything else is the server's -ERR or
// a malformed reply, returned as is.
func (ss *session) cmdErr(ctx context.Context, op string, err error) (ioFail bool, out error) {
	if ss.lc.err != nil || ctx.Err() != nil {
		return true, ss.ioErr(ctx, op, err)
	}
	return false, err
}

// send writes command lines in one write (several only when pipelining).
func (ss *session) send(lines ...string) error {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	traceCmds(ss.lc.trace, b.Bytes())
	_, err := ss.conn.Write(b.Bytes())
	return err
}

// status reads one status line: ok with the text after +OK, or not ok with
// the text after -ERR. Anything else is a protocol error.
func (ss *session) status() (ok bool, text string, err error) {
	line, err := readLine(ss.br)
	if err != nil {
		return false, "", err
	}
	if ss.lc.trace != nil {
		ss.lc.trace("S: " + line)
	}
	return parseStatus(line)
}

func parseStatus(line string) (ok bool, text string, err error) {
	switch {
	case line == "+OK" || strings.HasPrefix(line, "+OK "):
		return true, strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " "), nil
	case line == "-ERR" || strings.HasPrefix(line, "-ERR "):
		return false, strings.TrimPrefix(strings.TrimPrefix(line, "-ERR"), " "), nil
	}
	return false, "", fmt.Errorf("reply %q is neither +OK nor -ERR", clip(line))
}

// readLine reads one line of at most the reader's buffer size, without its
// CRLF. A longer line is an error: status lines are short (RFC 2449 §4).
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("response line longer than %d bytes", br.Size())
	case err != nil:
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// capa issues CAPA (RFC 2449 §5) over w/br and returns the tags in upper
// case, each also with its arguments ("EXPIRE 0") when it has some, or nil
// when the server answers -ERR (it predates CAPA).
func capa(w io.Writer, br *bufio.Reader, trace func(string)) (map[string]bool, error) {
	traceCmds(trace, []byte("CAPA\r\n"))
	if _, err := io.WriteString(w, "CAPA\r\n"); err != nil {
		return nil, err
	}
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	if trace != nil {
		trace("S: " + line)
	}
	ok, _, err := parseStatus(line)
	if err != nil || !ok {
		return nil, err
	}
	caps := map[string]bool{}
	for i := 0; ; i++ {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if line == "." {
			return caps, nil
		}
		if i >= maxCapaLines {
			return nil, fmt.Errorf("CAPA response longer than %d lines", maxCapaLines)
		}
		if f := strings.Fields(line); len(f) > 0 {
			caps[strings.ToUpper(f[0])] = true
			// Tags with arguments are also kept whole ("EXPIRE 0"),
			// for the few whose argument matters.
			if len(f) > 1 {
				caps[strings.ToUpper(strings.Join(f, " "))] = true
			}
		}
	}
}

// dialer plugs into go-pop3's Opt.Dialer. It dials with ctx, applies the
// idle deadlines, does implicit TLS or STLS with a fully verifying
// tls.Config, reads and checks the greeting itself, and hands go-pop3 a
// lineConn that replays "+OK" as the greeting. go-pop3 itself offers no
// STLS, no timeouts and only ServerName/InsecureSkipVerify for TLS
// (docs/library-notes.md §3).
type dialer struct {
	ctx     context.Context
	cfg     *Config
	o       *mail.OpenOptions
	tls     *tls.Config
	timeout time.Duration
	log     *slog.Logger
	trace   func(string)

	ss      *session // filled in by Dial
	stop    func() bool
	greeted string // the greeting line
}

// Dial ignores go-pop3's address: it formats host:port without brackets, so
// IPv6 literals would break.
func (d *dialer) Dial(_, _ string) (net.Conn, error) {
	addr := d.cfg.Addr()
	nd := net.Dialer{Timeout: d.timeout}
	raw, err := nd.DialContext(d.ctx, "tcp", addr)
	if err != nil {
		return nil, d.fail(nil, err)
	}
	d.stop = context.AfterFunc(d.ctx, func() { raw.Close() })
	dc := &deadlineConn{Conn: raw, timeout: d.timeout}
	var (
		conn net.Conn
		br   *bufio.Reader
	)
	switch d.cfg.TLS {
	case TLSImplicit:
		tc := tls.Client(dc, d.tls)
		if err := tc.HandshakeContext(d.ctx); err != nil {
			return nil, d.fail(raw, mail.TLSHandshakeError(fmt.Errorf("tls: %w", err)))
		}
		conn, br = tc, bufio.NewReaderSize(tc, readBufSize)
		if err := d.greeting(br); err != nil {
			return nil, d.fail(raw, err)
		}
	default:
		pre := bufio.NewReaderSize(dc, readBufSize)
		if err := d.greeting(pre); err != nil {
			return nil, d.fail(raw, err)
		}
		if d.o.NoStartTLS {
			// Asked for (connect refused it without plaintext auth): no
			// CAPA or STLS here; the session's CAPA comes after login.
			// The CLI warns once per run; per connection it is detail.
			d.log.Debug("pop3: plain text as requested (--no-starttls)")
			conn, br = dc, pre
			break
		}
		conn, br, err = d.stls(dc, pre)
		if err != nil {
			return nil, d.fail(raw, err)
		}
	}
	lc := &lineConn{Conn: conn, br: br, prefix: []byte("+OK\r\n"), trace: d.trace, budget: maxListing}
	d.ss = &session{cfg: d.cfg, log: d.log, raw: raw, conn: conn, br: br, lc: lc, greeting: d.greeted, byID: map[mail.ID]int{}, twins: map[mail.ID][]int{}, deleted: map[mail.ID]bool{}, last: -1}
	return lc, nil
}

// fail closes raw (if any) and classifies err: ctx's error when ctx ended
// the dial, otherwise an unreachable-endpoint error naming the address.
func (d *dialer) fail(raw net.Conn, err error) error {
	if raw != nil {
		raw.Close()
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
func (d *dialer) greeting(br *bufio.Reader) error {
	line, err := readLine(br)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if d.trace != nil {
		d.trace("S: " + line)
	}
	if ok, _, err := parseStatus(line); err != nil || !ok {
		return fmt.Errorf("greeting %q is not +OK", clip(line))
	}
	d.greeted = line
	return nil
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
// through go-pop3, then CAPA. The password is asked for only once TLS is up
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
	pc, err := gopop3.New(gopop3.Opt{Host: cfg.Host, Port: cfg.Port, Dialer: d}).NewConn()
	if d.stop != nil {
		defer d.stop()
	}
	if err != nil {
		if d.ss != nil {
			return nil, d.ss.ioErr(ctx, "greeting", err)
		}
		return nil, err
	}
	ss := d.ss
	ss.pc = pc
	if err := ss.login(ctx, o); err != nil {
		ss.kill(err)
		return nil, err
	}
	caps, err := capa(ss.conn, ss.br, ss.lc.trace)
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
	denied := func(step string, err error) error {
		text := strings.ReplaceAll(err.Error(), pw, "<redacted>")
		// RFC 2449 §8.1.1, RFC 3206: the credentials were fine, but the
		// maildrop is locked by another session or the server has a
		// passing problem. Worth retrying, and no reason to exit 4.
		if code := strings.ToUpper(text); strings.HasPrefix(code, "[IN-USE]") || strings.HasPrefix(code, "[SYS/TEMP]") {
			return mail.Temp(fmt.Errorf("pop3: login %s: maildrop not available now (%s: server says %q)", ss.cfg.ident(), step, clip(text)))
		}
		return fmt.Errorf("pop3: login %s: %w (%s: server says %q)", ss.cfg.ident(), mail.ErrAuth, step, clip(text))
	}
	if err := ss.pc.User(ss.cfg.User); err != nil {
		if isIO, e := ss.cmdErr(ctx, "login "+ss.cfg.ident(), err); isIO {
			return e
		}
		return denied("USER", err)
	}
	if err := ss.pc.Pass(pw); err != nil {
		if isIO, e := ss.cmdErr(ctx, "login "+ss.cfg.ident(), err); isIO {
			return e
		}
		return denied("PASS", err)
	}
	return nil
}

// loadListing runs UIDL and LIST through go-pop3 and merges them. The
// session must be idle. UIDLs are checked strictly (docs/failure-model.md rule 6):
// a malformed, invalid or duplicate one is an error naming the message,
// never a silent skip. go-pop3's own Uidl and List stop at the first
// malformed line without an error, so the raw responses are parsed here.
//
// A server without UIDL is refused with a *NoUIDLError, unless byContent:
// then every message is retrieved once and identified by a SHA-256 of its
// content (listByContent).
func (ss *session) loadListing(ctx context.Context, byContent bool) error {
	if ss.listed {
		return nil
	}
	ss.lc.budget = maxListing
	ub, err := ss.pc.Cmd("UIDL", true)
	if err != nil {
		if isIO, e := ss.cmdErr(ctx, "uidl", err); isIO {
			return e
		}
		capaNote := "CAPA does not list UIDL"
		if ss.caps == nil {
			capaNote = "no CAPA"
		} else if ss.caps["UIDL"] {
			capaNote = "although CAPA lists UIDL"
		}
		if !byContent {
			return &NoUIDLError{Account: ss.cfg.ident(), Reason: fmt.Sprintf("%s; it says %q", capaNote, clip(err.Error()))}
		}
		ss.log.Warn("pop3: server without UIDL: identifying messages by content, which retrieves each one an extra time", "err", capaNote)
		sizes, err := ss.scanListing(ctx)
		if err != nil {
			return err
		}
		return ss.listByContent(ctx, sizes)
	}
	uidls, err := parseUIDL(ub.Bytes())
	if err != nil {
		return fmt.Errorf("pop3: uidl %s: %w", ss.cfg.ident(), err)
	}
	sizes, err := ss.scanListing(ctx)
	if err != nil {
		return err
	}
	if len(sizes) != len(uidls) {
		return fmt.Errorf("pop3: list %s: UIDL names %d messages, LIST %d", ss.cfg.ident(), len(uidls), len(sizes))
	}
	ss.list = ss.list[:0]
	for _, u := range uidls {
		size, ok := sizes[u.num]
		if !ok {
			return fmt.Errorf("pop3: list %s: message %d is in UIDL but not in LIST", ss.cfg.ident(), u.num)
		}
		ss.byID[u.uidl] = len(ss.list)
		ss.list = append(ss.list, entry{num: u.num, uidl: u.uidl, size: size})
	}
	ss.listed = true
	return nil
}

// scanListing runs LIST (RFC 1939 §5) and returns message number -> size.
func (ss *session) scanListing(ctx context.Context) (map[int]int64, error) {
	ss.lc.budget = maxListing
	lb, err := ss.pc.Cmd("LIST", true)
	if err != nil {
		if isIO, e := ss.cmdErr(ctx, "list", err); isIO {
			return nil, e
		}
		return nil, fmt.Errorf("pop3: list %s: server says %q", ss.cfg.ident(), clip(err.Error()))
	}
	sizes, err := parseLIST(lb.Bytes())
	if err != nil {
		return nil, fmt.Errorf("pop3: list %s: %w", ss.cfg.ident(), err)
	}
	return sizes, nil
}

// contentIDPrefix starts the IDs of messages listed by content.
const contentIDPrefix = "sha256-"

// listByContent identifies the messages of a server without UIDL by the
// SHA-256 of their content as RETR serves it (un-dot-stuffed), retrieving
// each once, pipelined when the server allows it; memory stays one read
// buffer. The ID is the same in every session for as long as the server
// serves the same bytes, so a message copied and recorded, but not deleted
// because the session broke before QUIT, is recognised and deleted by the
// next run instead of being stored twice. Two different messages never
// share an ID. Byte-identical copies do: they are listed once, as one
// message, and DELE removes them all (their content is the same, so one
// stored copy keeps all of it).
func (ss *session) listByContent(ctx context.Context, sizes map[int]int64) error {
	nums := make([]int, 0, len(sizes))
	for n := range sizes {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	ahead := 1
	if ss.pipelining() {
		ahead = maxAhead
	}
	ss.list = ss.list[:0]
	ss.byContent = true
	for len(nums) > 0 {
		chunk := nums[:min(ahead, len(nums))]
		nums = nums[len(chunk):]
		cmds := make([]string, len(chunk))
		for i, n := range chunk {
			cmds[i] = "RETR " + strconv.Itoa(n)
		}
		if err := ss.send(cmds...); err != nil {
			return ss.ioErr(ctx, "retr", err)
		}
		for _, n := range chunk {
			op := "retr (message " + strconv.Itoa(n) + ")"
			ok, text, err := ss.status()
			if err != nil {
				return ss.ioErr(ctx, op, err)
			}
			if !ok {
				// The maildrop is locked: a message LIST just named cannot
				// go away. Better stop than mis-number the rest.
				return ss.kill(fmt.Errorf("pop3: %s %s: server says %q", op, ss.cfg.ident(), clip(text)))
			}
			h := sha256.New()
			if _, err := io.Copy(h, newDotReader(ss.br)); err != nil {
				if errors.Is(err, mail.ErrTooLarge) {
					return ss.kill(fmt.Errorf("pop3: %s: %w", op, err))
				}
				return ss.ioErr(ctx, op, err)
			}
			id := mail.ID(contentIDPrefix + hex.EncodeToString(h.Sum(nil)))
			e := entry{num: n, uidl: id, size: sizes[n]}
			if _, dup := ss.byID[id]; dup {
				e.twin = true
				ss.twins[id] = append(ss.twins[id], len(ss.list))
			} else {
				ss.byID[id] = len(ss.list)
			}
			ss.list = append(ss.list, e)
		}
	}
	ss.listed = true
	return nil
}

// NoUIDLError is what List returns for a server without UIDL (RFC 1939 §7)
// when the messages are to stay on the server: without unique ids a later
// run cannot tell which messages it already copied. It wraps
// mail.ErrUnsupported and mail.ErrConfig (the CLI exits 2: the remedy is
// another command line).
type NoUIDLError struct {
	// Account is user@host.
	Account string
	// Reason says how the server showed it has no UIDL.
	Reason string
}

func (e *NoUIDLError) Error() string {
	return fmt.Sprintf("pop3: uidl %s: the server does not support UIDL (%s): without unique ids (RFC 1939 §7) messages left on the server cannot be told apart from one run to the next, so leaving them there is refused; "+
		"instead copy with --delete-source (each message is then identified by a SHA-256 of its content and deleted once stored), or copy over IMAP if the server offers it", e.Account, e.Reason)
}

// Unwrap returns mail.ErrUnsupported and mail.ErrConfig.
func (e *NoUIDLError) Unwrap() []error { return []error{mail.ErrUnsupported, mail.ErrConfig} }

// parseUIDL parses a unique-id listing (RFC 1939 §7: "msg SP uid" lines),
// sorted by message number, and checks every UIDL: 1-70 characters from
// 0x21 to 0x7E, unique within the maildrop.
func parseUIDL(b []byte) ([]entry, error) {
	var out []entry
	seen := map[mail.ID]int{}
	nums := map[int]bool{}
	for _, line := range lines(b) {
		n, rest, ok := strings.Cut(line, " ")
		num, err := strconv.Atoi(n)
		if !ok || err != nil || num < 1 {
			return nil, fmt.Errorf("line %q is not \"msg uid\" (RFC 1939 §7)", clip(line))
		}
		if nums[num] {
			return nil, fmt.Errorf("message %d listed twice", num)
		}
		nums[num] = true
		if !validUIDL(rest) {
			return nil, fmt.Errorf("message %d has an invalid UIDL %q (RFC 1939 §7 wants 1 to 70 characters from 0x21 to 0x7E)", num, clip(rest))
		}
		id := mail.ID(rest)
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("messages %d and %d share the UIDL %q: the server's unique ids are not unique (RFC 1939 §7), refusing to copy either", prev, num, rest)
		}
		seen[id] = num
		out = append(out, entry{num: num, uidl: id})
	}
	sortEntries(out)
	return out, nil
}

func sortEntries(es []entry) { sort.Slice(es, func(i, j int) bool { return es[i].num < es[j].num }) }

// validUIDL reports whether s is a legal unique-id (RFC 1939 §7).
func validUIDL(s string) bool {
	if len(s) < 1 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// parseLIST parses a scan listing (RFC 1939 §5: "msg SP octets" lines,
// extra fields tolerated) into message number -> size.
func parseLIST(b []byte) (map[int]int64, error) {
	out := map[int]int64{}
	for _, line := range lines(b) {
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %q is not \"msg octets\" (RFC 1939 §5)", clip(line))
		}
		num, err1 := strconv.Atoi(f[0])
		size, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || num < 1 || size < 0 {
			return nil, fmt.Errorf("line %q is not \"msg octets\" (RFC 1939 §5)", clip(line))
		}
		if _, dup := out[num]; dup {
			return nil, fmt.Errorf("message %d listed twice", num)
		}
		out[num] = size
	}
	return out, nil
}

// lines splits a go-pop3 multi-line response (CRLF after every line).
func lines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\r\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\r\n")
}

// clip shortens server text quoted in an error.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
