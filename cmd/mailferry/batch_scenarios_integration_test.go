package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// The batch scenarios of issue 13 against a real Dovecot and, for the
// multi-machine path, PostgreSQL: workers killed (SIGKILL) or stopped
// (SIGSTOP) mid-account, 200 account pairs, a group cap sampled from the
// destination's own sessions, throttling, the database down. `make test`
// runs small sizes; `make soak` (MAILFERRY_SOAK=1) the full ones.

// scenarioSlice and scenarioRescue bound how long a dead or stopped
// worker's account waits: River rescues a job once it has run for
// --rescue-after, so the tests use seconds where production uses minutes.
const (
	scenarioSlice  = "2s"
	scenarioRescue = "3s"
)

// scenarioRate throttles the source connections (bytes per second per
// connection): an account then takes seconds, so a signal lands
// mid-account.
const scenarioRate = 24 << 10

// seedMore adds k messages of about pad bytes to box of a's source.
func seedMore(t *testing.T, d *mailtest.Dovecot, a *batchAccount, box string, k, pad int) {
	t.Helper()
	var msgs []mailtest.SeedMessage
	filler := strings.Repeat("filler line of a batch scenario message\r\n", pad/41+1)
	for j := range k {
		body := fmt.Sprintf("Subject: %s %s extra #%d\r\nMessage-ID: <x%d.%s.%s@batch>\r\n\r\n%s", a.id, box, j, j, box, a.srcUser, filler)
		msgs = append(msgs, mailtest.SeedMessage{Body: []byte(body)})
		a.seeded[box] = append(a.seeded[box], body)
	}
	d.Seed(t, a.srcUser, a.srcPW, box, msgs)
}

// viaProxy points the account's source at a proxy that throttles it.
func viaProxy(t *testing.T, d *mailtest.Dovecot, a *batchAccount, rate int) {
	t.Helper()
	p := mailtest.NewFaultProxy(t, d.IMAPS)
	p.SetSchedule(mailtest.EveryConn(mailtest.Fault{Rate: rate}))
	a.srcURL = (&url.URL{Scheme: "imaps", User: url.User(a.srcUser), Host: "localhost:" + p.Port()}).String()
}

// writeRowsCSV writes the accounts CSV with both passwords in files (a
// worker in another process reads them from there), relative to dir.
func writeRowsCSV(t *testing.T, dir string, accts []*batchAccount) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "pw"), 0o700); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("id,src,dst,src_auth,dst_auth\n")
	for _, a := range accts {
		srcPW := a.srcPW
		if a.wrongSrcPassword {
			srcPW = "not-" + a.srcPW[:4]
		}
		writeSecret(t, filepath.Join(dir, "pw", a.id+".src"), srcPW)
		writeSecret(t, filepath.Join(dir, "pw", a.id+".dst"), a.dstPW)
		fmt.Fprintf(&b, "%s,%s,%s,file:pw/%s.src,file:pw/%s.dst\n", a.id, a.srcURL, a.dstURL, a.id, a.id)
	}
	p := filepath.Join(dir, "staff.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// workerProc is 'mailferry batch worker' in a process of its own, as on
// another machine: the test kills or stops it.
type workerProc struct {
	cmd     *exec.Cmd
	mu      stdsync.Mutex
	stderr  bytes.Buffer
	done    chan struct{}
	metrics string // http://ADDR/metrics
	err     error  // cmd.Wait's, once done is closed
}

func (w *workerProc) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.Write(p)
}

func (w *workerProc) logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.String()
}

// startWorkerProc starts the tagged binary as a batch worker with env
// (and nothing of the test's own environment but PATH).
func startWorkerProc(t *testing.T, env map[string]string, args ...string) *workerProc {
	t.Helper()
	w := &workerProc{done: make(chan struct{}), metrics: "http://" + freeAddr(t) + "/metrics"}
	args = append([]string{"batch", "worker", "--metrics-listen", strings.TrimSuffix(strings.TrimPrefix(w.metrics, "http://"), "/metrics")}, args...)
	w.cmd = exec.Command(binary(t), args...)
	w.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		w.cmd.Env = append(w.cmd.Env, k+"="+v)
	}
	// A state directory of its own, as on another machine: a stopped
	// worker's run lock there would hold up every other worker's run of
	// the same account on this one (exit 7, snoozed).
	state := t.TempDir()
	w.cmd.Env = append(w.cmd.Env, "HOME="+state, "XDG_STATE_HOME="+state)
	w.cmd.Stdout, w.cmd.Stderr = w, w
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.err = w.cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		_ = w.cmd.Process.Signal(syscall.SIGCONT)
		_ = w.cmd.Process.Kill()
		<-w.done
	})
	return w
}

// inProcessWorker runs 'batch worker' in this process until the returned
// stop is called; stop returns its exit code and stderr.
func inProcessWorker(env map[string]string, args ...string) (stop func() (int, string)) {
	ctx, cancel := context.WithCancel(context.Background())
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		e := &cliEnv{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &errb, getenv: func(k string) string { return env[k] }, hooks: inProcessHooks(env)}
		done <- runEnv(ctx, append([]string{"batch", "worker"}, args...), e)
	}()
	return func() (int, string) {
		cancel() // SIGTERM
		code := <-done
		return code, errb.String()
	}
}

// pgQuery runs a query on the batch database and returns the first
// column of every row as text.
func pgQuery(t *testing.T, dbURL, q string, args ...any) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("batch database: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// jobStates counts the batch's jobs by River state.
func jobStates(t *testing.T, dbURL string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, s := range pgQuery(t, dbURL, `SELECT state::text FROM river_job WHERE kind = 'mailferry_account'`) {
		m[s]++
	}
	return m
}

// dumpDatabase is every row of every table of the batch's schema as text:
// River's jobs, their outputs and errors, our rows, the slots.
func dumpDatabase(t *testing.T, dbURL string) string {
	t.Helper()
	var b strings.Builder
	for _, table := range pgQuery(t, dbURL, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`) {
		for _, row := range pgQuery(t, dbURL, `SELECT t::text FROM `+pgx.Identifier{table}.Sanitize()+` t`) {
			b.WriteString(row + "\n")
		}
	}
	return b.String()
}

// waitUntil polls cond (a database, a mailbox, a metric: never a clock)
// until it holds, failing after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ; !cond(); <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", limit, what)
		}
	}
}

// countIn counts the messages in every mailbox of the account's
// destination.
func countIn(t *testing.T, d *mailtest.Dovecot, a *batchAccount) int {
	t.Helper()
	n := 0
	for _, msgs := range d.Fetch(t, a.dstUser, a.dstPW) {
		n += len(msgs)
	}
	return n
}

func seededCount(a *batchAccount) int {
	n := 0
	for _, b := range a.seeded {
		n += len(b)
	}
	return n
}

// scenario is one multi-machine batch in a fresh PostgreSQL schema: its
// accounts loaded and a pass queued, no worker yet.
type scenario struct {
	d     *mailtest.Dovecot
	dir   string
	env   map[string]string
	db    string
	accts []*batchAccount
}

func newScenario(t *testing.T, d *mailtest.Dovecot, base string, accts []*batchAccount) *scenario {
	t.Helper()
	dir := t.TempDir()
	sc := &scenario{d: d, dir: dir, db: pgSchemaURL(t, base), accts: accts}
	// Workers rescue a dead worker's jobs as soon as they pass the
	// rescue horizon, not at River's next 30 s tick (batch.Config.RescueEvery).
	sc.env = map[string]string{"HOME": dir, "XDG_STATE_HOME": dir, "MAILFERRY_DB": sc.db, "MAILFERRY_TEST_RESCUE_EVERY": "250ms"}
	csv := writeRowsCSV(t, dir, accts)
	for _, args := range [][]string{{"batch", "init"}, {"batch", "load", "staff", csv}, {"batch", "pass", "staff", "presync"}} {
		if code, stdout, stderr := runCLI(t, sc.env, args...); code != 0 {
			t.Fatalf("mailferry %q = %d, %q, %q", args, code, stdout, stderr)
		}
	}
	return sc
}

// workerArgs are the flags every worker of a scenario runs with.
func (sc *scenario) workerArgs(extra ...string) []string {
	return append([]string{"--workers", "2", "--connections", "2", "--ca-file", sc.d.CAFile, "--slice", scenarioSlice, "--rescue-after", scenarioRescue}, extra...)
}

// finish runs a second worker process until every job is completed, and
// checks the accounts: each message once, the report done. It is a
// process of its own, as on another machine.
func (sc *scenario) finish(t *testing.T, limit time.Duration) string {
	t.Helper()
	w := startWorkerProc(t, sc.env, sc.workerArgs()...)
	defer func() {
		if t.Failed() {
			t.Logf("second worker's stderr:\n%s", w.logs())
		}
	}()
	var states map[string]int
	waitUntil(t, limit, "every account done", func() bool {
		states = jobStates(t, sc.db)
		if states["cancelled"]+states["discarded"] > 0 {
			t.Fatalf("jobs: %v; want every one completed", states)
		}
		return states["completed"] == len(sc.accts)
	})
	logs := scrape(t, w.metrics)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-w.done
	logs += w.logs()
	if w.err != nil {
		t.Errorf("second worker after SIGTERM: %v: %s", w.err, logs)
	}
	for _, a := range sc.accts {
		checkCopied(t, sc.d, a) // each message exactly once per folder
	}
	code, stdout, _ := runCLI(t, sc.env, "batch", "report", "staff", "presync")
	if code != 0 || strings.Count(stdout, `"state":"done"`) != len(sc.accts) {
		t.Errorf("batch report = %d, %q; want %d accounts done", code, stdout, len(sc.accts))
	}
	return logs
}

// noSecrets checks the database, the logs given and the metrics for the
// accounts' passwords.
func (sc *scenario) noSecrets(t *testing.T, written string) {
	t.Helper()
	db := dumpDatabase(t, sc.db)
	if !strings.Contains(db, "pw/"+sc.accts[0].id+".src") {
		t.Fatalf("the database dump holds no reference: the secret check would prove nothing")
	}
	for _, a := range sc.accts {
		if found := leaks(db+written, a.secretForms); len(found) > 0 {
			t.Errorf("%s: a secret in the database, logs or metrics: %q", a.id, found)
		}
	}
}

// TestBatchWorkerKilledMidAccount: a worker process is killed (SIGKILL)
// at a seeded random moment while it copies an account; another worker
// takes the account up (River rescues the job after --rescue-after) and
// finishes it, and no folder holds a message twice. `make test` runs 2
// trials side by side, `make soak` 25 (5 at a time); each trial has its
// own schema, so the second worker cannot start before the kill.
func TestBatchWorkerKilledMidAccount(t *testing.T) {
	base := mailtest.NeedPostgres(t)
	d := mailtest.NeedDovecot(t)
	trials := trialCount(t, 2, 25)
	seed := soakSeed(t)
	for wave := 0; wave < trials; wave += 5 {
		t.Run(fmt.Sprintf("trials%d-%d", wave+1, min(wave+5, trials)), func(t *testing.T) {
			var wg stdsync.WaitGroup
			for i := wave; i < min(wave+5, trials); i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t.Run(fmt.Sprintf("trial%d", i+1), func(t *testing.T) {
						killTrial(t, d, base, rand.New(rand.NewPCG(seed, uint64(i))), i%2 == 1)
					})
				}()
			}
			wg.Wait()
		})
	}
}

// killTrial kills the worker at a random moment after its account
// started, or (midCopy) after its first messages reached the destination:
// on a loaded machine connecting and listing take most of a short run.
func killTrial(t *testing.T, d *mailtest.Dovecot, base string, rng *rand.Rand, midCopy bool) {
	accts := newBatchAccounts(t, d, 1)
	a := accts[0]
	seedMore(t, d, a, "INBOX", 30, 3000)
	viaProxy(t, d, a, scenarioRate)
	sc := newScenario(t, d, base, accts)
	w := startWorkerProc(t, sc.env, sc.workerArgs()...)
	waitUntil(t, time.Minute, "the account running", func() bool { return jobStates(t, sc.db)["running"] == 1 })
	if midCopy {
		waitUntil(t, time.Minute, "the first messages copied", func() bool { return countIn(t, d, a) > 0 })
	}
	delay := time.Duration(rng.Int64N(int64(3 * time.Second)))
	// The kill lands at a random moment of the copy: a timer is the fault,
	// not a synchronisation.
	timer := time.AfterFunc(delay, func() { _ = w.cmd.Process.Signal(syscall.SIGKILL) })
	defer timer.Stop()
	<-w.done
	ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		t.Fatalf("worker exited by itself (%v) before the kill at %v: %s", w.err, delay, w.logs())
	}
	t.Logf("killed %v after the account started (after its first messages: %v), with %d of %d messages in the destination", delay, midCopy, countIn(t, d, a), seededCount(a))
	logs := sc.finish(t, 2*time.Minute)
	sc.noSecrets(t, logs+w.logs())
}

// TestBatchWorkerStoppedPastLease: a worker stopped (SIGSTOP) mid-account
// for longer than the job's rescue time loses the account to another
// worker, which finishes it; resumed (SIGCONT), the stopped worker's slice
// is over and it copies nothing more: the destination is unchanged once
// it has put the account down, and holds every message once.
func TestBatchWorkerStoppedPastLease(t *testing.T) {
	base := mailtest.NeedPostgres(t)
	d := mailtest.NeedDovecot(t)
	accts := newBatchAccounts(t, d, 1)
	a := accts[0]
	seedMore(t, d, a, "INBOX", 30, 3000)
	viaProxy(t, d, a, scenarioRate)
	sc := newScenario(t, d, base, accts)
	w := startWorkerProc(t, sc.env, sc.workerArgs()...)
	total := seededCount(a)
	waitUntil(t, time.Minute, "the first messages copied", func() bool { return countIn(t, d, a) > 0 })
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if n := countIn(t, d, a); n >= total {
		t.Fatalf("the account was done (%d messages) before the stop: the test proves nothing", n)
	}
	sc.finish(t, 2*time.Minute)
	before := d.Fetch(t, a.dstUser, a.dstPW)
	if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	running := regexp.MustCompile(`(?m)^mailferry_batch_accounts_running\{[^}]*\} (\d+)`)
	waitUntil(t, time.Minute, "the resumed worker to put its account down", func() bool {
		m := running.FindStringSubmatch(scrape(t, w.metrics))
		return m != nil && m[1] == "0"
	})
	after := d.Fetch(t, a.dstUser, a.dstPW)
	for box, msgs := range after {
		if len(msgs) != len(before[box]) {
			t.Errorf("%s: %d messages after the stopped worker resumed; %d before: it copied after losing the account", box, len(msgs), len(before[box]))
		}
	}
	checkCopied(t, d, a)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-w.done
	if w.err != nil {
		t.Errorf("resumed worker after SIGTERM: %v; stderr %s", w.err, w.logs())
	}
}

// soakSize is soak under MAILFERRY_SOAK=1 (make soak), else ci.
func soakSize(ci, soak int) int {
	if os.Getenv("MAILFERRY_SOAK") == "1" {
		return soak
	}
	return ci
}

// TestBatchScale: account pairs through 'batch run' with 4 workers (24 in
// make test, 200 under make soak): every account done and verified
// message by message, one report line per CSV row in the CSV's order;
// then new mail in 20 accounts and a delta pass copies only that; no
// secret in the database, the report or the output.
func TestBatchScale(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	n := soakSize(24, 200)
	accts := newBatchAccounts(t, d, n)
	dir := t.TempDir()
	env := map[string]string{"HOME": dir}
	csv := writeBatchCSV(t, dir, accts, env)
	report := filepath.Join(dir, "staff.report.jsonl")
	code, stdout, stderr := runCLI(t, env, "batch", "run", csv, "--workers", "4", "--ca-file", d.CAFile)
	logs := stdout + stderr
	if want := fmt.Sprintf("%d accounts: %d done", n, n); code != exitcode.OK || !strings.Contains(stdout, want) {
		t.Fatalf("batch run = %d, stdout %q, stderr %q; want 0 and %q", code, stdout, stderr, want)
	}
	lines, order := readReport(t, report)
	if len(order) != n {
		t.Fatalf("report has %d lines; want %d, one per CSV row", len(order), n)
	}
	for i, a := range accts {
		if l := lines[a.id]; order[i] != a.id || l.State != "done" || l.Totals.Copied != 5 {
			t.Errorf("report line %d: %s %+v; want %s done with 5 copied", i+1, order[i], l, a.id)
		}
		checkCopied(t, d, a)
	}
	k := min(20, n)
	for i := range k {
		a := accts[i*n/k]
		body := fmt.Sprintf("Subject: %s delta\r\nMessage-ID: <delta.%d@batch>\r\n\r\nnew mail\r\n", a.id, i)
		d.Seed(t, a.srcUser, a.srcPW, "Work", []mailtest.SeedMessage{{Body: []byte(body)}})
		a.seeded["Work"] = append(a.seeded["Work"], body)
	}
	code, stdout, stderr = runCLI(t, env, "batch", "run", csv, "--workers", "4", "--ca-file", d.CAFile, "--pass", "delta")
	logs += stdout + stderr
	if want := fmt.Sprintf("%d accounts: %d done; messages: %d copied, %d already present", n, n, k, 5*n); code != exitcode.OK || !strings.Contains(stdout, want) {
		t.Errorf("delta pass = %d, stdout %q, stderr %q; want 0 and %q", code, stdout, stderr, want)
	}
	for _, a := range accts {
		checkCopied(t, d, a)
	}
	written := logs + filesUnder(t, filepath.Join(dir, "staff.checkpoints"))
	for _, f := range []string{"staff.batch.db", "staff.batch.db-wal", "staff.report.jsonl"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			written += string(b)
		}
	}
	if !strings.Contains(written, "pw/"+accts[0].id+".src") {
		t.Fatalf("the database holds no reference: the secret check would prove nothing")
	}
	for _, a := range accts {
		if found := leaks(written, a.secretForms); len(found) > 0 {
			t.Errorf("%s: a secret in the database, report or output: %q", a.id, found)
		}
	}
}

// TestBatchGroupCapSampled: a host group of 5 accounts over two workers
// of 4 accounts each (PostgreSQL): the destination's own sessions,
// sampled with doveadm who while the batch runs, never show more than 5
// accounts at once; the throttled sources keep accounts running long
// enough to overlap.
func TestBatchGroupCapSampled(t *testing.T) {
	base := mailtest.NeedPostgres(t)
	d := mailtest.NeedDovecot(t)
	accts := newBatchAccounts(t, d, soakSize(12, 40))
	dstUsers := map[string]bool{}
	for _, a := range accts {
		seedMore(t, d, a, "INBOX", 6, 3000)
		viaProxy(t, d, a, scenarioRate)
		dstUsers[a.dstUser] = true
	}
	sc := newScenario(t, d, base, accts)
	cfg := writeConfig(t, 0o600, "[batch.groups.dovecot]\nmatch = [\"localhost\"]\nmax_accounts = 5\n")
	samples, most := 0, 0
	stopSampling := make(chan struct{})
	sampled := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopSampling:
				sampled <- nil
				return
			default:
			}
			out, err := exec.Command("doveadm", "-c", filepath.Join(d.Dir, "dovecot.conf"), "who").CombinedOutput()
			if err != nil {
				sampled <- fmt.Errorf("doveadm who: %v: %s", err, out)
				return
			}
			n := 0
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) > 0 && dstUsers[f[0]] {
					n++
				}
			}
			samples, most = samples+1, max(most, n)
		}
	}()
	var stops []func() (int, string)
	for range 2 {
		stops = append(stops, inProcessWorker(sc.env, "--workers", "4", "--connections", "2", "--ca-file", d.CAFile, "--config", cfg))
	}
	waitUntil(t, 3*time.Minute, "every account done", func() bool {
		return jobStates(t, sc.db)["completed"] == len(accts)
	})
	close(stopSampling)
	if err := <-sampled; err != nil {
		t.Fatal(err)
	}
	var logs string
	for _, stop := range stops {
		code, l := stop()
		logs += l
		if code != 0 {
			t.Errorf("worker exited %d: %s", code, l)
		}
	}
	t.Logf("%d samples of doveadm who: at most %d accounts had destination sessions at once", samples, most)
	if most > 5 {
		t.Errorf("doveadm who showed %d accounts at once in a group capped at 5", most)
	}
	if most < 2 {
		t.Errorf("doveadm who never showed two accounts at once (%d samples): the sampling proves nothing", samples)
	}
	for _, a := range accts {
		checkCopied(t, d, a)
	}
	sc.noSecrets(t, logs)
}

// throttleProxy is a plain-text proxy to Dovecot's IMAP port that
// throttles the first connection through it as a busy server does:
// "limit" answers the login NO [LIMIT], "bye" greets with BYE and hangs up.
func throttleProxy(t *testing.T, d *mailtest.Dovecot, how string) (p *mailtest.FaultProxy, fired func() bool) {
	t.Helper()
	p = mailtest.NewFaultProxy(t, d.IMAPStartTLS)
	f := mailtest.Fault{Action: mailtest.Drop, Dir: mailtest.Down, After: 0, Inject: []byte("* BYE Too many connections from your address, try again later\r\n")}
	fired = func() bool { c := p.Conns(); return len(c) > 1 && c[0].Fired }
	if how == "limit" {
		loginTag := regexp.MustCompile(`(?m)^(\S+) (?i:LOGIN|AUTHENTICATE) `)
		var tagSeen atomic.Value // the login's tag: Up and Down run on two goroutines
		tagSeen.Store("")
		var rewritten atomic.Bool
		fired = rewritten.Load
		f = mailtest.Fault{Rewrite: func(dir mailtest.Direction, chunk []byte) []byte {
			if dir == mailtest.Up {
				if m := loginTag.FindSubmatch(chunk); m != nil {
					tagSeen.Store(string(m[1]))
				}
				return chunk
			}
			tag, _ := tagSeen.Load().(string)
			ok := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(tag) + ` OK[^\r\n]*\r\n`)
			if tag == "" || !ok.Match(chunk) {
				return chunk
			}
			rewritten.Store(true)
			return ok.ReplaceAll(chunk, []byte(tag+" NO [LIMIT] Too many connections from this user and address\r\n"))
		}}
	}
	p.SetSchedule(mailtest.FirstConn(f))
	return p, fired
}

// TestBatchThrottled: accounts whose source answers the first login NO
// [LIMIT] or greets with BYE are put back in the queue (exit 8) without
// spending an attempt, and finish; the rest run as usual.
func TestBatchThrottled(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	accts := newBatchAccounts(t, d, 4)
	hows := []string{"limit", "limit", "bye", ""}
	throttled := map[string]func() bool{}
	for i, a := range accts {
		if hows[i] == "" {
			continue
		}
		p, fired := throttleProxy(t, d, hows[i])
		throttled[a.id] = fired
		a.srcURL = (&url.URL{Scheme: "imap", User: url.User(a.srcUser), Host: "localhost:" + p.Port()}).String()
	}
	dir := t.TempDir()
	env := map[string]string{"HOME": dir}
	csv := writeBatchCSV(t, dir, accts, env)
	code, stdout, stderr := runCLI(t, env, "batch", "run", csv, "--ca-file", d.CAFile, "--no-starttls", "--allow-plaintext-auth", "--throttle-wait", "1s")
	if code != exitcode.OK || !strings.Contains(stdout, "4 accounts: 4 done") {
		t.Fatalf("batch run = %d, stdout %q, stderr %q; want 0, all done", code, stdout, stderr)
	}
	lines, _ := readReport(t, filepath.Join(dir, "staff.report.jsonl"))
	snoozes := sqliteColumn(t, filepath.Join(dir, "staff.batch.db"), `SELECT json_extract(args, '$.id') || ' ' || COALESCE(json_extract(metadata, '$.snoozes'), 0) FROM river_job`)
	for i, a := range accts {
		l := lines[a.id]
		if l.State != "done" || l.Attempts != 1 || l.Totals.Copied != 5 {
			t.Errorf("%s (%q): %+v; want done at the first attempt, 5 copied", a.id, hows[i], l)
		}
		if fired := throttled[a.id]; fired != nil && !fired() {
			t.Errorf("%s (%q): the proxy throttled nothing: the test proves nothing", a.id, hows[i])
		}
		wantSnoozed := hows[i] != ""
		if got := slices.Contains(snoozes, a.id+" 0"); got == wantSnoozed {
			t.Errorf("%s (%q): snoozes %q; want snoozed: %v", a.id, hows[i], snoozes, wantSnoozed)
		}
		checkCopied(t, d, a)
	}
}

// sqliteColumn runs a query on a batch run's SQLite database and returns
// its first column as text.
func sqliteColumn(t *testing.T, path, q string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// privatePostgres starts a PostgreSQL of the test's own on a free port
// (the shared one serves other packages' tests meanwhile) and returns its
// URL and functions that stop it and start it again, data kept.
func privatePostgres(t *testing.T) (dbURL string, down, up func()) {
	t.Helper()
	parent, err := os.MkdirTemp("", "mailferry-pg-")
	if err != nil {
		t.Fatal(err)
	}
	// The server runs as the postgres user when we are root: it must reach
	// its directory.
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "pg")
	_, port, _ := strings.Cut(freeAddr(t), ":")
	script := func(verb string) {
		cmd := exec.Command("bash", "../../testdata/postgres/postgres.sh", verb, dir)
		cmd.Env = append(os.Environ(), "POSTGRES_PORT="+port)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("postgres.sh %s: %v\n%s", verb, err, out)
		}
	}
	script("start")
	t.Cleanup(func() {
		script("stop")
		_ = os.RemoveAll(parent)
	})
	return "postgres://mailferry@127.0.0.1:" + port + "/mailferry?sslmode=disable", func() { script("stop") }, func() { script("up") }
}

// accountsRunning sums a worker's mailferry_batch_accounts_running; -1
// before it has run any.
func accountsRunning(t *testing.T, metricsURL string) int {
	t.Helper()
	n := -1
	for _, m := range regexp.MustCompile(`(?m)^mailferry_batch_accounts_running\{[^}]*\} (\d+)`).FindAllStringSubmatch(scrape(t, metricsURL), -1) {
		k, _ := strconv.Atoi(m[1])
		n = max(n, 0) + k
	}
	return n
}

// TestBatchDatabaseDown: the batch database (PostgreSQL) stops while a
// worker copies 4 accounts: the running accounts stop by the end of their
// slice and nothing more is copied while it is down; started again, the
// same worker resumes them to the end, each message once. The outage
// lasts 30 s under make soak and 8 s in make test: the same behaviour,
// since anything past a slice (2 s here) finds every account stopped.
func TestBatchDatabaseDown(t *testing.T) {
	mailtest.NeedPostgres(t) // PostgreSQL is installed; this test runs its own
	d := mailtest.NeedDovecot(t)
	outage := time.Duration(soakSize(8, 30)) * time.Second
	base, down, up := privatePostgres(t)
	accts := newBatchAccounts(t, d, 4)
	for _, a := range accts {
		seedMore(t, d, a, "INBOX", 30, 3000)
		viaProxy(t, d, a, scenarioRate)
	}
	sc := newScenario(t, d, base, accts)
	w := startWorkerProc(t, sc.env, sc.workerArgs("--workers", "4")...)
	counts := func() []int {
		var c []int
		for _, a := range accts {
			c = append(c, countIn(t, d, a))
		}
		return c
	}
	waitUntil(t, time.Minute, "the first messages copied", func() bool { return slices.ContainsFunc(counts(), func(n int) bool { return n > 0 }) })
	down()
	waitUntil(t, time.Minute, "the worker to stop copying", func() bool { return accountsRunning(t, w.metrics) == 0 })
	before := counts()
	// The outage itself: a fault of fixed length, not a synchronisation.
	select {
	case <-w.done:
		t.Fatalf("the worker exited while the database was down: %v\n%s", w.err, w.logs())
	case <-time.After(outage):
	}
	if after := counts(); !slices.Equal(after, before) {
		t.Errorf("messages per account while the database was down: %v, then %v; want no copying", before, after)
	}
	total := 0
	for _, a := range accts {
		total += seededCount(a)
	}
	t.Logf("database down for %v with %v of %d messages copied", outage, before, total)
	upAt := time.Now()
	up()
	waitUntil(t, 3*time.Minute, "every account done", func() bool { return jobStates(t, sc.db)["completed"] == len(accts) })
	t.Logf("every account done %v after the database came back", time.Since(upAt).Round(100*time.Millisecond))
	for _, a := range accts {
		checkCopied(t, d, a)
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-w.done
	if w.err != nil {
		t.Errorf("worker after SIGTERM: %v\n%s", w.err, w.logs())
	}
	sc.noSecrets(t, w.logs())
}
