package main

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// startTLSIMAP serves go-imap's memory server in clear text, offering
// STARTTLS (with the local test certificate) and accepting LOGIN without
// it, as Dovecot does for 127.0.0.1.
func startTLSIMAP(t *testing.T) (addr, caFile string) {
	t.Helper()
	tlsCfg, ca := mailtest.LocalCert(t)
	mem, _ := mailtest.NewMemIMAP(t, "alice", tlsTestPass)
	ln := mailtest.Listen(t)
	mailtest.ServeIMAP(t, mem, imapserver.Options{Caps: imap.CapSet{imap.CapIMAP4rev1: {}}, TLSConfig: tlsCfg, InsecureAuth: true}, ln)
	return ln.Addr().String(), ca
}

// sentSTARTTLS reports whether a --trace on stderr shows the client
// sending STARTTLS.
func sentSTARTTLS(stderr string) bool {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "trace ") && strings.Contains(l, " C: ") && strings.Contains(strings.ToUpper(l), "STARTTLS") {
			return true
		}
	}
	return false
}

// TestF5NoStartTLSFlags: through the CLI (ls, against a server offering
// STARTTLS), --no-starttls with --allow-plaintext-auth lists the account
// in clear text without sending STARTTLS and warns that this was asked
// for; --no-starttls alone is a config error (exit 2) whose one line names
// --allow-plaintext-auth; without --no-starttls STARTTLS is used (so the
// trace check can fail); and imaps:// is unaffected by the flag.
func TestF5NoStartTLSFlags(t *testing.T) {
	addr, ca := startTLSIMAP(t)
	tlsCfg, _ := mailtest.LocalCert(t)
	mem, _ := mailtest.NewMemIMAP(t, "alice", tlsTestPass)
	tln := tls.NewListener(mailtest.Listen(t), tlsCfg)
	mailtest.ServeIMAP(t, mem, imapserver.Options{Caps: imap.CapSet{imap.CapIMAP4rev1: {}}}, tln)
	for _, tc := range []struct {
		name     string
		url      string
		flags    []string
		code     int
		want     string // in stderr ("" = nothing checked)
		startTLS bool   // STARTTLS in the trace
	}{
		{"NoStartTLSPlaintextAuth", "imap://alice@" + addr, []string{"--no-starttls", "--allow-plaintext-auth"}, 0, "plain text as requested (--no-starttls)", false},
		{"NoStartTLSAlone", "imap://alice@" + addr, []string{"--no-starttls"}, exitcode.Usage, "--allow-plaintext-auth", false},
		{"NoStartTLSAllowPlaintext", "imap://alice@" + addr, []string{"--no-starttls", "--allow-plaintext"}, exitcode.Usage, "--allow-plaintext-auth", false},
		{"Control", "imap://alice@" + addr, []string{"--allow-plaintext-auth"}, 0, "", true},
		{"ImplicitTLS", "imaps://alice@" + tln.Addr().String(), []string{"--no-starttls"}, 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"ls", tc.url, "--ca-file", ca, "--timeout", "5s", "--trace"}, tc.flags...)
			code, stdout, stderr := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": tlsTestPass}, args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want %d and %q in:\n%s", code, tc.code, tc.want, stderr)
			}
			if got := sentSTARTTLS(stderr); got != tc.startTLS {
				t.Errorf("STARTTLS sent: %v, want %v:\n%s", got, tc.startTLS, stderr)
			}
			if tc.code == 0 && !strings.Contains(stdout, "INBOX") {
				t.Errorf("ls printed %q, want INBOX", stdout)
			}
			if tc.code != 0 {
				if last := lastLine(stderr); !strings.Contains(last, "--allow-plaintext-auth") || strings.Contains(stderr, " C: ") {
					t.Errorf("last line %q should name --allow-plaintext-auth, and nothing be sent:\n%s", last, stderr)
				}
			}
		})
	}
	// Refused before connecting: a recording server sees nothing at all.
	g := startGreeter(t, "* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] hi\r\n")
	if code, _, _ := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": tlsTestPass}, "ls", "imap://bob@"+g.addr, "--no-starttls", "--timeout", "5s"); code != exitcode.Usage {
		t.Errorf("--no-starttls alone against a greeter: exit %d, want 2", code)
	}
	if l := g.sent(); len(l) != 0 {
		t.Errorf("client sent %q with --no-starttls alone", l)
	}
}

// TestF5NoStartTLSConfigKey: no_starttls in a job works like the flag (with
// allow_plaintext_auth): the copy runs in clear text without STARTTLS.
func TestF5NoStartTLSConfigKey(t *testing.T) {
	addr, ca := startTLSIMAP(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		keys     string
		startTLS bool
	}{
		{"NoStartTLS", "no_starttls = true\nallow_plaintext_auth = true\n", false},
		{"Control", "allow_plaintext_auth = true\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, 0o600, fmt.Sprintf("[jobs.j]\nsource = %q\ndestination = %q\nca_file = %q\ncheckpoint = %q\n%s",
				"imap://alice@"+addr, "maildir:"+filepath.Join(dir, tc.name), ca, filepath.Join(dir, tc.name+".jsonl"), tc.keys))
			code, _, stderr := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": tlsTestPass}, "run", "j", "--config", cfg, "--trace")
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			if got := sentSTARTTLS(stderr); got != tc.startTLS {
				t.Errorf("STARTTLS sent: %v, want %v:\n%s", got, tc.startTLS, stderr)
			}
		})
	}
}
