package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestB5SessionCutAndBudget: a Gmail-like account whose sessions end after
// about 100 KB (every connection is cut there, as Gmail's "BYE Session
// expired" does) and a run budget of 200 KB (--max-bytes, for a provider's
// daily limit). The first run reconnects after each cut and goes on, then
// stops at its budget with exit 8; the rerun continues from the checkpoint
// and finishes with exit 0; every message is stored exactly once, and one
// more run copies nothing.
func TestB5SessionCutAndBudget(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	var msgs []mailtest.SeedMessage
	for i := range 10 {
		var b strings.Builder
		fmt.Fprintf(&b, "Message-ID: <b5-%d@x>\r\nSubject: b5 %d\r\n\r\n", i, i)
		for b.Len() < 30<<10 {
			fmt.Fprintf(&b, "message %d: a line of text to make the body about thirty kilobytes\r\n", i)
		}
		msgs = append(msgs, mailtest.SeedMessage{Body: []byte(b.String()), Date: date})
	}
	d.Seed(t, user, pw, "INBOX", msgs)
	p := mailtest.NewFaultProxy(t, d.IMAPS)
	p.SetSchedule(mailtest.EveryConn(mailtest.Fault{Action: mailtest.Drop, Dir: mailtest.Down, After: 100 << 10}))
	dir := t.TempDir()
	root := filepath.Join(dir, "out")
	env := []string{"MAILFERRY_SRC_PASSWORD=" + pw, "MAILFERRY_TEST_BACKOFF=10ms"}
	args := []string{"copy", "imaps://" + user + "@localhost:" + p.Port(), "maildir:" + root,
		"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--progress", "never", "--json",
		"--ca-file", d.CAFile, "--workers", "1", "--timeout", "5s", "--max-bytes", "200K"}

	r := runBinLimit(t, runLimit, env, args...)
	if r.code != exitcode.Temporary || !strings.Contains(lastLine(r.stderr), "--max-bytes") {
		t.Fatalf("first run = %d, last line %q; want %d at the byte budget", r.code, lastLine(r.stderr), exitcode.Temporary)
	}
	first := copiedCount(t, r.stdout)
	cuts := 0
	for _, c := range p.Conns() {
		if c.Fired {
			cuts++
		}
	}
	t.Logf("first run: %d copied, %d connections, %d cut", first, len(p.Conns()), cuts)
	if first < 5 || first > 6 || cuts == 0 {
		t.Errorf("first run copied %d with %d session cuts, want 5 or 6 within 200K and at least one cut survived", first, cuts)
	}
	r = runBinLimit(t, runLimit, env, args...)
	if r.code != 0 || copiedCount(t, r.stdout) != 10-first {
		t.Fatalf("rerun = %d, copied %d; want 0 and the %d left: %s", r.code, copiedCount(t, r.stdout), 10-first, lastLine(r.stderr))
	}
	got := bodiesIn(t, "maildir:"+root, true)
	if !sameMultiset(got["INBOX"], multiset(msgs)) {
		t.Errorf("INBOX holds %d distinct bodies (%v), want the 10 seeded exactly once", len(got["INBOX"]), got["INBOX"])
	}
	r = runBinLimit(t, runLimit, env, args...)
	if r.code != 0 || copiedCount(t, r.stdout) != 0 {
		t.Errorf("third run = %d, copied %d; want 0 and nothing", r.code, copiedCount(t, r.stdout))
	}
}
