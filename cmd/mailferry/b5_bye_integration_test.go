package main

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// sessionExpired is what Gmail sends when it ends a session that has
// downloaded too much (scenario B5).
const sessionExpired = "* BYE Session expired, please login again\r\n"

// b5Corpus returns n messages of about size bytes each.
func b5Corpus(tag string, n, size int) []mailtest.SeedMessage {
	date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	var msgs []mailtest.SeedMessage
	for i := range n {
		var b strings.Builder
		fmt.Fprintf(&b, "Message-ID: <b5-%s-%d@x>\r\nSubject: b5 %s %d\r\n\r\n", tag, i, tag, i)
		for b.Len() < size {
			fmt.Fprintf(&b, "%s %d: a line of text to make the body as long as wanted\r\n", tag, i)
		}
		msgs = append(msgs, mailtest.SeedMessage{Body: []byte(b.String()), Date: date})
	}
	return msgs
}

// TestB5ByeSessionExpired covers B5 with the real words: the server (a
// Dovecot behind a plaintext FaultProxy, STARTTLS stripped so bytes can be
// injected) sends "* BYE Session expired, please login again" once a
// session has sent 100 KB, either at the end of a FETCH response (between
// two literals, where Gmail sends it) or in the middle of a literal (the
// BYE line then reads as message bytes before the close), and hangs up.
// Past the account's quota (Y: everything the first two runs fetched) it
// also throttles every session to 1 KiB/s.
//
// The first run reconnects after each BYE with backoff (a retry warning
// per cut), and stops at its --max-bytes budget with exit 8 ("rerun
// later") and one line naming the budget; the rerun goes on from the
// checkpoint and finishes. Then three more messages arrive and are fetched
// under the throttle with --timeout 1s: the run lasts longer than the
// timeout (bytes keep coming, so the inactivity deadline does not fire),
// nothing fails, nothing hangs. In the end the destination (a Maildir, or
// another IMAP account) holds every message exactly once, and one more run
// copies nothing.
func TestB5ByeSessionExpired(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct {
		name       string
		atResponse bool
		imapDst    bool
		throttle   bool // 1 KiB/s takes seconds: one pipeline is enough
	}{
		{"between responses to Maildir", true, false, true},
		{"mid-literal to Maildir", false, false, false},
		{"mid-literal to IMAP", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			user, pw := d.NewUser(t)
			msgs := b5Corpus("big", 12, 24<<10)
			d.Seed(t, user, pw, "INBOX", msgs)
			p := mailtest.NewFaultProxy(t, d.IMAPStartTLS)
			bye := mailtest.Fault{Action: mailtest.Drop, Dir: mailtest.Down, After: 100 << 10,
				AtResponse: tc.atResponse, Inject: []byte(sessionExpired), Rewrite: stripCap("STARTTLS")}
			p.SetSchedule(mailtest.EveryConn(bye))

			dir := t.TempDir()
			env := []string{"MAILFERRY_SRC_PASSWORD=" + pw, "MAILFERRY_TEST_BACKOFF=50ms"}
			dst := "maildir:" + filepath.Join(dir, "out")
			var dstUser, dstPw string
			if tc.imapDst {
				dstUser, dstPw = d.NewUser(t)
				dst = "imaps://" + dstUser + "@localhost:" + strings.Split(d.IMAPS, ":")[1]
				env = append(env, "MAILFERRY_DST_PASSWORD="+dstPw)
			}
			args := func(extra ...string) []string {
				return append([]string{"copy", "imap://" + user + "@localhost:" + p.Port(), dst,
					"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--progress", "never", "--json",
					"--ca-file", d.CAFile, "--allow-plaintext", "--allow-plaintext-auth", "--workers", "1"}, extra...)
			}
			held := func() map[[32]byte]int {
				if tc.imapDst {
					m := map[[32]byte]int{}
					for _, f := range d.Fetch(t, dstUser, dstPw)["INBOX"] {
						m[sha256.Sum256(mailtest.CRLF(f.Body))]++
					}
					return m
				}
				return stored(t, dir, true)["INBOX"]
			}
			want := multiset(msgs)
			checkSafe := func(when string) {
				t.Helper()
				for sum, n := range held() {
					if n > want[sum] {
						t.Errorf("%s: a stored message appears %d times, seeded %d (truncated or duplicated)", when, n, want[sum])
					}
				}
			}

			r := runBinLimit(t, runLimit, env, args("--timeout", "5s", "--max-bytes", "250K")...)
			first := copiedCount(t, r.stdout)
			if last := lastLine(r.stderr); r.code != exitTemporary || !strings.HasPrefix(last, "mailferry copy: ") || !strings.Contains(last, "--max-bytes") {
				t.Fatalf("first run = %d, stderr %q; want %d with one line naming --max-bytes", r.code, r.stderr, exitTemporary)
			}
			byes := 0
			for _, c := range p.Conns() {
				if c.Fired {
					byes++
				}
			}
			retries := strings.Count(r.stderr, "retrying after a temporary error")
			t.Log(r.stderr) // DEBUG
			t.Logf("first run: %d copied in %v, %d connections, %d ended by BYE, %d retries", first, r.elapsed, len(p.Conns()), byes, retries)
			if first < 9 || first > 10 || byes < 2 || retries == 0 {
				t.Errorf("first run copied %d with %d BYEs and %d retry warnings; want 9 or 10 within 250K, at least two BYEs survived, one with a backoff retry", first, byes, retries)
			}
			checkSafe("after the budget stop")

			r = runBinLimit(t, runLimit, env, args("--timeout", "5s", "--max-bytes", "250K")...)
			if r.code != 0 || copiedCount(t, r.stdout) != int64(len(msgs))-first {
				t.Fatalf("rerun = %d, copied %d; want 0 and the %d left: %s", r.code, copiedCount(t, r.stdout), int64(len(msgs))-first, lastLine(r.stderr))
			}

			if !tc.throttle {
				return
			}
			// Over quota: every session from now on is throttled to 1 KiB/s.
			var y int64
			for _, c := range p.Conns() {
				y += c.Bytes[mailtest.Down]
			}
			late := b5Corpus("late", 3, 1<<10)
			d.Seed(t, user, pw, "INBOX", late)
			msgs = append(msgs, late...)
			want = multiset(msgs)
			slow := bye
			slow.Rate = 1 << 10
			p.SetSchedule(mailtest.EveryConn(slow))
			before := len(p.Conns())
			r = runBinLimit(t, runLimit, env, args("--timeout", "1s")...)
			var thr int64
			for _, c := range p.Conns()[before:] {
				thr += c.Bytes[mailtest.Down]
			}
			t.Logf("throttled run after Y = %d bytes: %d bytes in %v", y, thr, r.elapsed)
			if r.code != 0 || copiedCount(t, r.stdout) != 3 {
				t.Fatalf("throttled run = %d, copied %d; want 0 and 3: %s", r.code, copiedCount(t, r.stdout), lastLine(r.stderr))
			}
			if r.elapsed < 2*time.Second || r.elapsed < time.Duration(thr)*time.Second/(2<<10) {
				t.Errorf("throttled run took %v for %d bytes: the throttle did not apply (want over 2x --timeout)", r.elapsed, thr)
			}

			p.SetSchedule(nil)
			if got := held(); !sameMultiset(got, want) {
				t.Errorf("destination holds %d distinct bodies (%v), want the %d seeded exactly once", len(got), got, len(msgs))
			}
			r = runBinLimit(t, runLimit, env, args()...)
			if r.code != 0 || copiedCount(t, r.stdout) != 0 {
				t.Errorf("last run = %d, copied %d; want 0 and nothing", r.code, copiedCount(t, r.stdout))
			}
		})
	}
}
