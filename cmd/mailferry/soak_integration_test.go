package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// Random SIGKILL trials (docs/failure-model.md A1, random variant; also G1 for
// the multi-worker IMAP pipelines): the binary is killed from outside at a
// uniformly random moment of a run, then rerun; I1-I4 must hold, and in
// delete mode I3 right after every kill. The step sweeps of
// crash_integration_test.go kill at every durable step; these kill
// anywhere, including mid-body, mid-fsync and mid-TLS.
//
// `make test` runs 5 trials per pipeline; MAILFERRY_SOAK=1 (`make soak`)
// runs 25, MAILFERRY_SOAK_TRIALS=n any number. The random seed is logged;
// MAILFERRY_SOAK_SEED=s replays a failure.

// soakRate throttles the source connections of the soak (bytes per second
// per connection and direction): the 15-message corpus then takes about a
// second to move.
const soakRate = 256 << 10

// trialCount is the number of kill trials a soak-able test runs: ci in
// CI, soak under MAILFERRY_SOAK=1, MAILFERRY_SOAK_TRIALS=n any number.
func trialCount(t *testing.T, ci, soak int) int {
	if v := os.Getenv("MAILFERRY_SOAK_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MAILFERRY_SOAK_TRIALS=%q: want a positive number", v)
		}
		return n
	}
	if os.Getenv("MAILFERRY_SOAK") == "1" {
		return soak
	}
	return ci
}

// soakTrials is the number of kill trials per pipeline.
func soakTrials(t *testing.T) int { return trialCount(t, 5, 25) }

// soakSeed returns the seed for the kill delays, logged so a failure can
// be replayed.
func soakSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MAILFERRY_SOAK_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("MAILFERRY_SOAK_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("kill delays from seed %d (replay with MAILFERRY_SOAK_SEED=%d)", seed, seed)
	return seed
}

// startKill starts the binary and sends it SIGKILL after delay, unless it
// exited first. It returns whether the kill happened and the exit code
// otherwise.
func startKill(t *testing.T, delay time.Duration, env []string, args ...string) (killed bool, code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	// A zero delay kills at once, as a timer of 0 would.
	r := execBin(ctx, t, cmd, runLimit, max(delay, time.Nanosecond))
	return r.killed, r.code, r.stderr
}

// soakPipe is one pipeline of the random-kill soak.
type soakPipe struct {
	name  string
	src   string // source scheme
	dst   string // maildir, mbox or imaps
	del   bool
	flags []string
}

func TestA1RandomKill(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	trials := soakTrials(t)
	seed := soakSeed(t)
	pipes := []soakPipe{
		{name: "POP3ToMaildirDelete", src: "pop3s", dst: "maildir", del: true},
		{name: "IMAPToMbox", src: "imaps", dst: "mbox", flags: []string{"--workers", "3"}},
		{name: "IMAPToMaildir", src: "imaps", dst: "maildir", flags: []string{"--workers", "3"}},
		{name: "IMAPToIMAP", src: "imaps", dst: "imaps", flags: []string{"--workers", "3"}},
	}
	for i, sp := range pipes {
		t.Run(sp.name, func(t *testing.T) {
			if sp.dst == "imaps" {
				if _, sinks := registry().Schemes(); !slices.Contains(sinks, "imaps") {
					t.Skip("no IMAP sink registered in cmd/mailferry/backends.go yet")
				}
			}
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			soak(t, d, sp, trials, rng)
		})
	}
}

func soak(t *testing.T, d *mailtest.Dovecot, sp soakPipe, trials int, rng *rand.Rand) {
	fp := newFaultPipe(t, d, sp.name, sp.src, sp.del)
	// The source is throttled so that the transfer, not the start-up (TLS,
	// login, listing), takes most of a run: uniform kill times then land
	// mostly between and inside messages.
	proxy := mailtest.NewFaultProxy(t, fp.target)
	proxy.SetSchedule(mailtest.EveryConn(mailtest.Fault{Rate: soakRate}))
	var dstUser, dstPW string
	env := fp.env()
	if sp.dst == "imaps" {
		dstUser, dstPW = d.NewUser(t)
		env = append(env, "MAILFERRY_DST_PASSWORD="+dstPW)
	}
	args := func(dir string) []string {
		dst := sp.dst + ":" + filepath.Join(dir, "out")
		if sp.dst == "imaps" {
			dst = "imaps://" + dstUser + "@" + d.IMAPS
		}
		a := []string{"copy", sp.src + "://" + fp.user + "@localhost:" + proxy.Port(), dst,
			"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--progress", "never", "--json",
			"--ca-file", d.CAFile, "--timeout", "10s"}
		if sp.del {
			a = append(a, "--delete-source")
		}
		return append(a, sp.flags...)
	}
	// What the destination holds: per mailbox, the multiset of bodies.
	// Maildir and mbox are read with their sources; a tmp/ file is allowed
	// right after a kill (the next run removes it), not after a finished run.
	holds := func(dir string, final bool) map[string]map[[32]byte]int {
		switch sp.dst {
		case "imaps":
			out := map[string]map[[32]byte]int{}
			for mb, msgs := range d.Fetch(t, dstUser, dstPW) {
				if len(msgs) == 0 {
					continue
				}
				out[mb] = map[[32]byte]int{}
				for _, m := range msgs {
					out[mb][sha256.Sum256(mailtest.CRLF(m.Body))]++
				}
			}
			return out
		}
		root := filepath.Join(dir, "out")
		if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
			return map[string]map[[32]byte]int{}
		}
		return bodiesIn(t, sp.dst+":"+root, final)
	}
	reset := func() {
		if sp.del {
			fp.seed(t)
		}
		if sp.dst == "imaps" {
			for mb := range d.Fetch(t, dstUser, dstPW) {
				d.Doveadm(t, "expunge", "-u", dstUser, "mailbox", mb, "all")
			}
		}
	}

	// A clean run gives the span the kill delays are drawn from. The first
	// access to a mailbox is slower (Dovecot builds its indexes and UIDL
	// cache), so the second of two runs is timed; a trial that finishes
	// before its kill shortens the span to its own duration.
	var span time.Duration
	for i := 0; i < 2; i++ {
		dir := t.TempDir()
		r := runBinLimit(t, runLimit, append(env, "MAILFERRY_TEST_BATCH=2"), args(dir)...)
		if r.code != 0 {
			t.Fatalf("clean run (commits of 2 messages) exited %d: %s", r.code, r.stderr)
		}
		span = r.elapsed
		reset()
	}
	t.Logf("a clean run takes %v; kills are drawn uniformly from [0, span)", span.Round(time.Millisecond))

	killedRuns, midCopy := 0, 0
	for trial := 1; trial <= trials; trial++ {
		dir := t.TempDir()
		delay := time.Duration(rng.Int64N(int64(span)))
		started := time.Now()
		killed, code, stderr := startKill(t, delay, append(env, "MAILFERRY_TEST_BATCH=2"), args(dir)...)
		where := fmt.Sprintf("trial %d (kill after %v)", trial, delay.Round(time.Microsecond))
		switch {
		case killed:
			killedRuns++
		case code != 0:
			t.Fatalf("%s: the run finished first but exited %d: %s", where, code, stderr)
		default:
			span = min(span, time.Since(started))
			t.Logf("%s: the run finished first; span now %v", where, span.Round(time.Millisecond))
		}
		// Right after the kill: every stored message is a whole seeded one
		// at most as often as seeded; in delete mode nothing is gone from
		// the server that is not stored (I3).
		got := holds(dir, false)
		if killed {
			n := 0
			for _, bodies := range got {
				for _, k := range bodies {
					n += k
				}
			}
			if n > 0 && n < fp.total() {
				midCopy++
			}
			t.Logf("%s: %d of %d messages stored at the kill", where, n, fp.total())
		}
		for mb, bodies := range got {
			for sum, n := range bodies {
				if w := fp.want[mb][sum]; n > w {
					t.Errorf("%s: %s holds a message %d times, seeded %d times", where, mb, n, w)
				}
			}
		}
		if sp.del {
			left := fp.onServer(t)
			for sum, n := range fp.want["INBOX"] {
				if gone := n - left[sum]; gone > got["INBOX"][sum] {
					t.Errorf("%s: I3: %d cop(ies) of a message deleted on the server, %d stored", where, gone, got["INBOX"][sum])
				}
			}
		}
		// One rerun converges (I5 with K = 1) to exactly the seeded
		// messages (I1, I2) and an empty maildrop in delete mode.
		r := runBinLimit(t, runLimit, env, args(dir)...)
		if r.code != 0 {
			t.Fatalf("%s: rerun exited %d: %s", where, r.code, r.stderr)
		}
		got = holds(dir, true)
		for mb, w := range fp.want {
			if !sameMultiset(got[mb], w) {
				t.Errorf("%s: I1/I2: %s holds %v, want each of the %d seeded bodies exactly as often as seeded", where, mb, got[mb], len(w))
			}
		}
		if sp.del {
			if left := fp.onServer(t); len(left) != 0 {
				t.Errorf("%s: the server still holds %d messages after the rerun", where, len(left))
			}
		}
		// I4: one more run copies nothing.
		r = runBinLimit(t, runLimit, env, args(dir)...)
		if r.code != 0 || copiedCount(t, r.stdout) != 0 {
			t.Errorf("%s: I4: the next run exited %d and copied %d, want 0 and 0", where, r.code, copiedCount(t, r.stdout))
		}
		if t.Failed() {
			t.FailNow()
		}
		reset()
	}
	t.Logf("%d of %d trials were killed mid-run (the others finished first), %d of them with part of the mail stored", killedRuns, trials, midCopy)
	if killedRuns == 0 {
		t.Errorf("no trial was killed mid-run: the soak tested nothing")
	}
}

// total is the number of seeded messages.
func (fp *faultPipe) total() int {
	n := 0
	for _, msgs := range fp.boxes {
		n += len(msgs)
	}
	return n
}

// TestA11SIGINTThenResume covers A11 through the binary: SIGINT arrives
// mid-transfer, once the throttled server has sent half of the session's
// bytes. The run must exit 130 with what it stored committed and recorded,
// nothing left in tmp/, no server deletion of an unstored message (I3); the
// rerun must copy exactly the rest (nothing stored before the interrupt is
// fetched and recorded again) and end exactly-once.
func TestA11SIGINTThenResume(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, pc := range []struct {
		name, scheme string
		del          bool
		conn         int // the connection carrying the bodies (--workers 1)
	}{
		{"IMAPToMaildir", "imaps", false, 2},
		{"POP3ToMaildirDelete", "pop3s", true, 1},
	} {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			fp := newFaultPipe(t, d, pc.name, pc.scheme, pc.del)
			st, _ := fp.measure(t)
			p := mailtest.NewFaultProxy(t, fp.target)
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), runLimit)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary(t), fp.args(p, dir)...)
			cmd.Env = append(os.Environ(), append(fp.env(), "MAILFERRY_TEST_BATCH=2")...)
			var errb bytes.Buffer
			cmd.Stderr = &errb
			half := st[pc.conn-1].Bytes[mailtest.Down] / 2
			started := make(chan struct{}) // orders cmd.Start before the signal
			p.SetSchedule(func(n int) mailtest.Fault {
				f := mailtest.Fault{Rate: soakRate}
				if n == pc.conn {
					f.Dir, f.After = mailtest.Down, half
					f.OnFire = func() {
						<-started
						cmd.Process.Signal(os.Interrupt)
					}
				}
				return f
			})
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			close(started)
			cmd.Wait()
			if ctx.Err() != nil {
				t.Fatalf("the interrupted run did not exit: %s", errb.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != exitcode.Interrupted {
				t.Fatalf("SIGINT mid-run: exit %d, want %d: %s", code, exitcode.Interrupted, errb.String())
			}
			fp.checkSafe(t, dir)
			n := 0
			for _, bodies := range stored(t, dir, true) {
				for _, k := range bodies {
					n += k
				}
			}
			r := runBinLimit(t, runLimit, fp.env(), fp.args(p, dir)...)
			if r.code != 0 {
				t.Fatalf("rerun exited %d: %s", r.code, r.stderr)
			}
			if got := copiedCount(t, r.stdout); got != int64(fp.total()-n) {
				t.Errorf("%d messages were stored before the interrupt; the rerun copied %d, want the other %d", n, got, fp.total()-n)
			}
			t.Logf("interrupted with %d of %d messages stored", n, fp.total())
			fp.converge(t, p, dir)
		})
	}
}
