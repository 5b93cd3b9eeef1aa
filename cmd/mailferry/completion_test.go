package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletionScripts: each script is valid for its shell and completes
// commands, flags and job names (asked of 'mailferry jobs --names').
func TestCompletionScripts(t *testing.T) {
	w := newFakeWorld()
	dir := t.TempDir()
	// A stand-in mailferry, so the test needs no built binary: it answers
	// 'jobs --names' like the real one.
	fake := "if [ \"$1\" = jobs ]; then printf 'nightly\\nweekly\\n'; fi\n"
	tests := []struct {
		shell  string
		check  []string // syntax check
		script string   // a completion request, after the script is loaded
		want   []string
	}{
		{"bash", []string{"bash", "-n"},
			`mailferry() { ` + fake + ` }
COMP_WORDS=(mailferry run ""); COMP_CWORD=2; _mailferry; echo "${COMPREPLY[*]}"
COMP_WORDS=(mailferry co); COMP_CWORD=1; _mailferry; echo "${COMPREPLY[*]}"
COMP_WORDS=(mailferry run --sin); COMP_CWORD=2; _mailferry; echo "${COMPREPLY[*]}"
COMP_WORDS=(mailferry copy --progress ""); COMP_CWORD=3; _mailferry; echo "${COMPREPLY[*]}"`,
			[]string{"nightly weekly", "copy completion", "--since", "auto always never"}},
		{"fish", []string{"fish", "--no-execute"},
			`function mailferry; if test "$argv[1]" = jobs; echo nightly; echo weekly; end; end
complete -C "mailferry run " | string join " "
complete -C "mailferry run --progress-i" | string replace -r '\t.*' ''`,
			[]string{"nightly weekly", "--progress-interval"}},
		{"zsh", []string{"zsh", "-n"}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.shell, func(t *testing.T) {
			if _, err := exec.LookPath(tc.shell); err != nil {
				t.Skipf("%s is not installed", tc.shell)
			}
			code, stdout, stderr := w.cli(t, context.Background(), nil, "completion", tc.shell)
			if code != 0 || stderr != "" {
				t.Fatalf("completion %s = %d %q", tc.shell, code, stderr)
			}
			file := filepath.Join(dir, "mailferry."+tc.shell)
			if err := os.WriteFile(file, []byte(stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(tc.check[0], append(tc.check[1:], file)...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", tc.check, err, out)
			}
			if tc.script == "" {
				return
			}
			out, err := exec.Command(tc.shell, "-c", "source "+file+"\n"+tc.script).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.shell, err, out)
			}
			got := strings.Split(strings.TrimSpace(string(out)), "\n")
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("completions = %q, want %q", got, tc.want)
			}
		})
	}
	if code, _, stderr := w.cli(t, context.Background(), nil, "completion", "tcsh"); code != exitUsage || !strings.Contains(stderr, "bash, zsh or fish") {
		t.Errorf("completion tcsh = %d %q", code, stderr)
	}
}

// TestHelpTopics: 'mailferry help TOPIC' prints each topic; the exit-code
// table is the same in help and in every command's --help.
func TestHelpTopics(t *testing.T) {
	w := newFakeWorld()
	for topic, want := range map[string]string{
		"config":     "[jobs.pop-backup]",
		"cron":       "OnCalendar=",
		"filters":    "--since DATE",
		"oauth2":     "XOAUTH2",
		"exit-codes": "7    another mailferry run holds the checkpoint",
	} {
		code, stdout, _ := w.cli(t, context.Background(), nil, "help", topic)
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("help %s = %d, lacks %q:\n%s", topic, code, want, stdout)
		}
	}
	code, _, stderr := w.cli(t, context.Background(), nil, "help", "nope")
	if code != exitUsage || !strings.Contains(stderr, "topics: config, cron, exit-codes, filters, gmail, oauth2") {
		t.Errorf("help nope = %d %q", code, stderr)
	}
	for _, cmd := range []string{"run", "jobs", "completion"} {
		code, stdout, _ := w.cli(t, context.Background(), nil, cmd, "--help")
		if code != 0 || !strings.Contains(stdout, "Usage: mailferry "+cmd) || !strings.Contains(stdout, exitCodeTable) {
			t.Errorf("%s --help = %d:\n%s", cmd, code, stdout)
		}
	}
}

// TestHelpConfigExampleParses: the example config of 'help config' (and
// the README) is a valid config file.
func TestHelpConfigExampleParses(t *testing.T) {
	var lines []string
	for _, l := range strings.Split(helpConfig, "\n") {
		if strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "  mailferry") {
			lines = append(lines, l[2:])
		}
		if strings.HasPrefix(l, "Job keys") {
			break
		}
	}
	cfg := writeConfig(t, 0o600, strings.Join(lines, "\n"))
	w := newFakeWorld()
	code, stdout, stderr := w.cli(t, context.Background(), nil, "jobs", "--names", "--config", cfg)
	if code != 0 || stdout != "pop-backup\nmove\n" {
		t.Errorf("jobs on the example = %d %q %q", code, stdout, stderr)
	}
}
