package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// lastReport decodes the last line of a --report file.
func lastReport(t *testing.T, path string) syncSummary {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var s syncSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("report line %q: %v", lines[len(lines)-1], err)
	}
	return s
}

// TestSyncJob: a job with mode = "sync" is a two-way sync of its source
// (A) and destination (B) run by 'run JOB', with its sync keys
// (remove_folders), the config's report file, and --dry-run; 'jobs' shows
// it as A <-> B.
func TestSyncJob(t *testing.T) {
	base := t.TempDir()
	a, b, st, report := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "state"), filepath.Join(base, "report.jsonl")
	writeMaildir(t, a, 1, 3)
	writeMaildir(t, filepath.Join(a, ".Work"), 10, 2)
	writeMaildir(t, b, 100, 2)
	cfg := writeConfig(t, 0o600, fmt.Sprintf("report = %q\n[jobs.laptop]\nmode = \"sync\"\nsource = \"maildir:%s\"\ndestination = \"maildir:%s\"\ncheckpoint = %q\nremove_folders = true\nmax_delete = 40\n", report, a, b, st))
	if code, stdout, stderr := syncCLI(t, "jobs", "--config", cfg); code != 0 || !strings.Contains(stdout, "maildir:"+a+" <-> maildir:"+b) {
		t.Fatalf("jobs = %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr := syncCLI(t, "run", "--config", cfg, "laptop")
	if code != 0 || len(maildirSubjects(t, a)) != 5 || len(maildirSubjects(t, b)) != 5 || len(maildirSubjects(t, filepath.Join(b, ".Work"))) != 2 {
		t.Fatalf("run laptop = %d\n%s%s", code, stdout, stderr)
	}
	if s := lastReport(t, report); s.Command != "run" || s.Job != "laptop" || s.B.Copied != 5 || s.A.Copied != 2 || s.B.Folders.Created != 1 || s.Time == "" {
		t.Fatalf("report line %+v", s)
	}

	// A deletes Work: the dry run says what a run would do; the run deletes
	// B's copy (remove_folders) and reports it.
	if err := os.RemoveAll(filepath.Join(a, ".Work")); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = syncCLI(t, "run", "--config", cfg, "laptop", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "delete the folder and its 2 messages on maildir:"+b) || !dirExists(filepath.Join(b, ".Work")) {
		t.Fatalf("run --dry-run = %d\n%s%s", code, stdout, stderr)
	}
	if s := lastReport(t, report); !s.DryRun || s.B.Folders.Deleted != 1 || s.B.Deleted != 2 {
		t.Fatalf("dry run's report line %+v", s)
	}
	code, stdout, stderr = syncCLI(t, "run", "--config", cfg, "laptop", "--since", "2020-01-01")
	if code != 0 || dirExists(filepath.Join(b, ".Work")) || !strings.Contains(stderr, "--since does not apply") {
		t.Fatalf("run after deleting Work on A = %d\n%s%s", code, stdout, stderr)
	}
	if s := lastReport(t, report); s.DryRun || s.B.Folders.Deleted != 1 || s.B.Deleted != 2 || s.A != (syncSide{URL: s.A.URL}) {
		t.Fatalf("report line %+v", s)
	}
}

// TestREADMESyncConfigParses: the sync job of the README's "Keep two
// places in sync" is a valid config file with one sync job.
func TestREADMESyncConfigParses(t *testing.T) {
	text := readme(t)
	sec := text[strings.Index(text, "## Keep two places in sync"):]
	start := strings.Index(sec, "```ini\n")
	if start < 0 {
		t.Fatal("no config example in the README's sync section")
	}
	block := sec[start+len("```ini\n"):]
	block = block[:strings.Index(block, "```")]
	cfg := writeConfig(t, 0o600, block)
	code, stdout, stderr := syncCLI(t, "jobs", "--config", cfg, "--json")
	var rows []jobRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != 0 || len(rows) != 1 || rows[0].Mode != "sync" {
		t.Fatalf("jobs on the README's sync example = %d %v %q %q", code, err, stdout, stderr)
	}
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func TestSyncJobConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, job, want string }{
		{"a copy key in a sync job", "mode = \"sync\"\ndelete_source = true", "a sync job does not take delete_source"},
		{"two copy keys in a sync job", "mode = \"sync\"\nmap = [\"a=b\"]\ngmail = true", "a sync job does not take map, gmail"},
		{"a sync key in a copy job", "remove_folders = true", "a copy job does not take remove_folders"},
		{"an unknown mode", "mode = \"mirror\"", `"mirror": want "copy" or "sync"`},
		{"max_delete out of range", "mode = \"sync\"\nmax_delete = 150", "want a percentage"},
		{"max_delete not a number", "mode = \"sync\"\nmax_delete = \"30%\"", "want a percentage such as 30"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeConfig(t, 0o600, fmt.Sprintf("[jobs.x]\nsource = \"maildir:%s/a\"\ndestination = \"maildir:%s/b\"\n%s\n", dir, dir, c.job))
			code, _, stderr := syncCLI(t, "run", "--config", cfg, "x")
			if code != exitcode.Usage || !strings.Contains(stderr, c.want) {
				t.Errorf("run = %d %q, want exit 2 saying %q", code, stderr, c.want)
			}
		})
	}
}

// TestDovecotSyncJob: a sync job between an IMAP account and a Maildir:
// the source (A) logs in with the src_ keys, as a copy job would.
func TestDovecotSyncJob(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{{Body: []byte("Message-ID: <1@job.test>\r\nSubject: 1\r\n\r\nbody 1\r\n"), Date: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}})
	base := t.TempDir()
	pwFile, md := filepath.Join(base, "pw"), filepath.Join(base, "Mail")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeMaildir(t, md, 50, 1)
	cfg := writeConfig(t, 0o600, fmt.Sprintf("[jobs.mail]\nmode = \"sync\"\nsource = \"imaps://%s@%s\"\ndestination = \"maildir:%s\"\nsrc_password_file = %q\nca_file = %q\ncheckpoint = %q\n",
		user, d.IMAPS, md, pwFile, d.CAFile, filepath.Join(base, "state")))
	code, stdout, stderr := syncCLI(t, "run", "--config", cfg, "mail", "--json")
	var s syncSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil || code != 0 {
		t.Fatalf("run mail = %d (%v)\n%s%s", code, err, stdout, stderr)
	}
	if s.A.Copied != 1 || s.B.Copied != 1 || len(d.Fetch(t, user, pw)["INBOX"]) != 2 || len(maildirSubjects(t, md)) != 2 {
		t.Fatalf("run mail: %+v", s)
	}
}

// TestSyncFolderRenamed: a folder renamed in B (a mail client renamed its
// directory) is renamed in A: the dry run says so, the run does it and
// counts it, nothing copied or deleted.
func TestSyncFolderRenamed(t *testing.T) {
	base := t.TempDir()
	a, b, st := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "state")
	writeMaildir(t, a, 1, 1)
	writeMaildir(t, filepath.Join(a, ".Work"), 10, 3)
	args := []string{"sync", "maildir:" + a, "maildir:" + b, "--checkpoint", st}
	if code, stdout, stderr := syncCLI(t, args...); code != 0 {
		t.Fatalf("first sync = %d\n%s%s", code, stdout, stderr)
	}
	if err := os.Rename(filepath.Join(b, ".Work"), filepath.Join(b, ".Projects")); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := syncCLI(t, append(args, "--dry-run")...)
	if code != 0 || !strings.Contains(stdout, `rename folder "Work" to "Projects" on maildir:`+a) || !dirExists(filepath.Join(a, ".Work")) {
		t.Fatalf("dry run = %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = syncCLI(t, append(args, "--json")...)
	var s syncSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil || code != 0 {
		t.Fatalf("sync = %d (%v)\n%s%s", code, err, stdout, stderr)
	}
	if s.A != (syncSide{URL: s.A.URL, Folders: syncFolderCounts{Renamed: 1}}) || s.B != (syncSide{URL: s.B.URL}) ||
		len(maildirSubjects(t, filepath.Join(a, ".Projects"))) != 3 || dirExists(filepath.Join(a, ".Work")) {
		t.Fatalf("sync: %+v", s)
	}
}

// TestSyncReportOnFailure: a run that fails before syncing anything (a
// refused endpoint, a server that cannot be reached) still appends its
// --report line, with its exit code, so monitoring sees every run.
func TestSyncReportOnFailure(t *testing.T) {
	dir := t.TempDir()
	report, pw := filepath.Join(dir, "r.jsonl"), filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, b string
		code    int
	}{
		{"refused", "mbox:" + filepath.Join(dir, "box"), exitcode.Usage},
		{"unreachable", "imaps://me@127.0.0.1:1", exitcode.Unreachable},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := syncCLI(t, "sync", "maildir:"+filepath.Join(dir, "a"), c.b, "--report", report,
				"--checkpoint", filepath.Join(dir, "st"), "--dst-password-file", pw)
			s := lastReport(t, report)
			if code != c.code || s.ExitCode != c.code || s.OK || s.Error == "" || s.B.URL == "" || strings.Contains(s.B.URL, "secret") {
				t.Fatalf("run = %d %q; report line %+v", code, stderr, s)
			}
		})
	}
}
