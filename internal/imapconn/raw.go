package imapconn

// This file holds what the IMAP sink (sinks/imapsink) needs beyond Dial and
// ParseURL: a logged-in connection without imapclient, for commands the
// library cannot send (MULTIAPPEND, RFC 3502), and the special-use roles of
// the source's mailboxes (mail.RoleLister).

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
	rc := &RawConn{Conn: t.top, R: bufio.NewReaderSize(t.top, 32<<10)}
	t.phase = "greeting and login"
	if err := rawLogin(ctx, rc, cfg, t.secret(o.Password), t.secret(o.Token), t.secure); err != nil {
		return nil, t.fail(err)
	}
	if !t.disarm() {
		return nil, t.fail(errors.New("connection closed"))
	}
	return rc, nil
}

// rawLogin reads the greeting and authenticates (with token, when not nil,
// by OAUTHBEARER or XOAUTH2; else AUTHENTICATE PLAIN when offered, LOGIN
// otherwise), leaving rc.Caps set.
func rawLogin(ctx context.Context, rc *RawConn, cfg *Config, password, token func() (string, error), secure bool) error {
	addr := cfg.Addr()
	line, err := rawReadLine(rc.R)
	if err != nil {
		return mail.DialError(addr, fmt.Errorf("greeting: %w", err))
	}
	kind, rest := SplitStatus(line)
	switch {
	case !strings.HasPrefix(line, "* "):
		return mail.DialError(addr, fmt.Errorf("invalid greeting %q", Clip(line, 80)))
	case kind == "BYE":
		return mail.Temp(fmt.Errorf("imap: connect %s: server refused the session: %s", addr, rest))
	case kind == "PREAUTH":
		if !secure {
			return mail.DialError(addr, errors.New("unencrypted PREAUTH refused"))
		}
		return rawCaps(rc, capsFromText(rest))
	case kind != "OK":
		return mail.DialError(addr, fmt.Errorf("invalid greeting %q", Clip(line, 80)))
	}
	if err := rawCaps(rc, capsFromText(rest)); err != nil {
		return err
	}
	// The same rule as Dial's login: LOGINDISABLED in clear text refuses
	// AUTH=PLAIN and tokens too, before any secret is asked for.
	usePlain, err := loginPolicy(cfg, rc.Has, secure, token != nil)
	if err != nil {
		return err
	}
	var pw, tok string
	if token != nil {
		if oauthMech(func(m string) bool { return rc.Has("AUTH=" + m) }) == "" {
			return noOAuth(cfg)
		}
		if tok, err = token(); err != nil {
			return tokenError(ctx, cfg, err)
		}
	} else {
		if pw, err = password(); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("imap: password for %s: %w", cfg.Ident(), ctx.Err())
			}
			return mail.MakeFatal(fmt.Errorf("imap: password for %s: %w", cfg.Ident(), err))
		}
	}
	w := bufio.NewWriter(rc.Conn)
	flush := func() error {
		if err := w.Flush(); err != nil {
			return mail.Temp(fmt.Errorf("imap: login %s: %w", cfg.Ident(), err))
		}
		return nil
	}
	// cont waits for the server's "+" before a synchronising literal or a
	// SASL response; anything else is the verdict.
	cont := func() error {
		if err := flush(); err != nil {
			return err
		}
		line, err := rawReadLine(rc.R)
		if err != nil {
			return mail.Temp(fmt.Errorf("imap: login %s: %w", cfg.Ident(), err))
		}
		if !strings.HasPrefix(line, "+") {
			return rawLoginVerdict(cfg, strings.TrimPrefix(line, "L1 "))
		}
		return nil
	}
	mech := ""
	if token != nil {
		if mech, err = rawOAuth(rc, cfg, tok, w, cont); err != nil {
			return err
		}
	} else if usePlain {
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + cfg.User + "\x00" + pw))
		if rc.Has("SASL-IR") {
			fmt.Fprintf(w, "L1 AUTHENTICATE PLAIN %s\r\n", ir)
		} else {
			fmt.Fprintf(w, "L1 AUTHENTICATE PLAIN\r\n")
			if err := cont(); err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\r\n", ir)
		}
	} else {
		w.WriteString("L1 LOGIN")
		for _, arg := range []string{cfg.User, pw} {
			w.WriteString(" ")
			switch {
			case rawQuotable(arg):
				w.WriteString(`"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(arg) + `"`)
			case rc.Has("LITERAL+"):
				fmt.Fprintf(w, "{%d+}\r\n%s", len(arg), arg)
			default:
				fmt.Fprintf(w, "{%d}\r\n", len(arg))
				if err := cont(); err != nil {
					return err
				}
				w.WriteString(arg)
			}
		}
		w.WriteString("\r\n")
	}
	if err := flush(); err != nil {
		return err
	}
	detail := ""
	for {
		line, err := rawReadLine(rc.R)
		if err != nil {
			return mail.Temp(fmt.Errorf("imap: login %s: %w", cfg.Ident(), err))
		}
		switch {
		case strings.HasPrefix(line, "+") && mech != "":
			// An OAuth2 error challenge: keep the reason, answer so that the
			// server ends the exchange with its NO.
			if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.TrimPrefix(line, "+"))); err == nil {
				detail = string(b)
			}
			fmt.Fprintf(w, "%s\r\n", base64.StdEncoding.EncodeToString(oauthAbort(mech)))
			w.Flush()
		case strings.HasPrefix(line, "+"):
			// A challenge PLAIN does not expect: cancel the exchange.
			fmt.Fprintf(w, "*\r\n")
			w.Flush()
		case strings.HasPrefix(line, "* "):
			if k, rest := SplitStatus(line); k == "CAPABILITY" {
				rc.Caps = capsFromText("[CAPABILITY " + rest + "]")
			}
		case strings.HasPrefix(line, "L1 "):
			if k, rest := SplitStatus(line[3:]); k == "OK" {
				if c := capsFromText(rest); c != nil {
					rc.Caps = c
					return nil
				}
				return rawCaps(rc, nil)
			}
			if mech != "" {
				return rawLoginVerdict(cfg, strings.TrimSpace(line[3:]+" "+mech+": "+detail))
			}
			return rawLoginVerdict(cfg, line[3:])
		}
	}
}

// rawLoginVerdict classifies a refused login as login does.
func rawLoginVerdict(cfg *Config, resp string) error {
	kind, text := SplitStatus(resp)
	code := ""
	if strings.HasPrefix(text, "[") {
		if end := strings.IndexByte(text, ']'); end > 0 {
			code = strings.ToUpper(strings.Fields(text[1:end] + " ")[0])
			text = strings.TrimSpace(text[end+1:])
		}
	}
	if code == string(imap.ResponseCodeUnavailable) || code == string(imap.ResponseCodeInUse) {
		return mail.Temp(fmt.Errorf("imap: login %s: server temporarily unavailable: %s", cfg.Ident(), text))
	}
	if kind != "NO" && kind != "BAD" {
		return mail.Temp(fmt.Errorf("imap: login %s: unexpected answer %q", cfg.Ident(), Clip(resp, 80)))
	}
	if text == "" {
		text = kind
	}
	return fmt.Errorf("imap: login %s rejected: %s: %w", cfg.Ident(), Clip(text, 200), mail.ErrAuth)
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
