package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// Network-fault scenarios (docs/failure-model.md section B) through the real
// binary and a real Dovecot, with mailtest.FaultProxy between them. Every
// faulted run must end on its own (a typed exit, never a hang or a
// panic), store nothing truncated, delete nothing not stored (I3); reruns
// without the fault then converge (I5) to every message exactly once
// (I1, I2), and one more run copies nothing (I4).

// runLimit bounds a single run of the binary: a run that takes longer is a
// hang, which is the bug B2 is about.
const runLimit = 90 * time.Second

// binRun is what one run of the binary did.
type binRun struct {
	code    int // exit code; -1 when killed
	killed  bool
	stdout  string
	stderr  string
	elapsed time.Duration
	maxRSS  int64 // peak resident set size in bytes (ru_maxrss)
}

// runBinLimit runs the binary like runBin, but fails the test if it does
// not exit within limit (it is then killed); it also reports the peak RSS
// from getrusage.
func runBinLimit(t *testing.T, limit time.Duration, env []string, args ...string) binRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	r := execBin(ctx, t, cmd, limit, 0)
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("mailferry %s panicked:\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

// execBin runs cmd, made with exec.CommandContext(ctx, ...) where ctx ends
// after limit, and reports what it did, peak RSS included. With kill > 0 it
// sends SIGKILL after kill: the fault being injected, not a
// synchronisation. It fails the test when ctx ended the run (a hang).
func execBin(ctx context.Context, t *testing.T, cmd *exec.Cmd, limit, kill time.Duration) binRun {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	rssFile := filepath.Join(t.TempDir(), "rss")
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "MAILFERRY_TEST_RSS_FILE="+rssFile)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if kill > 0 {
		timer := time.AfterFunc(kill, func() { cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
	}
	err := cmd.Wait()
	r := binRun{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("mailferry %s: still running after %v (hang); stderr:\n%s", strings.Join(cmd.Args[1:], " "), limit, r.stderr)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.code, r.killed = -1, true
		} else {
			r.code = ee.ExitCode()
		}
	case err != nil:
		t.Fatal(err)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage for the child")
	}
	r.maxRSS = ru.Maxrss << 10 // KiB on Linux
	if b, err := os.ReadFile(rssFile); err == nil {
		// The child's own peak (see atExit): ru_maxrss above also holds
		// this test process's high-water mark, folded in at exec.
		r.maxRSS, _ = strconv.ParseInt(string(b), 10, 64)
	}
	return r
}

// lastLine is the last line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// faultCorpus is crashCorpus plus three messages of about 70 KB, so that
// body transfers dominate a session and byte offsets land inside FETCH
// literals and RETR responses.
func faultCorpus() []mailtest.SeedMessage {
	out := crashCorpus()
	date := time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)
	for i := 0; i < 3; i++ {
		var b strings.Builder
		fmt.Fprintf(&b, "Message-ID: <big%d@x>\r\nSubject: big %d\r\n\r\n", i, i)
		for j := 0; j < 1200; j++ {
			fmt.Fprintf(&b, "message %d line %04d: enough text to make a long literal\r\n", i, j)
		}
		b.WriteString(".\r\n.. a line of dots\r\nFrom the start\r\n")
		out = append(out, mailtest.SeedMessage{Body: []byte(b.String()), Date: date})
	}
	return out
}

// faultPipe is one pipeline under test: a Dovecot account read over IMAP
// or POP3 into a Maildir, optionally in delete mode.
type faultPipe struct {
	name   string
	scheme string // imaps, pop3s, or imap/pop3 for STARTTLS
	target string // the Dovecot address the proxy forwards to
	delete bool
	d      *mailtest.Dovecot
	user   string
	pw     string
	boxes  map[string][]mailtest.SeedMessage
	want   map[string]map[[32]byte]int
}

// newFaultPipe makes a fresh account seeded with faultCorpus: IMAP gets two
// mailboxes (one with a non-ASCII name), POP3 everything in INBOX.
func newFaultPipe(t *testing.T, d *mailtest.Dovecot, name, scheme string, del bool) *faultPipe {
	t.Helper()
	fp := &faultPipe{name: name, scheme: scheme, delete: del, d: d}
	switch scheme {
	case "imaps":
		fp.target = d.IMAPS
	case "imap":
		fp.target = d.IMAPStartTLS
	case "pop3s":
		fp.target = d.POP3S
	case "pop3":
		fp.target = d.POP3STLS
	}
	fp.user, fp.pw = d.NewUser(t)
	seed := faultCorpus()
	if strings.HasPrefix(scheme, "imap") {
		fp.boxes = map[string][]mailtest.SeedMessage{"INBOX": seed[:9], "Archiv/Übersicht": seed[9:]}
	} else {
		fp.boxes = map[string][]mailtest.SeedMessage{"INBOX": seed}
	}
	fp.want = map[string]map[[32]byte]int{}
	for mb, msgs := range fp.boxes {
		fp.want[mb] = multiset(msgs)
	}
	fp.seed(t)
	return fp
}

// seed (re)fills the account: INBOX is emptied first (delete mode leaves it
// empty, a faulted run part-empty).
func (fp *faultPipe) seed(t *testing.T) {
	t.Helper()
	fp.d.Doveadm(t, "expunge", "-u", fp.user, "mailbox", "INBOX", "all")
	for mb, msgs := range fp.boxes {
		if mb != "INBOX" {
			if len(fp.d.Fetch(t, fp.user, fp.pw)[mb]) > 0 {
				continue // leave mode never changes it
			}
		}
		fp.d.Seed(t, fp.user, fp.pw, mb, msgs)
	}
}

func (fp *faultPipe) env() []string { return []string{"MAILFERRY_SRC_PASSWORD=" + fp.pw} }

// args returns the copy command line through proxy into dir.
func (fp *faultPipe) args(p *mailtest.FaultProxy, dir string, extra ...string) []string {
	src := fp.scheme + "://" + fp.user + "@localhost:" + p.Port()
	a := []string{"copy", src, "maildir:" + filepath.Join(dir, "out"),
		"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--progress", "never", "--json",
		"--ca-file", fp.d.CAFile, "--workers", "1", "--timeout", "5s"}
	if fp.delete {
		a = append(a, "--delete-source")
	}
	return append(a, extra...)
}

// stored returns the bodies in dir's Maildir (nothing if it does not
// exist yet); final also fails on files left in tmp/.
func stored(t *testing.T, dir string, final bool) map[string]map[[32]byte]int {
	t.Helper()
	root := filepath.Join(dir, "out")
	if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
		return map[string]map[[32]byte]int{}
	}
	return bodiesIn(t, "maildir:"+root, final)
}

// onServer returns the bodies still in the account's INBOX.
func (fp *faultPipe) onServer(t *testing.T) map[[32]byte]int {
	t.Helper()
	m := map[[32]byte]int{}
	for _, f := range fp.d.Fetch(t, fp.user, fp.pw)["INBOX"] {
		m[sha256.Sum256(mailtest.CRLF(f.Body))]++
	}
	return m
}

// checkSafe checks what must hold at any moment, even right after a
// faulted run: every stored message is a whole seeded message stored no
// more often than seeded (nothing truncated, no duplicate), nothing is left
// in tmp/, and in delete mode nothing is gone from the server that is not
// stored (I3).
func (fp *faultPipe) checkSafe(t *testing.T, dir string) {
	t.Helper()
	got := stored(t, dir, true)
	for mb, bodies := range got {
		for sum, n := range bodies {
			if w := fp.want[mb][sum]; n > w {
				t.Errorf("%s: a stored message appears %d times, seeded %d times (truncated or duplicated)", mb, n, w)
			}
		}
	}
	if fp.delete {
		left := fp.onServer(t)
		for sum, n := range fp.want["INBOX"] {
			if gone := n - left[sum]; gone > got["INBOX"][sum] {
				t.Errorf("I3: %d cop(ies) of a message deleted on the server, %d stored", gone, got["INBOX"][sum])
			}
		}
	}
}

// converge reruns without faults (at most twice, I5) until a run exits 0,
// then checks I1/I2 (exactly the seeded messages), an empty server in
// delete mode, and I4 (one more run copies nothing and exits 0).
func (fp *faultPipe) converge(t *testing.T, p *mailtest.FaultProxy, dir string) {
	t.Helper()
	p.SetSchedule(nil)
	var r binRun
	for i := 1; ; i++ {
		r = runBinLimit(t, runLimit, fp.env(), fp.args(p, dir)...)
		if r.code == 0 {
			break
		}
		if i == 2 {
			t.Fatalf("I5: still exit %d after %d reruns without the fault: %s", r.code, i, lastLine(r.stderr))
		}
	}
	got := stored(t, dir, true)
	for mb, w := range fp.want {
		if !sameMultiset(got[mb], w) {
			t.Errorf("I1/I2: %s holds %d distinct bodies (%v), want exactly the %d seeded", mb, len(got[mb]), got[mb], len(w))
		}
	}
	if fp.delete {
		if left := fp.onServer(t); len(left) != 0 {
			t.Errorf("after convergence the server still holds %d messages", len(left))
		}
	}
	r = runBinLimit(t, runLimit, fp.env(), fp.args(p, dir)...)
	if r.code != 0 || copiedCount(t, r.stdout) != 0 {
		t.Errorf("I4: the run after convergence exited %d and copied %d, want 0 and 0: %s", r.code, copiedCount(t, r.stdout), lastLine(r.stderr))
	}
}

// faulted runs the copy once through p with the fault schedule set, checks
// that it ended with a typed exit code and a one-line error, and checks
// the always-invariants.
func (fp *faultPipe) faulted(t *testing.T, p *mailtest.FaultProxy, dir string, schedule func(int) mailtest.Fault, extra ...string) binRun {
	t.Helper()
	p.SetSchedule(schedule)
	r := runBinLimit(t, runLimit, fp.env(), fp.args(p, dir, extra...)...)
	switch r.code {
	case 0, exitcode.Unexpected, exitcode.Partial, exitcode.Unreachable, exitcode.Temporary:
	default:
		t.Errorf("faulted run exited %d (killed %v), want 0, 1, 3, 5 or 8: %s", r.code, r.killed, r.stderr)
	}
	if r.code != 0 && !strings.HasPrefix(lastLine(r.stderr), "mailferry copy: ") {
		t.Errorf("faulted run exited %d without a final one-line error: %q", r.code, lastLine(r.stderr))
	}
	if strings.Contains(r.stderr, fp.pw) || strings.Contains(r.stdout, fp.pw) {
		t.Errorf("the output shows the password")
	}
	fp.checkSafe(t, dir)
	return r
}

// cut is one fault position: the n-th connection (from 1), direction, and
// byte offset on that connection.
type cut struct {
	conn  int
	dir   mailtest.Direction
	after int64
}

// cuts spreads k offsets evenly over the bytes the clean run st moved in
// direction dir, all connections in accept order.
func cuts(st []mailtest.ConnStats, dir mailtest.Direction, k int) []cut {
	var total int64
	for _, c := range st {
		total += c.Bytes[dir]
	}
	var out []cut
	for i := 1; i <= k; i++ {
		g := total * int64(i) / int64(k+1)
		for n, c := range st {
			if g < c.Bytes[dir] {
				out = append(out, cut{conn: n + 1, dir: dir, after: g})
				break
			}
			g -= c.Bytes[dir]
		}
	}
	return out
}

// measure runs the copy once without faults through a fresh proxy and
// returns the per-connection byte counts and the bytes the client sent,
// then restores the account.
func (fp *faultPipe) measure(t *testing.T) ([]mailtest.ConnStats, []byte) {
	t.Helper()
	p := mailtest.NewFaultProxy(t, fp.target)
	p.Record(true)
	dir := t.TempDir()
	r := runBinLimit(t, runLimit, fp.env(), fp.args(p, dir)...)
	if r.code != 0 {
		t.Fatalf("clean run exited %d: %s", r.code, r.stderr)
	}
	st := p.Conns()
	if fp.delete {
		fp.seed(t)
	}
	return st, p.Recorded(mailtest.Up)
}

// TestB1B4TruncationSweep covers B1 (a reset during a body transfer) and B4
// (a truncation sweep): for IMAP -> Maildir, POP3 -> Maildir, and POP3 ->
// Maildir in delete mode, the session is cut at 10 offsets spread over the
// bytes the server sends (every third cut a TCP RST instead of a FIN) and at
// 4 offsets over the bytes the client sends (40 and 12 under
// MAILFERRY_SOAK=1); in delete mode also right before and right after the
// client's QUIT (A5 b). Each faulted run must end cleanly and leave only whole messages,
// nothing in tmp/, and no server deletion of a message not stored; reruns
// converge to exactly-once.
func TestB1B4TruncationSweep(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, pc := range []struct {
		name, scheme string
		del          bool
	}{
		{"IMAPToMaildir", "imaps", false},
		{"POP3ToMaildir", "pop3s", false},
		{"POP3ToMaildirDelete", "pop3s", true},
	} {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			fp := newFaultPipe(t, d, pc.name, pc.scheme, pc.del)
			st, up := fp.measure(t)
			nDown, nUp := 10, 4
			if os.Getenv("MAILFERRY_SOAK") == "1" {
				nDown, nUp = 40, 12
			}
			all := append(cuts(st, mailtest.Down, nDown), cuts(st, mailtest.Up, nUp)...)
			if fp.delete {
				// A5 (b): the connection drops just before QUIT, and just after
				// QUIT was written (the server commits, the client cannot know).
				q := quitRecord(t, up)
				all = append(all, cut{conn: 1, dir: mailtest.Up, after: q[0]}, cut{conn: 1, dir: mailtest.Up, after: q[1]})
			}
			fired := 0
			for i, c := range all {
				action := mailtest.Drop
				if c.dir == mailtest.Down && i%3 == 2 {
					action = mailtest.Reset
				}
				t.Run(fmt.Sprintf("%s-%s-conn%d-at%d", action, c.dir, c.conn, c.after), func(t *testing.T) {
					dir := t.TempDir()
					p := mailtest.NewFaultProxy(t, fp.target)
					f := mailtest.Fault{Action: action, Dir: c.dir, After: c.after}
					r := fp.faulted(t, p, dir, func(n int) mailtest.Fault {
						if n == c.conn {
							return f
						}
						return mailtest.Fault{}
					})
					if cs := p.Conns(); len(cs) >= c.conn && cs[c.conn-1].Fired {
						fired++
					}
					t.Logf("faulted run: exit %d in %v: %s", r.code, r.elapsed.Round(time.Millisecond), lastLine(r.stderr))
					fp.converge(t, p, dir)
					if fp.delete {
						fp.seed(t)
					}
				})
			}
			// The offsets come from a clean run; a faulted run moves the same
			// bytes up to the cut, so nearly every cut must really happen.
			if fired < len(all)-1 {
				t.Errorf("only %d of %d cuts happened: the sweep tests less than it claims", fired, len(all))
			}
		})
	}
}

// TestB2StallHitsDeadline covers B2: the server goes silent (data stops,
// the socket stays open) (a) before the greeting, (b) in the TLS or
// STARTTLS/STLS handshake or before the STARTTLS answer, (c) inside a FETCH
// literal / RETR body, (d) around POP3 QUIT in delete mode. With --timeout
// 2s each run must end on its own within the bound (no hang), with an error
// naming the phase and the timeout when it fails; the reruns converge.
func TestB2StallHitsDeadline(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	const timeout = 2 * time.Second
	down0 := func(t *testing.T, st []mailtest.ConnStats, up []byte) func(int) mailtest.Fault {
		return mailtest.FirstConn(mailtest.Fault{Action: mailtest.Stall, Dir: mailtest.Down})
	}
	// afterCmd stalls once the client sent cmd (+extra bytes of what follows
	// it: 1 lets the first byte of the ClientHello through, so the stall
	// hits the handshake instead of the STARTTLS answer).
	afterCmd := func(cmd string, extra int) func(t *testing.T, st []mailtest.ConnStats, up []byte) func(int) mailtest.Fault {
		return func(t *testing.T, st []mailtest.ConnStats, up []byte) func(int) mailtest.Fault {
			i := bytes.Index(up, []byte(cmd))
			if i < 0 {
				t.Fatalf("no %q in the client's bytes: %q", cmd, up[:min(len(up), 200)])
			}
			return mailtest.FirstConn(mailtest.Fault{Action: mailtest.Stall, Dir: mailtest.Up, After: int64(i + len(cmd) + extra)})
		}
	}
	for _, tc := range []struct {
		name, scheme string
		del          bool
		// fault picks the stall from a clean run's statistics and the
		// bytes the client sent.
		fault func(t *testing.T, st []mailtest.ConnStats, up []byte) func(int) mailtest.Fault
		// phase, when set, means the run cannot succeed (the stall is on the
		// only connection it makes before giving up): the final error must
		// contain one of these words, and say that time ran out.
		phase []string
	}{
		{name: "IMAPGreeting", scheme: "imap", fault: down0, phase: []string{"greeting", "before TLS"}},
		{name: "IMAPTLSHandshake", scheme: "imaps", fault: down0, phase: []string{"tls"}},
		{name: "IMAPSTARTTLSAnswer", scheme: "imap", fault: afterCmd("STARTTLS\r\n", 0), phase: []string{"STARTTLS", "before TLS"}},
		{name: "IMAPSTARTTLSHandshake", scheme: "imap", fault: afterCmd("STARTTLS\r\n", 1), phase: []string{"tls"}},
		{name: "POP3Greeting", scheme: "pop3", fault: down0, phase: []string{"greeting"}},
		{name: "POP3TLSHandshake", scheme: "pop3s", fault: down0, phase: []string{"tls"}},
		{name: "POP3STLSHandshake", scheme: "pop3", fault: afterCmd("STLS\r\n", 1), phase: []string{"tls"}},
		{name: "FETCHLiteral", scheme: "imaps",
			fault: func(t *testing.T, st []mailtest.ConnStats, up []byte) func(int) mailtest.Fault {
				// Connection 2 is the first body connection (--workers 1).
				return stallOn(2, mailtest.Down, st[1].Bytes[mailtest.Down]/2)
			}},
		{name: "RETRBody", scheme: "pop3s",
			fault: func(t *testing.T, st []mailtest.ConnStats, up []byte) func(int) mailtest.Fault {
				return stallOn(1, mailtest.Down, st[0].Bytes[mailtest.Down]/2)
			}},
		{name: "POP3DELEAnswersQUITNeverSent", scheme: "pop3s", del: true, phase: []string{"dele"},
			fault: func(t *testing.T, st []mailtest.ConnStats, up []byte) func(int) mailtest.Fault {
				// Everything up to QUIT went through, the DELE answers are lost.
				return stallOn(1, mailtest.Up, quitRecord(t, up)[0])
			}},
		{name: "POP3QUITAnswer", scheme: "pop3s", del: true, phase: []string{"quit"},
			fault: func(t *testing.T, st []mailtest.ConnStats, up []byte) func(int) mailtest.Fault {
				// The server gets QUIT (and commits); its +OK is lost.
				return stallOn(1, mailtest.Up, quitRecord(t, up)[1])
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fp := newFaultPipe(t, d, tc.name, tc.scheme, tc.del)
			// A clean run, recorded, to place the stall.
			p := mailtest.NewFaultProxy(t, fp.target)
			p.Record(true)
			r := runBinLimit(t, runLimit, fp.env(), fp.args(p, t.TempDir())...)
			if r.code != 0 {
				t.Fatalf("clean run exited %d: %s", r.code, r.stderr)
			}
			st, up := p.Conns(), p.Recorded(mailtest.Up)
			if fp.delete {
				fp.seed(t)
			}

			dir := t.TempDir()
			p = mailtest.NewFaultProxy(t, fp.target)
			r = fp.faulted(t, p, dir, tc.fault(t, st, up), "--timeout", timeout.String())
			t.Logf("stalled run: exit %d in %v: %s", r.code, r.elapsed.Round(time.Millisecond), lastLine(r.stderr))
			if cs := p.Conns(); len(cs) == 0 || !stalled(cs) {
				t.Fatalf("the stall never happened: %+v", cs)
			}
			if r.elapsed < timeout {
				t.Errorf("the run ended after %v, before the %v deadline could expire: what ended it?", r.elapsed, timeout)
			}
			// The engine retries a message three times with 1 s, 2 s, 4 s
			// backoff (jittered); a stall costs one deadline per attempt.
			if bound := 8*timeout + 10*time.Second; r.elapsed > bound {
				t.Errorf("the stalled run took %v, want under %v", r.elapsed, bound)
			}
			if tc.phase != nil {
				msg := strings.ToLower(lastLine(r.stderr))
				named := false
				for _, w := range tc.phase {
					named = named || strings.Contains(msg, strings.ToLower(w))
				}
				timedOut := strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline") || strings.Contains(msg, "no answer within")
				switch {
				case r.code == 0:
					t.Errorf("the stalled run exited 0; want a failure naming the phase %q", tc.phase)
				case !named || !timedOut:
					t.Errorf("error %q should name the phase (one of %q) and say that the %v timeout expired", lastLine(r.stderr), tc.phase, timeout)
				}
			}
			fp.converge(t, p, dir)
		})
	}
}

// stallOn stalls connection n after `after` bytes in dir.
func stallOn(n int, dir mailtest.Direction, after int64) func(int) mailtest.Fault {
	return func(k int) mailtest.Fault {
		if k == n {
			return mailtest.Fault{Action: mailtest.Stall, Dir: dir, After: after}
		}
		return mailtest.Fault{}
	}
}

func stalled(cs []mailtest.ConnStats) bool {
	for _, c := range cs {
		if c.Fired {
			return true
		}
	}
	return false
}

// quitRecord finds the client's QUIT in the TLS records of a pop3s session
// the client sent (up): it returns the record's start and end offsets. In
// TLS 1.3 "QUIT\r\n" is an application-data record of 5+6+1+16 = 28 bytes;
// it is the last such record (CAPA, STAT, UIDL and LIST have the same
// length but come first).
func quitRecord(t *testing.T, up []byte) [2]int64 {
	t.Helper()
	var found [2]int64
	for off := 0; off+5 <= len(up); {
		n := int(up[off+3])<<8 | int(up[off+4])
		if up[off] == 0x17 && n == 6+1+16 {
			found = [2]int64{int64(off), int64(off + 5 + n)}
		}
		off += 5 + n
	}
	if found[1] == 0 {
		t.Fatal("no QUIT record in the client's TLS stream")
	}
	return found
}

// TestB1ResetMidBodyRetried covers B1 for a reset inside the first body: the
// run itself retries on a new connection (the schedule faults only the
// first) and succeeds, with exactly-once results and nothing in tmp/.
func TestB1ResetMidBodyRetried(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, pc := range []struct {
		name, scheme string
		conn         int // the connection carrying bodies with --workers 1
	}{
		{"IMAP", "imaps", 2},
		{"POP3", "pop3s", 1},
	} {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			fp := newFaultPipe(t, d, pc.name, pc.scheme, false)
			st, _ := fp.measure(t)
			dir := t.TempDir()
			p := mailtest.NewFaultProxy(t, fp.target)
			f := mailtest.Fault{Action: mailtest.Reset, Dir: mailtest.Down, After: st[pc.conn-1].Bytes[mailtest.Down] * 3 / 4}
			r := fp.faulted(t, p, dir, func(n int) mailtest.Fault {
				if n == pc.conn {
					return f
				}
				return mailtest.Fault{}
			})
			if r.code != 0 {
				t.Errorf("a single reset was not retried: exit %d: %s", r.code, lastLine(r.stderr))
			}
			if !p.Conns()[pc.conn-1].Fired {
				t.Fatal("the reset never happened")
			}
			fp.converge(t, p, dir)
		})
	}
}

// TestB2SlowServerWithinTimeout: a server sending at 64 KiB/s takes several
// times --timeout for the whole copy, which must still succeed in one run:
// the deadline bounds inactivity, not the transfer (docs/library-notes.md §0.4).
func TestB2SlowServerWithinTimeout(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, pc := range []struct{ name, scheme string }{{"IMAP", "imaps"}, {"POP3", "pop3s"}} {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			fp := newFaultPipe(t, d, pc.name, pc.scheme, false)
			dir := t.TempDir()
			p := mailtest.NewFaultProxy(t, fp.target)
			r := fp.faulted(t, p, dir, mailtest.EveryConn(mailtest.Fault{Rate: 64 << 10}), "--timeout", "1s")
			if r.code != 0 {
				t.Fatalf("slow but live server: exit %d: %s", r.code, r.stderr)
			}
			if r.elapsed < 2*time.Second {
				t.Errorf("the throttled copy took %v: the throttle did not apply", r.elapsed)
			}
			t.Logf("throttled copy: %v", r.elapsed.Round(time.Millisecond))
			fp.converge(t, p, dir)
		})
	}
}

// TestB3FragmentedPlaintext covers B3: every byte the server sends arrives
// in TCP segments of 1 to 7 bytes, over a plaintext session (STARTTLS is
// stripped and --allow-plaintext and --allow-plaintext-auth given, so the IMAP and POP3 parsers see the
// fragments, not TLS records): literal boundaries, CRLF and the POP3 "."
// line are split anywhere. The result must be byte-identical.
func TestB3FragmentedPlaintext(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, pc := range []struct{ name, scheme, cap, cmd string }{{"IMAP", "imap", "STARTTLS", "FETCH"}, {"POP3", "pop3", "\r\nSTLS\r\n", "RETR"}} {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			fp := newFaultPipe(t, d, pc.name, pc.scheme, false)
			dir := t.TempDir()
			p := mailtest.NewFaultProxy(t, fp.target)
			p.Record(true)
			f := mailtest.Fault{Fragment: 7, Rewrite: stripCap(pc.cap)}
			r := fp.faulted(t, p, dir, mailtest.EveryConn(f), "--allow-plaintext", "--allow-plaintext-auth")
			if r.code != 0 {
				t.Fatalf("fragmented copy: exit %d: %s", r.code, r.stderr)
			}
			if up := p.Recorded(mailtest.Up); !bytes.Contains(up, []byte(pc.cmd)) {
				t.Fatal("the session was not in plain text: the fragments reached TLS, not the parser")
			}
			fp.converge(t, p, dir)
		})
	}
}

// stripCap returns a rewrite that hides capability c from the client (a
// STARTTLS-stripping man in the middle), keeping the byte count.
func stripCap(c string) func(mailtest.Direction, []byte) []byte {
	masked := strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return r
		}
		return 'X'
	}, c)
	return func(d mailtest.Direction, b []byte) []byte {
		if d != mailtest.Down {
			return b
		}
		return bytes.ReplaceAll(b, []byte(c), []byte(masked))
	}
}
