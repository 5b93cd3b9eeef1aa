package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestB5ByteBudgetCLI: --max-bytes (or max_bytes in a job) stops a run
// cleanly once the next message would go over it: exit 8 with one line
// naming the budget, everything stored so far recorded. Each rerun goes on
// from the checkpoint, and in the end every message is stored exactly once.
func TestB5ByteBudgetCLI(t *testing.T) {
	for _, tc := range []struct {
		name string
		job  bool
	}{{"flag", false}, {"config key", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFakeWorld()
			var fx []mailtest.Fixture
			for i := range 10 {
				head := fmt.Sprintf("Subject: %d\r\n\r\n", i)
				fx = append(fx, mailtest.Fixture{Mailbox: "INBOX", Body: []byte(head + strings.Repeat("x", 1000-len(head)))})
			}
			w.fixtures["a"] = fx
			pc := &putCounter{}
			w.failPut = pc.fail
			dir := t.TempDir()
			cp := filepath.Join(dir, "cp.jsonl")
			args := []string{"copy", "mem:a", "memsink:b", "--checkpoint", cp, "--max-bytes", "3500", "--json"}
			if tc.job {
				cfg := writeConfig(t, 0o600, fmt.Sprintf("[jobs.a]\nsource = \"mem:a\"\ndestination = \"memsink:b\"\ncheckpoint = %q\nmax_bytes = 3500\n", cp))
				args = []string{"run", "a", "--config", cfg, "--json"}
			}
			runs := 0
			for ; runs < 6; runs++ {
				code, stdout, stderr := w.cli(context.Background(), t, nil, args...)
				s := jsonSummary(t, stdout)
				if code == 0 {
					if s.Counts.Stored != 1 {
						t.Errorf("last run stored %d, want the 1 left", s.Counts.Stored)
					}
					break
				}
				if code != exitcode.Temporary || !strings.Contains(lastLine(stderr), "--max-bytes") || !strings.Contains(lastLine(stderr), "rerun later") {
					t.Fatalf("run %d = %d, stderr %q; want %d naming --max-bytes", runs+1, code, stderr, exitcode.Temporary)
				}
				if s.Counts.Stored != 3 || s.Totals.Bytes > 3500 || s.ExitCode != exitcode.Temporary || s.Counts.Failed != 0 {
					t.Errorf("run %d: stored %d (%d bytes), exit %d, failed %d; want 3 within 3500 bytes, 8, 0", runs+1, s.Counts.Stored, s.Totals.Bytes, s.ExitCode, s.Counts.Failed)
				}
			}
			if runs+1 != 4 {
				t.Errorf("took %d runs, want 4", runs+1)
			}
			pc.once(t, 10)
		})
	}
}
