package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCLI drives the whole CLI in-process.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, hooks: inProcessHooks(env)}
	code = runEnv(context.Background(), args, e)
	return code, out.String(), errb.String()
}

func TestCLIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		want     int
		inStderr string
	}{
		{"no command", nil, 2, "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"copy without args", []string{"copy"}, 2, "want 2 argument(s)"},
		{"unknown flag", []string{"copy", "a:", "b:", "--nope"}, 2, "flag provided but not defined"},
		{"password in URL", []string{"copy", "imaps://alice:hunter2@example.org", "maildir:" + dir}, 2, "--src-password-file"},
		{"no scheme", []string{"copy", "example.org", "maildir:" + dir}, 2, "has no scheme"},
		{"unknown scheme", []string{"copy", "gopher://x@example.org", "maildir:" + dir}, 2, "cannot be a source"},
		{"bad regex", []string{"copy", "a:", "b:", "--include", "("}, 2, "--include"},
		{"bad progress", []string{"copy", "a:", "b:", "--progress", "loud"}, 2, "--progress"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, tc.args...)
			if code != tc.want || !strings.Contains(stderr, tc.inStderr) {
				t.Fatalf("mailferry %v = %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.want, tc.inStderr)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Fatalf("stderr leaks the password: %q", stderr)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); tc.name != "no command" && n != 0 {
				t.Fatalf("error is %d lines, want one: %q", n+1, stderr)
			}
		})
	}
}

func TestCLIHelpTeaches(t *testing.T) {
	for _, cmd := range []string{"copy", "ls", "verify", "demo"} {
		code, stdout, _ := runCLI(t, nil, cmd, "--help")
		if code != 0 || !strings.Contains(stdout, "Usage: mailferry "+cmd) || !strings.Contains(stdout, "Exit codes:") {
			t.Errorf("%s --help = %d:\n%s", cmd, code, stdout)
		}
	}
	code, _, stderr := runCLI(t, nil, "help")
	if code != 0 || !strings.Contains(stderr, "imaps://USER@HOST") || !strings.Contains(stderr, "130") {
		t.Errorf("help = %d:\n%s", code, stderr)
	}
}

func TestCLIVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "mailferry ") {
		t.Fatalf("version = %d %q", code, stdout)
	}
}
