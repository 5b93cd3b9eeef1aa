package pop3

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw     string
		want    Config
		wantErr string // substring; "" means success
	}{
		{raw: "pop3s://alice@mail.example.org", want: Config{Host: "mail.example.org", Port: 995, User: "alice", TLS: TLSImplicit}},
		{raw: "pop3://alice@mail.example.org", want: Config{Host: "mail.example.org", Port: 110, User: "alice", TLS: TLSSTLS}},
		{raw: "POP3S://alice@mail.example.org:1995/", want: Config{Host: "mail.example.org", Port: 1995, User: "alice", TLS: TLSImplicit}},
		{raw: "pop3s://alice%40example.org@[::1]:995/INBOX", want: Config{Host: "::1", Port: 995, User: "alice@example.org", TLS: TLSImplicit}},
		{raw: "pop3s://alice@host?pipelining=0", want: Config{Host: "host", Port: 995, User: "alice", TLS: TLSImplicit, NoPipelining: true}},
		{raw: "pop3s://alice@host?pipelining=1", want: Config{Host: "host", Port: 995, User: "alice", TLS: TLSImplicit}},
		{raw: "pop3s://mail.example.org", wantErr: "no user name"},
		{raw: "pop3s://@mail.example.org", wantErr: "no user name"},
		{raw: "pop3s://alice:pw@host", wantErr: "password in the URL"},
		{raw: "pop3s://alice@", wantErr: "no host"},
		{raw: "pop3s://alice@host:0", wantErr: "port"},
		{raw: "pop3s://alice@host:99999", wantErr: "port"},
		{raw: "pop3s://alice@host:", wantErr: "empty port"},
		{raw: "pop3s://alice@host?starttls=1", wantErr: `unknown option(s) "starttls"`},
		{raw: "pop3s://alice@host?pipelining=maybe", wantErr: "pipelining"},
		{raw: "pop3s://alice@host/Sent", wantErr: "only INBOX"},
		{raw: "pop3s://alice@host#frag", wantErr: "fragment"},
		{raw: "imaps://alice@host", wantErr: "not pop3"},
		{raw: "pop3s:alice@host", wantErr: "not a server URL"},
		{raw: "pop3s://al%0Dice@host", wantErr: "control character"},
		{raw: "pop3://0@::1", wantErr: "neither a DNS name nor an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := url.Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseURL(u)
			if tt.wantErr != "" {
				var ce *mail.ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURL(%q) = %v, want a *mail.ConfigError containing %q", tt.raw, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), ":pw@") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q) = %v", tt.raw, err)
			}
			if *got != tt.want {
				t.Fatalf("ParseURL(%q) = %+v, want %+v", tt.raw, *got, tt.want)
			}
		})
	}
}

func TestConfigString(t *testing.T) {
	for _, raw := range []string{"pop3s://alice@host:995", "pop3://bob@[::1]:110", "pop3s://a%40b@host:995?pipelining=0"} {
		u, _ := url.Parse(raw)
		c, err := ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.String(); got != raw {
			t.Errorf("ParseURL(%q).String() = %q", raw, got)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"pop3s://alice@host", "pop3://a%40b@[::1]:110/INBOX?pipelining=0", "pop3s://x@h:99", "pop3://0@[:]:1", "pop3://0@::1", "pop3s://a@[fe80::1%25eth0]:995"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		c, err := ParseURL(u)
		if err != nil {
			var ce *mail.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseURL(%q) = %T %v, want *mail.ConfigError", raw, err, err)
			}
			return
		}
		if c.User == "" || c.Host == "" || c.Port < 1 || c.Port > 65535 || strings.ContainsAny(c.User, "\r\n\x00") {
			t.Fatalf("ParseURL(%q) = %+v", raw, c)
		}
		// The printed form parses back to the same config.
		u2, err := url.Parse(c.String())
		if err != nil {
			t.Fatalf("String() = %q does not parse: %v", c.String(), err)
		}
		c2, err := ParseURL(u2)
		if err != nil || *c2 != *c {
			t.Fatalf("ParseURL(%q) = %+v, %v; want %+v", c.String(), c2, err, c)
		}
	})
}
