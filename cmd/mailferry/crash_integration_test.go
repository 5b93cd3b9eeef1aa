package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	maildirsource "github.com/mailferry/mailferry/sources/maildir"
	mboxsource "github.com/mailferry/mailferry/sources/mbox"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

var (
	binOnce stdsync.Once
	binPath string
	binErr  error
)

// binary builds mailferry once per test process (without -race: the crash
// sweeps run it dozens of times).
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mailferry-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "mailferry")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// runBin runs the binary; killed reports death by SIGKILL.
func runBin(t *testing.T, env []string, args ...string) (code int, killed bool, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return -1, true, out.String(), errb.String()
		}
		return ee.ExitCode(), false, out.String(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, false, out.String(), errb.String()
}

// crashCorpus is small on purpose (every kill point is a full run), with
// the awkward cases that matter for exactly-once: a true duplicate pair, a
// shared Message-ID with different bodies, no Message-ID.
func crashCorpus() []mailtest.SeedMessage {
	var out []mailtest.SeedMessage
	date := time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)
	for i := 0; i < 8; i++ {
		out = append(out, mailtest.SeedMessage{Body: []byte(fmt.Sprintf("Message-ID: <m%d@x>\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i, i)), Date: date, Flags: []imap.Flag{imap.FlagSeen}})
	}
	out = append(out,
		mailtest.SeedMessage{Body: []byte("Message-ID: <dup@x>\r\nSubject: twin\r\n\r\nsame\r\n"), Date: date},
		mailtest.SeedMessage{Body: []byte("Message-ID: <dup@x>\r\nSubject: twin\r\n\r\nsame\r\n"), Date: date},
		mailtest.SeedMessage{Body: []byte("Message-ID: <dup@x>\r\nSubject: other\r\n\r\ndifferent\r\n"), Date: date},
		mailtest.SeedMessage{Body: []byte("Subject: no id\r\n\r\nnone\r\n"), Date: date},
	)
	return out
}

// bodiesIn returns the multiset of message bodies (SHA-256) in a local
// store, per mailbox, and fails if a Maildir has files left in tmp/.
func bodiesIn(t *testing.T, rawURL string, final bool) map[string]map[[32]byte]int {
	t.Helper()
	u, _ := url.Parse(rawURL)
	root, _ := mail.LocalPath(u)
	var src mail.Source
	var err error
	ctx := context.Background()
	if u.Scheme == "maildir" {
		src, err = maildirsource.New(ctx, root, nil)
		tmps, _ := filepath.Glob(filepath.Join(root, "tmp", "*"))
		more, _ := filepath.Glob(filepath.Join(root, ".*", "tmp", "*"))
		if final && len(tmps)+len(more) > 0 {
			t.Errorf("stray files in tmp/: %v", append(tmps, more...))
		}
	} else {
		src, err = mboxsource.New(ctx, root, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := map[string]map[[32]byte]int{}
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range boxes {
		out[mb] = map[[32]byte]int{}
		err := src.List(ctx, mb, func(e mail.Envelope) error {
			rc, err := src.Open(ctx, e)
			if err != nil {
				return err
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			out[mb][sha256.Sum256(mailtest.CRLF(b))]++
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func multiset(msgs []mailtest.SeedMessage) map[[32]byte]int {
	m := map[[32]byte]int{}
	for _, s := range msgs {
		m[sha256.Sum256(mailtest.CRLF(s.Body))]++
	}
	return m
}

func sameMultiset(a, b map[[32]byte]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// copiedCount parses --json output.
func copiedCount(t *testing.T, stdout string) int64 {
	t.Helper()
	var s summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	return s.Totals.Copied
}

// TestA2KillSweepIMAP covers scenarios A2 and G1 for IMAP -> Maildir and
// IMAP -> mbox: the copy is killed with SIGKILL after each durable step in
// turn, resumed, and must end with every message exactly once, nothing in
// tmp/, and a third run that copies nothing (I1, I2, I4).
func TestA2KillSweepIMAP(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	seed := crashCorpus()
	d.Seed(t, user, pw, "INBOX", seed[:6])
	d.Seed(t, user, pw, "Archiv/Übersicht", seed[6:])
	want := map[string]map[[32]byte]int{"INBOX": multiset(seed[:6]), "Archiv/Übersicht": multiset(seed[6:])}
	src := "imaps://" + user + "@" + d.IMAPS
	for _, kind := range []string{"maildir", "mbox"} {
		t.Run(kind, func(t *testing.T) {
			killSweep(t, src, kind, []string{"MAILFERRY_SRC_PASSWORD=" + pw}, []string{"--ca-file", d.CAFile, "--workers", "3"}, nil, func(t *testing.T, dst string) {
				got := bodiesIn(t, dst, true)
				for mb, w := range want {
					if !sameMultiset(got[mb], w) {
						t.Errorf("%s: %d distinct bodies, want exactly the %d seeded", mb, len(got[mb]), len(w))
					}
				}
			}, nil)
		})
	}
}

// killSweep kills a copy after step k for k = 1, 2, ... until a run
// finishes without reaching k, resuming after each kill and checking the
// result with check. kind is maildir or mbox (a fresh store per kill
// point) or a destination URL (imaps://..., which before must empty).
// afterKill, if set, checks invariants right after a kill.
func killSweep(t *testing.T, src, kind string, env, flags []string, before func(), check func(t *testing.T, dst string), afterKill func(t *testing.T, dst string)) {
	_ = killSweepK(t, src, kind, env, flags, func(int) {
		if before != nil {
			before()
		}
	}, check, afterKill)
}

// killSweepK is killSweep whose before learns the kill point; it returns
// the number of kill points swept.
func killSweepK(t *testing.T, src, kind string, env, flags []string, before func(k int), check func(t *testing.T, dst string), afterKill func(t *testing.T, dst string)) int {
	for k := 1; k < 200; k++ {
		before(k)
		dir := t.TempDir()
		dst := kind + ":" + filepath.Join(dir, "out")
		if strings.Contains(kind, "://") {
			dst = kind
		}
		args := append([]string{"copy", src, dst, "--checkpoint", filepath.Join(dir, "cp.jsonl"), "--progress", "never", "--json"}, flags...)
		code, killed, _, stderr := runBin(t, append([]string{fmt.Sprintf("MAILFERRY_TEST_CRASH_AFTER=%d", k), "MAILFERRY_TEST_BATCH=2"}, env...), args...)
		if !killed {
			if code != 0 {
				t.Fatalf("k=%d: uninterrupted run exited %d: %s", k, code, stderr)
			}
			if k < 5 {
				t.Fatalf("only %d durable steps: the sweep tests nothing", k-1)
			}
			t.Logf("%d kill points swept", k-1)
			return k - 1
		}
		if afterKill != nil {
			afterKill(t, dst)
		}
		code, _, out, stderr := runBin(t, env, args...)
		if code != 0 {
			t.Fatalf("k=%d: resume exited %d: %s", k, code, stderr)
		}
		check(t, dst)
		code, _, out, stderr = runBin(t, env, args...)
		if code != 0 || copiedCount(t, out) != 0 {
			t.Fatalf("k=%d: third run exited %d and copied %d (want 0, 0): %s", k, code, copiedCount(t, out), stderr)
		}
		if t.Failed() {
			t.Fatalf("k=%d: invariants broken", k)
		}
	}
	t.Fatal("no uninterrupted run within 200 kill points")
	return 0
}

// TestA1A4KillSweepPOP3Delete covers scenarios A1, A2 and A4 for POP3 ->
// Maildir in delete mode: after a kill at any durable step, every message
// gone from the server is in the Maildir (I3: nothing deleted before it was
// stored); after the resume the Maildir holds each message exactly once and
// the server is empty.
func TestA1A4KillSweepPOP3Delete(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	seed := crashCorpus()
	src := "pop3s://" + user + "@" + d.POP3S
	all := multiset(seed)
	reseed := func() {
		d.Doveadm(t, "expunge", "-u", user, "mailbox", "INBOX", "all")
		d.Seed(t, user, pw, "INBOX", seed)
	}
	onServer := func() map[[32]byte]int {
		m := map[[32]byte]int{}
		for _, f := range d.Fetch(t, user, pw)["INBOX"] {
			m[sha256.Sum256(mailtest.CRLF(f.Body))]++
		}
		return m
	}
	killSweep(t, src, "maildir", []string{"MAILFERRY_SRC_PASSWORD=" + pw}, []string{"--ca-file", d.CAFile, "--delete-source"}, reseed,
		func(t *testing.T, dst string) {
			if got := bodiesIn(t, dst, true)["INBOX"]; !sameMultiset(got, all) {
				t.Errorf("after resume the Maildir holds %v, want every message once", got)
			}
			if left := onServer(); len(left) != 0 {
				t.Errorf("after resume the server still holds %d messages", len(left))
			}
		},
		func(t *testing.T, dst string) {
			stored := bodiesIn(t, dst, false)["INBOX"]
			left := onServer()
			for sum, n := range all {
				if gone := n - left[sum]; gone > stored[sum] {
					t.Errorf("I3: %d cop(ies) of a message deleted on the server but only %d stored", gone, stored[sum])
				}
			}
		})
}

func TestCLIErrorsAgainstDovecot(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	dir := t.TempDir()
	ro := filepath.Join(dir, "file") // a file where a directory should be: unwritable even for root
	os.WriteFile(ro, nil, 0o600)
	tests := []struct {
		name string
		env  []string
		args []string
		want int
		msg  string
	}{
		{"wrong password", []string{"MAILFERRY_SRC_PASSWORD=nope"}, []string{"imaps://" + user + "@" + d.IMAPS, "maildir:" + dir + "/a", "--ca-file", d.CAFile}, 4, "authentication"},
		{"missing password", nil, []string{"imaps://" + user + "@" + d.IMAPS, "maildir:" + dir + "/a", "--ca-file", d.CAFile}, 2, "--src-password-file"},
		{"untrusted certificate", []string{"MAILFERRY_SRC_PASSWORD=" + pw}, []string{"imaps://" + user + "@" + d.IMAPS, "maildir:" + dir + "/a"}, 5, "--ca-file"},
		{"unreachable", []string{"MAILFERRY_SRC_PASSWORD=" + pw}, []string{"imaps://" + user + "@127.0.0.1:1", "maildir:" + dir + "/a"}, 5, "127.0.0.1:1"},
		{"pop3 wrong password", []string{"MAILFERRY_SRC_PASSWORD=nope"}, []string{"pop3s://" + user + "@" + d.POP3S, "maildir:" + dir + "/a", "--ca-file", d.CAFile}, 4, "authentication"},
		{"destination not writable", []string{"MAILFERRY_SRC_PASSWORD=" + pw}, []string{"imaps://" + user + "@" + d.IMAPS, "maildir:" + ro + "/x", "--ca-file", d.CAFile}, 1, "not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"copy"}, tc.args...)
			args = append(args, "--checkpoint", filepath.Join(t.TempDir(), "cp.jsonl"))
			code, _, _, stderr := runBin(t, tc.env, args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			if code != tc.want || !strings.Contains(strings.ToLower(last), strings.ToLower(tc.msg)) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q on the last line", code, stderr, tc.want, tc.msg)
			}
			if strings.Contains(stderr, pw) {
				t.Fatal("stderr contains the password")
			}
		})
	}
}
