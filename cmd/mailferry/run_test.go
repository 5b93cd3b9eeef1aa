package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// fakeWorld serves in-memory endpoints to the CLI: "mem:NAME" sources
// holding fixed fixtures, "memsink:NAME" sinks kept across runs, and
// "fail:KIND" sources whose opening fails as KIND says.
type fakeWorld struct {
	mu       stdsync.Mutex
	fixtures map[string][]mailtest.Fixture
	sinks    map[string]*mailtest.MemSink
	opens    atomic.Int64 // sources opened
	// listing, if set, is called when a source starts listing a mailbox;
	// tests block in it to hold a run in the middle.
	listing func()
	// failPut, if set, fails the Put of matching messages.
	failPut func(env mail.Envelope) error
}

func newFakeWorld() *fakeWorld {
	return &fakeWorld{fixtures: map[string][]mailtest.Fixture{}, sinks: map[string]*mailtest.MemSink{}}
}

func (w *fakeWorld) sink(name string) *mailtest.MemSink {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sinks[name] == nil {
		w.sinks[name] = mailtest.NewMemSink()
	}
	return w.sinks[name]
}

type hookSource struct {
	*mailtest.MemSource
	w *fakeWorld
}

func (h hookSource) List(ctx context.Context, mb string, fn func(mail.Envelope) error) error {
	if h.w.listing != nil {
		h.w.listing()
	}
	return h.MemSource.List(ctx, mb, fn)
}

func (w *fakeWorld) registry() *mail.Registry {
	r := mail.NewRegistry()
	r.AddSource("mem", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Source, error) {
		w.opens.Add(1)
		w.mu.Lock()
		fx := w.fixtures[u.Opaque]
		w.mu.Unlock()
		return hookSource{mailtest.NewMemSource(fx), w}, nil
	})
	r.AddSource("fail", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Source, error) {
		switch u.Opaque {
		case "auth":
			return nil, fmt.Errorf("fake: login alice: %w", mail.ErrAuth)
		case "unreachable":
			return nil, mail.DialError("fake:993", syscall.ECONNREFUSED)
		case "password":
			pw, err := o.Password(ctx)
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("fake: got a password of %d bytes", len(pw))
		}
		return nil, errors.New("fake: something odd")
	})
	r.AddSink("memsink", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Sink, error) {
		s := w.sink(u.Opaque)
		return &mailtest.FaultSink{Sink: nopCloseSink{s}, Fail: func(_ int, env mail.Envelope) error {
			if w.failPut != nil {
				return w.failPut(env)
			}
			return nil
		}}, nil
	})
	return r
}

// nopCloseSink keeps a MemSink usable by the next run.
type nopCloseSink struct{ *mailtest.MemSink }

func (nopCloseSink) Close() error { return nil }

// cli runs mailferry in-process against w's endpoints.
func (w *fakeWorld) cli(ctx context.Context, t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, hooks: inProcessHooks(env), reg: w.registry()}
	code = runEnv(ctx, args, e)
	return code, out.String(), errb.String()
}

func fixtures(mailbox string, dates ...string) []mailtest.Fixture {
	var out []mailtest.Fixture
	for i, d := range dates {
		t, err := time.ParseInLocation(time.DateOnly, d, time.Local)
		if err != nil {
			panic(err)
		}
		out = append(out, mailtest.Fixture{Mailbox: mailbox, Date: t.Add(12 * time.Hour),
			Body: fmt.Appendf(nil, "Subject: %s #%d\r\nDate: %s\r\n\r\nbody %d\r\n", mailbox, i, d, i)})
	}
	return out
}

// writeConfig writes a config file with the given mode and returns its path.
func writeConfig(t *testing.T, mode os.FileMode, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		mode   os.FileMode
		config string
		want   []string // in stderr
	}{
		{"E1 unknown job key names key and line", 0o644, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\n\ndelete_sorce = true\n",
			[]string{"line 5", `unknown key "jobs.a.delete_sorce"`, "did you mean delete_source"}},
		{"E1 unknown top-level key", 0o644, "# comment\nreprot = \"x\"\n[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\n",
			[]string{"line 2", `unknown key "reprot"`, "did you mean report"}},
		{"E1 unknown key in oauth2 table", 0o644, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\n[jobs.a.src_oauth2]\ntoken_cmd = \"x\"\nclient_idd = \"y\"\n",
			[]string{"line 6", `unknown key "jobs.a.src_oauth2.client_idd"`, "did you mean client_id"}},
		{"E1 unknown key in inline table", 0o644, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nsrc_oauth2 = { token_cmd = \"x\", bogus = 1 }\n",
			[]string{"line 4", `unknown key "jobs.a.src_oauth2.bogus"`}},
		{"E1 unknown key dotted", 0o644, "jobs.a.source = \"mem:a\"\njobs.a.destination = \"memsink:a\"\njobs.a.wrkers = 3\n",
			[]string{"line 3", `unknown key "jobs.a.wrkers"`, "did you mean workers"}},
		{"E1 wrong type", 0o644, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nworkers = \"many\"\n",
			[]string{"line 4", "workers"}},
		{"E1 bad size", 0o644, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nmax_size = \"lots\"\n",
			[]string{"line 4", "max_size", "25M"}},
		{"E1 bad date", 0o644, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nsince = \"yesterday\"\n",
			[]string{"line 4", "since", "YYYY-MM-DD"}},
		{"E1 bad regex", 0o644, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nexclude = [\"(\"]\n",
			[]string{"line 4", "jobs.a.exclude"}},
		{"E1 no destination", 0o644, "[jobs.a]\nsource = \"mem:a\"\n", []string{"line 1", "needs both source and destination"}},
		{"E1 syntax", 0o644, "[jobs.a]\nsource = = 1\n", []string{"line 2"}},
		{"E1 empty dates", 0o644, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nsince = 2024-02-01\nbefore = 2024-01-01\n",
			[]string{"is not before"}},
		{"E2 world-readable inline password", 0o644, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nsrc_password = \"hunter2\"\n",
			[]string{"jobs.a.src_password", "readable by group or others", "mode 0644", "chmod 600"}},
		{"E2 group-readable refresh token", 0o640, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\n[jobs.a.dst_oauth2]\nprovider = \"google\"\nclient_id = \"x\"\nrefresh_token = \"hunter2\"\n",
			[]string{"jobs.a.dst_oauth2.refresh_token", "mode 0640", "chmod 600"}},
		{"oauth2 both ways", 0o600, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\n[jobs.a.src_oauth2]\ntoken_cmd = \"x\"\nclient_id = \"y\"\n",
			[]string{"line 4", "jobs.a.src_oauth2", "either token_cmd or the refresh settings"}},
		{"oauth2 no endpoint", 0o600, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\n[jobs.a.src_oauth2]\nclient_id = \"y\"\nrefresh_token_cmd = \"z\"\n",
			[]string{"token_url or provider"}},
		{"oauth2 bad provider", 0o600, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nsrc_oauth2 = { provider = \"yahoo\", client_id = \"y\", refresh_token_file = \"f\" }\n",
			[]string{"line 4", `provider "yahoo"`}},
		{"oauth2 and password", 0o600, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nsrc_password_env = \"PW\"\n[jobs.a.src_oauth2]\ntoken_cmd = \"x\"\n",
			[]string{"not both"}},
		{"bad map", 0o600, "[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\nmap = [\"no equals sign\"]\n",
			[]string{"line 4", "jobs.a.map"}},
	}
	w := newFakeWorld()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, tc.mode, tc.config)
			for _, args := range [][]string{{"run", "a", "--config", cfg}, {"jobs", "--config", cfg}} {
				code, stdout, stderr := w.cli(context.Background(), t, nil, args...)
				if code != exitcode.Usage {
					t.Errorf("%v = %d, want %d; stderr %q", args, code, exitcode.Usage, stderr)
				}
				for _, s := range append(tc.want, cfg) {
					if !strings.Contains(stderr, s) {
						t.Errorf("%v: stderr %q lacks %q", args, stderr, s)
					}
				}
				if strings.Contains(stdout+stderr, "hunter2") {
					t.Errorf("%v: output shows the secret: %q %q", args, stdout, stderr)
				}
				if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
					t.Errorf("%v: error is %d lines, want one: %q", args, n+1, stderr)
				}
			}
		})
	}
	if w.opens.Load() != 0 {
		t.Errorf("a bad config opened %d sources, want 0 (E1: no I/O before the config is checked)", w.opens.Load())
	}
}

func TestConfigPrivateSecretsAccepted(t *testing.T) {
	w := newFakeWorld()
	dir := t.TempDir()
	cfg := writeConfig(t, 0o600, fmt.Sprintf(`[jobs.a]
source = "fail:password"
destination = "memsink:a"
checkpoint = %q
src_password = "hunter2"
`, filepath.Join(dir, "cp.jsonl")))
	// The fake source hands back what the password lookup gives: proof that
	// the inline password reached the endpoint.
	code, _, stderr := w.cli(context.Background(), t, nil, "run", "a", "--config", cfg)
	if code != exitcode.Unexpected || !strings.Contains(stderr, "got a password of 7 bytes") {
		t.Fatalf("run = %d %q", code, stderr)
	}
}

func TestConfigDefaultPath(t *testing.T) {
	w := newFakeWorld()
	home := t.TempDir()
	dir := filepath.Join(home, "xdg", "mailferry")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte("[jobs.x]\nsource = \"mem:a\"\ndestination = \"memsink:a\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  map[string]string
		code int
		want string
	}{
		{map[string]string{"XDG_CONFIG_HOME": filepath.Join(home, "xdg")}, 0, "x  mem:a -> memsink:a"},
		{map[string]string{"HOME": home}, exitcode.Usage, filepath.Join(home, ".config", "mailferry", "config.toml") + " does not exist"},
	} {
		code, stdout, stderr := w.cli(context.Background(), t, tc.env, "jobs")
		if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
			t.Errorf("jobs with %v = %d, %q %q; want %d and %q", tc.env, code, stdout, stderr, tc.code, tc.want)
		}
	}
}

func TestKeyLine(t *testing.T) {
	doc := `# a comment
top = 1
[jobs.a]
source = "x"  # trailing
"quoted.key" = 2
[jobs . "b"]
inline = { x = 1, y = 2 }
[[arr.of]]
k = 3
`
	tests := []struct {
		key  []string
		want int
	}{
		{[]string{"top"}, 2},
		{[]string{"jobs", "a", "source"}, 4},
		{[]string{"jobs", "a", "quoted.key"}, 5},
		{[]string{"jobs", "b"}, 6},
		{[]string{"jobs", "b", "inline", "y"}, 7},
		{[]string{"arr", "of", "k"}, 9},
		{[]string{"nowhere"}, 0},
	}
	for _, tc := range tests {
		if got := keyLine([]byte(doc), tc.key); got != tc.want {
			t.Errorf("keyLine(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

func TestJobsCommand(t *testing.T) {
	w := newFakeWorld()
	cfg := writeConfig(t, 0o644, `
[jobs.nightly]
source = "mem:a"
destination = "memsink:a"

[jobs.archive]
source = "mem:b"
destination = "memsink:b"
`)
	code, stdout, _ := w.cli(context.Background(), t, nil, "jobs", "--config", cfg)
	if code != 0 || stdout != "nightly  mem:a -> memsink:a\narchive  mem:b -> memsink:b\n" {
		t.Errorf("jobs = %d %q", code, stdout)
	}
	code, stdout, _ = w.cli(context.Background(), t, nil, "jobs", "--names", "--config", cfg)
	if code != 0 || stdout != "nightly\narchive\n" {
		t.Errorf("jobs --names = %d %q", code, stdout)
	}
	code, stdout, _ = w.cli(context.Background(), t, nil, "jobs", "--json", "--config", cfg)
	var rows []jobRow
	if err := json.Unmarshal([]byte(stdout), &rows); code != 0 || err != nil || len(rows) != 2 || rows[1].Source != "mem:b" {
		t.Errorf("jobs --json = %d %q (%v)", code, stdout, err)
	}
}

// jobConfigText is a config with two jobs into one sink.
func jobConfigText(dir string, extra string) string {
	return fmt.Sprintf(`
[jobs.nightly]
source = "mem:a"
destination = "memsink:out"
checkpoint = %q
%s

[jobs.other]
source = "mem:b"
destination = "memsink:out"
checkpoint = %q
`, filepath.Join(dir, "nightly.jsonl"), extra, filepath.Join(dir, "other.jsonl"))
}

func TestRunJobs(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = append(fixtures("INBOX", "2024-01-01", "2024-02-01"), fixtures("Spam", "2024-03-01")...)
	w.fixtures["b"] = fixtures("Archive", "2020-01-01")
	dir := t.TempDir()
	cfg := writeConfig(t, 0o644, jobConfigText(dir, `exclude = ["^Spam$"]`))
	ctx := context.Background()

	code, _, stderr := w.cli(ctx, t, nil, "run", "nightly", "--config", cfg)
	if code != 0 || len(w.sink("out").Messages("INBOX")) != 2 || len(w.sink("out").Messages("Spam")) != 0 {
		t.Fatalf("run nightly = %d, stored %v; stderr:\n%s", code, w.sink("out").Mailboxes(), stderr)
	}
	if !strings.Contains(stderr, "exclude ^Spam$") {
		t.Errorf("summary does not show the filters:\n%s", stderr)
	}
	// A flag on the command line replaces the job's list.
	code, _, stderr = w.cli(ctx, t, nil, "run", "nightly", "--config", cfg, "--exclude", "^INBOX$")
	if code != 0 || len(w.sink("out").Messages("Spam")) != 1 || len(w.sink("out").Messages("INBOX")) != 2 {
		t.Fatalf("run nightly --exclude = %d; stderr:\n%s", code, stderr)
	}
	code, _, stderr = w.cli(ctx, t, nil, "run", "--all", "--config", cfg)
	if code != 0 || len(w.sink("out").Messages("Archive")) != 1 || w.sink("out").Puts.Load() != 4 {
		t.Fatalf("run --all = %d, puts %d; stderr:\n%s", code, w.sink("out").Puts.Load(), stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--config", cfg}, "name a job or pass --all"},
		{[]string{"run", "nope", "--config", cfg}, `no job "nope"`},
		{[]string{"run", "nightly", "--all", "--config", cfg}, "not both"},
		{[]string{"run", "nightly", "--config", cfg, "--since", "2024-13-01"}, "YYYY-MM-DD"},
	} {
		code, _, stderr := w.cli(ctx, t, nil, tc.args...)
		if code != exitcode.Usage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v = %d %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestRunReport: --report appends one JSON line per job run, also for a run
// that failed, and report = in the config is the default.
func TestRunReport(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01", "2024-02-01")
	w.fixtures["b"] = fixtures("INBOX", "2024-01-01")
	dir := t.TempDir()
	rep := filepath.Join(dir, "sub", "runs.jsonl")
	cfg := writeConfig(t, 0o644, fmt.Sprintf("report = %q\n", rep)+jobConfigText(dir, "")+"\n[jobs.broken]\nsource = \"fail:auth\"\ndestination = \"memsink:x\"\ncheckpoint = \""+filepath.Join(dir, "b.jsonl")+"\"\n")
	ctx := context.Background()
	if code, _, stderr := w.cli(ctx, t, nil, "run", "nightly", "--config", cfg); code != 0 {
		t.Fatalf("run = %d %s", code, stderr)
	}
	code, _, stderr := w.cli(ctx, t, nil, "run", "--all", "--config", cfg)
	if code != exitcode.Auth || !strings.Contains(stderr, "mailferry run broken: source: fake: login alice") {
		t.Fatalf("run --all = %d %q; want %d naming the job", code, stderr, exitcode.Auth)
	}
	data, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := []struct {
		job    string
		code   int
		copied int64
	}{{"nightly", 0, 2}, {"nightly", 0, 0}, {"other", 0, 1}, {"broken", exitcode.Auth, 0}}
	if len(lines) != len(want) {
		t.Fatalf("report has %d lines, want %d:\n%s", len(lines), len(want), data)
	}
	for i, l := range lines {
		var s summary
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, l)
		}
		if _, err := time.Parse(time.RFC3339, s.Time); err != nil || s.Job != want[i].job || s.ExitCode != want[i].code || s.Totals.Copied != want[i].copied || s.Command != "run" {
			t.Errorf("line %d = %s; want job %s, exit %d, copied %d", i+1, l, want[i].job, want[i].code, want[i].copied)
		}
		if s.Src == "" || s.Dst == "" || (s.ExitCode != 0) != (s.Error != "") {
			t.Errorf("line %d lacks endpoints or error: %s", i+1, l)
		}
	}
	if fi, err := os.Stat(rep); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("report mode = %v %v, want 0600", fi.Mode(), err)
	}
}

// TestRunSinceBefore: --since/--before (and the job's since/before) copy
// only the messages dated in range, say so in the summary, --dry-run and
// the report, and a message an earlier run recorded stays "present".
func TestRunSinceBefore(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2023-12-31", "2024-01-01", "2024-06-30", "2024-07-01", "2025-01-01")
	dir := t.TempDir()
	cfg := writeConfig(t, 0o644, jobConfigText(dir, "since = 2024-01-01"))
	ctx := context.Background()

	code, _, stderr := w.cli(ctx, t, nil, "run", "nightly", "--config", cfg, "--before", "2024-07-01", "--dry-run")
	if code != 0 || w.sink("out").Puts.Load() != 0 || !strings.Contains(stderr, "filters: since 2024-01-01, before 2024-07-01") ||
		!strings.Contains(stderr, "dry run: 2 message(s)") || !strings.Contains(stderr, "3 message(s) outside the dates") {
		t.Fatalf("dry run = %d, puts %d:\n%s", code, w.sink("out").Puts.Load(), stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "nightly.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dry run created the checkpoint: %v", err)
	}
	code, stdout, _ := w.cli(ctx, t, nil, "run", "nightly", "--config", cfg, "--before", "2024-07-01", "--json")
	var s summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil || code != 0 {
		t.Fatalf("run = %d %v: %s", code, err, stdout)
	}
	got := []string{}
	for _, m := range w.sink("out").Messages("INBOX") {
		got = append(got, m.Env.Date.Format(time.DateOnly))
	}
	if strings.Join(got, " ") != "2024-01-01 2024-06-30" {
		t.Errorf("stored %v, want the messages of 2024-01-01 and 2024-06-30", got)
	}
	if f := s.Filters; f == nil || f.Since != "2024-01-01" || f.Before != "2024-07-01" || f.OutsideDates != 3 || s.Totals.Copied != 2 {
		t.Errorf("summary filters = %+v, totals %+v", s.Filters, s.Totals)
	}
	// A later run with a narrower window: the recorded messages still count
	// as present, not as new or vanished.
	code, stdout, _ = w.cli(ctx, t, nil, "run", "nightly", "--config", cfg, "--since", "2024-07-01", "--json")
	s = summary{}
	if err := json.Unmarshal([]byte(stdout), &s); err != nil || code != 0 || s.Totals.Copied != 2 || s.Totals.Skipped != 2 || s.Filters.OutsideDates != 1 {
		t.Errorf("second run = %d %v, totals %+v filters %+v", code, err, s.Totals, s.Filters)
	}
	if n := w.sink("out").Puts.Load(); n != 4 {
		t.Errorf("stored %d messages in all, want 4", n)
	}
}

// TestE3OverlappingRuns: two 'mailferry run nightly' at once: the second
// exits 7 at once, without opening anything, while the first copies
// everything.
func TestE3OverlappingRuns(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01", "2024-01-02", "2024-01-03")
	dir := t.TempDir()
	cfg := writeConfig(t, 0o644, jobConfigText(dir, ""))
	inList, release := make(chan struct{}), make(chan struct{})
	var once stdsync.Once
	w.listing = func() {
		once.Do(func() { close(inList) })
		<-release
	}
	type result struct {
		code           int
		stdout, stderr string
	}
	first := make(chan result, 1)
	go func() {
		code, stdout, stderr := w.cli(context.Background(), t, nil, "run", "nightly", "--config", cfg)
		first <- result{code, stdout, stderr}
	}()
	<-inList // the first run holds the lock and is listing
	code, stdout, stderr := w.cli(context.Background(), t, nil, "run", "nightly", "--config", cfg)
	close(release)
	if code != exitcode.Locked || stdout != "" || !strings.Contains(stderr, "in use by another mailferry run (pid "+strconv.Itoa(os.Getpid())+")") {
		t.Errorf("second run = %d, %q %q; want %d naming the pid", code, stdout, stderr, exitcode.Locked)
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
		t.Errorf("second run printed %d lines, want one: %q", n+1, stderr)
	}
	r := <-first
	if r.code != 0 || w.sink("out").Puts.Load() != 3 || w.opens.Load() != 1 {
		t.Errorf("first run = %d (%s), stored %d, sources opened %d; want 0, 3, 1", r.code, r.stderr, w.sink("out").Puts.Load(), w.opens.Load())
	}
}

// TestE3KilledRunLockTakenOver: a run killed with SIGKILL while it holds
// the lock (and the checkpoint) leaves no stale lock: while it lives the
// next run exits 7 naming its pid, once it is dead the next run proceeds.
func TestE3KilledRunLockTakenOver(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01", "2024-01-02")
	dir := t.TempDir()
	cfg := writeConfig(t, 0o644, jobConfigText(dir, ""))
	cp := filepath.Join(dir, "nightly.jsonl")

	child := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	src, err := w.registry().Parse("mem:a", nil, mail.AsSource)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := w.registry().Parse("memsink:out", nil, mail.AsSink)
	if err != nil {
		t.Fatal(err)
	}
	child.Env = append(os.Environ(), "MAILFERRY_TEST_HOLD_LOCK="+cp, "MAILFERRY_TEST_HOLD_ENDPOINTS="+src.Canonical+"\n"+dst.Canonical)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("helper said %q, %v", line, err)
	}
	code, _, stderr := w.cli(context.Background(), t, nil, "run", "nightly", "--config", cfg)
	if code != exitcode.Locked || !strings.Contains(stderr, fmt.Sprintf("(pid %d)", child.Process.Pid)) {
		t.Errorf("run while the holder lives = %d %q; want %d naming pid %d", code, stderr, exitcode.Locked, child.Process.Pid)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	code, _, stderr = w.cli(context.Background(), t, nil, "run", "nightly", "--config", cfg)
	if code != 0 || w.sink("out").Puts.Load() != 2 {
		t.Errorf("run after the kill = %d, stored %d; want 0 and 2: %s", code, w.sink("out").Puts.Load(), stderr)
	}
}

// TestHelperHoldLock is not a test: TestE3KilledRunLockTakenOver runs the
// test binary with it to get a process that holds a run's lock and
// checkpoint until it is killed.
func TestHelperHoldLock(t *testing.T) {
	cp := os.Getenv("MAILFERRY_TEST_HOLD_LOCK")
	if cp == "" {
		t.Skip("helper process only")
	}
	if _, err := lockRun(cp); err != nil {
		t.Fatal(err)
	}
	ends := strings.Split(os.Getenv("MAILFERRY_TEST_HOLD_ENDPOINTS"), "\n")
	if _, err := checkpoint.Open(cp, ends[0], ends[1], false); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	buf := make([]byte, 1)
	os.Stdin.Read(buf) // until killed (or the parent goes away)
	os.Exit(0)
}

// TestH1CronQuietNothingNew: the nightly cron run (no terminal, --quiet)
// prints nothing at all when there is nothing new, and exits 0.
func TestH1CronQuietNothingNew(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01", "2024-01-02")
	dir := t.TempDir()
	cfg := writeConfig(t, 0o644, jobConfigText(dir, "since = 2023-01-01\nmax_size = \"10M\""))
	for i, want := range []int64{2, 0} {
		code, stdout, stderr := w.cli(context.Background(), t, nil, "run", "--all", "--config", cfg, "--quiet")
		if code != 0 || stdout != "" || stderr != "" {
			t.Fatalf("run %d = %d, stdout %q, stderr %q; want 0 and nothing", i+1, code, stdout, stderr)
		}
		if got := w.sink("out").Puts.Load(); got != 2 {
			t.Fatalf("run %d: stored %d in all, want 2 (copied %d)", i+1, got, want)
		}
	}
}

// TestH3CronQuietFailure: with failures, the cron run prints one line per
// problem and exits with the documented code.
func TestH3CronQuietFailure(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01", "2024-01-02", "2024-01-03")
	w.failPut = func(env mail.Envelope) error {
		if env.ID == "2" {
			return errors.New("fake: mailbox over quota")
		}
		return nil
	}
	dir := t.TempDir()
	cfg := writeConfig(t, 0o644, jobConfigText(dir, ""))
	code, stdout, stderr := w.cli(context.Background(), t, nil, "run", "nightly", "--config", cfg, "--quiet")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != exitcode.Partial || stdout != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "failed: INBOX 2: put: fake: mailbox over quota") {
		t.Errorf("run = %d, stdout %q, stderr %q; want %d and one line for the message", code, stdout, stderr, exitcode.Partial)
	}
	// Two jobs failing differently: one line each, the first failure's code.
	w.failPut = nil
	cfg = writeConfig(t, 0o644, "[jobs.x]\nsource = \"fail:unreachable\"\ndestination = \"memsink:x\"\ncheckpoint = \""+filepath.Join(dir, "x")+"\"\n"+
		"[jobs.y]\nsource = \"fail:auth\"\ndestination = \"memsink:x\"\ncheckpoint = \""+filepath.Join(dir, "y")+"\"\n")
	code, _, stderr = w.cli(context.Background(), t, nil, "run", "--all", "--config", cfg, "--quiet")
	lines = strings.Split(strings.TrimSpace(stderr), "\n")
	if code != exitcode.Unreachable || len(lines) != 2 || !strings.HasPrefix(lines[0], "mailferry run x: ") || !strings.HasPrefix(lines[1], "mailferry run y: ") {
		t.Errorf("run --all = %d, stderr %q; want %d and a line per job", code, stderr, exitcode.Unreachable)
	}
}

// TestRunExitCodes drives 'run' to each documented exit code.
func TestRunExitCodes(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01")
	dir := t.TempDir()
	job := func(name, src, cp string) string {
		return fmt.Sprintf("[jobs.%s]\nsource = %q\ndestination = \"memsink:%s\"\ncheckpoint = %q\n", name, src, name, filepath.Join(dir, cp))
	}
	cfg := writeConfig(t, 0o644, job("ok", "mem:a", "ok")+job("auth", "fail:auth", "auth")+job("down", "fail:unreachable", "down")+
		job("odd", "fail:odd", "odd")+job("nopw", "fail:password", "nopw")+job("reused", "mem:b", "ok")+job("badurl", "gopher:x", "x"))
	if code, _, stderr := w.cli(context.Background(), t, nil, "run", "ok", "--config", cfg); code != 0 {
		t.Fatalf("run ok = %d %s", code, stderr)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		ctx  context.Context
		job  string
		want int
		msg  string
	}{
		{context.Background(), "ok", exitcode.OK, ""},
		{context.Background(), "odd", exitcode.Unexpected, "something odd"},
		{context.Background(), "badurl", exitcode.Usage, "cannot be a source"},
		{context.Background(), "nopw", exitcode.Usage, "no src password given"},
		{context.Background(), "auth", exitcode.Auth, "login alice"},
		{context.Background(), "down", exitcode.Unreachable, "fake:993"},
		{context.Background(), "reused", exitcode.Checkpoint, "was written for"},
		{cancelled, "ok", exitcode.Interrupted, ""},
	}
	for _, tc := range tests {
		code, _, stderr := w.cli(tc.ctx, t, nil, "run", tc.job, "--config", cfg)
		if code != tc.want || !strings.Contains(stderr, tc.msg) {
			t.Errorf("run %s = %d %q; want %d and %q", tc.job, code, stderr, tc.want, tc.msg)
		}
	}
}

// TestE3SimultaneousStarts: runs that start together on a checkpoint that
// does not exist yet (the first night) still exclude each other: exactly one
// gets in. The checkpoint's own flock cannot promise that (it is rewritten
// by rename when created); the lock file beside it does.
func TestE3SimultaneousStarts(t *testing.T) {
	const runners = 4
	for trial := range 25 {
		w := newFakeWorld()
		w.fixtures["a"] = fixtures("INBOX", "2024-01-01")
		dir := t.TempDir()
		cfg := writeConfig(t, 0o644, jobConfigText(dir, ""))
		var entered atomic.Int64
		release := make(chan struct{})
		w.listing = func() {
			if entered.Add(1) == 1 {
				<-release
			}
		}
		codes := make(chan int, runners)
		for range runners {
			go func() {
				code, _, _ := w.cli(context.Background(), t, nil, "run", "nightly", "--config", cfg)
				codes <- code
			}()
		}
		// Everyone but the lock holder returns while it waits in List; a
		// second holder would show as a second List.
		for range runners - 1 {
			if code := <-codes; code != exitcode.Locked {
				t.Errorf("trial %d: a concurrent run exited %d, want %d", trial, code, exitcode.Locked)
			}
		}
		close(release)
		if code := <-codes; code != 0 {
			t.Errorf("trial %d: the lock holder exited %d", trial, code)
		}
		if n := entered.Load(); n != 1 {
			t.Fatalf("trial %d: %d runs listed the source, want 1", trial, n)
		}
	}
}

// TestE3LockRunCoversCheckpointCreation: checkpoint.Open alone can let two
// openers in when they race to create the file (the header is written by
// rename, which moves the flock to a new inode); lockRun first keeps it to
// one.
func TestE3LockRunCoversCheckpointCreation(t *testing.T) {
	for trial := range 200 {
		cp := filepath.Join(t.TempDir(), "cp.jsonl")
		var holders atomic.Int64
		var wg stdsync.WaitGroup
		start := make(chan struct{})
		var mu stdsync.Mutex
		var cleanup []func()
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				release, err := lockRun(cp)
				if err != nil {
					return
				}
				f, err := checkpoint.Open(cp, "a", "b", false)
				if err != nil {
					release()
					return
				}
				holders.Add(1)
				mu.Lock()
				cleanup = append(cleanup, func() { f.Close(); release() })
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		for _, c := range cleanup {
			c()
		}
		if n := holders.Load(); n != 1 {
			t.Fatalf("trial %d: %d runs hold the checkpoint, want 1", trial, n)
		}
	}
}

// TestRunMap: the job's map rules (and --map) rename destination folders.
func TestRunMap(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = append(fixtures("INBOX", "2024-01-01"), fixtures("Sent Items", "2024-01-02")...)
	cfg := writeConfig(t, 0o644, jobConfigText(t.TempDir(), `map = ["Sent Items=Sent", "INBOX=Old/Inbox"]`))
	code, _, stderr := w.cli(context.Background(), t, nil, "run", "nightly", "--config", cfg)
	if got := w.sink("out").Mailboxes(); code != 0 || strings.Join(got, ",") != "Old/Inbox,Sent" {
		t.Fatalf("run = %d, destination folders %q; want Old/Inbox,Sent: %s", code, got, stderr)
	}
}
