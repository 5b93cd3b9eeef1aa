package pop3

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestF5NoStartTLSPOP3: OpenOptions.NoStartTLS against a pop3:// server
// that offers STLS. With plaintext auth allowed the maildrop is listed in
// clear text and STLS is never sent; without it New refuses with a config
// error naming --allow-plaintext-auth before connecting, so no USER, PASS
// or AUTH reaches the server and the secret is never asked for. pop3s://
// is unaffected: it stays TLS from the first byte.
func TestF5NoStartTLSPOP3(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   fakeOpts
		refuse bool // RefusePlaintextAuth
		token  bool
		want   string // "" = the maildrop is listed
		tls    bool   // every command must have arrived over TLS
	}{
		{name: "PlaintextAuth", opts: fakeOpts{plain: true, stls: true}},
		{name: "PlaintextAuthPipelining", opts: fakeOpts{plain: true, stls: true, pipelining: true}},
		{name: "RefusePlaintextAuth", opts: fakeOpts{plain: true, stls: true}, refuse: true, want: "--allow-plaintext-auth"},
		{name: "RefusePlaintextAuthToken", opts: fakeOpts{plain: true, stls: true}, refuse: true, token: true, want: "--allow-plaintext-auth"},
		{name: "ImplicitTLSUnaffected", opts: fakeOpts{}, refuse: true, tls: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, tc.opts, bodies(2)...)
			o := options(t)
			o.NoStartTLS, o.RefusePlaintextAuth = true, tc.refuse
			var asked atomic.Int32
			if tc.token {
				o.Password = nil
				o.Token = func(context.Context) (string, error) { asked.Add(1); return testToken, nil }
			} else {
				o.Password = func(context.Context) (string, error) { asked.Add(1); return testPass, nil }
			}
			var trace []string
			o.Trace = func(l string) { trace = append(trace, l) }
			s, err := New(context.Background(), f.config(), o)
			if tc.want != "" {
				var ce *mail.ConfigError
				if err == nil || !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("New() = %v, want a one-line config error naming %s", err, tc.want)
				}
				if n := f.count("USER") + f.count("PASS") + f.count("AUTH"); n != 0 || asked.Load() != 0 {
					t.Errorf("server received %d USER/PASS/AUTH, secret asked %d times", n, asked.Load())
				}
				if n := f.sessionCount(); n != 0 {
					t.Errorf("refused for the flags, yet %d connections were made", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("New() = %v, want a session", err)
			}
			defer s.Close()
			n := 0
			if err := s.List(context.Background(), "INBOX", func(mail.Envelope) error { n++; return nil }); err != nil || n != 2 {
				t.Fatalf("List = %v with %d messages, want 2", err, n)
			}
			if f.count("PASS") != 1 {
				t.Errorf("server received %d PASS, want 1", f.count("PASS"))
			}
			for _, c := range f.commands() {
				if c.cmd == "STLS" {
					t.Errorf("STLS sent with NoStartTLS: %v", f.commands())
				}
				if c.tls != tc.tls {
					t.Errorf("%s arrived with TLS %v, want %v", c.cmd, c.tls, tc.tls)
				}
			}
			for _, l := range trace {
				if strings.HasPrefix(l, "C:") && strings.Contains(strings.ToUpper(l), "STLS") {
					t.Errorf("trace shows STLS: %q", l)
				}
			}
		})
	}
}
