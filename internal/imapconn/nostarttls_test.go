package imapconn

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestF5NoStartTLS: OpenOptions.NoStartTLS on imap:// against a server
// that offers STARTTLS, on both login paths (Dial for the source, DialRaw
// for the IMAP sink's appenders). With plaintext auth allowed the session
// runs in clear text with one login and no STARTTLS; without it the dial
// is refused as a config error naming --allow-plaintext-auth before the
// secret is asked for or any command is sent. The greeting checks stay
// (PREAUTH in clear, BYE, garbage) and LOGINDISABLED still refuses. The
// fake answers STARTTLS with BAD, so a STARTTLS sent would also break the
// "session" cases.
func TestF5NoStartTLS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		greeting string // "" = the fake's OK
		caps     string
		refuse   bool // RefusePlaintextAuth
		token    bool
		want     string // "" = a session after one login
		check    func(error) bool
	}{
		{name: "PlaintextAuth", caps: "IMAP4rev1 STARTTLS"},
		{name: "PlaintextAuthCapsInGreeting", greeting: "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", caps: "IMAP4rev1 STARTTLS"},
		{name: "PlaintextAuthPlainMech", caps: "IMAP4rev1 STARTTLS AUTH=PLAIN SASL-IR"},
		{name: "RefusePlaintextAuth", caps: "IMAP4rev1 STARTTLS", refuse: true, want: "--allow-plaintext-auth", check: isConfig},
		{name: "RefusePlaintextAuthToken", caps: "IMAP4rev1 STARTTLS AUTH=XOAUTH2 SASL-IR", refuse: true, token: true, want: "--allow-plaintext-auth", check: isConfig},
		{name: "LoginDisabled", caps: "IMAP4rev1 STARTTLS LOGINDISABLED", want: "disables login without TLS", check: isConfig},
		{name: "LoginDisabledToken", caps: "IMAP4rev1 STARTTLS AUTH=XOAUTH2 LOGINDISABLED", token: true, want: "disables login without TLS", check: isConfig},
		{name: "PreauthInClear", greeting: "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome\r\n", want: "PREAUTH refused", check: isUnreachable},
		{name: "Bye", greeting: "* BYE too many connections\r\n", want: "too many connections", check: mail.Temporary},
		{name: "Garbled", greeting: "SSH-2.0-OpenSSH_9.6\r\n", want: "greeting", check: isUnreachable},
	} {
		for _, raw := range []bool{false, true} {
			name := tc.name + "/Dial"
			if raw {
				name = tc.name + "/DialRaw"
			}
			t.Run(name, func(t *testing.T) {
				var sasl atomic.Value // the SASL response sent after a "+", for the leak check
				sasl.Store("")
				f := startFake(t, &fakeServer{greeting: tc.greeting, caps: tc.caps, handle: func(fc *fakeConn, tag, cmd, args string) bool {
					switch cmd {
					case "STARTTLS":
						fc.send("%s BAD not here\r\n", tag)
					case "AUTHENTICATE":
						if !strings.Contains(strings.TrimSpace(args), " ") {
							fc.send("+ \r\n")
							line, _ := fc.r.ReadString('\n')
							sasl.Store(line)
						}
						fc.send("%s OK authenticated\r\n", tag)
					default:
						return false
					}
					return true
				}})
				var asked atomic.Int32
				var (
					traceMu sync.Mutex // imapclient traces from its own goroutines too
					trace   []string
				)
				o := plainOpts()
				o.AllowPlaintext = false // NoStartTLS alone must be enough
				o.NoStartTLS, o.RefusePlaintextAuth = true, tc.refuse
				o.Trace = func(l string) {
					traceMu.Lock()
					trace = append(trace, l)
					traceMu.Unlock()
				}
				if tc.token {
					o.Password = nil
					o.Token = func(context.Context) (string, error) { asked.Add(1); return f5Token, nil }
				} else {
					o.Password = func(context.Context) (string, error) { asked.Add(1); return testPass, nil }
				}
				cfg := addrConfig(t, f.addr, TLSStartTLS)
				err := dialAndClose(cfg, o, raw)
				sent := append(f.sent(), sasl.Load().(string))
				logins, starttls := 0, 0
				for _, l := range sent {
					fl := strings.Fields(strings.ToUpper(l))
					if len(fl) >= 2 && (fl[1] == "LOGIN" || fl[1] == "AUTHENTICATE") {
						logins++
					}
					if len(fl) >= 2 && fl[1] == "STARTTLS" {
						starttls++
					}
				}
				if starttls != 0 {
					t.Errorf("STARTTLS sent with NoStartTLS: %q", sent)
				}
				traceMu.Lock()
				traced := append([]string(nil), trace...)
				traceMu.Unlock()
				for _, l := range traced {
					if strings.HasPrefix(l, "C:") && strings.Contains(strings.ToUpper(l), "STARTTLS") {
						t.Errorf("trace shows STARTTLS: %q", l)
					}
				}
				if tc.want == "" {
					if err != nil || logins != 1 || !secretIn(sent) {
						t.Fatalf("dial = %v after %d logins (secret sent: %v), want a clear-text session after one login: %q", err, logins, secretIn(sent), sent)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) || !tc.check(err) {
					t.Fatalf("dial = %v, want a refusal with %q of the right class", err, tc.want)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				if logins != 0 || asked.Load() != 0 || secretIn(sent) {
					t.Errorf("credentials went out: %d login commands, secret asked %d times: %q", logins, asked.Load(), sent)
				}
				if tc.refuse && len(f.sent()) != 0 {
					t.Errorf("refused for the flags, yet the server saw commands: %q", f.sent())
				}
			})
		}
	}
}

// TestF5NoStartTLSImplicitTLSUnaffected: NoStartTLS (even with
// RefusePlaintextAuth) changes nothing for imaps://: the session is TLS and
// logs in; and against go-imap's server, which offers STARTTLS and
// disables login in clear text, imap:// with NoStartTLS gets the
// LOGINDISABLED refusal rather than a silent upgrade.
func TestF5NoStartTLSImplicitTLSUnaffected(t *testing.T) {
	m := startMem(t, nil)
	for _, tc := range []struct {
		name     string
		startTLS bool
		want     string // "" = logged in
	}{
		{name: "Implicit"},
		{name: "STARTTLSListenerLoginDisabled", startTLS: true, want: "disables login without TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := m.opts(testPass)
			o.NoStartTLS = true
			o.RefusePlaintextAuth = !tc.startTLS
			c, err := Dial(context.Background(), m.config(t, tc.startTLS), o)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Dial(imaps, NoStartTLS) = %v, want a session", err)
				}
				// The listener speaks only TLS: a session proves it.
				c.Close()
				return
			}
			if err == nil {
				c.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !isConfig(err) {
				t.Fatalf("Dial = %v, want a config error with %q", err, tc.want)
			}
		})
	}
}

func isConfig(err error) bool {
	var ce *mail.ConfigError
	return errors.As(err, &ce)
}

func isUnreachable(err error) bool { return errors.Is(err, mail.ErrUnreachable) }
