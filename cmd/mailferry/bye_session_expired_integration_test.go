package main

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
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
//
// The first run reconnects after each BYE, retries the cut message with
// backoff (a warning naming the cut), and stops at its --max-bytes budget
// with exit 8 ("rerun later") and one line naming the budget; the rerun
// goes on from the checkpoint and finishes. Then, past the account's quota
// (Y: what those runs fetched), two more messages arrive and every session
// is throttled after its login: at 300 B/s the run stops on its own with
// exit 8 after five temporary failures in a row (no hang, nothing stored
// half); at 4 KiB/s it finishes slowly with --timeout 1s. In the end the
// destination (a Maildir, or another IMAP account) holds every message
// exactly once, and one more run copies nothing.
func TestB5ByeSessionExpired(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct {
		name       string
		atResponse bool
		imapDst    bool
		throttle   bool   // a throttle takes seconds: one pipeline is enough
		cutErr     string // what the retry warning says of the cut
	}{
		// The whole body arrived, but not the FETCH's tagged OK: the
		// message is fetched again, not stored unconfirmed.
		{"between responses to Maildir", true, false, true, "server closed the connection"},
		{"mid-literal to Maildir", false, false, false, "body cut short"},
		{"mid-literal to IMAP", false, true, false, "body cut short"},
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
			if last := lastLine(r.stderr); r.code != exitcode.Temporary || !strings.HasPrefix(last, "mailferry copy: ") || !strings.Contains(last, "--max-bytes") {
				t.Fatalf("first run = %d, stderr %q; want %d with one line naming --max-bytes", r.code, r.stderr, exitcode.Temporary)
			}
			byes := 0
			for _, c := range p.Conns() {
				if c.Fired {
					byes++
				}
			}
			retries := strings.Count(r.stderr, "retrying after a temporary error")
			if !strings.Contains(r.stderr, tc.cutErr) {
				t.Errorf("first run: no retry names the cut (%q): %s", tc.cutErr, r.stderr)
			}
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
			// Over quota (Y: what the two runs fetched): from now on every
			// session is throttled once it has sent 6 KB (its login and the
			// listing go at full speed, which keeps the test short).
			var y int64
			for _, c := range p.Conns() {
				y += c.Bytes[mailtest.Down]
			}
			late := b5Corpus("late", 2, 8<<10)
			d.Seed(t, user, pw, "INBOX", late)
			msgs = append(msgs, late...)
			want = multiset(msgs)
			for _, ph := range []struct {
				name string
				rate int
				code int
			}{
				// Well under the source's minimum rate (sources/imap
				// MinRate: 1 KiB/s, counting only time spent waiting
				// mid-response, so 768 B/s from this proxy still passes):
				// every fetch fails after a second, is retried with backoff,
				// and five temporary failures in a row stop the run with
				// exit 8 instead of trickling for hours.
				{"under the minimum rate", 300, exitcode.Temporary},
				// Above it: slow, the run takes longer than --timeout
				// several times over, and still nothing fails.
				{"above the minimum rate", 4 << 10, 0},
			} {
				slow := bye
				slow.Rate, slow.RateAfter = ph.rate, 6<<10
				p.SetSchedule(mailtest.EveryConn(slow))
				before := len(p.Conns())
				r = runBinLimit(t, runLimit, env, args("--timeout", "1s")...)
				var thr int64
				for _, c := range p.Conns()[before:] {
					thr += max(0, c.Bytes[mailtest.Down]-slow.RateAfter)
				}
				t.Logf("%s, after Y = %d bytes: exit %d, %d bytes throttled, %v", ph.name, y, r.code, thr, r.elapsed)
				if r.code != ph.code {
					t.Fatalf("%s: exit %d, want %d: %s", ph.name, r.code, ph.code, r.stderr)
				}
				checkSafe(ph.name)
				if ph.code != 0 {
					if last := lastLine(r.stderr); !strings.Contains(last, "rerun later") || !strings.Contains(r.stderr, "minimum rate") || r.elapsed > 30*time.Second {
						t.Errorf("%s: took %v, last line %q; want a stop within 30s naming the minimum rate and saying rerun later", ph.name, r.elapsed, last)
					}
					continue
				}
				if copiedCount(t, r.stdout) != int64(len(late)) || r.elapsed < 2*time.Second || r.elapsed < time.Duration(thr)*time.Second/time.Duration(2*ph.rate) {
					t.Errorf("%s: copied %d in %v (%d bytes throttled); want the %d late ones, slowly (over 2x --timeout)", ph.name, copiedCount(t, r.stdout), r.elapsed, thr, len(late))
				}
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
