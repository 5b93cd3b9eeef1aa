package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TLS policy end to end (docs/failure-model.md F1, F2, F5, I7): the real binary
// against Dovecot's STARTTLS/STLS ports through a recording
// mailtest.FaultProxy, which can also play a man in the middle.

// credentialVerbs are the commands that carry credentials.
var credentialVerbs = []string{"LOGIN", "AUTHENTICATE", "USER ", "PASS ", "APOP", "AUTH "}

// checkNoCredentials fails if the bytes the client sent in clear text show
// a credential command or the password in any form (I7).
func checkNoCredentials(t *testing.T, sent []byte, user, pw string) {
	t.Helper()
	up := strings.ToUpper(string(sent))
	for _, v := range credentialVerbs {
		if strings.Contains(up, v) {
			t.Errorf("I7: %q crossed the connection in clear text: %q", v, sent)
		}
	}
	if l := leaks(string(sent), secretForms(user, pw)); len(l) > 0 {
		t.Errorf("I7: the password crossed the connection in clear text (%q)", l)
	}
}

// tlsCopy runs a copy from scheme://user@proxy into a fresh Maildir.
func tlsCopy(t *testing.T, d *mailtest.Dovecot, p *mailtest.FaultProxy, scheme, user, pw string, extra ...string) binRun {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"copy", scheme + "://" + user + "@localhost:" + p.Port(), "maildir:" + filepath.Join(dir, "out"),
		"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--ca-file", d.CAFile, "--timeout", "10s"}, extra...)
	return runBinLimit(t, runLimit, []string{"MAILFERRY_SRC_PASSWORD=" + pw}, args...)
}

// TestI7NoCredentialsBeforeTLS: over imap:// and pop3:// (STARTTLS, STLS)
// everything the client sends before the upgrade is credential-free, and
// the password never appears in the whole client stream.
func TestI7NoCredentialsBeforeTLS(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", crashCorpus()[:3])
	for _, tc := range []struct{ scheme, target, upgrade string }{
		{"imap", d.IMAPStartTLS, "STARTTLS\r\n"},
		{"pop3", d.POP3STLS, "STLS\r\n"},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			p := mailtest.NewFaultProxy(t, tc.target)
			p.Record(true)
			r := tlsCopy(t, d, p, tc.scheme, user, pw)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			up := p.Recorded(mailtest.Up)
			i := bytes.Index(up, []byte(tc.upgrade))
			if i < 0 {
				t.Fatalf("the client never asked for %q: %q", tc.upgrade, up[:min(len(up), 300)])
			}
			checkNoCredentials(t, up[:i+len(tc.upgrade)], user, pw)
			if l := leaks(string(up), secretForms(user, pw)); len(l) > 0 {
				t.Errorf("the password is visible in the client's byte stream (%q)", l)
			}
		})
	}
}

// TestF1F2STARTTLSManInTheMiddle covers F1 (STARTTLS/STLS stripped from
// the capabilities, or refused) and F2 (cleartext responses injected after
// the go-ahead) against the real server: each is refused with exit 5 and a
// message saying why, and no credential crosses the wire (I7). The README
// documents the STARTTLS requirement and --allow-plaintext.
func TestF1F2STARTTLSManInTheMiddle(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", crashCorpus()[:3])
	replace := func(old, repl string) func(mailtest.Direction, []byte) []byte {
		return func(dir mailtest.Direction, b []byte) []byte {
			if dir != mailtest.Down {
				return b
			}
			return bytes.Replace(b, []byte(old), []byte(repl), 1)
		}
	}
	for _, tc := range []struct {
		name, scheme, target string
		rewrite              func(mailtest.Direction, []byte) []byte
		want                 string // in the last line of stderr
	}{
		{"IMAPStripped", "imap", d.IMAPStartTLS, stripCap("STARTTLS"), "does not offer STARTTLS"},
		{"IMAPRefused", "imap", d.IMAPStartTLS, replace(" OK Begin TLS", " NO Begin TLS"), "refused STARTTLS"},
		{"IMAPInjected", "imap", d.IMAPStartTLS, replace("Begin TLS negotiation now.\r\n", "Begin TLS negotiation now.\r\nM3 OK LOGIN completed\r\n* 1 EXISTS\r\n"), "injection"},
		{"POP3Stripped", "pop3", d.POP3STLS, stripCap("\r\nSTLS\r\n"), "does not offer STLS"},
		{"POP3Refused", "pop3", d.POP3STLS, replace("+OK Begin TLS", "-ERR Begin TLS"), "refused STLS"},
		{"POP3Injected", "pop3", d.POP3STLS, replace("Begin TLS negotiation now.\r\n", "Begin TLS negotiation now.\r\n+OK\r\n"), "unexpected bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mailtest.NewFaultProxy(t, tc.target)
			p.Record(true)
			p.SetSchedule(mailtest.EveryConn(mailtest.Fault{Rewrite: tc.rewrite}))
			r := tlsCopy(t, d, p, tc.scheme, user, pw)
			last := lastLine(r.stderr)
			if r.code != exitcode.Unreachable || !strings.Contains(last, tc.want) {
				t.Errorf("exit %d, last line %q; want exit 5 and %q", r.code, last, tc.want)
			}
			checkNoCredentials(t, p.Recorded(mailtest.Up), user, pw)
		})
	}
}

// TestF5PlaintextOnlyWhenAllowed: with STARTTLS/STLS stripped, the copy
// is refused by default and with --allow-plaintext alone (exit 5, before
// any credential crosses: the recorded client bytes hold no credential
// command or password form), and goes on in clear text only with
// --allow-plaintext-auth, warning that the password travels unencrypted.
func TestF5PlaintextOnlyWhenAllowed(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", crashCorpus()[:3])
	for _, tc := range []struct{ scheme, target, cap string }{
		{"imap", d.IMAPStartTLS, "STARTTLS"},
		{"pop3", d.POP3STLS, "\r\nSTLS\r\n"},
	} {
		for _, fc := range []struct {
			flag, want string
			code       int
		}{
			{"--quiet", "TLS", exitcode.Unreachable},
			{"--allow-plaintext", "--allow-plaintext-auth", exitcode.Unreachable},
			{"--allow-plaintext-auth", "", 0},
		} {
			t.Run(tc.scheme+fc.flag, func(t *testing.T) {
				p := mailtest.NewFaultProxy(t, tc.target)
				p.SetSchedule(mailtest.EveryConn(mailtest.Fault{Rewrite: stripCap(tc.cap)}))
				p.Record(true)
				r := tlsCopy(t, d, p, tc.scheme, user, pw, fc.flag, "--json")
				if fc.code != 0 {
					if last := lastLine(r.stderr); r.code != fc.code || !strings.Contains(last, fc.want) {
						t.Fatalf("exit %d, last line %q; want exit %d and %q", r.code, last, fc.code, fc.want)
					}
					checkNoCredentials(t, p.Recorded(mailtest.Up), user, pw)
					return
				}
				if r.code != 0 || copiedCount(t, r.stdout) != 3 {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				if !strings.Contains(r.stderr, "level=WARN") || !strings.Contains(r.stderr, "unencrypted") && !strings.Contains(r.stderr, "clear text") {
					t.Errorf("no warning that the password went in clear text: %s", r.stderr)
				}
			})
		}
	}
}

// TestF4CertificateNotTrustedCLI: without --ca-file the test server's
// self-signed certificate is refused over STARTTLS too, with exit 5 and the
// remedy named (F4; implicit TLS is in TestCLIErrorsAgainstDovecot).
func TestF4CertificateNotTrustedCLI(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct{ scheme, target string }{{"imap", d.IMAPStartTLS}, {"pop3", d.POP3STLS}, {"pop3s", d.POP3S}} {
		t.Run(tc.scheme, func(t *testing.T) {
			p := mailtest.NewFaultProxy(t, tc.target)
			p.Record(true)
			dir := t.TempDir()
			r := runBinLimit(t, runLimit, []string{"MAILFERRY_SRC_PASSWORD=Not-Sent-9"},
				"copy", fmt.Sprintf("%s://bob@localhost:%s", tc.scheme, p.Port()), "maildir:"+filepath.Join(dir, "out"), "--checkpoint", filepath.Join(dir, "cp.jsonl"))
			if last := lastLine(r.stderr); r.code != exitcode.Unreachable || !strings.Contains(last, "--ca-file") {
				t.Errorf("exit %d, last line %q; want exit 5 naming --ca-file", r.code, last)
			}
			if bytes.Contains(p.Recorded(mailtest.Up), []byte("Not-Sent-9")) {
				t.Error("the password was sent")
			}
		})
	}
}
