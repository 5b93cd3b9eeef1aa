package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// retentionT0 is the day of the first run in the --delete-after tests; the
// binary reads its clock from MAILFERRY_TEST_NOW (testhooks_on.go), so a
// test moves time without waiting.
var retentionT0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// clockEnv is the binary's clock set to day days after retentionT0.
func clockEnv(days int) string {
	return "MAILFERRY_TEST_NOW=" + retentionT0.AddDate(0, 0, days).Format(time.RFC3339)
}

// onServer is the multiset of bodies in user's INBOX.
func inboxBodies(t *testing.T, d *mailtest.Dovecot, user, pw string) map[[32]byte]int {
	t.Helper()
	m := map[[32]byte]int{}
	for _, f := range d.Fetch(t, user, pw)["INBOX"] {
		m[sha256.Sum256(mailtest.CRLF(f.Body))]++
	}
	return m
}

// TestDeleteAfterAgainstDovecot runs --delete-after day by day with the
// binary's clock: nothing is deleted before its store time is DAYS old,
// a message stored later waits its own DAYS, a dry run lists without
// deleting, a copy lost from the destination keeps its source message
// (and is reported), 0d deletes what earlier runs stored and nothing the
// run stores, and the summary, --json and --report count "deleted".
func TestDeleteAfterAgainstDovecot(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct {
		name, scheme, kind string
		lose               func(t *testing.T, dst string) // deletes one stored copy
	}{
		{"pop3-maildir", "pop3s", "maildir", loseMaildirFile},
		{"imap-mbox", "imaps", "mbox", nil},
		{"imap-maildir", "imaps", "maildir", loseMaildirFile},
		{"pop3-imap", "pop3s", "imap", nil}, // lose is set below: it needs the destination's user
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			user, pw := d.NewUser(t)
			seed := crashCorpus()
			d.Seed(t, user, pw, "INBOX", seed[:8])
			host := d.IMAPS
			if tc.scheme == "pop3s" {
				host = d.POP3S
			}
			dir := t.TempDir()
			dst := tc.kind + ":" + filepath.Join(dir, "out")
			env := []string{"MAILFERRY_SRC_PASSWORD=" + pw}
			if tc.kind == "imap" {
				duser, dpw := d.NewUser(t)
				dst = "imaps://" + duser + "@" + d.IMAPS
				env = append(env, "MAILFERRY_DST_PASSWORD="+dpw)
				tc.lose = func(t *testing.T, _ string) {
					d.Doveadm(t, "expunge", "-u", duser, "mailbox", "INBOX", "uid", "1")
				}
			}
			report := filepath.Join(dir, "report.jsonl")
			args := []string{"copy", tc.scheme + "://" + user + "@" + host, dst, "--checkpoint", filepath.Join(dir, "cp.jsonl"),
				"--progress", "never", "--json", "--ca-file", d.CAFile, "--report", report}
			run := func(day int, extra ...string) summary {
				t.Helper()
				code, _, out, stderr := runBin(t, append([]string{clockEnv(day)}, env...), append(append([]string(nil), args...), extra...)...)
				if code != 0 {
					t.Fatalf("day %d %v: exit %d: %s", day, extra, code, stderr)
				}
				return jsonSummary(t, out)
			}
			left := func() int {
				n := 0
				for _, c := range inboxBodies(t, d, user, pw) {
					n += c
				}
				return n
			}
			steps := []retentionStep{
				{"day 0: stores 8, deletes none", 0, []string{"--delete-after", "30d"}, nil, 8, 0, 0, 0, 8},
				{"day 10: 5 new stored (a twin of one already stored among them)", 10, []string{"--delete-after", "30d"}, func() { d.Seed(t, user, pw, "INBOX", append(seed[8:], seed[0])) }, 5, 0, 0, 0, 13},
				{"day 29: one day short", 29, []string{"--delete-after", "30d"}, nil, 0, 0, 0, 0, 13},
				{"day 30, dry run: lists the 8", 30, []string{"--delete-after", "30d", "--dry-run"}, nil, 0, 0, 8, 0, 13},
				{"day 30: deletes the 8 of day 0", 30, []string{"--delete-after", "30d"}, nil, 0, 8, 8, 0, 5},
				{"day 30, 0d: deletes the 5 of day 10", 30, []string{"--delete-after", "0d"}, nil, 0, 5, 5, 0, 0},
			}
			if tc.lose != nil {
				steps[4] = retentionStep{"day 30, one copy lost: 7 deleted, 1 reported", 30, []string{"--delete-after", "30d"}, func() { tc.lose(t, dst) }, 0, 7, 7, 1, 6}
				steps[5].notHeld, steps[5].left = 1, 1
				if tc.kind == "imap" {
					// The IMAP sink stored the day-10 twin of the lost copy
					// as that same copy (it dedupes by content): both stay.
					steps[5].deleted, steps[5].lst, steps[5].notHeld, steps[5].left = 4, 4, 2, 2
				}
			}
			for _, st := range steps {
				if st.before != nil {
					st.before()
				}
				s := run(st.day, st.flags...)
				if s.Totals.Copied+s.Totals.Present != st.copied || s.Counts.Deleted != st.deleted || int64(len(s.Expired)) != st.lst || len(s.NotHeld) != st.notHeld || left() != st.left {
					t.Fatalf("%s: stored %d (want %d), deleted %d (want %d), expired listed %d (want %d), not held %d (want %d), %d left on the server (want %d)",
						st.what, s.Totals.Copied+s.Totals.Present, st.copied, s.Counts.Deleted, st.deleted, len(s.Expired), st.lst, len(s.NotHeld), st.notHeld, left(), st.left)
				}
			}
			// Every message is in the destination once, whatever was deleted.
			if tc.kind == "imap" {
				return
			}
			got := bodiesIn(t, dst, true)["INBOX"]
			if want := multiset(append(append([]mailtest.SeedMessage(nil), seed[:8]...), append(seed[8:], seed[0])...)); tc.lose == nil && !sameMultiset(got, want) {
				t.Errorf("destination holds %v, want every message stored once", got)
			}
			data, err := os.ReadFile(report)
			if err != nil || !strings.Contains(string(data), `"deleted":8`) && !strings.Contains(string(data), `"deleted":7`) {
				t.Errorf("--report lines do not count deleted (%v):\n%s", err, data)
			}
		})
	}
}

// retentionStep is one run of TestDeleteAfterAgainstDovecot and what it
// must do: messages stored (copied or found present), deleted, listed as
// expired, reported as not held, and left on the server.
type retentionStep struct {
	what                 string
	day                  int
	flags                []string
	before               func()
	copied, deleted, lst int64
	notHeld, left        int
}

// loseMaildirFile deletes the stored copy of message 1 (stored on day 0)
// from the Maildir, as a mail client would.
func loseMaildirFile(t *testing.T, dst string) {
	t.Helper()
	root := strings.TrimPrefix(dst, "maildir:")
	names, _ := filepath.Glob(filepath.Join(root, "*", "*"))
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil && strings.Contains(string(b), "Subject: 1\r\n") {
			if err := os.Remove(n); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("no stored copy of message 1 to lose")
}

// TestDeleteAfterWithDeleteSourceRefused: the two deletion modes do not
// combine, on the command line or in a job (exit 2, one sentence).
func TestDeleteAfterWithDeleteSourceRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("[jobs.j]\nsource = \"maildir:"+dir+"/a\"\ndestination = \"maildir:"+dir+"/b\"\ndelete_source = true\ndelete_after = \"2w\"\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"flags", []string{"copy", "maildir:" + dir + "/a", "maildir:" + dir + "/b", "--delete-source", "--delete-after", "30d"}},
		{"job", []string{"run", "--config", cfg, "j"}},
		{"bad value", []string{"copy", "maildir:" + dir + "/a", "maildir:" + dir + "/b", "--delete-after", "30 days"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, _, stderr := runBin(t, nil, tc.args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 2 || len(lines) == 0 || !strings.Contains(stderr, "delete-after") {
				t.Fatalf("exit %d, stderr %q; want exit 2 naming --delete-after", code, stderr)
			}
		})
	}
}

// TestA1A7KillSweepDeleteAfter extends the kill sweeps (docs/failure-model.md
// A1, A2, A7) to --delete-after: a first run on day 0 stores the old
// messages, new ones arrive, and the run of day 30 (--delete-after 30d) is
// killed with SIGKILL after each durable step in turn (and, for IMAP,
// between UID STORE \Deleted and UID EXPUNGE), then resumed. After every
// kill nothing is gone from the server but old messages already stored;
// after every resume the server holds exactly the new messages and the
// Maildir every message once.
func TestA1A7KillSweepDeleteAfter(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct{ name, scheme, crashEnv string }{
		{"pop3", "pop3s", "MAILFERRY_TEST_CRASH_AFTER"},
		{"imap", "imaps", "MAILFERRY_TEST_CRASH_AFTER"},
		{"imap-in-remove", "imaps", "MAILFERRY_TEST_CRASH_IN_REMOVE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := retentionSweep(t, d, tc.scheme, tc.crashEnv)
			t.Logf("%d kill points swept", n)
		})
	}
}

// retentionSweep runs one sweep of TestA1A7KillSweepDeleteAfter and returns
// the number of kill points.
func retentionSweep(t *testing.T, d *mailtest.Dovecot, scheme, crashEnv string) int {
	user, pw := d.NewUser(t)
	seed := crashCorpus()
	old := seed[:8]
	fresh := append(append([]mailtest.SeedMessage(nil), seed[8:]...), seed[0]) // a twin of an old one among them
	all := multiset(append(append([]mailtest.SeedMessage(nil), old...), fresh...))
	host := d.IMAPS
	if scheme == "pop3s" {
		host = d.POP3S
	}
	env := []string{"MAILFERRY_SRC_PASSWORD=" + pw}
	for k := 1; k < 200; k++ {
		d.Doveadm(t, "expunge", "-u", user, "mailbox", "INBOX", "all")
		d.Seed(t, user, pw, "INBOX", old)
		dir := t.TempDir()
		dst := "maildir:" + filepath.Join(dir, "out")
		args := []string{"copy", scheme + "://" + user + "@" + host, dst, "--checkpoint", filepath.Join(dir, "cp.jsonl"),
			"--progress", "never", "--json", "--ca-file", d.CAFile, "--delete-after", "30d"}
		if code, _, _, stderr := runBin(t, append([]string{clockEnv(0)}, env...), args...); code != 0 {
			t.Fatalf("k=%d: day 0 exited %d: %s", k, code, stderr)
		}
		d.Seed(t, user, pw, "INBOX", fresh)
		day30 := append([]string{clockEnv(30)}, env...)
		code, killed, _, stderr := runBin(t, append([]string{fmt.Sprintf("%s=%d", crashEnv, k), "MAILFERRY_TEST_BATCH=2"}, day30...), args...)
		if killed {
			checkOnlyOldGone(t, k, inboxBodies(t, d, user, pw), bodiesIn(t, dst, false)["INBOX"], multiset(fresh), all)
			code, _, _, stderr = runBin(t, day30, args...)
		}
		if code != 0 {
			t.Fatalf("k=%d: day 30 exited %d (killed: %v): %s", k, code, killed, stderr)
		}
		if left := inboxBodies(t, d, user, pw); !sameMultiset(left, multiset(fresh)) {
			t.Errorf("k=%d: after the run of day 30 the server holds %v, want exactly the %d new messages", k, left, len(fresh))
		}
		if got := bodiesIn(t, dst, true)["INBOX"]; !sameMultiset(got, all) {
			t.Errorf("k=%d: the Maildir holds %v, want every message once", k, got)
		}
		if t.Failed() {
			t.Fatalf("k=%d: invariants broken", k)
		}
		if !killed {
			if k < 3 {
				t.Fatalf("only %d kill point(s) (%s): the sweep tests nothing", k-1, crashEnv)
			}
			return k - 1
		}
	}
	t.Fatal("no uninterrupted run within 200 kill points")
	return 0
}

// checkOnlyOldGone checks the state right after a kill: every new message
// is still on the server (none was stored 30 days ago), and every message
// gone from it is stored.
func checkOnlyOldGone(t *testing.T, k int, left, stored, fresh, all map[[32]byte]int) {
	t.Helper()
	for sum, n := range fresh {
		if left[sum] < n {
			t.Errorf("k=%d: a message that arrived after day 0 was deleted (%d of %d left)", k, left[sum], n)
		}
	}
	for sum, n := range all {
		if gone := n - left[sum]; gone > stored[sum] {
			t.Errorf("k=%d: %d cop(ies) of a message deleted on the server but only %d stored", k, gone, stored[sum])
		}
	}
}
