package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// batchAccount is one account pair of the Dovecot batch tests.
type batchAccount struct {
	id               string
	srcUser, srcPW   string
	dstUser, dstPW   string
	seeded           map[string][]string // mailbox -> bodies
	wrongSrcPassword bool
	secretForms      []string
	srcURL, dstURL   string
}

// newBatchAccounts makes n source and destination users on Dovecot (all
// at once: each new user waits for Dovecot's next look at its users
// file) and seeds every source with 3 messages in INBOX and 2 in Work.
func newBatchAccounts(t *testing.T, d *mailtest.Dovecot, n int) []*batchAccount {
	t.Helper()
	accts := make([]*batchAccount, n)
	var wg stdsync.WaitGroup
	for i := range accts {
		a := &batchAccount{id: fmt.Sprintf("user%02d@example.org", i+1)}
		accts[i] = a
		wg.Add(2)
		go func() { defer wg.Done(); a.srcUser, a.srcPW = d.NewUser(t) }()
		go func() { defer wg.Done(); a.dstUser, a.dstPW = d.NewUser(t) }()
	}
	wg.Wait()
	port := d.IMAPS[strings.LastIndex(d.IMAPS, ":")+1:]
	for i, a := range accts {
		a.seeded = map[string][]string{}
		for box, k := range map[string]int{"INBOX": 3, "Work": 2} {
			var msgs []mailtest.SeedMessage
			for j := range k {
				body := fmt.Sprintf("Subject: %s %s #%d\r\nMessage-ID: <%d.%s.%d@batch>\r\n\r\nbody of %s %d\r\n", a.id, box, j, i, box, j, a.id, j)
				msgs = append(msgs, mailtest.SeedMessage{Body: []byte(body)})
				a.seeded[box] = append(a.seeded[box], body)
			}
			d.Seed(t, a.srcUser, a.srcPW, box, msgs)
		}
		a.srcURL = (&url.URL{Scheme: "imaps", User: url.User(a.srcUser), Host: "localhost:" + port}).String()
		a.dstURL = (&url.URL{Scheme: "imaps", User: url.User(a.dstUser), Host: "localhost:" + port}).String()
		a.secretForms = append(secretForms(a.srcUser, a.srcPW), secretForms(a.dstUser, a.dstPW)...)
	}
	return accts
}

// writeBatchCSV writes the accounts CSV and the secrets it references:
// source passwords in files, destination passwords in environment
// variables for even rows and from a command for odd ones.
func writeBatchCSV(t *testing.T, dir string, accts []*batchAccount, env map[string]string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "pw"), 0o700); err != nil {
		t.Fatal(err)
	}
	// The command finds the row in its environment, not its arguments.
	script := "#!/bin/sh\nexec cat \"pw/$MAILFERRY_ROW_ID.$MAILFERRY_ROW_SIDE\"\n"
	if err := os.WriteFile(filepath.Join(dir, "getpw"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("id,src,dst,src_auth,dst_auth,wave\n")
	for i, a := range accts {
		srcPW := a.srcPW
		if a.wrongSrcPassword {
			srcPW = "not-" + a.srcPW[:4]
		}
		writeSecret(t, filepath.Join(dir, "pw", a.id+".src"), srcPW)
		dstAuth := fmt.Sprintf("env:DST_PW_%d", i)
		env[fmt.Sprintf("DST_PW_%d", i)] = a.dstPW
		if i%2 == 1 {
			dstAuth = "cmd:./getpw"
			writeSecret(t, filepath.Join(dir, "pw", a.id+".dst"), a.dstPW)
		}
		fmt.Fprintf(&b, "%s,%s,%s,file:pw/%s.src,%s,w%d\n", a.id, a.srcURL, a.dstURL, a.id, dstAuth, i%3)
	}
	p := filepath.Join(dir, "staff.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeSecret(t *testing.T, path, secret string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reportLine is a line of the JSONL report as a reader sees it.
type reportLine struct {
	ID       string `json:"id"`
	Pass     string `json:"pass"`
	State    string `json:"state"`
	Class    string `json:"class"`
	ExitCode *int   `json:"exit_code"`
	Attempts int    `json:"attempts"`
	Totals   struct {
		Copied, Present, Failed, Bytes int64
	} `json:"totals"`
}

func readReport(t *testing.T, path string) (map[string]reportLine, []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := map[string]reportLine{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l reportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("report line %q: %v", sc.Text(), err)
		}
		if _, dup := lines[l.ID]; dup {
			t.Errorf("report: %s twice", l.ID)
		}
		lines[l.ID] = l
		order = append(order, l.ID)
	}
	return lines, order
}

// checkCopied: the destination holds exactly the seeded messages.
func checkCopied(t *testing.T, d *mailtest.Dovecot, a *batchAccount) {
	t.Helper()
	got := d.Fetch(t, a.dstUser, a.dstPW)
	for box, want := range a.seeded {
		var bodies []string
		for _, m := range got[box] {
			bodies = append(bodies, string(m.Body))
		}
		slices.Sort(bodies)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(bodies, w) {
			t.Errorf("%s: %s holds %d messages %q; want %q", a.id, box, len(bodies), bodies, w)
		}
	}
}

// TestBatchRunDovecot: 20 account pairs, 4 at once, through 'batch run';
// 3 rows with a wrong source password fail as auth at the first attempt
// while the rest finish and verify; after the fix, '--only failed --class
// auth' runs those 3 only; no secret reaches the database, the logs or
// the report.
func TestBatchRunDovecot(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	accts := newBatchAccounts(t, d, 20)
	bad := map[int]bool{2: true, 9: true, 16: true}
	for i := range bad {
		accts[i].wrongSrcPassword = true
	}
	dir := t.TempDir()
	env := map[string]string{"HOME": dir}
	csv := writeBatchCSV(t, dir, accts, env)
	report := filepath.Join(dir, "staff.report.jsonl")
	var logs strings.Builder

	// A host group over both ends: at most 4 accounts at once, 2
	// connections each.
	cfg := writeConfig(t, 0o600, "[batch.groups.dovecot]\nmatch = [\"localhost\"]\nmax_accounts = 3\nconnections_per_account = 2\n")
	code, stdout, stderr := runCLI(t, env, "batch", "run", csv, "--workers", "4", "--ca-file", d.CAFile, "--slice", "2m", "--config", cfg)
	logs.WriteString(stdout + stderr)
	if code != exitcode.Partial || !strings.Contains(stdout, "20 accounts: 17 done 3 failed (failed: 3 auth)") {
		t.Fatalf("batch run = %d, stdout %q, stderr %q; want 3 and 17 done, 3 failed on auth", code, stdout, stderr)
	}
	checkFirstPass(t, d, accts, bad, report)

	// Fix the three passwords and run only the authentication failures.
	for i := range bad {
		writeSecret(t, filepath.Join(dir, "pw", accts[i].id+".src"), accts[i].srcPW)
	}
	code, stdout, stderr = runCLI(t, env, "batch", "run", csv, "--ca-file", d.CAFile, "--pass", "fix", "--only", "failed", "--class", "auth")
	logs.WriteString(stdout + stderr)
	if code != exitcode.OK || !strings.Contains(stdout, "20 accounts: 20 done") {
		t.Fatalf("batch run --only failed --class auth = %d, stdout %q, stderr %q; want 0, all done", code, stdout, stderr)
	}
	checkFixPass(t, d, accts, bad, report)

	// The first pass again: its 17 done accounts get no second job; the 3
	// that failed in it run again and find everything copied.
	code, stdout, stderr = runCLI(t, env, "batch", "run", csv, "--ca-file", d.CAFile)
	logs.WriteString(stdout + stderr)
	if code != exitcode.OK || !strings.Contains(stdout, "20 accounts: 20 done") {
		t.Errorf("batch run again = %d, stdout %q, stderr %q; want 0, all done", code, stdout, stderr)
	}
	checkPassAgain(t, d, accts, bad, report)

	// New mail in 5 accounts, then a delta pass: it copies only that.
	for i := range 5 {
		a := accts[i*4]
		body := fmt.Sprintf("Subject: %s new\r\nMessage-ID: <new.%d@batch>\r\n\r\nnew mail\r\n", a.id, i)
		d.Seed(t, a.srcUser, a.srcPW, "INBOX", []mailtest.SeedMessage{{Body: []byte(body)}})
		a.seeded["INBOX"] = append(a.seeded["INBOX"], body)
	}
	code, stdout, stderr = runCLI(t, env, "batch", "run", csv, "--ca-file", d.CAFile, "--pass", "delta")
	logs.WriteString(stdout + stderr)
	if code != exitcode.OK || !strings.Contains(stdout, "20 accounts: 20 done; messages: 5 copied, 100 already present") {
		t.Errorf("delta pass = %d, stdout %q, stderr %q; want 0, 5 copied, 100 present", code, stdout, stderr)
	}
	for _, a := range accts {
		checkCopied(t, d, a)
	}

	// No secret anywhere mailferry wrote: database, checkpoints, report,
	// output and logs.
	written := logs.String() + filesUnder(t, filepath.Join(dir, "staff.state"))
	for _, f := range []string{"staff.batch.db", "staff.batch.db-wal", report} {
		if b, err := os.ReadFile(filepath.Join(dir, filepath.Base(f))); err == nil {
			written += string(b)
		}
	}
	if !strings.Contains(written, "pw/user01@example.org.src") {
		t.Fatalf("the database holds no reference: the secret check would prove nothing")
	}
	for _, a := range accts {
		if found := leaks(written, a.secretForms); len(found) > 0 {
			t.Errorf("%s: a secret in the database, report or logs: %q", a.id, found)
		}
	}
}

// TestBatchMultiMachineCommands: init, load twice (no second row), pass
// twice (no second job), status, report in both formats, pause, resume and
// cancel, with the database URL from the environment; a bad CSV exits 2
// naming line and column and loads nothing.
func TestBatchMultiMachineCommands(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "b.db")
	env := map[string]string{"BATCH_DB": "sqlite:" + db, "HOME": dir}
	csv := filepath.Join(dir, "a.csv")
	rows := "id,src,dst,src_auth,dst_auth\n" +
		"a,imaps://a@old.example,imaps://a@new.example,env:A_SRC,env:A_DST\n" +
		"b,imaps://b@old.example,maildir:" + dir + "/b,file:b.pw,\n"
	if err := os.WriteFile(csv, []byte(rows), 0o600); err != nil {
		t.Fatal(err)
	}
	badCSV := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(badCSV, []byte(rows+"c,imaps://c@o,imaps://c@n,hunter2,env:X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args   []string
		code   int
		output string
	}{
		{[]string{"batch", "init"}, exitcode.Usage, "set MAILFERRY_DB"},
		{[]string{"batch", "init", "--db-env", "BATCH_DB"}, exitcode.OK, "ready"},
		{[]string{"batch", "load", "staff", badCSV, "--db-env", "BATCH_DB"}, exitcode.Usage, "bad.csv: line 4, column 4 (src_auth)"},
		{[]string{"batch", "status", "staff", "--db-env", "BATCH_DB"}, exitcode.Usage, "no batch staff"},
		{[]string{"batch", "load", "staff", csv, "--db-env", "BATCH_DB"}, exitcode.OK, "2 accounts (2 new)"},
		{[]string{"batch", "load", "staff", csv, "--db-env", "BATCH_DB"}, exitcode.OK, "2 accounts (0 new)"},
		{[]string{"batch", "pass", "staff", "presync", "--db-env", "BATCH_DB"}, exitcode.OK, "2 accounts queued, 0 queued before"},
		{[]string{"batch", "pass", "staff", "presync", "--db-env", "BATCH_DB"}, exitcode.OK, "0 accounts queued, 2 queued before"},
		{[]string{"batch", "pass", "staff", "Presync", "--db-env", "BATCH_DB"}, exitcode.Usage, "pass name"},
		{[]string{"batch", "pass", "staff", "x", "--class", "auth", "--db-env", "BATCH_DB"}, exitcode.Usage, "--class goes with --only failed"},
		{[]string{"batch", "status", "staff", "presync", "--db-env", "BATCH_DB"}, exitcode.OK, "2 accounts: 2 pending"},
		{[]string{"batch", "report", "staff", "presync", "--db-env", "BATCH_DB"}, exitcode.OK, `{"id":"a","pass":"presync","state":"pending"`},
		{[]string{"batch", "report", "staff", "presync", "--format", "csv", "--db-env", "BATCH_DB"}, exitcode.OK, "b,presync,pending,,,0,0,0,0,0,,\n"},
		{[]string{"batch", "report", "staff", "presync", "--format", "xml", "--db-env", "BATCH_DB"}, exitcode.Usage, "--format"},
		{[]string{"batch", "pause", "staff", "--db-env", "BATCH_DB"}, exitcode.OK, ""},
		{[]string{"batch", "resume", "staff", "--db-env", "BATCH_DB"}, exitcode.OK, ""},
		{[]string{"batch", "pause", "nobatch", "--db-env", "BATCH_DB"}, exitcode.Unexpected, "no batch nobatch"},
		{[]string{"batch", "cancel", "staff", "--db-env", "BATCH_DB"}, exitcode.OK, "2 accounts cancelled"},
		{[]string{"batch", "status", "staff", "--db-env", "BATCH_DB"}, exitcode.OK, "2 accounts: 2 cancelled"},
		{[]string{"batch", "status", "staff", "--watch", "--db-env", "BATCH_DB"}, exitcode.OK, "2 accounts: 2 cancelled"}, // nothing pending: at once
		{[]string{"batch", "status", "staff", "--watch", "--interval", "0s", "--db-env", "BATCH_DB"}, exitcode.Usage, "--interval"},
		{[]string{"batch", "run", badCSV}, exitcode.Usage, "line 4, column 4 (src_auth): not a reference"},
		{[]string{"batch"}, exitcode.Usage, "want a batch command"},
		{[]string{"batch", "run", csv, "--config", writeConfig(t, 0o600, "[batch.groups.g]\nmatch = [\"h\"]\nmax_accounts = -1\n")}, exitcode.Usage, "batch.groups.g: max_accounts"},
		{[]string{"batch", "run", csv, "--config", writeConfig(t, 0o600, "[batch.groups.g]\nmatch = [\"h\"]\nmax_msgs = 1\n")}, exitcode.Usage, "unknown key"},
		{[]string{"help", "batch"}, exitcode.OK, "Migrate many accounts"},
	}
	for _, s := range steps {
		code, stdout, stderr := runCLI(t, env, s.args...)
		if code != s.code || !strings.Contains(stdout+stderr, s.output) || strings.Contains(stdout+stderr, "hunter2") {
			t.Errorf("mailferry %q = %d, stdout %q, stderr %q; want %d and %q", s.args, code, stdout, stderr, s.code, s.output)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.batch.db")); !os.IsNotExist(err) {
		t.Errorf("batch run of a bad CSV made a database (%v); want nothing", err)
	}
}

// checkFirstPass: one report line per row, in order; the bad rows failed
// on auth at the first attempt, the others copied everything.
func checkFirstPass(t *testing.T, d *mailtest.Dovecot, accts []*batchAccount, bad map[int]bool, report string) {
	t.Helper()
	lines, order := readReport(t, report)
	if len(order) != len(accts) {
		t.Fatalf("report has %d lines; want %d, one per row", len(order), len(accts))
	}
	for i, a := range accts {
		l := lines[a.id]
		if order[i] != a.id {
			t.Errorf("report line %d is %s; want %s (the CSV's order)", i+1, order[i], a.id)
		}
		if bad[i] {
			if l.State != "failed" || l.Class != "auth" || l.ExitCode == nil || *l.ExitCode != exitcode.Auth || l.Attempts != 1 {
				t.Errorf("%s: %+v; want failed, auth, exit 4, 1 attempt", a.id, l)
			}
			continue
		}
		if l.State != "done" || l.ExitCode == nil || *l.ExitCode != 0 || l.Attempts != 1 || l.Totals.Copied != 5 {
			t.Errorf("%s: %+v; want done, exit 0, 1 attempt, 5 copied", a.id, l)
		}
		checkCopied(t, d, a)
	}
}

// checkFixPass: the fix pass ran the bad rows only.
func checkFixPass(t *testing.T, d *mailtest.Dovecot, accts []*batchAccount, bad map[int]bool, report string) {
	t.Helper()
	lines, _ := readReport(t, report)
	for i, a := range accts {
		l := lines[a.id]
		wantPass := "run"
		if bad[i] {
			wantPass = "fix"
			checkCopied(t, d, a)
		}
		if l.Pass != wantPass || l.State != "done" || l.Attempts != 1 {
			t.Errorf("%s after the fix: %+v; want done in pass %s, 1 attempt", a.id, l, wantPass)
		}
	}
}

// checkPassAgain: the first pass again gave the done accounts no second
// job and copied nothing twice.
func checkPassAgain(t *testing.T, d *mailtest.Dovecot, accts []*batchAccount, bad map[int]bool, report string) {
	t.Helper()
	lines, _ := readReport(t, report)
	for i, a := range accts {
		l := lines[a.id]
		var copied, present int64 = 5, 0
		if bad[i] {
			copied, present = 0, 5
		}
		if l.Pass != "run" || l.State != "done" || l.Attempts != 1 || l.Totals.Copied != copied || l.Totals.Present != present {
			t.Errorf("%s, first pass again: %+v; want done, 1 attempt, %d copied, %d present", a.id, l, copied, present)
		}
		checkCopied(t, d, a) // each message once
	}
}

// TestBatchWorkersPostgres: the multi-machine path: the queue in
// PostgreSQL (testdata/postgres/postgres.sh), two workers, 6 accounts on
// Dovecot; the metrics count the copies and hold no account or secret;
// SIGTERM (the context) stops the workers cleanly.
func TestBatchWorkersPostgres(t *testing.T) {
	base := mailtest.NeedPostgres(t)
	d := mailtest.NeedDovecot(t)
	accts := newBatchAccounts(t, d, 6)
	dir := t.TempDir()
	env := map[string]string{"HOME": dir, "XDG_STATE_HOME": dir, "MAILFERRY_DB": pgSchemaURL(t, base)}
	csv := writeBatchCSV(t, dir, accts, env)
	for _, args := range [][]string{{"batch", "init"}, {"batch", "load", "staff", csv}, {"batch", "pass", "staff", "presync"}} {
		if code, stdout, stderr := runCLI(t, env, args...); code != 0 {
			t.Fatalf("mailferry %q = %d, %q, %q", args, code, stdout, stderr)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	addr := freeAddr(t)
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 2)
	for i := range 2 {
		args := []string{"batch", "worker", "--workers", "2", "--ca-file", d.CAFile}
		if i == 0 {
			args = append(args, "--metrics-listen", addr)
		}
		go func() {
			var out, errb bytes.Buffer
			e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, hooks: inProcessHooks(env)}
			code := runEnv(ctx, args, e)
			done <- result{code, errb.String()}
		}()
	}
	// Wait for every account to be done, asking as an operator would.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ; ; <-tick.C {
		code, stdout, stderr := runCLI(t, env, "batch", "status", "staff", "presync")
		if code != 0 {
			t.Fatalf("batch status = %d, %q, %q", code, stdout, stderr)
		}
		if strings.HasPrefix(stdout, "6 accounts: 6 done") {
			break
		}
		if states, _, _ := strings.Cut(stdout, ";"); strings.Contains(states, "failed") {
			t.Fatalf("batch status: %q", stdout)
		}
	}
	metrics := scrape(t, "http://"+addr+"/metrics")
	stop() // SIGTERM
	var stderr strings.Builder
	for range 2 {
		r := <-done
		stderr.WriteString(r.stderr)
		if r.code != 0 {
			t.Errorf("worker exited %d after SIGTERM; stderr %q", r.code, r.stderr)
		}
	}
	if !regexp.MustCompile(`mailferry_batch_messages_total\{batch="staff",result="copied"\} \d+`).MatchString(metrics) {
		t.Errorf("metrics lack the copied messages:\n%s", metrics)
	}
	for _, a := range accts {
		checkCopied(t, d, a)
		if found := leaks(metrics+stderr.String(), a.secretForms); len(found) > 0 || strings.Contains(metrics, a.srcUser) {
			t.Errorf("%s: a secret or user name in the metrics or logs: %q", a.id, found)
		}
	}
	code, stdout, _ := runCLI(t, env, "batch", "report", "staff", "presync")
	if code != 0 || strings.Count(stdout, `"state":"done"`) != 6 || strings.Count(stdout, `"copied":5`) != 6 {
		t.Errorf("batch report = %d, %q; want 6 accounts done with 5 copied each", code, stdout)
	}
}

// pgSchemaURL is base with a fresh schema first in the search path.
func pgSchemaURL(t *testing.T, base string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("PostgreSQL configured but not reachable: %v", err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("cmd%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func scrape(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("scrape %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
