package mail

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		raw     string
		wantErr string
	}{
		{"imaps://alice@example.org", ""},
		{"IMAPS://alice@example.org:993", ""},
		{"maildir:/tmp/x", ""},
		{"maildir:relative/dir", ""},
		{"mbox:///abs/dir", ""},
		{"imaps://alice:secret@example.org", "--src-password-file"},
		{"example.org", "has no scheme"},
		{"%zz://x", "not a valid URL"},
	}
	for _, tc := range tests {
		_, err := ParseEndpoint(tc.raw, &OpenOptions{Side: "src"})
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("ParseEndpoint(%q) = %v", tc.raw, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrConfig) {
			t.Errorf("ParseEndpoint(%q) = %v, want a config error with %q", tc.raw, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseEndpoint(%q) error leaks the password: %v", tc.raw, err)
		}
	}
}

func TestLocalPath(t *testing.T) {
	home, _ := os.UserHomeDir()
	wd, _ := os.Getwd()
	tests := []struct{ raw, want string }{
		{"maildir:/srv/mail", "/srv/mail"},
		{"maildir:///srv/mail/", "/srv/mail"},
		{"maildir:rel/dir", filepath.Join(wd, "rel/dir")},
		{"maildir:~/Mail", filepath.Join(home, "Mail")},
		{"mbox:/a/b/../c", "/a/c"},
	}
	for _, tc := range tests {
		u, _ := url.Parse(tc.raw)
		got, err := LocalPath(u)
		if err != nil || got != tc.want {
			t.Errorf("LocalPath(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
	u, _ := url.Parse("maildir://otherhost/x")
	if _, err := LocalPath(u); !errors.Is(err, ErrConfig) {
		t.Errorf("LocalPath with a host = %v, want a config error", err)
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	r.AddSource("fake", func(ctx context.Context, u *url.URL, o *OpenOptions) (Source, error) { return nil, nil })
	if _, err := r.OpenSink(context.Background(), "fake:x", nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("OpenSink(fake:) = %v, want config error", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("registering a scheme twice did not panic")
		}
	}()
	r.AddSource("fake", nil)
}

func TestClassification(t *testing.T) {
	tests := []struct {
		err             error
		temporary, fatl bool
	}{
		{Temp(errors.New("x")), true, false},
		{syscall.ECONNRESET, true, false},
		{context.Canceled, false, false},
		{syscall.ENOSPC, false, true},
		{ErrAuth, false, true},
		{MakeFatal(Temp(errors.New("x"))), false, true},
		{errors.New("permanent"), false, false},
	}
	for _, tc := range tests {
		if Temporary(tc.err) != tc.temporary || Fatal(tc.err) != tc.fatl {
			t.Errorf("%v: Temporary %v Fatal %v, want %v %v", tc.err, Temporary(tc.err), Fatal(tc.err), tc.temporary, tc.fatl)
		}
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"imaps://a@b", "maildir:/x", "imap://u:p@h:1/INBOX?x=1", "mbox:~/a", "pop3s://[::1]:995"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseEndpoint(raw, &OpenOptions{Side: "dst"})
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("ParseEndpoint(%q) = %v, not a config error", raw, err)
			}
			return
		}
		if _, has := u.User.Password(); has {
			t.Fatalf("ParseEndpoint(%q) accepted a password", raw)
		}
		Redact(u)    // must not panic
		LocalPath(u) // must not panic
	})
}
