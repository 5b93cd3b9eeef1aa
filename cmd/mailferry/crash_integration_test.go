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
	"slices"
	"sort"
	"strconv"
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

// builtBinary is mailferry built once per test process with extra go
// build flags, into a temporary directory.
type builtBinary struct {
	flags []string
	once  stdsync.Once
	path  string
	err   error
}

var (
	// plainBinary: without -race, as the crash sweeps run it dozens of times.
	plainBinary = &builtBinary{flags: []string{"-tags", testHooksTag}}
	// raceBinaryBuild: G1 wants the killed binary itself checked for races,
	// not only the engine's unit tests.
	raceBinaryBuild = &builtBinary{flags: []string{"-race", "-tags", testHooksTag}}
)

func (b *builtBinary) get(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "mailferry-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "mailferry")
		args := append(append([]string{"build"}, b.flags...), "-o", b.path, ".")
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args[:1+len(b.flags)], " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// remove deletes the binary's directory, if it was built.
func (b *builtBinary) remove() {
	if b.path != "" {
		_ = os.RemoveAll(filepath.Dir(b.path))
	}
}

// TestMain removes the binaries the tests built when they end: about 60 MB
// each, and every test process built its own (a day of test runs filled a
// disk with them).
func TestMain(m *testing.M) {
	code := m.Run()
	plainBinary.remove()
	raceBinaryBuild.remove()
	os.Exit(code)
}

// binary is mailferry built once per test process.
func binary(t *testing.T) string { return plainBinary.get(t) }

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
// tmp/, and in the state the uninterrupted run ends in: the same messages
// and flags on both sides and the same checkpoint records (I1, I2; see
// sweep). A dry run then plans nothing and a third run copies nothing (I4).
func TestA2KillSweepIMAP(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	seed := crashCorpus()
	d.Seed(t, user, pw, "INBOX", seed[:6])
	d.Seed(t, user, pw, "Archiv/Übersicht", seed[6:])
	want := map[string]map[[32]byte]int{"INBOX": multiset(seed[:6]), "Archiv/Übersicht": multiset(seed[6:])}
	src := "imaps://" + user + "@" + d.IMAPS
	for _, kind := range []string{"maildir", "mbox"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel() // both only read the source
			killSweep(t, sweep{
				src: src, kind: kind, env: []string{"MAILFERRY_SRC_PASSWORD=" + pw}, flags: []string{"--ca-file", d.CAFile, "--workers", "3"},
				check: func(t *testing.T, dst, cp string) outcome {
					got := bodiesIn(t, dst, true)
					for mb, w := range want {
						if !sameMultiset(got[mb], w) {
							t.Errorf("%s: %d distinct bodies, want exactly the %d seeded", mb, len(got[mb]), len(w))
						}
					}
					// The source is never changed, so its IDs are stable
					// from one kill point to the next.
					return outcome{dst: localState(t, dst), src: imapState(t, d, user, pw), records: recordState(t, cp, nil)}
				},
			})
		})
	}
}

// sweep describes a crash sweep (docs/failure-model.md A2): one copy, killed
// with SIGKILL at kill point k = 1, 2, ... in turn until a run ends before
// reaching k, which is then the uninterrupted run.
type sweep struct {
	src  string
	kind string // maildir or mbox (a fresh store per kill point), or a destination URL
	env  []string
	// flags are added to the copy's arguments.
	flags []string
	// crashEnv is the variable that takes k: MAILFERRY_TEST_CRASH_AFTER
	// (a durable step, the default) or MAILFERRY_TEST_CRASH_IN_REMOVE.
	crashEnv string
	// before, if set, prepares kill point k (a destination URL must be
	// emptied here, a source refilled if the copy changes it).
	before func(k int)
	// afterKill, if set, checks invariants right after a kill.
	afterKill func(t *testing.T, dst string)
	// check checks the state after a resume and after the uninterrupted
	// run, and returns the end state: after every resume it must equal
	// the uninterrupted run's.
	check func(t *testing.T, dst, checkpoint string) outcome
}

// killSweep runs sw and returns the number of kill points swept. After
// each kill it resumes; after each resume it checks sw.check and sw.state,
// then a dry run must plan nothing and leave the checkpoint file byte for
// byte as it was (mailferry keeps no journal besides the checkpoint: this
// stands in for the plan's "--noop replay"), and a third run must copy
// nothing (I4). The states are compared with the uninterrupted run's at
// the end, so a failure lists every kill point that differs.
func killSweep(t *testing.T, sw sweep) int {
	t.Helper()
	if sw.crashEnv == "" {
		sw.crashEnv = "MAILFERRY_TEST_CRASH_AFTER"
	}
	resumed := map[int]outcome{}
	emptyAtKill := map[int]bool{} // the checkpoint held no record when killed
	for k := 1; k < 200; k++ {
		if sw.before != nil {
			sw.before(k)
		}
		dir := t.TempDir()
		cp := filepath.Join(dir, "cp.jsonl")
		dst := sw.kind + ":" + filepath.Join(dir, "out")
		if strings.Contains(sw.kind, "://") {
			dst = sw.kind
		}
		args := append([]string{"copy", sw.src, dst, "--checkpoint", cp, "--progress", "never", "--json"}, sw.flags...)
		code, killed, _, stderr := runBin(t, append([]string{fmt.Sprintf("%s=%d", sw.crashEnv, k), "MAILFERRY_TEST_BATCH=2"}, sw.env...), args...)
		if !killed {
			if code != 0 {
				t.Fatalf("k=%d: uninterrupted run exited %d: %s", k, code, stderr)
			}
			if k < 3 {
				t.Fatalf("only %d kill point(s) (%s): the sweep tests nothing", k-1, sw.crashEnv)
			}
			ref := sw.check(t, dst, cp)
			if len(ref.dst) == 0 || len(ref.records) == 0 {
				t.Errorf("the uninterrupted run's end state has %d destination messages and %d records: the comparison tests nothing", len(ref.dst), len(ref.records))
			}
			for kill := 1; kill < k; kill++ {
				got := resumed[kill]
				if d := got.diff(ref); d != "" {
					t.Errorf("k=%d: the resumed run's end state differs from the uninterrupted run's (the checkpoint held %s record when killed):\n%s", kill, map[bool]string{true: "no", false: "some"}[emptyAtKill[kill]], d)
				}
			}
			t.Logf("%d kill points swept (%s); each end state equals the uninterrupted run's: %d destination, %d source, %d checkpoint lines",
				k-1, sw.crashEnv, len(ref.dst), len(ref.src), len(ref.records))
			return k - 1
		}
		if sw.afterKill != nil {
			sw.afterKill(t, dst)
		}
		if len(checkpointRecords(t, cp)) == 0 {
			emptyAtKill[k] = true
		}
		code, _, _, stderr = runBin(t, sw.env, args...)
		if code != 0 {
			t.Fatalf("k=%d: resume exited %d: %s", k, code, stderr)
		}
		resumed[k] = sw.check(t, dst, cp)
		before := checkpointBytes(t, cp)
		code, _, out, stderr := runBin(t, sw.env, append(args, "--dry-run")...)
		if p := planned(t, out); code != 0 || len(p) != 0 {
			t.Errorf("k=%d: the dry run after the resume exited %d and planned %v, want 0 and nothing: %s", k, code, p, stderr)
		}
		if after := checkpointBytes(t, cp); after != before {
			t.Errorf("k=%d: the dry run changed the checkpoint", k)
		}
		code, _, out, stderr = runBin(t, sw.env, args...)
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

// planned returns the "planned" list of a --dry-run --json summary.
func planned(t *testing.T, stdout string) []string {
	t.Helper()
	var s summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	var out []string
	for _, p := range s.Planned {
		out = append(out, p.Mailbox+"/"+string(p.ID))
	}
	return out
}

// outcome is the end state of a copy in a form two runs can be compared
// by: one sorted line per message (or record), for each place.
type outcome struct {
	dst, src, records []string
}

// diff describes how o differs from ref, or returns "".
func (o outcome) diff(ref outcome) string {
	var b strings.Builder
	for _, part := range []struct {
		name     string
		got, ref []string
	}{{"destination", o.dst, ref.dst}, {"source", o.src, ref.src}, {"checkpoint records", o.records, ref.records}} {
		if slices.Equal(part.got, part.ref) {
			continue
		}
		fmt.Fprintf(&b, "  %s:\n", part.name)
		for _, l := range part.got {
			if !slices.Contains(part.ref, l) {
				fmt.Fprintf(&b, "    + %s\n", l)
			}
		}
		for _, l := range part.ref {
			if !slices.Contains(part.got, l) {
				fmt.Fprintf(&b, "    - %s\n", l)
			}
		}
		if len(part.got) != len(part.ref) {
			fmt.Fprintf(&b, "    %d line(s), the uninterrupted run %d\n", len(part.got), len(part.ref))
		}
	}
	return b.String()
}

// sortedLines sorts and returns lines (a multiset, compared with slices.Equal).
func sortedLines(lines []string) []string {
	sort.Strings(lines)
	return lines
}

// localState lists a Maildir or mbox as "mailbox body-hash flags" lines.
func localState(t *testing.T, rawURL string) []string {
	t.Helper()
	u, _ := url.Parse(rawURL)
	root, _ := mail.LocalPath(u)
	ctx := context.Background()
	var src mail.Source
	var err error
	if u.Scheme == "maildir" {
		src, err = maildirsource.New(ctx, root, nil)
	} else {
		src, err = mboxsource.New(ctx, root, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, mb := range boxes {
		err := src.List(ctx, mb, func(e mail.Envelope) error {
			rc, err := src.Open(ctx, e)
			if err != nil {
				return err
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			var fl []string
			for _, f := range e.Flags {
				fl = append(fl, strings.ToLower(string(f)))
			}
			sort.Strings(fl)
			lines = append(lines, fmt.Sprintf("%s %x [%s]", mb, sha256.Sum256(mailtest.CRLF(b)), strings.Join(fl, " ")))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return sortedLines(lines)
}

// imapState lists what a Dovecot account holds as "mailbox body-hash
// flags" lines.
func imapState(t *testing.T, d *mailtest.Dovecot, user, pw string) []string {
	t.Helper()
	return fetchedState(d.Fetch(t, user, pw))
}

// fetchedState is imapState on what Dovecot.Fetch returned.
func fetchedState(fetched map[string][]mailtest.FetchedMessage) []string {
	var lines []string
	for mb, msgs := range fetched {
		for _, m := range msgs {
			lines = append(lines, fmt.Sprintf("%s %x [%s]", mb, sha256.Sum256(mailtest.CRLF(m.Body)), flagSet(m.Flags)))
		}
	}
	return sortedLines(lines)
}

// uidHashes maps mailbox and UID to body hash for what a Dovecot account
// holds: taken right after seeding, it names the messages that a record's
// source ID stands for.
func uidHashes(t *testing.T, d *mailtest.Dovecot, user, pw string) map[string]map[imap.UID]string {
	t.Helper()
	return uidHashesIn(d.Fetch(t, user, pw))
}

// uidHashesIn is uidHashes on what Dovecot.Fetch returned.
func uidHashesIn(fetched map[string][]mailtest.FetchedMessage) map[string]map[imap.UID]string {
	out := map[string]map[imap.UID]string{}
	for mb, msgs := range fetched {
		out[mb] = map[imap.UID]string{}
		for _, m := range msgs {
			out[mb][m.UID] = fmt.Sprintf("%x", sha256.Sum256(mailtest.CRLF(m.Body)))
		}
	}
	return out
}

// recordState lists a checkpoint's records (the last one per key, as the
// store loads them), one line each: "mailbox id=... | fields... | hash
// fields..." with every field of the record, so a field added later is
// compared too. The source ID is mapped by srcID when set (for a source
// whose IDs change when it is refilled between kill points); the
// destination ID differs from run to run (file names, UIDs), so only its
// presence counts. The last part holds what a record learns from the
// copied bytes and the listing (h, i, t: hash, Message-ID hash, date),
// which a record rebuilt from the destination (A9) must have too.
func recordState(t *testing.T, path string, srcID func(mailbox string, id mail.ID) string) []string {
	t.Helper()
	type key struct{ m, id string }
	recs := map[key]map[string]json.RawMessage{}
	for _, rec := range checkpointRecords(t, path) {
		// Every field by its checkpoint name, as the JSON Lines file had them.
		line, err := json.Marshal(rec)
		var r map[string]json.RawMessage
		if err != nil || json.Unmarshal(line, &r) != nil {
			t.Fatalf("%s: record %+v: %v", path, rec, err)
		}
		recs[key{rec.Mailbox, string(rec.ID)}] = r
	}
	var lines []string
	for k, r := range recs {
		id := k.id
		if srcID != nil {
			id = srcID(k.m, mail.ID(k.id))
		}
		var core, content []string
		for f, v := range r {
			switch f {
			case "m", "id":
			case "d":
				core = append(core, fmt.Sprintf("d=%t", string(v) != `""`))
			case "s": // the store time: when the run recorded it, not what
				core = append(core, "s=true")
			case "h", "i", "t":
				content = append(content, f+"="+string(v))
			default:
				core = append(core, f+"="+string(v))
			}
		}
		sort.Strings(core)
		sort.Strings(content)
		lines = append(lines, fmt.Sprintf("%s id=%s | %s | %s", k.m, id, strings.Join(core, " "), strings.Join(content, " ")))
	}
	return sortedLines(lines)
}

// TestA1A4KillSweepPOP3Delete covers scenarios A1, A2 and A4 for POP3 ->
// Maildir in delete mode: after a kill at any durable step, every message
// gone from the server is in the Maildir (I3: nothing deleted before it was
// stored); after the resume the Maildir holds each message exactly once,
// the server is empty, and the end state (Maildir messages and flags,
// checkpoint records) is the uninterrupted run's.
func TestA1A4KillSweepPOP3Delete(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	seed := crashCorpus()
	src := "pop3s://" + user + "@" + d.POP3S
	all := multiset(seed)
	var uids map[string]map[imap.UID]string
	reseed := func(int) {
		d.Doveadm(t, "expunge", "-u", user, "mailbox", "INBOX", "all")
		d.Seed(t, user, pw, "INBOX", seed)
		uids = uidHashes(t, d, user, pw)
	}
	onServer := func() map[[32]byte]int {
		m := map[[32]byte]int{}
		for _, f := range d.Fetch(t, user, pw)["INBOX"] {
			m[sha256.Sum256(mailtest.CRLF(f.Body))]++
		}
		return m
	}
	killSweep(t, sweep{
		src: src, kind: "maildir", env: []string{"MAILFERRY_SRC_PASSWORD=" + pw}, flags: []string{"--ca-file", d.CAFile, "--delete-source"},
		before: reseed,
		check: func(t *testing.T, dst, cp string) outcome {
			if got := bodiesIn(t, dst, true)["INBOX"]; !sameMultiset(got, all) {
				t.Errorf("after resume the Maildir holds %v, want every message once", got)
			}
			if left := onServer(); len(left) != 0 {
				t.Errorf("after resume the server still holds %d messages", len(left))
			}
			// Dovecot's UIDLs (pop3_uidl_format %08Xu%08Xv) change when
			// INBOX is refilled: a record's UIDL stands for the body its
			// UID had.
			return outcome{dst: localState(t, dst), src: imapState(t, d, user, pw), records: recordState(t, cp, func(mb string, id mail.ID) string {
				uid, err := strconv.ParseUint(string(id)[:min(8, len(id))], 16, 32)
				if h, ok := uids[mb][imap.UID(uid)]; err == nil && ok {
					return h
				}
				return "unknown:" + string(id)
			})}
		},
		afterKill: func(t *testing.T, dst string) {
			stored := bodiesIn(t, dst, false)["INBOX"]
			left := onServer()
			for sum, n := range all {
				if gone := n - left[sum]; gone > stored[sum] {
					t.Errorf("I3: %d cop(ies) of a message deleted on the server but only %d stored", gone, stored[sum])
				}
			}
		},
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
