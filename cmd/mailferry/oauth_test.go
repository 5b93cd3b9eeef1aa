package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// tokenEndpoint is a fake OAuth2 token endpoint (RFC 6749 §6): it accepts
// refresh token i and answers with access token "access-i" and refresh
// token i+1, so a test sees rotation and reuse.
type tokenEndpoint struct {
	*httptest.Server
	mu       stdsync.Mutex
	requests []string // the refresh tokens presented
	fail     string   // an OAuth2 error code to answer with
}

func newTokenEndpoint(t *testing.T) *tokenEndpoint {
	te := &tokenEndpoint{}
	te.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.Form.Get("client_id"), r.Form.Get("client_secret")
		}
		te.mu.Lock()
		te.requests = append(te.requests, r.Form.Get("refresh_token"))
		fail := te.fail
		te.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		var n int
		if _, err := fmt.Sscanf(r.Form.Get("refresh_token"), "refresh-%d", &n); err != nil || fail != "" ||
			r.Form.Get("grant_type") != "refresh_token" || id != "client-1" || secret != "s3cret" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": cmpOr(fail, "invalid_grant"), "error_description": "Token has been expired or revoked."})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("access-%d", n), "token_type": "Bearer",
			"expires_in": 3600, "refresh_token": fmt.Sprintf("refresh-%d", n+1)})
	}))
	t.Cleanup(te.Close)
	return te
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (te *tokenEndpoint) presented() []string {
	te.mu.Lock()
	defer te.mu.Unlock()
	return append([]string(nil), te.requests...)
}

// TestOAuth2Refresher: the refresh flow through golang.org/x/oauth2: one
// request per token lifetime, the rotated refresh token used next, and a
// revoked grant is ErrAuth (exit 4), an unreachable endpoint temporary.
func TestOAuth2Refresher(t *testing.T) {
	te := newTokenEndpoint(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o600)
	s := oauth2Settings{ClientID: "client-1", ClientSecretFile: secretFile, RefreshTokenCmd: "echo refresh-1", TokenURL: te.URL}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	r := &refresher{what: "src_oauth2", settings: s, log: slog.New(slog.DiscardHandler)}
	get := r.token
	ctx := context.Background()
	for i := range 2 {
		if tok, err := get(ctx); err != nil || tok != "access-1" {
			t.Fatalf("token %d = %q, %v; want access-1", i, tok, err)
		}
	}
	if got := te.presented(); len(got) != 1 {
		t.Fatalf("token requests %v, want one while the token is valid", got)
	}
	// The token expired: the next connection gets a fresh one, with the
	// refresh token the server rotated to.
	r.cur.Expiry = time.Now().Add(-time.Minute)
	if tok, err := get(ctx); err != nil || tok != "access-2" {
		t.Fatalf("token after expiry = %q, %v; want access-2", tok, err)
	}
	if got := te.presented(); strings.Join(got, ",") != "refresh-1,refresh-2" {
		t.Errorf("refresh tokens presented %v", got)
	}

	te.mu.Lock()
	te.fail = "invalid_grant"
	te.mu.Unlock()
	r.cur.Expiry = time.Now().Add(-time.Minute)
	if _, err := get(ctx); !errors.Is(err, mail.ErrAuth) || exitCode(err) != exitcode.Auth || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("revoked grant = %v (exit %d), want ErrAuth", err, exitCode(err))
	}
	te.Close()
	r.cur = nil
	if _, err := get(ctx); err == nil || !mail.Temporary(err) {
		t.Errorf("unreachable token endpoint = %v, want a temporary error", err)
	}
}

// oauthIMAP is go-imap's memory server accepting only XOAUTH2 with token.
func oauthIMAP(t *testing.T, token string, n int) (addr, caFile string) {
	t.Helper()
	tlsCfg, caFile := mailtest.LocalCert(t)
	mem, user := mailtest.NewMemIMAP(t, "alice@example.org", "unused-password")
	for i := range n {
		body := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)
		user.Append("INBOX", demoLiteral{bytes.NewReader([]byte(body))}, &imap.AppendOptions{Time: time.Date(2024, 1, 1+i, 0, 0, 0, 0, time.UTC)})
	}
	ln := tls.NewListener(mailtest.Listen(t), tlsCfg)
	mailtest.ServeIMAP(t, mem, imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &xoauth2Session{Session: mem.NewSession(), token: token}, nil, nil
		},
		Caps: imap.CapSet{imap.CapIMAP4rev1: {}},
	}, ln)
	return ln.Addr().String(), caFile
}

type xoauth2Session struct {
	imapserver.Session
	token string
}

func (s *xoauth2Session) AuthenticateMechanisms() []string { return []string{"XOAUTH2"} }

func (s *xoauth2Session) Authenticate(mech string) (sasl.Server, error) {
	return saslFunc(func(resp []byte) ([]byte, bool, error) {
		if string(resp) != "user=alice@example.org\x01auth=Bearer "+s.token+"\x01\x01" {
			return nil, false, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Invalid credentials"}
		}
		return nil, true, s.Login("alice@example.org", "unused-password")
	}), nil
}

type saslFunc func([]byte) ([]byte, bool, error)

func (f saslFunc) Next(resp []byte) ([]byte, bool, error) { return f(resp) }

// TestOAuth2CLI: the whole CLI logs in to an IMAP server that accepts only
// XOAUTH2: with --src-oauth2-token-cmd, and with a job whose token is
// refreshed at a token endpoint; a wrong token exits 4.
func TestOAuth2CLI(t *testing.T) {
	addr, ca := oauthIMAP(t, "access-1", 3)
	te := newTokenEndpoint(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "refresh"), []byte("refresh-1\n"), 0o600)
	src := "imaps://alice@example.org@" + addr
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	cli := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		return runEnv(context.Background(), args, e), errb.String()
	}
	code, stderr := cli("copy", src, "maildir:"+filepath.Join(dir, "a"), "--ca-file", ca, "--src-oauth2-token-cmd", "echo access-1", "--quiet")
	if code != 0 || stderr != "" {
		t.Fatalf("copy with a token command = %d %q", code, stderr)
	}
	code, stderr = cli("copy", src, "maildir:"+filepath.Join(dir, "b"), "--ca-file", ca, "--src-oauth2-token-cmd", "echo access-0", "--quiet")
	if code != exitcode.Auth || !strings.Contains(stderr, "Invalid credentials") || strings.Contains(stderr, "access-0") {
		t.Fatalf("copy with a wrong token = %d %q, want %d without the token", code, stderr, exitcode.Auth)
	}
	cfg := writeConfig(t, 0o600, fmt.Sprintf(`
[jobs.gmail]
source = %q
destination = %q
ca_file = %q
[jobs.gmail.src_oauth2]
token_url = %q
client_id = "client-1"
client_secret_file = %q
refresh_token_file = %q
`, src, "maildir:"+filepath.Join(dir, "c"), ca, te.URL, filepath.Join(dir, "secret"), filepath.Join(dir, "refresh")))
	code, stderr = cli("run", "gmail", "--config", cfg, "--quiet", "--json")
	if code != 0 {
		t.Fatalf("run gmail = %d %q", code, stderr)
	}
	cur, _ := os.ReadDir(filepath.Join(dir, "c", "cur"))
	fresh, _ := os.ReadDir(filepath.Join(dir, "c", "new"))
	if entries := append(cur, fresh...); len(entries) != 3 || len(te.presented()) != 1 {
		t.Errorf("stored %d messages with %d token requests, want 3 and 1", len(entries), len(te.presented()))
	}
}

// TestOAuth2TokenURLMustBeHTTPS: a job whose token_url would carry the
// client secret and the refresh token in clear (plain http:// to a host
// that is not loopback) is refused with exit 2 naming the key, before any
// secret is read (the refresh token command never runs); https:// and
// http:// to a loopback address are accepted.
func TestOAuth2TokenURLMustBeHTTPS(t *testing.T) {
	for _, tc := range []struct {
		url     string
		refused bool
	}{
		{"https://oauth2.example.org/token", false},
		{"https://192.0.2.1/token", false},
		{"http://127.0.0.1:8080/token", false},
		{"http://127.1.2.3/token", false},
		{"http://[::1]:8080/token", false},
		{"http://localhost/token", false},
		{"http://LOCALHOST:9000/token", false},
		{"http://192.0.2.1/token", true},
		{"http://oauth2.example.org/token", true},
		{"http://localhost.example.org/token", true},
		{"http://[::ffff:192.0.2.1]/token", true},
		{"ftp://oauth2.example.org/token", true},
		{"oauth2.example.org/token", true},
	} {
		t.Run(tc.url, func(t *testing.T) {
			dir := t.TempDir()
			marker := filepath.Join(dir, "secret-read")
			cfg := writeConfig(t, 0o600, jobConfigText(dir, fmt.Sprintf(`[jobs.nightly.src_oauth2]
token_url = %q
client_id = "client-1"
client_secret = "s3cret"
refresh_token_cmd = "touch %s; echo refresh-1"
`, tc.url, marker)))
			w := newFakeWorld()
			code, _, stderr := w.cli(context.Background(), t, nil, "run", "nightly", "--config", cfg, "--quiet")
			if tc.refused {
				if code != exitcode.Usage || !strings.Contains(stderr, "jobs.nightly.src_oauth2") || !strings.Contains(stderr, "token_url") {
					t.Errorf("run = %d %q, want %d naming jobs.nightly.src_oauth2 and token_url", code, stderr, exitcode.Usage)
				}
			} else if code != 0 || strings.Contains(stderr, "token_url") {
				t.Errorf("run = %d %q, want 0", code, stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the refresh token command ran")
			}
		})
	}
}
