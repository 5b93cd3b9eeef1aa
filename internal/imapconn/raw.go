package imapconn

// A logged-in connection without imapclient: the one raw path, for what
// the library cannot send (MULTIAPPEND, RFC 3502, in the IMAP sink; the
// X-GM-MSGID fetch of the IMAP source's Gmail preset; the incremental
// listing's Session with CONDSTORE and QRESYNC, delta.go; next OBJECTID). It is dialled, secured and logged in exactly as
// Dial's clients are (openTransport, authenticate).

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
)

// RawConn is a logged-in IMAP connection that the caller drives by hand. It
// has the same protection as Dial's clients: TLS verified (or plaintext only
// when allowed), inactivity deadlines instead of absolute ones, --trace with
// credentials masked. The caller owns it and must Close it.
type RawConn struct {
	net.Conn
	// R reads from Conn; it may already hold bytes the server sent.
	R *bufio.Reader
	// Caps are the capabilities after login, upper case.
	Caps map[string]bool

	dc *Conn // the TCP connection under Conn (Closed)
}

// Has reports whether the server announced capability c (case-insensitive).
func (rc *RawConn) Has(c string) bool { return rc.Caps[strings.ToUpper(c)] }

// rawLineMax bounds one response line read during login.
const rawLineMax = 64 << 10

// DialRaw connects and logs in like Dial, but hands back the bare
// connection in the authenticated state instead of an imapclient.Client.
// Errors are classified as Dial's are. ctx bounds only the dial.
func DialRaw(ctx context.Context, cfg *Config, o *mail.OpenOptions) (*RawConn, error) {
	if o == nil {
		o = &mail.OpenOptions{}
	}
	t, err := openTransport(ctx, cfg, o, Logger(cfg, o))
	if err != nil {
		return nil, err
	}
	rc := &RawConn{Conn: t.top, R: bufio.NewReaderSize(t.top, 32<<10), dc: t.dc}
	t.phase = "greeting and login"
	preauth, err := rawGreeting(rc, cfg, t.secure)
	if err == nil && !preauth {
		sess := &rawAuth{rc: rc, w: bufio.NewWriter(rc.Conn)}
		err = authenticate(ctx, sess, cfg, t.secret(o.Password), t.secret(o.Token), t.secure)
	}
	if err != nil {
		return nil, t.fail(err)
	}
	if !t.disarm() {
		return nil, t.fail(errors.New("connection closed"))
	}
	return rc, nil
}

// rawGreeting reads the greeting and leaves rc.Caps set; preauth reports
// a PREAUTH greeting (refused in clear text), after which no login follows.
func rawGreeting(rc *RawConn, cfg *Config, secure bool) (preauth bool, err error) {
	addr := cfg.Addr()
	line, err := rawReadLine(rc.R)
	if err != nil {
		return false, mail.DialError(addr, fmt.Errorf("greeting: %w", err))
	}
	kind, rest := SplitStatus(line)
	switch {
	case !strings.HasPrefix(line, "* "):
		return false, mail.DialError(addr, fmt.Errorf("invalid greeting %q", Clip(line, 80)))
	case kind == "BYE":
		return false, mail.Temp(fmt.Errorf("imap: connect %s: server refused the session: %s", addr, rest))
	case kind == "PREAUTH" && !secure:
		return false, mail.DialError(addr, errors.New("unencrypted PREAUTH refused"))
	case kind != "OK" && kind != "PREAUTH":
		return false, mail.DialError(addr, fmt.Errorf("invalid greeting %q", Clip(line, 80)))
	}
	return kind == "PREAUTH", rawCaps(rc, capsFromText(rest))
}

// rawAuth is authSession on a raw connection; its commands are tagged L1.
type rawAuth struct {
	rc *RawConn
	w  *bufio.Writer
}

func (a *rawAuth) has(c string) bool { return a.rc.Has(c) }

// login sends LOGIN, each argument quoted or, when it cannot be, as a
// literal (non-synchronising with LITERAL+).
func (a *rawAuth) login(user, pass string) error {
	_, _ = a.w.WriteString("L1 LOGIN") // bufio: an error sticks and Flush reports it
	for _, arg := range []string{user, pass} {
		_, _ = a.w.WriteString(" ") // bufio: an error sticks and Flush reports it
		switch {
		case rawQuotable(arg):
			_, _ = a.w.WriteString(Quote(arg)) // bufio: an error sticks and Flush reports it
		case a.has("LITERAL+"):
			fmt.Fprintf(a.w, "{%d+}\r\n%s", len(arg), arg)
		default:
			fmt.Fprintf(a.w, "{%d}\r\n", len(arg))
			if err := a.cont(); err != nil {
				return err
			}
			_, _ = a.w.WriteString(arg) // bufio: an error sticks and Flush reports it
		}
	}
	_, _ = a.w.WriteString("\r\n") // bufio: an error sticks and Flush reports it
	_, err := a.finish("")
	return err
}

// authenticate sends AUTHENTICATE mech with ir: on the command line with
// SASL-IR, else after the server's "+".
func (a *rawAuth) authenticate(mech string, ir []byte) (string, error) {
	enc := base64.StdEncoding.EncodeToString(ir)
	if a.has("SASL-IR") {
		_, _ = a.w.WriteString("L1 AUTHENTICATE " + mech + " " + enc + "\r\n") // bufio: an error sticks and Flush reports it
	} else {
		_, _ = a.w.WriteString("L1 AUTHENTICATE " + mech + "\r\n") // bufio: an error sticks and Flush reports it
		if err := a.cont(); err != nil {
			return "", err
		}
		_, _ = a.w.WriteString(enc + "\r\n") // bufio: an error sticks and Flush reports it
	}
	return a.finish(mech)
}

// cont waits for the server's "+" before a synchronising literal or a
// SASL response; anything else is the verdict.
func (a *rawAuth) cont() error {
	if err := a.w.Flush(); err != nil {
		return err
	}
	line, err := rawReadLine(a.rc.R)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+") {
		return rawVerdict(strings.TrimPrefix(line, "L1 "))
	}
	return nil
}

// finish reads to the tagged answer of the login command. A challenge is
// answered as authSession.authenticate says; mech is the SASL mechanism
// ("" for LOGIN).
func (a *rawAuth) finish(mech string) (detail string, err error) {
	if err := a.w.Flush(); err != nil {
		return "", err
	}
	for {
		line, err := rawReadLine(a.rc.R)
		if err != nil {
			return detail, err
		}
		switch {
		case strings.HasPrefix(line, "+") && mech != "" && mech != "PLAIN":
			// An OAuth2 error challenge: keep the reason, answer so that the
			// server ends the exchange with its NO.
			if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.TrimPrefix(line, "+"))); err == nil {
				detail = string(b)
			}
			fmt.Fprintf(a.w, "%s\r\n", base64.StdEncoding.EncodeToString(oauthAbort(mech)))
			_ = a.w.Flush() // a lost write shows up as the next read failing
		case strings.HasPrefix(line, "+"):
			// A challenge PLAIN does not expect: cancel the exchange.
			fmt.Fprintf(a.w, "*\r\n")
			_ = a.w.Flush() // a lost write shows up as the next read failing
		case strings.HasPrefix(line, "* "):
			if k, rest := SplitStatus(line); k == "CAPABILITY" {
				a.rc.Caps = capsFromText("[CAPABILITY " + rest + "]")
			}
		case strings.HasPrefix(line, "L1 "):
			if k, rest := SplitStatus(line[3:]); k != "OK" {
				return detail, rawVerdict(line[3:])
			} else if c := capsFromText(rest); c != nil {
				a.rc.Caps = c
				return detail, nil
			}
			return detail, rawCaps(a.rc, nil)
		}
	}
}

// rawVerdict turns a refusal ("NO [CODE] text", the tag removed) into the
// *imap.Error imapclient would have returned, for authVerdict.
func rawVerdict(resp string) error {
	r := ParseResponse("L1 " + resp)
	if r.Kind != "NO" && r.Kind != "BAD" {
		return fmt.Errorf("unexpected answer %q", Clip(resp, 80))
	}
	return &imap.Error{Type: imap.StatusResponseType(r.Kind), Code: imap.ResponseCode(r.Code), Text: r.Text}
}

// rawCaps sets rc.Caps from caps, or asks the server when caps is nil.
func rawCaps(rc *RawConn, caps map[string]bool) error {
	if caps != nil {
		rc.Caps = caps
		return nil
	}
	if _, err := fmt.Fprintf(rc.Conn, "C1 CAPABILITY\r\n"); err != nil {
		return mail.Temp(fmt.Errorf("imap: capability: %w", err))
	}
	rc.Caps = map[string]bool{}
	for {
		line, err := rawReadLine(rc.R)
		if err != nil {
			return mail.Temp(fmt.Errorf("imap: capability: %w", err))
		}
		if k, rest := SplitStatus(line); strings.HasPrefix(line, "* ") && k == "CAPABILITY" {
			for _, c := range strings.Fields(strings.ToUpper(rest)) {
				rc.Caps[c] = true
			}
			continue
		}
		if strings.HasPrefix(line, "C1 ") {
			if k, rest := SplitStatus(line[3:]); k != "OK" {
				return mail.Temp(fmt.Errorf("imap: capability: %s %s", k, Clip(rest, 80)))
			}
			return nil
		}
	}
}

func rawReadLine(r *bufio.Reader) (string, error) {
	b, err := readLine(r, rawLineMax)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// rawQuotable reports whether s can be sent as a quoted string (7-bit
// text without CR, LF or NUL, RFC 9051 §4.3); other LOGIN arguments go as
// literals.
func rawQuotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 || c >= 0x80 {
			return false
		}
	}
	return true
}

// ReadResponse reads one response line of at most 64 KiB, literals read
// past (each at most literalMax bytes), as ReadResponse does.
func (rc *RawConn) ReadResponse(literalMax int64) (string, error) {
	return ReadResponse(rc.R, rawLineMax, literalMax)
}
