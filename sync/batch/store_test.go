package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river/rivertype"

	"github.com/mailferry/mailferry/internal/exitcode"
)

// fakeRunner plays scripted exit codes per account: the n-th run of an
// account gets script[id][n] (the last one repeats); a code of -1 blocks
// until the job's slice ends.
type fakeRunner struct {
	mu     stdsync.Mutex
	script map[string][]int
	runs   map[string]int
}

func (f *fakeRunner) RunAccount(ctx context.Context, acct *Account) Outcome {
	f.mu.Lock()
	n := f.runs[acct.Row.ID]
	f.runs[acct.Row.ID]++
	codes := f.script[acct.Row.ID]
	f.mu.Unlock()
	code := 0
	if len(codes) > 0 {
		code = codes[min(n, len(codes)-1)]
	}
	if code == -1 {
		<-ctx.Done()
		return Outcome{ExitCode: exitcode.Interrupted, Totals: Totals{Copied: 7, Bytes: 700}}
	}
	out := Outcome{ExitCode: code, Totals: Totals{Copied: 3, Present: 1, Bytes: 300}}
	if code == exitcode.Auth {
		out.Error = "source: authentication rejected"
	}
	if code == exitcode.Partial {
		out.Totals.Failed, out.Failures = 1, []string{"INBOX 5: message too large"}
	}
	return out
}

func (f *fakeRunner) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[id]
}

func testRows(t testing.TB, ids ...string) []Row {
	t.Helper()
	var b strings.Builder
	b.WriteString(header)
	for _, id := range ids {
		fmt.Fprintf(&b, "%s,imaps://%s@old.example,imaps://%s@new.example,env:SRC_PW,file:pw/%s\n", id, id, id, id)
	}
	rows, err := Load(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func openTest(t testing.TB, dbURL string, workers int, r Runner, slice time.Duration, mods ...func(*Config)) *Store {
	t.Helper()
	if !strings.HasPrefix(dbURL, "postgres") {
		dbURL = "sqlite:" + dbURL
	}
	cfg := Config{URL: dbURL, Workers: workers, Runner: r,
		Slice: slice, RetryDelay: 10 * time.Millisecond, Throttle: 10 * time.Millisecond, PausePoll: 10 * time.Millisecond}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestLoadAndPassTwiceMakeNoSecondJob(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "b.db"), 0, nil, 0)
	rows := testRows(t, "a", "b", "c")
	for i, want := range []int{3, 0} {
		added, err := s.Load(ctx, "staff", rows)
		if err != nil || added != want {
			t.Fatalf("Load #%d = %d, %v; want %d new rows", i+1, added, err, want)
		}
	}
	for i, want := range []PassResult{{Queued: 3}, {Skipped: 3}} {
		got, err := s.Pass(ctx, "staff", "presync", PassOptions{})
		if err != nil || got != want {
			t.Fatalf("Pass #%d = %+v, %v; want %+v", i+1, got, err, want)
		}
	}
	jobs, err := s.jobs(ctx, "staff", "")
	if err != nil || len(jobs) != 3 {
		t.Fatalf("%d jobs (%v); want 3", len(jobs), err)
	}
	lines, err := s.Report(ctx, "staff", "presync")
	if err != nil || len(lines) != 3 || Summarize(lines).States[StatePending] != 3 {
		t.Fatalf("Report = %+v, %v; want 3 pending lines", lines, err)
	}
}

func TestPassChecks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "b.db"), 0, nil, 0)
	if _, err := s.Load(ctx, "staff", testRows(t, "a")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		batch, pass string
		o           PassOptions
		want        string
	}{
		{"Staff", "p", PassOptions{}, "batch name"},
		{"staff", "p 1", PassOptions{}, "pass name"},
		{"staff", "p", PassOptions{Mode: "move"}, "mode"},
		{"staff", "p", PassOptions{Class: ClassAuth}, "--only failed"},
		{"staff", "p", PassOptions{OnlyFailed: true, Class: "dns"}, "class"},
		{"other", "p", PassOptions{}, "no accounts"},
	}
	for _, tt := range tests {
		if _, err := s.Pass(ctx, tt.batch, tt.pass, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Pass(%s, %s, %+v) = %v; want an error about %s", tt.batch, tt.pass, tt.o, err, tt.want)
		}
	}
}

// TestOutcomes runs a pass with 4 workers over accounts whose runs end in
// each way and checks River's outcome and the report line of each.
func TestOutcomes(t *testing.T) {
	testOutcomes(t, filepath.Join(t.TempDir(), "b.db"))
}

// TestOutcomesPostgres is TestOutcomes on PostgreSQL: the same code with
// another URL (testdata/postgres/postgres.sh start DIR; . DIR/env).
func TestOutcomesPostgres(t *testing.T) {
	testOutcomes(t, postgresURL(t))
}

func testOutcomes(t *testing.T, dbURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := &fakeRunner{runs: map[string]int{}, script: map[string][]int{
		"bad1": {exitcode.Auth}, "bad2": {exitcode.Auth}, "quota": {exitcode.DiskFull}, "usage": {exitcode.Usage}, "cp": {exitcode.Checkpoint},
		"part":  {exitcode.Partial},
		"flaky": {exitcode.Unreachable, exitcode.Unexpected, exitcode.OK},
		"down":  {exitcode.Unreachable},
		"slow":  {exitcode.Temporary, exitcode.Temporary, exitcode.OK},
		"long":  {-1, exitcode.OK},
	}}
	ids := []string{"ok1", "bad1", "ok2", "bad2", "quota", "usage", "cp", "part", "flaky", "down", "slow", "long", "ok3"}
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := openTest(t, dbURL, 4, run, 2*time.Second, func(c *Config) { c.Metrics = metrics })
	if _, err := s.Load(ctx, "staff", testRows(t, ids...)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pass(ctx, "staff", "one", PassOptions{}); err != nil {
		t.Fatal(err)
	}
	// Loaded after the pass: never started, still one report line.
	if _, err := s.Load(ctx, "staff", testRows(t, append(ids, "late")...)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddQueues(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	if err := s.Wait(ctx, "staff", "one", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lines, err := s.Report(ctx, "staff", "one")
	if err != nil {
		t.Fatal(err)
	}
	wants := map[string]want{
		"ok1": {StateDone, "", 0, 1, 3}, "ok2": {StateDone, "", 0, 1, 3}, "ok3": {StateDone, "", 0, 1, 3},
		"bad1": {StateFailed, ClassAuth, 4, 1, 3}, "bad2": {StateFailed, ClassAuth, 4, 1, 3},
		"quota": {StateFailed, ClassQuota, 9, 1, 3}, "usage": {StateFailed, ClassUsage, 2, 1, 3}, "cp": {StateFailed, ClassCheckpoint, 6, 1, 3},
		"part":  {StatePartial, "", 3, 1, 3},
		"flaky": {StateDone, "", 0, 3, 3},
		"down":  {StateFailed, ClassConnect, 5, DefaultMaxAttempts, 3},
		"slow":  {StateDone, "", 0, 1, 3},
		"long":  {StateDone, "", 0, 1, 3 + 7}, // the first slice's 7 messages count
		"late":  {StatePending, "", -1, 0, 0},
	}
	checkLines(t, lines, wants)
	if n := run.count("slow"); n != 3 {
		t.Errorf("slow ran %d times; want 3 (two snoozes, then done)", n)
	}
	checkMetrics(t, reg, map[string]float64{
		`mailferry_batch_account_runs_total{batch="staff",class="",outcome="done"}`:             6,
		`mailferry_batch_account_runs_total{batch="staff",class="auth",outcome="failed"}`:       2,
		`mailferry_batch_account_runs_total{batch="staff",class="",outcome="snoozed"}`:          1, // long's first slice
		`mailferry_batch_account_runs_total{batch="staff",class="temporary",outcome="snoozed"}`: 2,
		`mailferry_batch_account_runs_total{batch="staff",class="connect",outcome="retry"}`:     1 + DefaultMaxAttempts,
		`mailferry_batch_account_failures_total{batch="staff",class="auth"}`:                    2,
		`mailferry_batch_messages_total{batch="staff",result="copied"}`:                         3*21 + 7, // 21 runs end with 3 copied
		`mailferry_batch_accounts_running{batch="staff"}`:                                       0,
	})

	// Only the accounts that failed on authentication, in a new pass.
	res, err := s.Pass(ctx, "staff", "fix", PassOptions{OnlyFailed: true, Class: ClassAuth})
	if err != nil || res != (PassResult{Queued: 2}) {
		t.Fatalf("Pass --only failed --class auth = %+v, %v; want 2 queued", res, err)
	}
	if err := s.Wait(ctx, "staff", "fix", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n := run.count("bad1") + run.count("bad2") + run.count("quota"); n != 5 {
		t.Errorf("bad1, bad2 and quota ran %d times; want 5 (the fix pass runs only the auth failures again)", n)
	}
	lines, err = s.Report(ctx, "staff", "fix")
	if err != nil {
		t.Fatal(err)
	}
	sum := Summarize(lines)
	if sum.Accounts != len(wants) || sum.Classes[ClassAuth] != 2 || sum.States[StateDone] != 6 || sum.States[StatePending] != 1 {
		t.Errorf("fix pass summary %v; want every account, the auth failures still failing (same script)", sum)
	}

	var buf bytes.Buffer
	if err := WriteJSONL(&buf, lines); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != len(wants) {
		t.Errorf("JSONL report has %d lines; want %d", n, len(wants))
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(buf.String(), "\n", 2)[0]), &first); err != nil || first["exit_code"] == nil || first["totals"] == nil {
		t.Errorf("first JSONL line %v (%v); want exit_code and totals", first, err)
	}
}

type want struct {
	state, class string
	code         int // -1: null
	attempts     int
	copied       int64
}

func checkLines(t *testing.T, lines []Line, wants map[string]want) {
	t.Helper()
	if len(lines) != len(wants) {
		t.Fatalf("%d report lines; want %d (one per row)", len(lines), len(wants))
	}
	for _, l := range lines {
		w := wants[l.ID]
		code := -1
		if l.ExitCode != nil {
			code = *l.ExitCode
		}
		if l.State != w.state || l.Class != w.class || code != w.code || l.Attempts != w.attempts || l.Totals.Copied != w.copied {
			t.Errorf("%s: state %s class %q exit %d attempts %d copied %d; want %+v", l.ID, l.State, l.Class, code, l.Attempts, l.Totals.Copied, w)
		}
	}
}

// checkMetrics compares gathered metrics, written name{labels}, to want.
func checkMetrics(t *testing.T, reg *prometheus.Registry, want map[string]float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			got[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v; want %v", k, got[k], w)
		}
	}
}

// TestCancelByPerson: a cancelled pass reports cancelled, not failed.
func TestCancelByPerson(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "b.db"), 0, nil, 0)
	if _, err := s.Load(ctx, "staff", testRows(t, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pass(ctx, "staff", "one", PassOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(ctx, "staff"); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := s.Resume(ctx, "staff"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	n, err := s.Cancel(ctx, "staff", "one")
	if err != nil || n != 2 {
		t.Fatalf("Cancel = %d, %v; want 2", n, err)
	}
	lines, err := s.Report(ctx, "staff", "one")
	if err != nil || Summarize(lines).States[StateCancelled] != 2 {
		t.Fatalf("Report = %+v, %v; want 2 cancelled", lines, err)
	}
	// A cancelled account may be queued again in the same pass.
	if res, err := s.Pass(ctx, "staff", "one", PassOptions{}); err != nil || res.Queued != 2 {
		t.Fatalf("Pass after cancel = %+v, %v; want 2 queued", res, err)
	}
}

// TestRowsKeepReferences: rows are stored as their references, found
// again as loaded (the Dovecot test checks no secret reaches the file).
func TestRowsKeepReferences(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "b.db")
	s := openTest(t, db, 0, nil, 0)
	rows := testRows(t, "a")
	if _, err := s.Load(ctx, "staff", rows); err != nil {
		t.Fatal(err)
	}
	got, err := s.Rows(ctx, "staff")
	if err != nil || len(got) != 1 || got[0].DstAuth != (Ref{"file", "pw/a"}) {
		t.Fatalf("Rows = %+v, %v", got, err)
	}
	s.Close()
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(db + "-wal")
	if !bytes.Contains(append(b, wal...), []byte("pw/a")) {
		t.Fatalf("the database file does not hold the row's reference")
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct{ in, kind, dsn, err string }{
		{"sqlite:/var/b.db", "sqlite", "/var/b.db", ""},
		{"sqlite:///var/b.db", "sqlite", "/var/b.db", ""},
		{"sqlite:b.db", "sqlite", "b.db", ""},
		{"b.db", "sqlite", "b.db", ""},
		{"postgres://u:p@h/db", "postgres", "postgres://u:p@h/db", ""},
		{"postgresql://h/db", "postgres", "postgresql://h/db", ""},
		{"mysql://h/db", "", "", `scheme "mysql"`},
		{"sqlite:", "", "", "no file"},
		{"", "", "", "no database"},
	}
	for _, tt := range tests {
		kind, dsn, err := parseURL(tt.in)
		if kind != tt.kind || dsn != tt.dsn || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("parseURL(%q) = %q, %q, %v; want %q, %q, %q", tt.in, kind, dsn, err, tt.kind, tt.dsn, tt.err)
		}
	}
}

// blockingRunner blocks every run until its context ends, telling started
// first; then it reports what a stopped copy reports (exit 130).
type blockingRunner struct{ started chan string }

func (b *blockingRunner) RunAccount(ctx context.Context, acct *Account) Outcome {
	b.started <- acct.Row.ID
	<-ctx.Done()
	return Outcome{ExitCode: exitcode.Interrupted, Totals: Totals{Copied: 2, Bytes: 200}}
}

// TestStopHandsAccountsBack: a worker stopped (SIGTERM) mid-account puts it
// back in the queue without spending an attempt; another worker on the
// same database finishes it, and the copied messages of the stopped slice
// count.
func TestStopHandsAccountsBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := filepath.Join(t.TempDir(), "b.db")
	block := &blockingRunner{started: make(chan string, 1)}
	first := openTest(t, db, 1, block, 0)
	if _, err := first.Load(ctx, "staff", testRows(t, "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Pass(ctx, "staff", "one", PassOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := first.AddQueues(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if id := <-block.started; id != "a" {
		t.Fatalf("started %s; want a", id)
	}
	if err := first.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	lines, err := first.Report(ctx, "staff", "one")
	if err != nil || len(lines) != 1 || lines[0].State != StatePending || lines[0].Attempts != 0 {
		t.Fatalf("after Stop: %+v, %v; want a pending, no attempt spent", lines, err)
	}
	first.Close()

	run := &fakeRunner{runs: map[string]int{}}
	second := openTest(t, db, 1, run, 0)
	if err := second.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer second.Stop(context.Background())
	if err := second.Wait(ctx, "staff", "one", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lines, err = second.Report(ctx, "staff", "one")
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, lines, map[string]want{"a": {StateDone, "", 0, 1, 2 + 3}})
}

// TestPause: a worker starts no account of a paused batch (its jobs are
// snoozed, no attempt spent) until it is resumed.
func TestPause(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := &fakeRunner{runs: map[string]int{}}
	s := openTest(t, filepath.Join(t.TempDir(), "b.db"), 2, run, 0)
	if _, err := s.Load(ctx, "staff", testRows(t, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pass(ctx, "staff", "one", PassOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddQueues(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	// Wait until both jobs were taken and put back at least twice.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for snoozed := 0; snoozed < 2; <-tick.C {
		jobs, err := s.jobs(ctx, "staff", "one")
		if err != nil {
			t.Fatal(err)
		}
		snoozed = 2
		for _, j := range jobs {
			var md struct{ Snoozes int }
			if json.Unmarshal(j.Metadata, &md) != nil || md.Snoozes < 2 {
				snoozed--
			}
		}
		if ctx.Err() != nil {
			t.Fatal("the jobs of the paused batch were never taken")
		}
	}
	if n := run.count("a") + run.count("b"); n != 0 {
		t.Fatalf("%d accounts ran in a paused batch", n)
	}
	if err := s.Resume(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctx, "staff", "one", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lines, err := s.Report(ctx, "staff", "one")
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, lines, map[string]want{"a": {StateDone, "", 0, 1, 3}, "b": {StateDone, "", 0, 1, 3}})
}

// capRunner records how many accounts run at once. The first `barrier`
// runs wait for each other, so the count reaches the cap whatever the
// timing; after that runs end at once.
type capRunner struct {
	mu          stdsync.Mutex
	active, max int
	barrier     int
	released    chan struct{}
	once        stdsync.Once
	connections []int
	waited      func() bool // a slot wait was counted
}

func (c *capRunner) RunAccount(ctx context.Context, acct *Account) Outcome {
	c.mu.Lock()
	c.active++
	c.max = max(c.max, c.active)
	c.connections = append(c.connections, acct.Connections)
	full := c.active == c.barrier
	c.mu.Unlock()
	if full {
		// Hold the slots until another account was turned away.
		tick := time.NewTicker(5 * time.Millisecond)
		for !c.waited() && ctx.Err() == nil {
			<-tick.C
		}
		tick.Stop()
		c.once.Do(func() { close(c.released) })
	}
	select {
	case <-c.released:
	case <-ctx.Done():
	}
	c.mu.Lock()
	c.active--
	c.mu.Unlock()
	return Outcome{ExitCode: exitcode.OK}
}

// TestGroupCap: 8 accounts on one host, a group cap of 2 and 4 workers:
// never more than 2 run at once, all finish, the waits are counted.
func TestGroupCap(t *testing.T) { testGroupCap(t, filepath.Join(t.TempDir(), "b.db")) }

// TestGroupCapPostgres is TestGroupCap with the leases in PostgreSQL.
func TestGroupCapPostgres(t *testing.T) { testGroupCap(t, postgresURL(t)) }

func testGroupCap(t *testing.T, dbURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	slotWaits := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "mailferry_batch_slot_waits_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	run := &capRunner{barrier: 2, released: make(chan struct{}), waited: func() bool { return slotWaits() > 0 }}
	s := openTest(t, dbURL, 4, run, 0, func(c *Config) {
		c.Groups = []Group{{Name: "old", Match: []string{"OLD.example"}, MaxAccounts: 2, ConnectionsPerAccount: 3},
			{Name: "other", Match: []string{"*.elsewhere.org"}, MaxAccounts: 1}}
		c.SlotWait, c.Metrics = 5*time.Millisecond, metrics
	})
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	if _, err := s.Load(ctx, "staff", testRows(t, ids...)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pass(ctx, "staff", "one", PassOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddQueues(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	if err := s.Wait(ctx, "staff", "one", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lines, err := s.Report(ctx, "staff", "one")
	if err != nil || Summarize(lines).States[StateDone] != len(ids) {
		t.Fatalf("report %+v, %v; want all done", lines, err)
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	if run.max != 2 {
		t.Errorf("%d accounts of the group ran at once; want the cap, 2", run.max)
	}
	for _, c := range run.connections {
		if c != 3 {
			t.Errorf("an account ran with connections %d; want the group's 3", c)
		}
	}
	var slots int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM mailferry_batch_slot`).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("%d slots still held (%v); want all released", slots, err)
	}
}

// TestLeaseLostStopsTheAccount: when a renewal finds the slot taken, the
// account's context ends (its I/O stops).
func TestLeaseLostStopsTheAccount(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "b.db"), 0, nil, 0, func(c *Config) { c.Lease = 30 * time.Millisecond })
	g := []*Group{{Name: "old", MaxAccounts: 1}}
	l, full, err := s.acquire(ctx, g)
	if err != nil || l == nil {
		t.Fatalf("acquire = %v, %q, %v", l, full, err)
	}
	if l2, full, err := s.acquire(ctx, g); err != nil || l2 != nil || full != "old" {
		t.Fatalf("second acquire = %v, %q, %v; want no slot in old", l2, full, err)
	}
	runCtx, stop := s.holdWhile(ctx, l)
	defer stop()
	// Another holder takes the slot over, as after an expiry.
	if _, err := s.db.ExecContext(ctx, `UPDATE mailferry_batch_slot SET holder = 'other'`); err != nil {
		t.Fatal(err)
	}
	<-runCtx.Done()
	if !errors.Is(context.Cause(runCtx), errLeaseLost) {
		t.Errorf("cause %v; want errLeaseLost", context.Cause(runCtx))
	}
}

// TestWorkersCapTheProcess: --workers caps the accounts running in the
// process over all batches, not per batch (River caps per queue).
func TestWorkersCapTheProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	release := make(chan struct{})
	var mu stdsync.Mutex
	active := 0
	run := RunnerFunc(func(ctx context.Context, acct *Account) Outcome {
		mu.Lock()
		active++
		mu.Unlock()
		<-release
		return Outcome{}
	})
	s := openTest(t, filepath.Join(t.TempDir(), "b.db"), 2, run, 0)
	batches := []string{"one", "two", "three"}
	for _, b := range batches {
		if _, err := s.Load(ctx, b, testRows(t, "a", "b")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pass(ctx, b, "p", PassOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddQueues(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	// Wait until River runs at least 4 jobs (2 per queue) and each of
	// them is either copying or waiting for a place.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for ; ; <-tick.C {
		running := 0
		for _, b := range batches {
			jobs, err := s.jobs(ctx, b, "p", rivertype.JobStateRunning)
			if err != nil {
				t.Fatal(err)
			}
			running += len(jobs)
		}
		mu.Lock()
		n := active
		mu.Unlock()
		if running >= 4 && n+int(s.waiting.Load()) == running {
			if n != 2 {
				t.Errorf("%d accounts ran at once over 3 batches; want --workers, 2", n)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("River never ran 4 jobs")
		}
	}
	close(release)
	for _, b := range batches {
		if err := s.Wait(ctx, b, "p", 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}
