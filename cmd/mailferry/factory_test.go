package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// fakeAccounts is an endpoint kind that exists only in this test: accounts
// fake://USER@NAME held in memory. Its one registration (register) is all
// the CLI needs to copy, verify and ls it.
type fakeAccounts struct {
	mu     sync.Mutex
	seeded map[string][]mailtest.Fixture
	stored map[string]*mailtest.MemSink
	opens  atomic.Int64
	stats  atomic.Int64
}

// fakeConfig is a parsed fake:// URL.
type fakeConfig struct{ name string }

// fakeSource counts a mailbox cheaply (mail.Statter), as a server would.
type fakeSource struct {
	*mailtest.MemSource
	stats *atomic.Int64
}

var (
	_ mail.Source  = fakeSource{}
	_ mail.Statter = fakeSource{}
	_ mail.Sink    = nopCloseSink{}
)

func (s fakeSource) Stat(ctx context.Context, mailbox string) (int, int64, error) {
	s.stats.Add(1)
	var n int
	var size int64
	err := s.List(ctx, mailbox, func(e mail.Envelope) error { n++; size += e.Size; return nil })
	return n, size, err
}

func (f *fakeAccounts) register(r *mail.Registry) {
	r.Add(mail.Factory{Scheme: "fake", Kind: mail.KindServer,
		Source: mail.NewSource(parseFake, f.openSource),
		Sink:   mail.NewSink(parseFake, f.openSink)})
}

// parseFake accepts fake://USER@NAME without options.
func parseFake(u *url.URL) (fakeConfig, error) {
	s, err := mail.ParseServer(u, "fake")
	if err != nil {
		return fakeConfig{}, err
	}
	if u.RawQuery != "" || (u.Path != "" && u.Path != "/") {
		return fakeConfig{}, &mail.ConfigError{Msg: "fake: " + mail.Redact(u) + ": takes no path or options"}
	}
	return fakeConfig{name: s.Host}, nil
}

// openSource reads what an earlier copy stored under the name, else the
// seeded fixtures.
func (f *fakeAccounts) openSource(ctx context.Context, c fakeConfig, o *mail.OpenOptions) (fakeSource, error) {
	f.opens.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.stored[c.name]; s != nil {
		return fakeSource{s.Source(), &f.stats}, nil
	}
	return fakeSource{mailtest.NewMemSource(f.seeded[c.name]), &f.stats}, nil
}

func (f *fakeAccounts) openSink(ctx context.Context, c fakeConfig, o *mail.OpenOptions) (nopCloseSink, error) {
	f.opens.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stored[c.name] == nil {
		f.stored[c.name] = mailtest.NewMemSink()
	}
	return nopCloseSink{f.stored[c.name]}, nil
}

// TestOneRegistrationIsEnough: a scheme the command has never heard of,
// registered once into the registry (fakeAccounts.register), works with
// copy, verify and ls through the CLI entry; its URL check refuses a bad
// URL before anything is opened, and ls asks its Statter.
func TestOneRegistrationIsEnough(t *testing.T) {
	f := &fakeAccounts{seeded: map[string][]mailtest.Fixture{"a": fixtures("INBOX", "2024-01-01", "2024-01-02", "2024-01-03")}, stored: map[string]*mailtest.MemSink{}}
	reg := mail.NewRegistry()
	f.register(reg)
	dir := t.TempDir()
	cp := filepath.Join(dir, "cp.jsonl")
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, hooks: inProcessHooks(nil), reg: reg}
		code := runEnv(context.Background(), args, e)
		return code, out.String(), errb.String()
	}
	tests := []struct {
		name  string
		args  []string
		code  int
		out   string // in stdout
		opens int64  // endpoints opened
		check func(t *testing.T, stdout string)
	}{
		{"copy refuses a bad URL before opening", []string{"copy", "fake://alice@a?x=1", "fake://bob@b", "--checkpoint", cp}, exitcode.Usage, "", 0, nil},
		{"copy", []string{"copy", "fake://alice@a", "fake://bob@b", "--checkpoint", cp, "--json"}, 0, "", 2, func(t *testing.T, stdout string) {
			if n, held := copiedCount(t, stdout), len(f.stored["b"].Messages("INBOX")); n != 3 || held != 3 {
				t.Errorf("copied %d, destination holds %d; want 3 and 3", n, held)
			}
		}},
		{"copy again copies nothing", []string{"copy", "fake://alice@a", "fake://bob@b", "--checkpoint", cp, "--json"}, 0, "", 2, func(t *testing.T, stdout string) {
			if n := copiedCount(t, stdout); n != 0 {
				t.Errorf("the rerun copied %d, want 0", n)
			}
		}},
		{"verify", []string{"verify", "fake://alice@a", "fake://bob@b"}, 0, "ok: every source message is in the destination", 2, nil},
		{"ls", []string{"ls", "fake://bob@b", "--json"}, 0, "", 1, func(t *testing.T, stdout string) {
			var got struct{ Messages int }
			if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Messages != 3 {
				t.Errorf("ls --json = %v, %s; want 3 messages", err, stdout)
			}
			if n := f.stats.Load(); n != 1 {
				t.Errorf("ls called Stat %d times, want once (one mailbox)", n)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.opens.Load()
			code, stdout, stderr := cli(tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.out) {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			if n := f.opens.Load() - before; n != tc.opens {
				t.Errorf("%d endpoints opened, want %d", n, tc.opens)
			}
			if tc.check != nil {
				tc.check(t, stdout)
			}
		})
	}
}
