package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// syncCLI runs mailferry with the real endpoints.
func syncCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = runEnv(context.Background(), args, e)
	return code, out.String(), errb.String()
}

// writeMaildir writes n messages into the INBOX of a new Maildir at root.
func writeMaildir(t *testing.T, root string, from, n int) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i := from; i < from+n; i++ {
		body := fmt.Sprintf("Message-ID: <%d@sync.test>\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i, i)
		if err := os.WriteFile(filepath.Join(root, "cur", fmt.Sprintf("%d.test:2,S", i)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// maildirSubjects lists the subjects in root's INBOX.
func maildirSubjects(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"cur", "new"} {
		ents, _ := os.ReadDir(filepath.Join(root, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(root, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, strings.SplitN(strings.SplitN(string(b), "Subject: ", 2)[1], "\r\n", 2)[0])
		}
	}
	sort.Strings(out)
	return out
}

func TestSyncRefusesMboxAndPOP3(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ a, b, want string }{
		{"mbox:" + dir, "maildir:" + dir, "no stable message ids"},
		{"maildir:" + dir, "pop3s://me@pop.example.org", "POP3 has no folders"},
		{"maildir:" + dir, "--max-delete=0", ""},
	} {
		code, _, stderr := syncCLI(t, "sync", c.a, c.b)
		if code != exitcode.Usage || !strings.Contains(stderr, c.want) {
			t.Errorf("sync %s %s = %d %q, want exit 2 saying %q", c.a, c.b, code, stderr, c.want)
		}
	}
}

func TestSyncMaildirs(t *testing.T) {
	base := t.TempDir()
	a, b, state := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "state")
	writeMaildir(t, a, 1, 40)
	writeMaildir(t, b, 100, 2)
	// A dry run changes nothing and prints the plan.
	code, stdout, stderr := syncCLI(t, "sync", "maildir:"+a, "maildir:"+b, "--checkpoint", state, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "copy 40 new messages from maildir:"+a) || len(maildirSubjects(t, b)) != 2 {
		t.Fatalf("dry run = %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(state); err == nil {
		t.Fatal("a dry run created the state")
	}
	code, stdout, stderr = syncCLI(t, "sync", "maildir:"+a, "maildir:"+b, "--checkpoint", state)
	if code != 0 || len(maildirSubjects(t, a)) != 42 || len(maildirSubjects(t, b)) != 42 {
		t.Fatalf("sync = %d\n%s%s", code, stdout, stderr)
	}
	// 25 of 40 deleted on A: held back, exit 10, nothing deleted on B.
	for i := 1; i <= 25; i++ {
		if err := os.Remove(filepath.Join(a, "cur", fmt.Sprintf("%d.test:2,S", i))); err != nil {
			t.Fatal(err)
		}
	}
	// The other order of the pair finds the same state (B A, --json).
	code, stdout, stderr = syncCLI(t, "sync", "maildir:"+b, "maildir:"+a, "--checkpoint", state, "--json")
	var s syncSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	if code != exitcode.HeldBack || s.A.HeldBack != 25 || s.A.Deleted != 0 || len(maildirSubjects(t, b)) != 42 {
		t.Fatalf("sync after 25 deletions = %d %+v\n%s", code, s, stderr)
	}
	code, stdout, stderr = syncCLI(t, "sync", "maildir:"+a, "maildir:"+b, "--checkpoint", state, "--force")
	if code != 0 || len(maildirSubjects(t, b)) != 17 {
		t.Fatalf("--force = %d (B holds %d)\n%s%s", code, len(maildirSubjects(t, b)), stdout, stderr)
	}
	q, _ := filepath.Glob(filepath.Join(state, "quarantine", "*", "INBOX", "*"))
	if len(q) != 25 {
		t.Fatalf("the quarantine holds %d files, want the 25 deleted", len(q))
	}
	code, stdout, _ = syncCLI(t, "sync", "maildir:"+a, "maildir:"+b, "--checkpoint", state)
	if code != 0 || !strings.Contains(stdout, "0 copied in, 0 flag changes, 0 moved, 0 deleted") {
		t.Fatalf("a sync right after = %d\n%s", code, stdout)
	}
}

// TestDovecotSyncIMAPMaildir: an IMAP account and a Maildir kept in sync
// by the command: the first sync fills the Maildir; a flag set in the
// Maildir by a mail client (a rename) and a message deleted there reach
// the server; new mail on the server reaches the Maildir.
func TestDovecotSyncIMAPMaildir(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	var seed []mailtest.SeedMessage
	for i := 1; i <= 4; i++ {
		seed = append(seed, mailtest.SeedMessage{Body: fmt.Appendf(nil, "Message-ID: <%d@sync.test>\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i, i),
			Date: time.Date(2025, 1, i, 0, 0, 0, 0, time.UTC)})
	}
	d.Seed(t, user, pw, "INBOX", seed)
	base := t.TempDir()
	pwFile, md, state := filepath.Join(base, "pw"), filepath.Join(base, "Mail"), filepath.Join(base, "state")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"sync", "imaps://" + user + "@" + d.IMAPS, "maildir:" + md, "--src-password-file", pwFile, "--ca-file", d.CAFile, "--checkpoint", state}
	if code, stdout, stderr := syncCLI(t, args...); code != 0 || len(maildirSubjects(t, md)) != 4 {
		t.Fatalf("first sync = %d\n%s%s", code, stdout, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(md, "*", "*"))
	sort.Strings(files)
	var flagged, deleted string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		switch {
		case strings.Contains(string(b), "Subject: 1\r\n"):
			id, _, _ := strings.Cut(filepath.Base(f), ":")
			flagged = filepath.Join(md, "cur", id+":2,F")
			if err := os.Rename(f, flagged); err != nil {
				t.Fatal(err)
			}
		case strings.Contains(string(b), "Subject: 2\r\n"):
			deleted = f
		}
	}
	if err := os.Remove(deleted); err != nil {
		t.Fatal(err)
	}
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{{Body: []byte("Message-ID: <5@sync.test>\r\nSubject: 5\r\n\r\nbody 5\r\n")}})
	if code, stdout, stderr := syncCLI(t, args...); code != 0 {
		t.Fatalf("second sync = %d\n%s%s", code, stdout, stderr)
	}
	got := map[string]string{}
	for _, m := range d.Fetch(t, user, pw)["INBOX"] {
		subj := strings.SplitN(strings.SplitN(string(m.Body), "Subject: ", 2)[1], "\r\n", 2)[0]
		got[subj] = fmt.Sprint(m.Flags)
	}
	want := map[string]string{"1": `[\Flagged]`, "3": "[]", "4": "[]", "5": "[]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the server holds %v, want %v", got, want)
	}
	if s := maildirSubjects(t, md); strings.Join(s, ",") != "1,3,4,5" {
		t.Fatalf("the Maildir holds %v", s)
	}
}
