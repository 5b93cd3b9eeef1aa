package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
)

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestREADMEConfigsParse: the config examples of the README are valid
// config files (the OAuth2 one is a table of a job, completed here).
func TestREADMEConfigsParse(t *testing.T) {
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(readme(t), -1)
	if len(blocks) < 3 {
		t.Fatalf("README has %d toml blocks, want the three stories' and OAuth2's", len(blocks))
	}
	var all strings.Builder
	for _, b := range blocks {
		text := b[1]
		if strings.Contains(text, "src_oauth2]") {
			text = "[jobs.gmail]\nsource = \"imaps://alice@gmail.com@imap.gmail.com\"\ndestination = \"maildir:~/Mail/gmail\"\n" + text
		}
		all.WriteString(text + "\n")
	}
	cfg := writeConfig(t, 0o600, all.String())
	w := newFakeWorld()
	code, stdout, stderr := w.cli(context.Background(), t, nil, "jobs", "--names", "--config", cfg)
	if code != 0 || stdout != "pop-backup\nmove\ngmail\n" {
		t.Errorf("jobs on the README's examples = %d %q %q", code, stdout, stderr)
	}
}

// TestExitCodesDocumented: every exit code is in the README's table and in
// the table --help prints.
func TestExitCodesDocumented(t *testing.T) {
	text := readme(t)
	for _, code := range []int{exitcode.OK, exitcode.Unexpected, exitcode.Usage, exitcode.Partial, exitcode.Auth, exitcode.Unreachable, exitcode.Checkpoint, exitcode.Locked, exitcode.HeldBack, exitcode.Interrupted} {
		if !strings.Contains(text, fmt.Sprintf("| %d | ", code)) {
			t.Errorf("README's exit code table lacks %d", code)
		}
		if !regexp.MustCompile(fmt.Sprintf(`(?m)(^|\s)%d\s{2,}\S`, code)).MatchString(exitCodeTable) {
			t.Errorf("exitCodeTable lacks %d", code)
		}
	}
}
