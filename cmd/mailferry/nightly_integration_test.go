package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestH1NightlyJobsAgainstDovecot: the nightly cron story end to end, with
// the built binary (no terminal) against a real Dovecot: a config with a
// POP3 backup job and an IMAP-to-IMAP move job, 'run --all --quiet' twice.
// Both runs print nothing and exit 0; the first copies (the move only what
// --since lets through), the second nothing; --report gets a line per job
// run.
func TestH1NightlyJobsAgainstDovecot(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	src, srcPW := d.NewUser(t)
	dst, dstPW := d.NewUser(t)
	day := func(s string) time.Time { v, _ := time.Parse(time.DateOnly, s); return v.Add(12 * time.Hour) }
	msg := func(i int, date string) mailtest.SeedMessage {
		return mailtest.SeedMessage{Body: fmt.Appendf(nil, "Subject: nightly %d\r\nMessage-ID: <n%d@example.org>\r\n\r\nbody %d\r\n", i, i, i), Date: day(date)}
	}
	d.Seed(t, src, srcPW, "INBOX", []mailtest.SeedMessage{msg(1, "2023-06-01"), msg(2, "2024-02-01"), msg(3, "2024-03-01")})
	d.Seed(t, src, srcPW, "Archive", []mailtest.SeedMessage{msg(4, "2024-04-01")})

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "src.pw")
	if err := os.WriteFile(pwFile, []byte(srcPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "runs.jsonl")
	cfg := writeConfig(t, 0o600, fmt.Sprintf(`
report = %q

[jobs.pop]
source            = "pop3s://%s@%s"
destination       = "maildir:%s"
src_password_file = %q
ca_file           = %q

[jobs.move]
source            = "imaps://%s@%s"
destination       = "imaps://%s@%s"
src_password_file = %q
dst_password_env  = "MF_TEST_DST_PW"
ca_file           = %q
since             = 2024-01-01
`, report, src, d.POP3S, filepath.Join(dir, "pop"), pwFile, d.CAFile, src, d.IMAPS, dst, d.IMAPS, pwFile, d.CAFile))
	env := []string{"XDG_STATE_HOME=" + filepath.Join(dir, "state"), "MF_TEST_DST_PW=" + dstPW}

	for run := 1; run <= 2; run++ {
		r := runBinLimit(t, runLimit, env, "run", "--all", "--quiet", "--config", cfg)
		if r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Fatalf("run %d = %d, stdout %q, stderr %q; want 0 and nothing", run, r.code, r.stdout, r.stderr)
		}
	}
	cur, _ := os.ReadDir(filepath.Join(dir, "pop", "cur"))
	fresh, _ := os.ReadDir(filepath.Join(dir, "pop", "new"))
	if n := len(cur) + len(fresh); n != 3 {
		t.Errorf("the POP3 backup holds %d messages, want 3 (POP3 keeps no dates: --since does not apply)", n)
	}
	got := d.Fetch(t, dst, dstPW)
	if len(got["INBOX"]) != 2 || len(got["Archive"]) != 1 {
		t.Errorf("the new account holds INBOX %d, Archive %d; want 2 and 1 (since 2024-01-01)", len(got["INBOX"]), len(got["Archive"]))
	}

	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := []struct {
		job    string
		copied int64
	}{{"pop", 3}, {"move", 3}, {"pop", 0}, {"move", 0}}
	if len(lines) != len(want) {
		t.Fatalf("report has %d lines, want %d:\n%s", len(lines), len(want), data)
	}
	for i, l := range lines {
		var s summary
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatal(err)
		}
		if s.Job != want[i].job || s.ExitCode != 0 || s.Totals.Copied != want[i].copied {
			t.Errorf("report line %d: job %s exit %d copied %d; want %s, 0, %d", i+1, s.Job, s.ExitCode, s.Totals.Copied, want[i].job, want[i].copied)
		}
		if s.Job == "move" && (s.Filters == nil || s.Filters.Since != "2024-01-01" || (i == 1 && s.Filters.OutsideDates != 1)) {
			t.Errorf("report line %d: filters %+v, want since 2024-01-01 and 1 message outside", i+1, s.Filters)
		}
	}
}
