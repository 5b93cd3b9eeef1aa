package pop3

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// loginXOAUTH2 logs in with an OAuth2 access token: AUTH XOAUTH2 (RFC 5034
// SASL exchange with Google's and Microsoft's XOAUTH2 mechanism). The
// response goes after the server's empty "+" challenge rather than on the
// AUTH line, as Microsoft 365 requires; Gmail accepts both. A refusal comes
// as a "+ <base64 JSON>" challenge, answered with an empty line, then -ERR.
func (ss *session) loginXOAUTH2(ctx context.Context, o *mail.OpenOptions) error {
	tok, err := o.Token(ctx)
	if err != nil {
		return fmt.Errorf("pop3: oauth2 token for %s: %w", ss.cfg.ident(), err)
	}
	if tok == "" || strings.ContainsAny(tok, "\r\n\x00\x01") {
		return &mail.ConfigError{Msg: "pop3: the OAuth2 token for " + ss.cfg.ident() + " is empty or holds a control character"}
	}
	op := "login " + ss.cfg.ident()
	if err := ss.send("AUTH XOAUTH2"); err != nil {
		return ss.ioErr(ctx, op, err)
	}
	line, err := ss.authLine()
	if err != nil {
		return ss.ioErr(ctx, op, err)
	}
	if !strings.HasPrefix(line, "+ ") && line != "+" {
		return ss.authVerdict(line, "")
	}
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + ss.cfg.User + "\x01auth=Bearer " + tok + "\x01\x01"))
	if err := ss.sendSecret(ir); err != nil {
		return ss.ioErr(ctx, op, err)
	}
	if line, err = ss.authLine(); err != nil {
		return ss.ioErr(ctx, op, err)
	}
	detail := ""
	if strings.HasPrefix(line, "+ ") { // the error details, as a challenge
		if b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "+ ")); err == nil {
			detail = string(b)
		}
		if err := ss.send(""); err != nil {
			return ss.ioErr(ctx, op, err)
		}
		if line, err = ss.authLine(); err != nil {
			return ss.ioErr(ctx, op, err)
		}
	}
	return ss.authVerdict(line, detail)
}

// authLine reads one line of a SASL exchange.
func (ss *session) authLine() (string, error) {
	line, err := readLine(ss.br)
	if err == nil {
		ss.traceServer(line)
	}
	return line, err
}

// sendSecret writes a SASL response; the trace shows it masked.
func (ss *session) sendSecret(resp string) error {
	if ss.trace != nil {
		ss.trace("C: <redacted>")
	}
	_, err := ss.conn.Write([]byte(resp + "\r\n"))
	return err
}

// authVerdict turns the last line of AUTH into nil (+OK) or an error.
func (ss *session) authVerdict(line, detail string) error {
	ok, text, err := parseStatus(line)
	switch {
	case err != nil:
		return fmt.Errorf("pop3: login %s: AUTH XOAUTH2: %w", ss.cfg.ident(), err)
	case ok:
		return nil
	}
	if code := strings.ToUpper(text); strings.HasPrefix(code, "[IN-USE]") || strings.HasPrefix(code, "[SYS/TEMP]") {
		return mail.Temp(fmt.Errorf("pop3: login %s: maildrop not available now (server says %q)", ss.cfg.ident(), clip(text)))
	}
	if detail != "" {
		text += " " + detail
	}
	return fmt.Errorf("pop3: login %s: %w (AUTH XOAUTH2: server says %q)", ss.cfg.ident(), mail.ErrAuth, clip(text))
}
