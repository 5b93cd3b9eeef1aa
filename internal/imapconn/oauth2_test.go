package imapconn

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

const testToken = "ya29.a0-test-access-token"

// oauthServer is go-imap's memory server whose sessions accept only OAuth2
// (the mechanisms in mechs) with testToken, as Gmail and Microsoft 365 do.
type oauthServer struct {
	addr, ca string
	mu       sync.Mutex
	used     []string // mechanism of each AUTHENTICATE
	aborts   []string // the client's answer to an error challenge
}

func startOAuth(t *testing.T, mechs ...string) *oauthServer {
	t.Helper()
	tlsCfg, ca := mailtest.LocalCert(t)
	mem, user := mailtest.NewMemIMAP(t, testUser, testPass)
	user.Append("INBOX", literal{strings.NewReader("Subject: hi\r\n\r\nhello\r\n")}, &imap.AppendOptions{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)})
	o := &oauthServer{ca: ca}
	ln := tls.NewListener(mailtest.Listen(t), tlsCfg)
	mailtest.ServeIMAP(t, mem, imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &saslSession{Session: mem.NewSession(), mechs: mechs, srv: o}, nil, nil
		},
		Caps:      imap.CapSet{imap.CapIMAP4rev1: {}},
		TLSConfig: tlsCfg,
	}, ln)
	o.addr = ln.Addr().String()
	return o
}

type saslSession struct {
	imapserver.Session
	mechs []string
	srv   *oauthServer
}

func (s *saslSession) AuthenticateMechanisms() []string { return s.mechs }

func (s *saslSession) Authenticate(mech string) (sasl.Server, error) {
	s.srv.mu.Lock()
	s.srv.used = append(s.srv.used, mech)
	s.srv.mu.Unlock()
	want := map[string]string{
		"OAUTHBEARER": "n,a=" + testUser + ",\x01auth=Bearer " + testToken + "\x01\x01",
		"XOAUTH2":     "user=" + testUser + "\x01auth=Bearer " + testToken + "\x01\x01",
	}[mech]
	if want == "" {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "unsupported mechanism"}
	}
	return &tokenServer{s: s, want: want}, nil
}

// tokenServer checks the client's response; a wrong token gets the JSON
// error challenge, then NO.
type tokenServer struct {
	s      *saslSession
	want   string
	failed bool
}

func (ts *tokenServer) Next(resp []byte) ([]byte, bool, error) {
	switch {
	case ts.failed:
		ts.s.srv.mu.Lock()
		ts.s.srv.aborts = append(ts.s.srv.aborts, fmt.Sprintf("%q", resp))
		ts.s.srv.mu.Unlock()
		return nil, false, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Invalid credentials"}
	case resp == nil: // no initial response: ask for it
		return []byte{}, false, nil
	case string(resp) == ts.want:
		if err := ts.s.Login(testUser, testPass); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	ts.failed = true
	return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
}

func (o *oauthServer) mechs() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.used...)
}

// TestOAuth2Login: with a token getter the source logs in with OAUTHBEARER
// when offered, else XOAUTH2 (never LOGIN or PLAIN), asking for the token
// on each connection; a refused token is ErrAuth with the server's reason,
// and neither errors nor the trace show the token.
func TestOAuth2Login(t *testing.T) {
	tests := []struct {
		offered []string
		want    string
		abort   string // the client's answer to the error challenge
	}{
		{[]string{"XOAUTH2", "OAUTHBEARER"}, "OAUTHBEARER", `"\x01"`},
		{[]string{"XOAUTH2"}, "XOAUTH2", `""`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			o := startOAuth(t, tc.offered...)
			cfg := addrConfig(t, o.addr, TLSImplicit)
			var calls atomic.Int64
			var mu sync.Mutex
			var trace []string
			token := testToken
			opts := &mail.OpenOptions{
				CAFile:  o.ca,
				Timeout: 10 * time.Second,
				Token:   func(context.Context) (string, error) { calls.Add(1); return token, nil },
				Trace:   func(l string) { mu.Lock(); trace = append(trace, l); mu.Unlock() },
			}
			c, err := Dial(context.Background(), cfg, opts)
			if err != nil {
				t.Fatalf("Dial() = %v", err)
			}
			if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
				t.Errorf("Select = %v, %+v, want 1 message", err, sel)
			}
			c.Close()
			rc, err := DialRaw(context.Background(), cfg, opts)
			if err != nil {
				t.Fatalf("DialRaw() = %v", err)
			}
			rc.Close()
			used := o.mechs()
			if len(used) < 2 || used[0] != tc.want {
				t.Errorf("mechanisms used = %v, want %s", used, tc.want)
			}
			if calls.Load() != int64(len(used)) {
				t.Errorf("token asked %d times for %d logins, want once per login", calls.Load(), len(used))
			}

			token = "ya29.revoked-token"
			for name, dial := range map[string]func() error{
				"Dial":    func() error { _, err := Dial(context.Background(), cfg, opts); return err },
				"DialRaw": func() error { _, err := DialRaw(context.Background(), cfg, opts); return err },
			} {
				err := dial()
				if !errors.Is(err, mail.ErrAuth) || !strings.Contains(err.Error(), "Invalid credentials") || !strings.Contains(err.Error(), "401") {
					t.Errorf("%s with a bad token = %v, want ErrAuth with the server's reason", name, err)
				}
				if err != nil && strings.Contains(err.Error(), token) {
					t.Errorf("%s: error shows the token: %v", name, err)
				}
			}
			o.mu.Lock()
			aborts := o.aborts
			o.mu.Unlock()
			if len(aborts) != 2 || aborts[0] != tc.abort || aborts[1] != tc.abort {
				t.Errorf("answers to the error challenge = %v, want %s twice", aborts, tc.abort)
			}
			mu.Lock()
			all := strings.Join(trace, "\n")
			mu.Unlock()
			b64 := base64.StdEncoding.EncodeToString([]byte("user=" + testUser + "\x01auth=Bearer " + testToken))
			if strings.Contains(all, testToken) || strings.Contains(all, "ya29.revoked") || strings.Contains(all, b64[:20]) {
				t.Errorf("trace shows the token:\n%s", all)
			}
		})
	}
}

// TestOAuth2NotOffered: a server without OAUTHBEARER or XOAUTH2 is a
// configuration error, and the token is not even asked for.
func TestOAuth2NotOffered(t *testing.T) {
	m := startMem(t, nil)
	o := m.opts(testPass)
	o.Token = func(context.Context) (string, error) { t.Error("token asked for"); return testToken, nil }
	for name, dial := range map[string]func() error{
		"Dial":    func() error { _, err := Dial(context.Background(), m.config(t, false), o); return err },
		"DialRaw": func() error { _, err := DialRaw(context.Background(), m.config(t, false), o); return err },
	} {
		if err := dial(); !errors.Is(err, mail.ErrConfig) || !strings.Contains(err.Error(), "XOAUTH2") {
			t.Errorf("%s = %v, want a ConfigError naming the mechanisms", name, err)
		}
	}
}

// TestOAuth2RawWithoutSASLIR: without SASL-IR the raw login waits for the
// server's "+" before the response.
func TestOAuth2RawWithoutSASLIR(t *testing.T) {
	want := base64.StdEncoding.EncodeToString([]byte("user=" + testUser + "\x01auth=Bearer " + testToken + "\x01\x01"))
	f := startFake(t, &fakeServer{caps: "IMAP4rev1 AUTH=XOAUTH2", handle: func(fc *fakeConn, tag, cmd, args string) bool {
		if cmd != "AUTHENTICATE" {
			return false
		}
		if args != "XOAUTH2" {
			fc.send("%s BAD initial response without SASL-IR\r\n", tag)
			return true
		}
		fc.send("+ \r\n")
		line, _ := fc.r.ReadString('\n')
		if strings.TrimRight(line, "\r\n") != want {
			fc.send("%s NO wrong response\r\n", tag)
			return true
		}
		fc.send("%s OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in\r\n", tag)
		return true
	}})
	o := plainOpts()
	o.Token = func(context.Context) (string, error) { return testToken, nil }
	rc, err := DialRaw(context.Background(), addrConfig(t, f.addr, TLSStartTLS), o)
	if err != nil {
		t.Fatalf("DialRaw() = %v", err)
	}
	rc.Close()
	if !rc.Has("UIDPLUS") {
		t.Errorf("caps after login = %v", rc.Caps)
	}
}

var _ net.Conn = (*fakeConn)(nil)
