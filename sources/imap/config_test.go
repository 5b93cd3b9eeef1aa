package imap

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want *Config // nil: a *mail.ConfigError
	}{
		{"imaps://alice@imap.example.org", &Config{Host: "imap.example.org", Port: 993, User: "alice", TLS: TLSImplicit}},
		{"imap://alice@imap.example.org", &Config{Host: "imap.example.org", Port: 143, User: "alice", TLS: TLSStartTLS}},
		{"IMAPS://bob@h:1993/", &Config{Host: "h", Port: 1993, User: "bob", TLS: TLSImplicit}},
		{"imaps://alice%40example.org@h/INBOX", &Config{Host: "h", Port: 993, User: "alice@example.org", Mailbox: "INBOX"}},
		{"imaps://a@h/Archiv/%C3%9Cbersicht/", &Config{Host: "h", Port: 993, User: "a", Mailbox: "Archiv/Übersicht"}},
		{"imaps://a@[::1]:9993", &Config{Host: "::1", Port: 9993, User: "a"}},
		{"imaps://h", nil},
		{"imaps://@h", nil},
		{"imaps://a:pw@h", nil},
		{"imaps://a@", nil},
		{"imaps://a@h:0", nil},
		{"imaps://a@h:70000", nil},
		{"imaps://a@h:", nil},
		{"imaps://a@h?starttls=1", nil},
		{"imaps://a@h?", nil},
		{"imaps://a@h#frag", nil},
		{"imaps://a@h/a//b", nil},
		{"pop3s://a@h", nil},
		{"imaps:a@h", nil},
		{"imaps://a@b%C3%BCcher.de", nil},
	} {
		u, err := url.Parse(tc.raw)
		if err != nil {
			t.Fatalf("url.Parse(%q) = %v", tc.raw, err)
		}
		got, err := ParseURL(u)
		if tc.want == nil {
			var ce *mail.ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, mail.ErrConfig) {
				t.Errorf("ParseURL(%q) = %+v, %v, want a *mail.ConfigError", tc.raw, got, err)
			}
			if err != nil && strings.Contains(err.Error(), ":pw@") {
				t.Errorf("ParseURL(%q) error %q shows the password", tc.raw, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseURL(%q) = %+v, %v, want %+v", tc.raw, got, err, tc.want)
		}
	}
}

func TestConfigString(t *testing.T) {
	c := &Config{Host: "h", Port: 993, User: "alice@example.org", Mailbox: "Archiv/Übersicht"}
	s := c.String()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("String() = %q does not parse: %v", s, err)
	}
	back, err := ParseURL(u)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("ParseURL(String()) = %+v, %v, want %+v (String() = %q)", back, err, c, s)
	}
}

// FuzzParseURL: ParseURL never panics, and what it accepts prints as a URL
// that parses back to the same Config.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"imaps://alice@h", "imap://a%40b@h:143/INBOX/x", "imaps://a@[::1]:1/%C3%9C", "imap://a@h?x=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		c, err := ParseURL(u)
		if err != nil {
			return
		}
		u2, err := url.Parse(c.String())
		if err != nil {
			t.Fatalf("String() = %q does not parse: %v", c.String(), err)
		}
		c2, err := ParseURL(u2)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip of %q: %+v, %v, want %+v", raw, c2, err, c)
		}
	})
}
