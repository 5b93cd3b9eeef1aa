package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// traceLogins counts the logins (LOGIN or AUTHENTICATE) per side in a
// --trace of the CLI.
func traceLogins(trace string) map[string]int {
	n := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^trace (\w+) C: \S+ (?:LOGIN|AUTHENTICATE) `).FindAllStringSubmatch(trace, -1) {
		n[m[1]]++
	}
	return n
}

// noopLogins is how often a no-op sync logs in per IMAP side: the
// source's control connection, which lists the folders and their
// statuses (LIST-STATUS). The sink that writes nothing never connects.
const noopLogins = 1

// TestDovecotSyncNoopLogins: a sync that finds nothing changed (both
// sides IMAP, two folders) logs in noopLogins times per side and selects
// no folder (issue 12's no-op target). Before the lazy sink, the deferred
// PERMANENTFLAGS read and the statuses on the control connection it
// logged in three times per side (this test's negative control: with an
// eager sink it fails on the counts).
func TestDovecotSyncNoopLogins(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	userA, pwA := d.NewUser(t)
	userB, pwB := d.NewUser(t)
	for i, box := range []string{"INBOX", "Work"} {
		var seed []mailtest.SeedMessage
		for j := 1; j <= 3; j++ {
			seed = append(seed, mailtest.SeedMessage{Body: fmt.Appendf(nil, "Message-ID: <%d.%d@logins.test>\r\nSubject: %d\r\n\r\nbody\r\n", i, j, j),
				Date: time.Date(2025, 1, j, 0, 0, 0, 0, time.UTC)})
		}
		d.Seed(t, userA, pwA, box, seed)
	}
	base := t.TempDir()
	pwFileA, pwFileB := filepath.Join(base, "pwa"), filepath.Join(base, "pwb")
	for f, pw := range map[string]string{pwFileA: pwA, pwFileB: pwB} {
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"sync", "imaps://" + userA + "@" + d.IMAPS, "imaps://" + userB + "@" + d.IMAPS,
		"--src-password-file", pwFileA, "--dst-password-file", pwFileB, "--ca-file", d.CAFile,
		"--checkpoint", filepath.Join(base, "state"), "--trace"}
	// The first sync copies; the second lists the first's own copies as
	// changes of known messages (it recorded the statuses read before
	// them); the third finds nothing changed.
	var trace string
	for run := 1; run <= 3; run++ {
		code, stdout, stderr := syncCLI(t, args...)
		if code != 0 {
			t.Fatalf("sync %d = %d\n%s%s", run, code, stdout, stderr)
		}
		trace = stderr
	}
	if got := traceLogins(trace); got["src"] != noopLogins || got["dst"] != noopLogins {
		t.Errorf("the no-op sync logged in %v times per side, want %d each:\n%s", got, noopLogins, trace)
	}
	if strings.Contains(trace, " SELECT ") || strings.Contains(trace, " EXAMINE ") {
		t.Errorf("the no-op sync selected a folder:\n%s", trace)
	}
}

// TestTraceLogins: the counter the test above relies on finds both forms
// of login and tells the sides apart.
func TestTraceLogins(t *testing.T) {
	trace := "trace src C: T1 AUTHENTICATE PLAIN <redacted>\ntrace dst C: a1 LOGIN <redacted>\n" +
		"trace src C: L1 AUTHENTICATE PLAIN <redacted>\ntrace src C: T2 NAMESPACE\n"
	if got := traceLogins(trace); got["src"] != 2 || got["dst"] != 1 {
		t.Fatalf("traceLogins = %v", got)
	}
}
