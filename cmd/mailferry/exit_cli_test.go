package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// cliWith runs mailferry in-process against reg's endpoints.
func cliWith(t *testing.T, reg *mail.Registry, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, hooks: inProcessHooks(env), reg: reg}
	code = runEnv(context.Background(), args, e)
	return code, out.String(), errb.String()
}

// fastRetry makes the engine's retries wait a millisecond.
var fastRetry = map[string]string{"MAILFERRY_TEST_BACKOFF": "1ms"}

// jsonSummary decodes the --json summary of a run.
func jsonSummary(t *testing.T, stdout string) summary {
	t.Helper()
	var s summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	return s
}

// putCounter counts, per message, the Puts that reached the sink, and
// throttles those throttle says to.
type putCounter struct {
	mu       stdsync.Mutex
	stored   map[mail.ID]int
	throttle func(env mail.Envelope, stored int) bool
	refused  int
}

func (p *putCounter) fail(env mail.Envelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.throttle != nil && p.throttle(env, len(p.stored)) {
		p.refused++
		return mail.Temp(errors.New("fake: BAD Request is throttled. Suggested Backoff Time: 1 milliseconds"))
	}
	if p.stored == nil {
		p.stored = map[mail.ID]int{}
	}
	p.stored[env.ID]++
	return nil
}

// once checks that each of n messages reached the sink exactly once.
func (p *putCounter) once(t *testing.T, n int) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, k := range p.stored {
		if k != 1 {
			t.Errorf("message %s stored %d times, want once", id, k)
		}
	}
	if len(p.stored) != n {
		t.Errorf("stored %d distinct messages, want %d", len(p.stored), n)
	}
}

// TestB6ThrottledExitsTemporary: messages given up on throttling answers
// (temporary errors) make the run exit 8, "retry later", not 3; the JSON
// summary marks them temporary; the rerun stores them exactly once. A
// permanent failure among them makes it 3 again.
func TestB6ThrottledExitsTemporary(t *testing.T) {
	for _, tc := range []struct {
		name      string
		permanent bool
		want      int
	}{
		{"all temporary", false, exitcode.Temporary},
		{"one permanent", true, exitcode.Partial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFakeWorld()
			w.fixtures["a"] = fixtures("INBOX", "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04")
			pc := &putCounter{throttle: func(env mail.Envelope, _ int) bool { return env.ID == "2" }}
			w.failPut = func(env mail.Envelope) error {
				if tc.permanent && env.ID == "3" {
					return errors.New("fake: NO message refused")
				}
				return pc.fail(env)
			}
			cp := filepath.Join(t.TempDir(), "cp.jsonl")
			args := []string{"copy", "mem:a", "memsink:b", "--checkpoint", cp, "--workers", "1", "--json"}
			code, stdout, stderr := w.cli(context.Background(), t, fastRetry, args...)
			if code != tc.want {
				t.Fatalf("throttled run = %d, want %d; stderr %q", code, tc.want, stderr)
			}
			s := jsonSummary(t, stdout)
			if s.ExitCode != tc.want || s.Counts.FailedTemporary != 1 || s.Counts.Stored != 4-s.Counts.Failed {
				t.Errorf("summary exit %d, counts %+v; want exit %d, 1 temporary failure", s.ExitCode, s.Counts, tc.want)
			}
			if len(s.Failures) == 0 || s.Failures[0].ID != "2" || !s.Failures[0].Temporary || !strings.Contains(s.Failures[0].Err, "throttled") {
				t.Errorf("failures = %+v, want message 2, temporary, naming the throttle", s.Failures)
			}
			pc.throttle = nil
			w.failPut = pc.fail
			if code, _, stderr := w.cli(context.Background(), t, fastRetry, args...); code != 0 {
				t.Fatalf("rerun = %d %q", code, stderr)
			}
			pc.once(t, 4)
		})
	}
}

// TestB6FiveThrottlesCLI: a server that throttles every request makes the
// run stop after five throttles in a row with exit 8 and one line saying
// so; the messages stored before are recorded, the rerun stores the rest
// exactly once.
func TestB6FiveThrottlesCLI(t *testing.T) {
	w := newFakeWorld()
	var dates []string
	for i := range 12 {
		dates = append(dates, fmt.Sprintf("2024-01-%02d", i+1))
	}
	w.fixtures["a"] = fixtures("INBOX", dates...)
	pc := &putCounter{throttle: func(_ mail.Envelope, stored int) bool { return stored >= 2 }}
	w.failPut = pc.fail
	cp := filepath.Join(t.TempDir(), "cp.jsonl")
	args := []string{"copy", "mem:a", "memsink:b", "--checkpoint", cp, "--workers", "1", "--quiet"}
	code, stdout, stderr := w.cli(context.Background(), t, fastRetry, args...)
	last := lastLine(stderr)
	if code != exitcode.Temporary || stdout != "" || !strings.Contains(last, "5 temporary failures in a row") || !strings.Contains(last, "rerun later") {
		t.Fatalf("throttled run = %d, stderr %q; want %d and a line about the throttling", code, stderr, exitcode.Temporary)
	}
	if pc.refused != 5 {
		t.Errorf("%d throttled Puts, want 5: the run must stop instead of asking again per message", pc.refused)
	}
	pc.throttle = nil
	if code, _, stderr := w.cli(context.Background(), t, fastRetry, args...); code != 0 {
		t.Fatalf("rerun = %d %q", code, stderr)
	}
	pc.once(t, 12)
}

// vanishingSource loses message "4" between listing and fetch (another
// client deleted it).
type vanishingSource struct{ *mailtest.MemSource }

func (v vanishingSource) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	if env.ID == "4" {
		return nil, fmt.Errorf("fake: fetch %s: %w", env.ID, mail.ErrNotFound)
	}
	return v.MemSource.Open(ctx, env)
}

// TestH3JSONCounts: the --json summary counts fetched, stored, deleted,
// vanished and skipped by reason, every key present.
func TestH3JSONCounts(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01")
	reg := w.registry()
	reg.AddSource("vanish", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Source, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return vanishingSource{mailtest.NewMemSource(w.fixtures[u.Opaque])}, nil
	})
	cp := filepath.Join(t.TempDir(), "cp.jsonl")
	if code, _, stderr := cliWith(t, reg, nil, "copy", "vanish:a", "memsink:b", "--checkpoint", cp); code != 0 {
		t.Fatalf("first run = %d %q", code, stderr)
	}
	big := mailtest.Fixture{Mailbox: "INBOX", Body: []byte("Subject: big\r\n\r\n" + strings.Repeat("x", 5000))}
	w.fixtures["a"] = append(w.fixtures["a"], big)                                              // 2: too large
	w.fixtures["a"] = append(w.fixtures["a"], fixtures("INBOX", "2020-01-01")...)               // 3: outside the dates
	w.fixtures["a"] = append(w.fixtures["a"], fixtures("INBOX", "2024-02-01")...)               // 4: vanishes
	w.fixtures["a"] = append(w.fixtures["a"], fixtures("INBOX", "2024-03-01", "2024-04-01")...) // 5, 6
	code, stdout, stderr := cliWith(t, reg, nil, "copy", "vanish:a", "memsink:b", "--checkpoint", cp, "--json",
		"--max-size", "1K", "--since", "2023-01-01", "--delete-source")
	if code != 0 {
		t.Fatalf("second run = %d %q", code, stderr)
	}
	var raw struct {
		Counts map[string]json.RawMessage `json:"counts"`
	}
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"fetched", "stored", "deleted", "vanished", "failed", "failed_temporary", "skipped"} {
		if _, ok := raw.Counts[k]; !ok {
			t.Errorf("counts lack %q: %s", k, stdout)
		}
	}
	got := jsonSummary(t, stdout).Counts
	want := runCounts{Fetched: 2, Stored: 2, Deleted: 3, Vanished: 1,
		Skipped: map[string]int64{"present": 1, "too_large": 1, "outside_dates": 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
}

// TestH3TemporaryAtStartExits8: a connection lost or a server busy while
// an endpoint is opened exits 8 (retry later); a refused certificate or
// connection stays 5, a wrong password 4.
func TestH3TemporaryAtStartExits8(t *testing.T) {
	w := newFakeWorld()
	reg := w.registry()
	reg.AddSource("flaky", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Source, error) {
		switch u.Opaque {
		case "reset":
			return nil, fmt.Errorf("fake: greeting: %w", syscall.ECONNRESET)
		case "busy":
			return nil, mail.Temp(errors.New("fake: server refused the session: too many connections"))
		}
		return nil, mail.DialError("fake:993", syscall.ECONNREFUSED)
	})
	dir := t.TempDir()
	for _, tc := range []struct {
		src  string
		want int
	}{
		{"flaky:reset", exitcode.Temporary},
		{"flaky:busy", exitcode.Temporary},
		{"flaky:refused", exitcode.Unreachable},
		{"fail:auth", exitcode.Auth},
	} {
		code, _, stderr := cliWith(t, reg, nil, "copy", tc.src, "memsink:x", "--checkpoint", filepath.Join(dir, tc.src))
		if code != tc.want || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("copy %s = %d, stderr %q; want %d and one line", tc.src, code, stderr, tc.want)
		}
	}
}
