package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// The scripted POP3 server (H-POP in docs/failure-model.md): RFC 1939 with CAPA
// (RFC 2449) and STLS (RFC 2595), TLS with a self-signed certificate made
// here, and knobs for the faults the tests need.

const (
	testUser  = "alice"
	testPass  = "s3cret pass"
	testToken = "ya29.test-access-token"
)

// fakeOpts are the server's knobs. The zero value is an implicit-TLS server
// without PIPELINING.
type fakeOpts struct {
	plain       bool   // no implicit TLS: clear text, STLS if stls
	stls        bool   // offer STLS in CAPA (plain only)
	stlsErr     bool   // answer STLS with -ERR
	inject      string // sent in the same write as the +OK to STLS (F2)
	pipelining  bool   // announce PIPELINING
	noCAPA      bool   // -ERR to CAPA
	noUIDL      bool   // -ERR to UIDL, not in CAPA (C1)
	rawUIDL     string // replaces the UIDL listing lines (C2), e.g. "1 a\r\n2 a\r\n"
	dropAfter   int    // cut the connection after this many bytes of a RETR response...
	dropTimes   int    // ...this many times (then serve normally)
	hangRetr    bool   // answer nothing to RETR (B2)
	quitErr     bool   // -ERR to QUIT, without committing
	dropBefQuit bool   // close the connection when QUIT arrives, without committing
	passErr     string // -ERR text for a correct PASS, e.g. "[IN-USE] locked"
	quitHalf    bool   // the first QUIT deletes the first half of the DELE'd messages, then answers -ERR (A5a)
	cutAtDele   int    // close the connection, unanswered, at the Nth DELE the server receives (once)
	gmail       bool   // greet as Gmail ("+OK Gpop ready ..."); a session ending in QUIT hides what it RETR'd (C5)
	expire0     bool   // announce EXPIRE 0 (RFC 2449 §6.7) and behave as gmail does
	hideAlways  bool   // with gmail/expire0: hide what was RETR'd even when the session ends without QUIT
	noTop       bool   // TOP not in CAPA, -ERR to TOP
	topRefuse   string // -ERR to TOP for this UIDL only
	topPad      int    // TOP serves this many bytes of extra header lines first (a hostile header)
}

type fakeMsg struct {
	uidl string
	body []byte // served as is, byte-stuffed on the wire
}

type fakeCmd struct {
	cmd, arg string
	tls      bool
}

type fakeServer struct {
	t    testing.TB
	ln   net.Listener
	opts fakeOpts
	tls  *tls.Config

	mu        sync.Mutex
	msgs      []*fakeMsg // the maildrop; QUIT removes what was deleted
	cmds      []fakeCmd
	pipelined bool // a command arrived while an earlier one was unanswered
	sessions  int
	drops     int
	deles     int               // DELE commands received
	quits     int               // QUIT commands received after login
	hidden    map[*fakeMsg]bool // gmail: retrieved in an earlier session, no longer offered
}

func newFakeServer(t testing.TB, opts fakeOpts, msgs ...fakeMsg) *fakeServer {
	t.Helper()
	cfg, _ := mailtest.LocalCert(t)
	f := &fakeServer{t: t, ln: mailtest.Listen(t), opts: opts, tls: cfg, hidden: map[*fakeMsg]bool{}}
	for i := range msgs {
		m := msgs[i]
		f.msgs = append(f.msgs, &m)
	}
	mailtest.Serve(t, f.ln, f.serve)
	return f
}

// bodies returns n small distinct messages with UIDLs "uid-1"...
func bodies(n int) []fakeMsg {
	var out []fakeMsg
	for i := 1; i <= n; i++ {
		out = append(out, fakeMsg{uidl: fmt.Sprintf("uid-%d", i), body: []byte(fmt.Sprintf("Subject: message %d\r\n\r\n%s\r\n.\r\n..\r\n.hidden\r\n", i, strings.Repeat("body line\r\n", i)))})
	}
	return out
}

func (f *fakeServer) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

// renumber gives every message of the maildrop a new UIDL, prefix plus its
// old one, as a server that regenerated its UIDL list (docs/failure-model.md C3).
func (f *fakeServer) renumber(prefix string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.msgs {
		m.uidl = prefix + m.uidl
	}
}

// maildrop returns the UIDLs the server holds.
func (f *fakeServer) maildrop() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.msgs {
		out = append(out, m.uidl)
	}
	return out
}

// commands returns the command names received, in order.
func (f *fakeServer) commands() []fakeCmd {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCmd(nil), f.cmds...)
}

func (f *fakeServer) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions
}

func (f *fakeServer) count(cmd string) int {
	n := 0
	for _, c := range f.commands() {
		if c.cmd == cmd {
			n++
		}
	}
	return n
}

// fakeConn is one session's state.
type fakeConn struct {
	f       *fakeServer
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	tls     bool
	user    string
	authed  bool
	drop    []*fakeMsg // the maildrop as the session started
	deleted map[int]bool
	deles   []int        // message indexes in DELE order
	retrd   map[int]bool // message indexes RETR'd
	quit    bool         // the session ended with a committed QUIT
}

func (f *fakeServer) serve(raw net.Conn) {
	f.mu.Lock()
	f.sessions++
	f.mu.Unlock()
	fc := &fakeConn{f: f, c: raw, deleted: map[int]bool{}, retrd: map[int]bool{}}
	defer fc.end()
	if !f.opts.plain {
		tc := tls.Server(raw, f.tls)
		if err := tc.Handshake(); err != nil {
			return
		}
		fc.c, fc.tls = tc, true
	}
	fc.r, fc.w = bufio.NewReader(fc.c), bufio.NewWriter(fc.c)
	if f.opts.gmail {
		fc.reply("+OK Gpop ready for requests from 127.0.0.1 x1fake")
	} else {
		fc.reply("+OK fake POP3 ready")
	}
	for {
		line, err := fc.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		cmd, arg, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		f.mu.Lock()
		f.cmds = append(f.cmds, fakeCmd{cmd, arg, fc.tls})
		if fc.r.Buffered() > 0 {
			f.pipelined = true
		}
		f.mu.Unlock()
		if !fc.handle(cmd, arg) {
			return
		}
	}
}

// readAway reports whether the server hides what a session retrieved.
func (o fakeOpts) readAway() bool { return o.gmail || o.expire0 }

// end hides, on a read-away server, what the session retrieved: after a
// QUIT, or always with hideAlways.
func (fc *fakeConn) end() {
	o := fc.f.opts
	if !o.readAway() || (!fc.quit && !o.hideAlways) {
		return
	}
	fc.f.mu.Lock()
	defer fc.f.mu.Unlock()
	for i := range fc.retrd {
		fc.f.hidden[fc.drop[i]] = true
	}
}

// visible returns the messages a new session is offered.
func (f *fakeServer) visible() []*fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fakeMsg
	for _, m := range f.msgs {
		if !f.hidden[m] {
			out = append(out, m)
		}
	}
	return out
}

func (fc *fakeConn) reply(s string) {
	fc.w.WriteString(s + "\r\n")
	fc.w.Flush()
}

func (fc *fakeConn) live() []int {
	var out []int
	for i := range fc.drop {
		if !fc.deleted[i] {
			out = append(out, i)
		}
	}
	return out
}

// msg resolves a message-number argument.
func (fc *fakeConn) msg(arg string) (int, bool) {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 || n > len(fc.drop) || fc.deleted[n-1] {
		fc.reply("-ERR no such message")
		return 0, false
	}
	return n - 1, true
}

// authXOAUTH2 serves AUTH XOAUTH2 as Gmail and Microsoft 365 do: an empty
// challenge, the client's response, then +OK, or the error as a base64 JSON
// challenge, an empty line from the client, and -ERR.
func (fc *fakeConn) authXOAUTH2(mech string) {
	if !strings.EqualFold(mech, "XOAUTH2") {
		fc.reply("-ERR unsupported mechanism")
		return
	}
	fc.reply("+ ")
	line, err := fc.r.ReadString('\n')
	if err != nil {
		return
	}
	resp, _ := base64.StdEncoding.DecodeString(strings.TrimRight(line, "\r\n"))
	if string(resp) != "user="+testUser+"\x01auth=Bearer "+testToken+"\x01\x01" {
		fc.reply("+ " + base64.StdEncoding.EncodeToString([]byte(`{"status":"401","schemes":"bearer"}`)))
		fc.r.ReadString('\n')
		fc.reply("-ERR [AUTH] invalid credentials")
		return
	}
	fc.authed = true
	fc.drop = fc.f.visible()
	fc.reply("+OK logged in")
}

// handle answers one command; false ends the session.
func (fc *fakeConn) handle(cmd, arg string) bool {
	f, o := fc.f, fc.f.opts
	if !fc.authed {
		switch cmd {
		case "CAPA":
			if o.noCAPA {
				fc.reply("-ERR unknown command")
				return true
			}
			caps := "+OK\r\nUSER\r\n"
			if o.plain && o.stls && !fc.tls {
				caps += "STLS\r\n"
			}
			fc.reply(caps + ".")
		case "STLS":
			if fc.tls || !o.stls || o.stlsErr {
				fc.reply("-ERR STLS not available")
				return true
			}
			fc.w.WriteString("+OK begin TLS\r\n" + o.inject)
			fc.w.Flush()
			tc := tls.Server(fc.c, f.tls)
			if err := tc.Handshake(); err != nil {
				return false
			}
			fc.c, fc.tls = tc, true
			fc.r, fc.w = bufio.NewReader(tc), bufio.NewWriter(tc)
		case "USER":
			fc.user = arg
			fc.reply("+OK")
		case "AUTH":
			fc.authXOAUTH2(arg)
		case "PASS":
			if fc.user != testUser || arg != testPass {
				fc.reply("-ERR [AUTH] invalid login")
				return true
			}
			if o.passErr != "" {
				fc.reply("-ERR " + o.passErr)
				return true
			}
			fc.authed = true
			fc.drop = f.visible()
			fc.reply("+OK logged in")
		case "QUIT":
			fc.reply("+OK bye")
			return false
		default:
			fc.reply("-ERR not authenticated")
		}
		return true
	}
	switch cmd {
	case "CAPA":
		if o.noCAPA {
			fc.reply("-ERR unknown command")
			return true
		}
		caps := "+OK\r\nUSER\r\nRESP-CODES\r\n"
		if !o.noTop {
			caps += "TOP\r\n"
		}
		if !o.noUIDL {
			caps += "UIDL\r\n"
		}
		if o.pipelining {
			caps += "PIPELINING\r\n"
		}
		if o.expire0 {
			caps += "EXPIRE 0\r\n"
		}
		fc.reply(caps + ".")
	case "NOOP":
		fc.reply("+OK")
	case "STAT":
		n, size := 0, 0
		for _, i := range fc.live() {
			n++
			size += len(fc.drop[i].body)
		}
		fc.reply(fmt.Sprintf("+OK %d %d", n, size))
	case "LIST":
		var b strings.Builder
		b.WriteString("+OK\r\n")
		for _, i := range fc.live() {
			fmt.Fprintf(&b, "%d %d\r\n", i+1, len(fc.drop[i].body))
		}
		fc.reply(b.String() + ".")
	case "UIDL":
		if o.noUIDL {
			fc.reply("-ERR unknown command")
			return true
		}
		if o.rawUIDL != "" {
			fc.reply("+OK\r\n" + o.rawUIDL + ".")
			return true
		}
		var b strings.Builder
		b.WriteString("+OK\r\n")
		for _, i := range fc.live() {
			fmt.Fprintf(&b, "%d %s\r\n", i+1, fc.drop[i].uidl)
		}
		fc.reply(b.String() + ".")
	case "RETR":
		i, ok := fc.msg(arg)
		if !ok {
			return true
		}
		if o.hangRetr {
			io.Copy(io.Discard, fc.r) // until the client gives up
			return false
		}
		body := fc.drop[i].body
		fc.retrd[i] = true
		f.mu.Lock()
		cut := o.dropAfter > 0 && f.drops < o.dropTimes
		if cut {
			f.drops++
		}
		f.mu.Unlock()
		w := fc.w
		if cut {
			w = bufio.NewWriter(&cutWriter{w: fc.c, left: o.dropAfter})
		}
		fmt.Fprintf(w, "+OK %d octets\r\n", len(body))
		writeStuffed(w, body)
		if err := w.Flush(); err != nil || cut {
			return false
		}
	case "TOP": // RFC 1939 §7: the header section, the blank line, then n body lines
		num, lines, _ := strings.Cut(arg, " ")
		n, err := strconv.Atoi(lines)
		if o.noTop || err != nil || n < 0 {
			fc.reply("-ERR no TOP")
			return true
		}
		i, ok := fc.msg(num)
		if !ok {
			return true
		}
		if fc.drop[i].uidl == o.topRefuse {
			fc.reply("-ERR [SYS/PERM] cannot read that one")
			return true
		}
		body := fc.drop[i].body
		end := len(body)
		if j := bytes.Index(body, []byte("\r\n\r\n")); j >= 0 {
			end = j + 4
		}
		for ; n > 0 && end < len(body); n-- {
			if j := bytes.IndexByte(body[end:], '\n'); j >= 0 {
				end += j + 1
			} else {
				end = len(body)
			}
		}
		fc.w.WriteString("+OK\r\n")
		for pad := o.topPad; pad > 0; pad -= 100 {
			fc.w.WriteString("X-Pad: " + strings.Repeat("p", 91) + "\r\n")
		}
		writeStuffed(fc.w, body[:end])
		if fc.w.Flush() != nil {
			return false
		}
	case "DELE":
		f.mu.Lock()
		f.deles++
		cut := o.cutAtDele > 0 && f.deles == o.cutAtDele
		f.mu.Unlock()
		if cut {
			return false
		}
		if i, ok := fc.msg(arg); ok {
			fc.deleted[i] = true
			fc.deles = append(fc.deles, i)
			fc.reply("+OK deleted")
		}
	case "RSET":
		fc.deleted, fc.deles = map[int]bool{}, nil
		fc.reply("+OK")
	case "QUIT":
		switch {
		case o.dropBefQuit:
			return false
		case o.quitErr:
			fc.reply("-ERR [SYS/TEMP] cannot commit")
			return false
		}
		f.mu.Lock()
		f.quits++
		half := o.quitHalf && f.quits == 1
		gone := map[*fakeMsg]bool{}
		commit := fc.deles
		if half {
			commit = commit[:len(commit)/2]
		}
		for _, i := range commit {
			gone[fc.drop[i]] = true
		}
		var keep []*fakeMsg
		for _, m := range f.msgs {
			if !gone[m] {
				keep = append(keep, m)
			}
		}
		f.msgs = keep
		f.mu.Unlock()
		if half {
			fc.reply("-ERR [SYS/TEMP] could not delete every message")
			return false
		}
		fc.quit = true
		fc.reply("+OK bye")
		return false
	default:
		fc.reply("-ERR unknown command")
	}
	return true
}

// writeStuffed writes body as a multi-line response (RFC 1939 §3): lines
// starting with '.' get another, a missing final CRLF is added, then ".".
// It does not copy the body, so a big message costs no memory here.
func writeStuffed(w *bufio.Writer, body []byte) {
	last := byte('\n')
	for len(body) > 0 {
		n := bytes.IndexByte(body, '\n') + 1
		if n == 0 {
			n = len(body)
		}
		if body[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(body[:n])
		last = body[n-1]
		body = body[n:]
	}
	if last != '\n' {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
}

// stuffed returns the wire form writeStuffed produces, for tests of the
// reader alone.
func stuffed(body []byte) []byte {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	writeStuffed(w, body)
	w.Flush()
	return b.Bytes()
}

// cutWriter passes left bytes, then fails: the server "drops" mid-RETR.
type cutWriter struct {
	w    io.Writer
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("cut")
	}
	if len(p) > c.left {
		n, _ := c.w.Write(p[:c.left])
		c.left = 0
		return n, errors.New("cut")
	}
	c.left -= len(p)
	return c.w.Write(p)
}

// config returns the Config reaching f.
func (f *fakeServer) config() *Config {
	c := &Config{Host: "127.0.0.1", Port: f.port(), User: testUser, TLS: TLSImplicit}
	if f.opts.plain {
		c.TLS = TLSSTLS
	}
	return c
}

// options returns OpenOptions trusting the test certificate, with the right
// password and a short timeout.
func options(t testing.TB) *mail.OpenOptions {
	_, ca := mailtest.LocalCert(t)
	return &mail.OpenOptions{
		CAFile:   ca,
		Password: func(context.Context) (string, error) { return testPass, nil },
		Timeout:  20 * time.Second,
	}
}

// open connects a Source to f and registers its Close.
func (f *fakeServer) open(t testing.TB, o *mail.OpenOptions) *Source {
	t.Helper()
	if o == nil {
		o = options(t)
	}
	s, err := New(context.Background(), f.config(), o)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newRawServer accepts connections, sends greeting and waits for the client
// to hang up: for greetings the scripted server would not send.
func newRawServer(t testing.TB, greeting string) (port int) {
	t.Helper()
	ln := mailtest.Listen(t)
	mailtest.Serve(t, ln, func(c net.Conn) {
		io.WriteString(c, greeting)
		io.Copy(io.Discard, c)
	})
	return ln.Addr().(*net.TCPAddr).Port
}
