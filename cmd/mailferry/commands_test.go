package main

import (
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
)

// TestCLIShape: the command line as Go's flag package took it still works
// on cobra: long flags with one dash, flags between and after the
// arguments, -help and --version; what a flag's value looks like is left
// alone; the shell completion sees one-dash flags too.
func TestCLIShape(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, 0o600, jobConfigText(dir, ""))
	tests := []struct {
		name   string
		args   []string
		code   int
		output string // in stdout or stderr
	}{
		{"one-dash long flag", []string{"copy", "a:", "b:", "-workers", "0"}, exitcode.Usage, "--workers 0: want 1 or more"},
		{"one-dash flag with =", []string{"copy", "-workers=0", "a:", "b:"}, exitcode.Usage, "--workers 0: want 1 or more"},
		{"flags between arguments", []string{"copy", "a:", "--workers", "0", "b:"}, exitcode.Usage, "--workers 0: want 1 or more"},
		{"a value that starts with a dash", []string{"copy", "a:", "b:", "--include", "-x", "--workers", "0"}, exitcode.Usage, "--workers 0"},
		{"-help", []string{"copy", "-help"}, exitcode.OK, "Usage: mailferry copy SRC DST [flags]"},
		{"-h", []string{"ls", "-h"}, exitcode.OK, "Usage: mailferry ls SRC [flags]"},
		{"-version", []string{"-version"}, exitcode.OK, "mailferry "},
		{"help on a command", []string{"help", "verify"}, exitcode.OK, "Usage: mailferry verify SRC DST [flags]"},
		{"run --help states the list rule", []string{"run", "--help"}, exitcode.OK, "replaces the job's list"},
		{"after --, not a flag", []string{"copy", "maildir:" + dir, "--", "-workers"}, exitcode.Usage, "has no scheme"},
		{"completion of a one-dash --config", []string{"__complete", "run", "-config", cfg, ""}, exitcode.OK, "nightly\nother\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.output) {
				t.Errorf("mailferry %q = %d, stdout %q, stderr %q; want %d and %q", tc.args, code, stdout, stderr, tc.code, tc.output)
			}
		})
	}
}
