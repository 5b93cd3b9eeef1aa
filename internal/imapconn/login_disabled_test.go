package imapconn

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

const f5Token = "ya29.f5-t0ken-Secret"

// TestF5LoginDisabledEveryPath: LOGINDISABLED on a clear-text session
// (plaintext and plaintext auth both allowed) refuses every credential on
// every login path: imapclient (Dial, used by the source) and the raw
// connection (DialRaw, used by the IMAP sink's appenders), with a password
// or an OAuth2 token, and also when AUTH=PLAIN or AUTH=XOAUTH2 is offered
// beside it. The secret is never even asked for, and no LOGIN or
// AUTHENTICATE goes out. The same servers without LOGINDISABLED log in
// with one command, so the fake can tell a refusal from a broken login.
func TestF5LoginDisabledEveryPath(t *testing.T) {
	for _, tc := range []struct {
		name  string
		caps  string
		token bool
		want  string // "" = one login, then a session
		cmd   string // the login command expected when want is ""
	}{
		{name: "Password", caps: "IMAP4rev1 LOGINDISABLED", want: "disables login without TLS"},
		{name: "PasswordAuthPlain", caps: "IMAP4rev1 AUTH=PLAIN LOGINDISABLED", want: "disables login without TLS"},
		{name: "PasswordAuthPlainSASLIR", caps: "IMAP4rev1 SASL-IR AUTH=PLAIN LOGINDISABLED", want: "disables login without TLS"},
		{name: "Token", caps: "IMAP4rev1 AUTH=XOAUTH2 LOGINDISABLED", token: true, want: "disables login without TLS"},
		{name: "TokenOAuthBearer", caps: "IMAP4rev1 SASL-IR AUTH=OAUTHBEARER AUTH=PLAIN LOGINDISABLED", token: true, want: "disables login without TLS"},

		{name: "ControlLogin", caps: "IMAP4rev1", cmd: "LOGIN"},
		{name: "ControlAuthPlain", caps: "IMAP4rev1 AUTH=PLAIN", cmd: "AUTHENTICATE"},
		{name: "ControlToken", caps: "IMAP4rev1 SASL-IR AUTH=XOAUTH2", token: true, cmd: "AUTHENTICATE"},
	} {
		for _, raw := range []bool{false, true} {
			name := tc.name + "/Dial"
			if raw {
				name = tc.name + "/DialRaw"
			}
			t.Run(name, func(t *testing.T) {
				var mu atomic.Value // last continuation answer, for the leak check
				mu.Store("")
				f := startFake(t, &fakeServer{caps: tc.caps, handle: func(fc *fakeConn, tag, cmd, args string) bool {
					if cmd != "AUTHENTICATE" {
						return false
					}
					if !strings.Contains(strings.TrimSpace(args), " ") {
						fc.send("+ \r\n")
						line, _ := fc.r.ReadString('\n')
						mu.Store(line)
					}
					fc.send("%s OK authenticated\r\n", tag)
					return true
				}})
				var asked atomic.Int32
				o := plainOpts() // AllowPlaintext, and not RefusePlaintextAuth
				if tc.token {
					o.Password = nil
					o.Token = func(context.Context) (string, error) { asked.Add(1); return f5Token, nil }
				} else {
					o.Password = func(context.Context) (string, error) { asked.Add(1); return testPass, nil }
				}
				cfg := addrConfig(t, f.addr, TLSStartTLS)
				err := dialAndClose(cfg, o, raw)
				sent := append(f.sent(), mu.Load().(string))
				logins := 0
				var verb string
				for _, l := range sent {
					if fl := strings.Fields(l); len(fl) >= 2 && (strings.EqualFold(fl[1], "LOGIN") || strings.EqualFold(fl[1], "AUTHENTICATE")) {
						logins++
						verb = strings.ToUpper(fl[1])
					}
				}
				leaked := secretIn(sent)
				if tc.want == "" {
					if err != nil || logins != 1 || verb != tc.cmd {
						t.Fatalf("dial = %v after %d logins (last %s), want a session after one %s: %q", err, logins, verb, tc.cmd, sent)
					}
					if !leaked {
						t.Fatalf("the secret never reached the fake (%q): the leak check below could not fail", sent)
					}
					return
				}
				var ce *mail.ConfigError
				if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ce) {
					t.Fatalf("dial = %v, want a *mail.ConfigError with %q", err, tc.want)
				}
				if logins != 0 || asked.Load() != 0 || leaked {
					t.Errorf("credentials went out: %d login commands, secret asked %d times, leaked %v: %q", logins, asked.Load(), leaked, sent)
				}
			})
		}
	}
}

// secretIn reports whether any line holds the password or the token, in
// clear or inside a base64 SASL response.
func secretIn(lines []string) bool {
	for _, l := range lines {
		if strings.Contains(l, testPass) || strings.Contains(l, f5Token) {
			return true
		}
		for _, f := range strings.Fields(l) {
			if b, err := base64.StdEncoding.DecodeString(f); err == nil && (strings.Contains(string(b), testPass) || strings.Contains(string(b), f5Token)) {
				return true
			}
		}
	}
	return false
}

// dialAndClose opens a session through Dial or, with raw, DialRaw (the two
// login paths) and closes it again.
func dialAndClose(cfg *Config, o *mail.OpenOptions, raw bool) error {
	if raw {
		rc, err := DialRaw(context.Background(), cfg, o)
		if err == nil {
			rc.Close()
		}
		return err
	}
	c, err := Dial(context.Background(), cfg, o)
	if err == nil {
		c.Close()
	}
	return err
}
