package pop3

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestXOAUTH2: with a token getter, login is AUTH XOAUTH2 (never PASS),
// the token is asked for per connection, and a refused token is ErrAuth
// without the token in the error or the trace.
func TestXOAUTH2(t *testing.T) {
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"accepted", testToken, true},
		{"refused", "ya29.expired-token", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, fakeOpts{plain: true, stls: true}, bodies(2)...)
			var calls atomic.Int64
			var mu sync.Mutex
			var trace []string
			o := options(t)
			o.Password = func(context.Context) (string, error) { t.Error("the password was asked for"); return testPass, nil }
			o.Token = func(context.Context) (string, error) { calls.Add(1); return tc.token, nil }
			o.Trace = func(l string) { mu.Lock(); trace = append(trace, l); mu.Unlock() }
			s, err := New(context.Background(), f.config(), o)
			if !tc.ok {
				if !errors.Is(err, mail.ErrAuth) || !strings.Contains(err.Error(), "alice@127.0.0.1") || !strings.Contains(err.Error(), `401`) {
					t.Fatalf("New() with a bad token = %v, want ErrAuth naming the account and the server's reason", err)
				}
				if strings.Contains(err.Error(), tc.token) {
					t.Errorf("error shows the token: %v", err)
				}
			} else {
				if err != nil {
					t.Fatalf("New() = %v", err)
				}
				if got := listIDs(t, s); len(got) != 2 {
					t.Errorf("listed %d messages, want 2", len(got))
				}
				s.Close()
			}
			if calls.Load() < 1 {
				t.Errorf("the token getter was called %d times", calls.Load())
			}
			if n := f.count("PASS") + f.count("USER"); n != 0 {
				t.Errorf("USER/PASS sent %d times with a token", n)
			}
			mu.Lock()
			all := strings.Join(trace, "\n")
			mu.Unlock()
			if !strings.Contains(all, "C: AUTH XOAUTH2") || !strings.Contains(all, "C: <redacted>") || strings.Contains(all, tc.token) {
				t.Errorf("trace does not mask the token:\n%s", all)
			}
		})
	}
}

func TestXOAUTH2TokenError(t *testing.T) {
	f := newFakeServer(t, fakeOpts{}, bodies(1)...)
	o := options(t)
	o.Token = func(context.Context) (string, error) { return "", &mail.ConfigError{Msg: "token_cmd failed"} }
	if _, err := New(context.Background(), f.config(), o); !errors.Is(err, mail.ErrConfig) {
		t.Fatalf("New() with a failing token getter = %v, want the getter's ConfigError", err)
	}
	if f.count("AUTH") != 0 {
		t.Error("AUTH was sent without a token")
	}
}
