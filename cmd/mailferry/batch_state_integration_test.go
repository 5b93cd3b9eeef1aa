package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestBatchPOP3StateInDatabase: POP3 -> Maildir accounts keep their
// checkpoints in the batch database, not in files on the worker: machine
// A presyncs, machine B (another home, no files of A's) runs the final
// pass with --delete-source and copies only the new mail, deletes every
// message on the source, and each message is in the destination once.
// On SQLite and PostgreSQL.
func TestBatchPOP3StateInDatabase(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			dbURL := "sqlite:" + filepath.Join(dir, "b.db")
			if kind == "postgres" {
				dbURL = pgSchemaURL(t, mailtest.NeedPostgres(t))
			}
			pop3StateTest(t, d, dir, dbURL)
		})
	}
}

// pop3Account is a POP3 source user and its Maildir destination.
type pop3Account struct {
	id, user, pw, maildir string
	subjects              []string
}

func pop3StateTest(t *testing.T, d *mailtest.Dovecot, dir, dbURL string) {
	port := d.POP3S[strings.LastIndex(d.POP3S, ":")+1:]
	accts := make([]*pop3Account, 3)
	var csv strings.Builder
	csv.WriteString("id,src,dst,src_auth,dst_auth\n")
	for i := range accts {
		a := &pop3Account{id: fmt.Sprintf("p%d", i), maildir: filepath.Join(dir, "mail", fmt.Sprint("p", i))}
		a.user, a.pw = d.NewUser(t)
		accts[i] = a
		a.seed(t, d, 4)
		writeSecret(t, filepath.Join(dir, a.id+".pw"), a.pw)
		src := (&url.URL{Scheme: "pop3s", User: url.User(a.user), Host: "localhost:" + port}).String()
		fmt.Fprintf(&csv, "%s,%s,maildir:%s,file:%s.pw,\n", a.id, src, a.maildir, a.id)
	}
	csvPath := filepath.Join(dir, "staff.csv")
	if err := os.WriteFile(csvPath, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	machine := func(name string) map[string]string {
		home := filepath.Join(dir, name)
		return map[string]string{"HOME": home, "XDG_STATE_HOME": filepath.Join(home, "state"), "MAILFERRY_DB": dbURL}
	}
	a, b := machine("a"), machine("b")
	for _, args := range [][]string{{"batch", "init"}, {"batch", "load", "staff", csvPath}, {"batch", "pass", "staff", "presync"}} {
		if code, stdout, stderr := runCLI(t, a, args...); code != 0 {
			t.Fatalf("mailferry %q = %d, %q, %q", args, code, stdout, stderr)
		}
	}
	runWorkersUntilDone(t, a, "presync", len(accts), "--ca-file", d.CAFile)
	for _, acct := range accts {
		if n := countRecords(t, dbURL, acct.id); n != 4 {
			t.Errorf("%s: %d records in the batch database after the presync, want 4", acct.id, n)
		}
		acct.seed(t, d, 1)
	}
	if files := filesUnder(t, a["HOME"]); strings.Contains(files, "jsonl") || strings.Contains(files, "checkpoint") {
		t.Errorf("machine A wrote checkpoint files:\n%s", files)
	}
	if code, stdout, stderr := runCLI(t, b, "batch", "pass", "staff", "final", "--delete-source"); code != 0 {
		t.Fatalf("batch pass final = %d, %q, %q", code, stdout, stderr)
	}
	runWorkersUntilDone(t, b, "final", len(accts), "--ca-file", d.CAFile)
	code, stdout, _ := runCLI(t, b, "batch", "report", "staff", "final")
	if code != 0 || strings.Count(stdout, `"copied":1,"present":4`) != len(accts) {
		t.Errorf("batch report final = %d, %q; want every account with 1 copied and 4 present", code, stdout)
	}
	for _, acct := range accts {
		if left := d.Fetch(t, acct.user, acct.pw)["INBOX"]; len(left) != 0 {
			t.Errorf("%s: %d messages left on the source after the final pass with --delete-source", acct.id, len(left))
		}
		acct.checkMaildir(t)
		if n := countRecords(t, dbURL, acct.id); n != 5 {
			t.Errorf("%s: %d records in the batch database, want 5", acct.id, n)
		}
	}
}

// seed delivers n more messages to the account's INBOX.
func (a *pop3Account) seed(t *testing.T, d *mailtest.Dovecot, n int) {
	t.Helper()
	var msgs []mailtest.SeedMessage
	for range n {
		subj := fmt.Sprintf("%s message %d", a.id, len(a.subjects))
		a.subjects = append(a.subjects, subj)
		msgs = append(msgs, mailtest.SeedMessage{Body: fmt.Appendf(nil, "Subject: %s\r\nMessage-ID: <%d.%s@state>\r\n\r\nbody\r\n", subj, len(a.subjects), a.id)})
	}
	d.Seed(t, a.user, a.pw, "INBOX", msgs)
}

// checkMaildir: the Maildir holds every seeded message exactly once.
func (a *pop3Account) checkMaildir(t *testing.T) {
	t.Helper()
	var all []byte
	for _, sub := range []string{"cur", "new"} {
		entries, _ := os.ReadDir(filepath.Join(a.maildir, sub))
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(a.maildir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
	}
	for _, s := range a.subjects {
		if n := bytes.Count(all, []byte("Subject: "+s+"\r")) + bytes.Count(all, []byte("Subject: "+s+"\n")); n != 1 {
			t.Errorf("%s: %q is in the Maildir %d times, want once", a.id, s, n)
		}
	}
}

// countRecords counts an account's checkpoint records in the database.
func countRecords(t *testing.T, dbURL, account string) int {
	t.Helper()
	driver, dsn := "pgx", dbURL
	if p, ok := strings.CutPrefix(dbURL, "sqlite:"); ok {
		driver, dsn = "sqlite", p
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM mailferry_batch_record WHERE batch = 'staff' AND account = $1`, account).Scan(&n); err != nil {
		t.Fatalf("count records: %v", err)
	}
	return n
}

// runWorkersUntilDone runs two workers (two machines' worth) in-process
// until 'batch status' says every account of the pass is done, then stops
// them as SIGTERM would.
func runWorkersUntilDone(t *testing.T, env map[string]string, pass string, n int, args ...string) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan int, 2)
	var errs [2]bytes.Buffer
	for i := range 2 {
		go func() {
			e := &cliEnv{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &errs[i], getenv: func(k string) string { return env[k] }, hooks: inProcessHooks(env)}
			done <- runEnv(ctx, append([]string{"batch", "worker", "--workers", "2"}, args...), e)
		}()
	}
	want := fmt.Sprintf("%d accounts: %d done", n, n)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(3 * time.Minute)
	for ; ; <-tick.C {
		code, stdout, stderr := runCLI(t, env, "batch", "status", "staff", pass)
		if code != 0 {
			t.Fatalf("batch status = %d, %q, %q", code, stdout, stderr)
		}
		if strings.HasPrefix(stdout, want) {
			break
		}
		if states, _, _ := strings.Cut(stdout, ";"); strings.Contains(states, "failed") || time.Now().After(deadline) {
			stop()
			<-done
			<-done
			t.Fatalf("batch status: %q; workers' logs:\n%s\n%s", stdout, errs[0].String(), errs[1].String())
		}
	}
	stop()
	for range 2 {
		if code := <-done; code != 0 {
			t.Errorf("a worker exited %d after SIGTERM", code)
		}
	}
}

// TestBatchSyncMode: a pass with --mode sync syncs each account both ways
// (Dovecot <-> Maildir) with its state under the state directory; a
// deletion the guard holds back (a folder suddenly empty) is reported as
// held_back with exit code 10, not as a failure, and a later pass with
// --force applies it.
func TestBatchSyncMode(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	accts := newBatchAccounts(t, d, 2)
	dir := t.TempDir()
	env := map[string]string{"HOME": dir}
	maildirs := make([]string, len(accts))
	var csv strings.Builder
	csv.WriteString("id,src,dst,src_auth,dst_auth\n")
	for i, a := range accts {
		maildirs[i] = filepath.Join(dir, "m", a.id)
		writeMaildir(t, maildirs[i], 100*(i+1), 2)
		writeSecret(t, filepath.Join(dir, a.id+".pw"), a.srcPW)
		fmt.Fprintf(&csv, "%s,%s,maildir:%s,file:%s.pw,\n", a.id, a.srcURL, maildirs[i], a.id)
	}
	csvPath := filepath.Join(dir, "staff.csv")
	if err := os.WriteFile(csvPath, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(pass string, extra ...string) (int, string) {
		t.Helper()
		code, stdout, stderr := runCLI(t, env, append([]string{"batch", "run", csvPath, "--mode", "sync", "--pass", pass, "--ca-file", d.CAFile}, extra...)...)
		return code, stdout + stderr
	}
	if code, out := run("first"); code != exitcode.OK || !strings.Contains(out, "2 accounts: 2 done; messages: 14 copied") {
		t.Fatalf("first sync pass = %d, %q; want 0, 2 done, 7 copied each way per account", code, out)
	}
	for i, a := range accts {
		if n := len(d.Fetch(t, a.srcUser, a.srcPW)["INBOX"]); n != 5 {
			t.Errorf("%s: the IMAP INBOX holds %d messages after the sync, want 3 + 2", a.id, n)
		}
		if n := len(maildirSubjects(t, maildirs[i])); n != 5 {
			t.Errorf("%s: the Maildir INBOX holds %d messages after the sync, want 2 + 3", a.id, n)
		}
		if _, err := os.Stat(filepath.Join(dir, "staff.state", "staff", a.id+".sync")); err != nil {
			t.Errorf("%s: no sync state under the state directory: %v", a.id, err)
		}
	}
	// The first account's Maildir INBOX is emptied: that looks like an
	// accident, so the sync holds the deletions back.
	for _, sub := range []string{"cur", "new"} {
		ents, _ := os.ReadDir(filepath.Join(maildirs[0], sub))
		for _, e := range ents {
			if err := os.Remove(filepath.Join(maildirs[0], sub, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	code, out := run("second")
	if code != exitcode.Partial || !strings.Contains(out, "2 accounts: 1 done 1 held_back") || !strings.Contains(out, accts[0].id+": held_back: deletions held back") {
		t.Fatalf("second sync pass = %d, %q; want 3, one done and one held_back", code, out)
	}
	report, _ := readReport(t, filepath.Join(dir, "staff.report.jsonl"))
	if l := report[accts[0].id]; l.State != "held_back" || l.ExitCode == nil || *l.ExitCode != exitcode.HeldBack || l.Class != "" || l.Attempts != 1 {
		t.Errorf("report line %+v; want held_back, exit 10, no class, one attempt", l)
	}
	if n := len(d.Fetch(t, accts[0].srcUser, accts[0].srcPW)["INBOX"]); n != 5 {
		t.Errorf("the held-back deletions reached IMAP: %d messages left, want 5", n)
	}
	if code, out := run("third", "--force"); code != exitcode.OK || !strings.Contains(out, "2 accounts: 2 done") {
		t.Fatalf("sync pass with --force = %d, %q; want 0, all done", code, out)
	}
	if n := len(d.Fetch(t, accts[0].srcUser, accts[0].srcPW)["INBOX"]); n != 0 {
		t.Errorf("after --force the IMAP INBOX holds %d messages, want 0", n)
	}
}
