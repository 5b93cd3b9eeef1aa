package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// greeter is a hostile server: it sends greeting to every connection and
// records the lines the client sends, without ever answering.
type greeter struct {
	addr  string
	mu    sync.Mutex
	lines []string
}

func startGreeter(t *testing.T, greeting string) *greeter {
	t.Helper()
	ln := mailtest.Listen(t)
	g := &greeter{addr: ln.Addr().String()}
	mailtest.Serve(t, ln, func(c net.Conn) {
		c.Write([]byte(greeting))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			g.mu.Lock()
			g.lines = append(g.lines, sc.Text())
			g.mu.Unlock()
		}
	})
	return g
}

func (g *greeter) sent() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.lines...)
}

// TestF3HostileGreetingsCLI covers F3 through the CLI: a PREAUTH greeting
// on a STARTTLS connection, a garbled greeting and a BYE are refused with a
// one-line message naming the problem, before any credential or mailbox
// command is sent. PREAUTH over implicit TLS is allowed by design (the
// source package tests it).
func TestF3HostileGreetingsCLI(t *testing.T) {
	for _, tc := range []struct {
		name, scheme, greeting string
		code                   int
		want                   string
	}{
		{"IMAPPreauthBeforeSTARTTLS", "imap", "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome back\r\n", exitcode.Unreachable, "unencrypted PREAUTH refused"},
		{"IMAPGarbled", "imap", "HELLO THERE\r\n", exitcode.Unreachable, "invalid greeting"},
		{"IMAPBye", "imap", "* BYE too many connections\r\n", exitcode.Temporary, "too many connections"},
		{"POP3Err", "pop3", "-ERR go away\r\n", exitcode.Unreachable, "greeting"},
		{"POP3Garbled", "pop3", "HELLO THERE\r\n", exitcode.Unreachable, "greeting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGreeter(t, tc.greeting)
			dir := t.TempDir()
			code, _, stderr := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": "Never-Sent-7"},
				"copy", tc.scheme+"://bob@"+g.addr, "maildir:"+filepath.Join(dir, "out"), "--checkpoint", filepath.Join(dir, "cp.jsonl"), "--timeout", "5s")
			last := lastLine(stderr)
			if code != tc.code || !strings.Contains(last, tc.want) {
				t.Errorf("exit %d, last line %q; want exit %d and %q", code, last, tc.code, tc.want)
			}
			for _, l := range g.sent() {
				up := strings.ToUpper(l)
				if strings.Contains(l, "Never-Sent-7") || strings.Contains(up, "LOGIN") || strings.Contains(up, "AUTHENTICATE") ||
					strings.HasPrefix(up, "USER") || strings.HasPrefix(up, "PASS") || strings.Contains(up, "SELECT") || strings.Contains(up, "EXAMINE") {
					t.Errorf("client sent %q after a hostile greeting", l)
				}
			}
		})
	}
}

// tlsIMAP serves go-imap's memory server (user alice, password
// tlsTestPass, an empty INBOX) on loopback. With cert, it listens with
// implicit TLS limited to TLS versions [minV, maxV] (0: Go's defaults);
// without, it speaks clear text with no STARTTLS and accepts LOGIN.
func tlsIMAP(t *testing.T, cert *tls.Certificate, minV, maxV uint16) string {
	t.Helper()
	mem, _ := mailtest.NewMemIMAP(t, "alice", tlsTestPass)
	ln := mailtest.Listen(t)
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: minV, MaxVersion: maxV})
	}
	mailtest.ServeIMAP(t, mem, imapserver.Options{Caps: imap.CapSet{imap.CapIMAP4rev1: {}}, InsecureAuth: cert == nil}, ln)
	return ln.Addr().String()
}

const tlsTestPass = "Tls-Secret-42"

// TestF4CertificateMatrixCLI: through the CLI (ls), each bad certificate
// exits 5 with a last line naming the cause; --ca-file, --pin-sha256 and
// --insecure-skip-verify each let their case through, the last with a
// warning on every run; a malformed pin is a usage error (exit 2); a TLS
// 1.1 server stays refused whatever the flags.
func TestF4CertificateMatrixCLI(t *testing.T) {
	pki := mailtest.NewPKI(t)
	self, selfPin := pki.Leaf(t, mailtest.CertSpec{SelfSigned: true})
	expired, expPin := pki.Leaf(t, mailtest.CertSpec{NotBefore: -2 * time.Hour, NotAfter: -time.Hour})
	good, _ := pki.Leaf(t, mailtest.CertSpec{})
	const warning = "--insecure-skip-verify: server certificates are not checked"
	for _, tc := range []struct {
		name       string
		cert       tls.Certificate
		minV, maxV uint16
		flags      []string
		code       int
		want       string // in the last line of stderr (or anywhere, on success)
	}{
		{"SelfSigned", self, 0, 0, nil, exitcode.Unreachable, "is self-signed (its --pin-sha256 is " + selfPin + ")"},
		{"Expired", expired, 0, 0, []string{"--ca-file", pki.CAFile}, exitcode.Unreachable, "expired on"},
		{"UntrustedRoot", good, 0, 0, nil, exitcode.Unreachable, "which is not a trusted root"},
		{"TLS11Only", good, tls.VersionTLS10, tls.VersionTLS11, []string{"--ca-file", pki.CAFile}, exitcode.Unreachable, "older than 1.2"},
		{"TLS11OnlySkipVerify", good, tls.VersionTLS10, tls.VersionTLS11, []string{"--insecure-skip-verify"}, exitcode.Unreachable, "older than 1.2"},
		{"PinMismatch", good, 0, 0, []string{"--ca-file", pki.CAFile, "--pin-sha256", selfPin}, exitcode.Unreachable, "does not match --pin-sha256"},
		{"BadPin", good, 0, 0, []string{"--pin-sha256", "not-base64"}, exitcode.Usage, "--pin-sha256"},
		{"CAFile", good, 0, 0, []string{"--ca-file", pki.CAFile}, 0, "INBOX"},
		{"Pinned", self, 0, 0, []string{"--pin-sha256", selfPin}, 0, "INBOX"},
		{"PinnedExpired", expired, 0, 0, []string{"--pin-sha256", expPin}, 0, "INBOX"},
		{"SkipVerify", expired, 0, 0, []string{"--insecure-skip-verify"}, 0, warning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tlsIMAP(t, &tc.cert, tc.minV, tc.maxV)
			args := append([]string{"ls", "imaps://alice@" + addr, "--timeout", "5s"}, tc.flags...)
			code, stdout, stderr := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": tlsTestPass}, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if tc.code != 0 {
				if last := lastLine(stderr); !strings.Contains(last, tc.want) {
					t.Errorf("last line %q, want %q", last, tc.want)
				}
				return
			}
			if !strings.Contains(stdout+stderr, tc.want) {
				t.Errorf("output lacks %q:\n%s%s", tc.want, stdout, stderr)
			}
			if hasSkip := slices.Contains(tc.flags, "--insecure-skip-verify"); strings.Contains(stderr, warning) != hasSkip {
				t.Errorf("warning shown = %v, want %v: %s", !hasSkip, hasSkip, stderr)
			}
		})
	}
}

// TestF4F5SkipVerifyNeverPlaintext: --insecure-skip-verify does not let a
// session go on without TLS: a server without STARTTLS is still refused
// (exit 5) and sees no credential, and the warning is printed on each run
// (copy and ls alike).
func TestF4F5SkipVerifyNeverPlaintext(t *testing.T) {
	g := startGreeter(t, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
	for _, cmd := range []string{"ls", "copy"} {
		dir := t.TempDir()
		args := []string{cmd, "imap://bob@" + g.addr, "--insecure-skip-verify", "--timeout", "5s"}
		if cmd == "copy" {
			args = append(args, "maildir:"+filepath.Join(dir, "out"), "--checkpoint", filepath.Join(dir, "cp.jsonl"))
		}
		code, _, stderr := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": tlsTestPass}, args...)
		if code != exitcode.Unreachable || !strings.Contains(lastLine(stderr), "does not offer STARTTLS") {
			t.Errorf("%s: exit %d, last line %q; want exit 5, STARTTLS not offered", cmd, code, lastLine(stderr))
		}
		if !strings.Contains(stderr, "--insecure-skip-verify: server certificates are not checked") {
			t.Errorf("%s: no --insecure-skip-verify warning: %s", cmd, stderr)
		}
	}
	for _, l := range g.sent() {
		if u := strings.ToUpper(l); strings.Contains(u, "LOGIN") || strings.Contains(u, "AUTHENTICATE") || strings.Contains(l, tlsTestPass) {
			t.Errorf("client sent %q", l)
		}
	}
}

// TestF5PlaintextAuthFlags: against a clear-text server without STARTTLS,
// no flag refuses (exit 5), --allow-plaintext alone still refuses before
// any LOGIN (exit 5, naming --allow-plaintext-auth), and
// --allow-plaintext-auth logs in with a warning.
func TestF5PlaintextAuthFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		want  string
	}{
		{"Default", nil, exitcode.Unreachable, "does not offer STARTTLS"},
		{"AllowPlaintext", []string{"--allow-plaintext"}, exitcode.Unreachable, "--allow-plaintext-auth allows it"},
		{"AllowPlaintextAuth", []string{"--allow-plaintext-auth"}, 0, "unencrypted"},
		{"Both", []string{"--allow-plaintext", "--allow-plaintext-auth"}, 0, "unencrypted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tlsIMAP(t, nil, 0, 0)
			args := append([]string{"ls", "imap://alice@" + addr, "--timeout", "5s"}, tc.flags...)
			code, _, stderr := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": tlsTestPass}, args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want %d and %q in:\n%s", code, tc.code, tc.want, stderr)
			}
		})
	}
	// The refusal happens before LOGIN: a recording server sees none.
	g := startGreeter(t, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
	code, _, _ := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": tlsTestPass}, "ls", "imap://bob@"+g.addr, "--allow-plaintext", "--timeout", "5s")
	if code != exitcode.Unreachable {
		t.Errorf("--allow-plaintext against a greeter: exit %d, want 5", code)
	}
	for _, l := range g.sent() {
		if u := strings.ToUpper(l); strings.Contains(u, "LOGIN") || strings.Contains(u, "AUTHENTICATE") || strings.Contains(l, tlsTestPass) {
			t.Errorf("client sent %q with --allow-plaintext only", l)
		}
	}
}
