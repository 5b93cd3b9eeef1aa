package main

import (
	"bytes"
	"context"
	"strings"
	stdsync "sync"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
)

// signalWriter is a goroutine-safe buffer that closes seen when its
// content first holds want.
type signalWriter struct {
	mu   stdsync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once stdsync.Once
}

func (s *signalWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.buf.Write(p)
	if strings.Contains(s.buf.String(), s.want) {
		s.once.Do(func() { close(s.seen) })
	}
	return n, err
}

func (s *signalWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// TestProgressOffTerminal: without a terminal there are no bars, and a
// progress record is logged every --progress-interval while the run goes on.
func TestProgressOffTerminal(t *testing.T) {
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01", "2024-01-02")
	cfg := writeConfig(t, 0o644, jobConfigText(t.TempDir(), ""))
	errw := &signalWriter{want: "msg=progress", seen: make(chan struct{})}
	// The run waits in List until a progress record was written.
	w.listing = func() { <-errw.seen }
	var out bytes.Buffer
	e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: errw, getenv: func(string) string { return "" }, reg: w.registry()}
	code := runEnv(context.Background(), []string{"run", "nightly", "--config", cfg, "--progress-interval", "5ms"}, e)
	stderr := errw.String()
	if code != 0 || !strings.Contains(stderr, "level=INFO msg=progress copied=") {
		t.Fatalf("run = %d, stderr:\n%s", code, stderr)
	}
	if strings.ContainsAny(stderr, "\r\x1b") || strings.Contains(stderr, "%|") {
		t.Errorf("bars or escapes off a terminal:\n%q", stderr)
	}
	if code, _, stderr := w.cli(context.Background(), t, nil, "run", "nightly", "--config", cfg, "--progress-interval", "0s"); code != exitcode.Usage || !strings.Contains(stderr, "--progress-interval") {
		t.Errorf("--progress-interval 0s = %d %q", code, stderr)
	}
}

// TestProgressBarsShareTerminal: on a terminal, log records clear the bar's
// line before they print, so the screen keeps one bar line.
func TestProgressBarsShareTerminal(t *testing.T) {
	var b bytes.Buffer
	ts := &termShare{w: &b}
	bar, log := barSide{ts}, logSide{ts}
	bar.Write([]byte("\r 10% |██   |"))
	log.Write([]byte("level=WARN msg=x\n"))
	log.Write([]byte("level=WARN msg=y\n"))
	bar.Write([]byte("\r 20% |███  |"))
	bar.Write([]byte("\n"))
	log.Write([]byte("level=WARN msg=z\n"))
	want := "\r 10% |██   |\r\x1b[Klevel=WARN msg=x\nlevel=WARN msg=y\n\r 20% |███  |\nlevel=WARN msg=z\n"
	if b.String() != want {
		t.Errorf("terminal got %q, want %q", b.String(), want)
	}
}
