package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestNoopRerunCostsALogin (issue 11): a nightly rerun with nothing new
// into a Maildir does what a login costs and no more: one connection to the
// source (one login), the folders' statuses, no mailbox selected, nothing
// fetched; and it reads no folder's per-message records. The records are
// made unreadable before it (each folder log overwritten with garbage of
// the same size, which the state refuses as damaged when it reads it), so
// a no-op that starts reading them fails. Negative controls: the same
// trace check flags the run after a new message (it selects and fetches),
// and that run, which must read the log, fails on the garbage.
func TestNoopRerunCostsALogin(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", uidMessages(30, "in"))
	d.Seed(t, user, pw, "Work", uidMessages(10, "wo"))
	dir := t.TempDir()
	cp := filepath.Join(dir, "cp")
	args := []string{"copy", "imaps://" + user + "@" + d.IMAPS, "maildir:" + filepath.Join(dir, "out"),
		"--checkpoint", cp, "--ca-file", d.CAFile, "--json", "--timeout", "10s"}
	env := []string{"MAILFERRY_SRC_PASSWORD=" + pw}
	run := func(extra ...string) binRun {
		t.Helper()
		return runBinLimit(t, runLimit, env, append(slices.Clone(args), extra...)...)
	}
	for i := range 2 { // the first copies, the second records the statuses
		if r := run(); r.code != 0 {
			t.Fatalf("run %d: exit %d: %s", i+1, r.code, r.stderr)
		}
	}
	logs, err := filepath.Glob(filepath.Join(statePath(cp), "*.log"))
	if err != nil || len(logs) < 2 {
		t.Fatalf("folder logs %v, %v; want one per folder", logs, err)
	}
	kept := map[string][]byte{}
	for _, p := range logs {
		kept[p] = poisonLog(t, p)
	}

	r := run("--trace")
	if r.code != 0 {
		t.Fatalf("no-op rerun with the records unreadable: exit %d: %s\n(it read a folder's records)", r.code, r.stderr)
	}
	for mb, l := range listings(fullSummary(t, r)) {
		if l != "skipped" {
			t.Errorf("no-op rerun: %s listed %q, want skipped", mb, l)
		}
	}
	if extra := noopExtras(r.stderr); len(extra) != 0 {
		t.Errorf("no-op rerun did more than one login and the statuses: %q", extra)
	}

	d.Seed(t, user, pw, "INBOX", uidMessages(1, "late"))
	if r := run(); r.code != 6 || !strings.Contains(r.stderr, ".log") {
		t.Errorf("negative control: a run that must read INBOX's records exited %d, want 6 (the garbage refused): %s", r.code, r.stderr)
	}
	for p, b := range kept {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r = run("--trace")
	if r.code != 0 || fullSummary(t, r).Totals.Copied != 1 {
		t.Fatalf("the run after a new message, records restored: exit %d: %s", r.code, r.stderr)
	}
	if extra := noopExtras(r.stderr); len(extra) == 0 {
		t.Errorf("negative control: after a new message the trace check saw nothing to flag:\n%s", r.stderr)
	}
}

// poisonLog overwrites the folder log at p with a line of garbage of the
// same size, and returns what it held: the state refuses the garbage
// (ErrUnusable) when it reads the log, and what does not read it (Empty: a
// size) sees no difference.
func poisonLog(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	junk := []byte(strings.Repeat("#", len(b)-1) + "\n")
	if err := os.WriteFile(p, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// noopExtras lists what a traced run sent the source beyond what a no-op
// needs: a second login (another connection), a mailbox selected, a
// message fetched or searched, QRESYNC enabled (the change listing's own
// connection).
func noopExtras(stderr string) []string {
	var extra []string
	logins := 0
	for _, c := range tracedCommands(stderr) {
		if c.side != "src" {
			continue
		}
		switch {
		case c.verb == "LOGIN" || c.verb == "AUTHENTICATE":
			if logins++; logins > 1 {
				extra = append(extra, c.line)
			}
		case c.verb == "SELECT" || c.verb == "EXAMINE" || strings.HasSuffix(c.verb, "FETCH") ||
			strings.HasSuffix(c.verb, "SEARCH") || c.verb == "ENABLE":
			extra = append(extra, c.line)
		}
	}
	return extra
}

// TestChangeRerunCostsALogin (issues 11 and 12): a nightly rerun after a
// new message and a flag change logs in once on the source: the
// statuses, the change listing (QRESYNC) and the new body share the raw
// session New logged in on. Before, the control connection and the change
// listing's session logged in once each (the source-level negative
// control is sources/imap TestDovecotChangeRerunLogins); here the first
// run, which lists INBOX in full, shows the counter can see a second
// login.
func TestChangeRerunCostsALogin(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", uidMessages(30, "in"))
	d.Seed(t, user, pw, "Work", uidMessages(5, "wo"))
	dir := t.TempDir()
	args := []string{"copy", "imaps://" + user + "@" + d.IMAPS, "maildir:" + filepath.Join(dir, "out"),
		"--checkpoint", filepath.Join(dir, "cp"), "--ca-file", d.CAFile, "--json", "--timeout", "10s", "--trace"}
	env := []string{"MAILFERRY_SRC_PASSWORD=" + pw}
	logins := func(stderr string) int {
		n := 0
		for _, c := range tracedCommands(stderr) {
			if c.side == "src" && (c.verb == "LOGIN" || c.verb == "AUTHENTICATE") {
				n++
			}
		}
		return n
	}
	first := runBinLimit(t, runLimit, env, args...)
	if first.code != 0 {
		t.Fatalf("first run: exit %d: %s", first.code, first.stderr)
	}
	if n := logins(first.stderr); n < 2 {
		t.Errorf("negative control: the first run (full listings, bodies over the pool) logged in %d times, want more than 1", n)
	}
	if r := runBinLimit(t, runLimit, env, args...); r.code != 0 { // records the statuses
		t.Fatalf("second run: exit %d: %s", r.code, r.stderr)
	}
	d.Seed(t, user, pw, "INBOX", uidMessages(1, "late"))
	c := d.Dial(t, user, pw)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.Logout().Wait()

	r := runBinLimit(t, runLimit, env, args...)
	if r.code != 0 || fullSummary(t, r).Totals.Copied != 1 {
		t.Fatalf("the change rerun: exit %d: %s", r.code, r.stderr)
	}
	if n := logins(r.stderr); n != 1 {
		t.Errorf("the change rerun logged in %d times on the source, want 1:\n%s", n, r.stderr)
	}
	if !strings.Contains(r.stderr, "QRESYNC") {
		t.Errorf("the change rerun did not list the changes with QRESYNC:\n%s", r.stderr)
	}
}
