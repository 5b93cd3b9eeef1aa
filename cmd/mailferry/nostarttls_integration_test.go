package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestF5NoStartTLSDovecot: against the real server, which offers
// STARTTLS/STLS and allows plaintext auth from 127.0.0.1, --no-starttls
// with --allow-plaintext-auth copies IMAP -> IMAP (imap:// on both sides,
// so the source and the sink's control and append connections all take
// the option) and POP3 -> Maildir in clear text: the recorded client
// bytes of every connection hold the login in clear and no STARTTLS/STLS,
// --trace shows none, and the destination holds every message once. The
// control run without --no-starttls upgrades (STARTTLS in the recorded
// bytes, no login in clear), so the checks can fail. --no-starttls alone
// exits 2 without connecting.
func TestF5NoStartTLSDovecot(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	corpus := crashCorpus()[:4]
	for _, tc := range []struct {
		name  string
		pop3  bool
		flags []string
		code  int
		clear bool // the session went in clear text
	}{
		{"IMAPToIMAP", false, []string{"--no-starttls", "--allow-plaintext-auth"}, 0, true},
		{"IMAPToIMAPControl", false, []string{"--allow-plaintext-auth"}, 0, false},
		{"IMAPToIMAPNoPlaintextAuth", false, []string{"--no-starttls"}, exitcode.Usage, false},
		{"POP3ToMaildir", true, []string{"--no-starttls", "--allow-plaintext-auth"}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, spw := d.NewUser(t)
			d.Seed(t, src, spw, "INBOX", corpus)
			dir := t.TempDir()
			target, scheme, upgrade := d.IMAPStartTLS, "imap", "STARTTLS"
			if tc.pop3 {
				target, scheme, upgrade = d.POP3STLS, "pop3", "STLS"
			}
			sp := mailtest.NewFaultProxy(t, target)
			sp.Record(true)
			env := []string{"MAILFERRY_SRC_PASSWORD=" + spw}
			dst := "maildir:" + filepath.Join(dir, "out")
			var dp *mailtest.FaultProxy
			var duser, dpw string
			if !tc.pop3 {
				duser, dpw = d.NewUser(t)
				dp = mailtest.NewFaultProxy(t, d.IMAPStartTLS)
				dp.Record(true)
				dst = "imap://" + duser + "@localhost:" + dp.Port()
				env = append(env, "MAILFERRY_DST_PASSWORD="+dpw)
			}
			args := append([]string{"copy", scheme + "://" + src + "@localhost:" + sp.Port(), dst,
				"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--ca-file", d.CAFile, "--timeout", "10s", "--json", "--trace"}, tc.flags...)
			r := runBinLimit(t, runLimit, env, args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", r.code, tc.code, r.stderr)
			}
			// STLS is spelled as STARTTLS for sentSTARTTLS's sake.
			if got, want := sentSTARTTLS(strings.ReplaceAll(r.stderr, " STLS", " STARTTLS")), tc.code == 0 && !tc.clear; got != want {
				t.Errorf("trace: %s sent %v, want %v", upgrade, got, want)
			}
			if tc.code != 0 {
				if last := lastLine(r.stderr); !strings.Contains(last, "--allow-plaintext-auth") {
					t.Errorf("last line %q does not name --allow-plaintext-auth", last)
				}
				if n := len(sp.Conns()); n != 0 {
					t.Errorf("refused for the flags, yet %d connections reached the server", n)
				}
				return
			}
			if got := copiedCount(t, r.stdout); got != int64(len(corpus)) {
				t.Fatalf("copied %d, want %d:\n%s", got, len(corpus), r.stderr)
			}
			proxies := []*mailtest.FaultProxy{sp}
			if dp != nil {
				proxies = append(proxies, dp)
				if n := len(d.Fetch(t, duser, dpw)["INBOX"]); n != len(corpus) {
					t.Errorf("destination INBOX holds %d messages, want %d", n, len(corpus))
				}
			}
			for i, p := range proxies {
				up := bytes.ToUpper(p.Recorded(mailtest.Up))
				login := bytes.Contains(up, []byte("LOGIN")) || bytes.Contains(up, []byte("AUTHENTICATE")) || bytes.Contains(up, []byte("PASS "))
				upgraded := bytes.Contains(up, []byte(upgrade))
				if login != tc.clear || upgraded == tc.clear {
					t.Errorf("proxy %d (%d connections): login in clear %v, %s sent %v; want clear text %v", i, len(p.Conns()), login, upgrade, upgraded, tc.clear)
				}
			}
			// One warning per run, however many connections went in clear.
			if n := strings.Count(r.stderr, "plain text as requested (--no-starttls)"); tc.clear && n != 1 {
				t.Errorf("%d warnings that plain text was requested, want 1:\n%s", n, r.stderr)
			}
		})
	}
}
