package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/batch"
)

// TestBatchGroupLimits: the group limits of the config file reach the
// batch's groups (sizes as copy's flags take them), and a rate that the
// group's slots cannot share out is refused.
func TestBatchGroupLimits(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       batch.Group
		err        string
	}{
		{"all limits", `match = ["imap.gmail.com"]
max_accounts = 5
max_msgs_per_sec = 20
upload_bytes_per_day = "500M"
download_bytes_per_day = 2621440000`,
			batch.Group{Name: "g", Match: []string{"imap.gmail.com"}, MaxAccounts: 5, MaxMsgsPerSec: 20, UploadBytesPerDay: 500 << 20, DownloadBytesPerDay: 2621440000}, ""},
		{"rate without max_accounts", "match = [\"h\"]\nmax_msgs_per_sec = 10", batch.Group{}, "set max_accounts"},
		{"rate below max_accounts", "match = [\"h\"]\nmax_accounts = 4\nmax_msgs_per_sec = 3", batch.Group{}, "set max_accounts"},
		{"negative budget", "match = [\"h\"]\nupload_bytes_per_day = -1", batch.Group{}, "want a size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, 0o600, "[batch.groups.g]\n"+tc.toml+"\n")
			cfg, err := loadConfig(path, &cliEnv{getenv: func(string) string { return "" }})
			var groups []batch.Group
			if err == nil {
				groups, err = cfg.groups()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("groups = %+v, %v; want an error saying %q", groups, err, tc.err)
				}
				return
			}
			if err != nil || len(groups) != 1 {
				t.Fatalf("groups = %+v, %v", groups, err)
			}
			g := groups[0]
			if g.Name != tc.want.Name || g.MaxAccounts != tc.want.MaxAccounts || g.MaxMsgsPerSec != tc.want.MaxMsgsPerSec ||
				g.UploadBytesPerDay != tc.want.UploadBytesPerDay || g.DownloadBytesPerDay != tc.want.DownloadBytesPerDay {
				t.Errorf("group = %+v, want %+v", g, tc.want)
			}
		})
	}
}

// TestTighter: a group's share tightens the batch command's own limit,
// never loosens it; 0 is no limit.
func TestTighter(t *testing.T) {
	for _, tc := range []struct{ flag, share, want int64 }{
		{0, 0, 0}, {0, 5, 5}, {10, 0, 10}, {10, 5, 5}, {3, 5, 3},
	} {
		if got := tighter(tc.flag, tc.share); got != tc.want {
			t.Errorf("tighter(%d, %d) = %d, want %d", tc.flag, tc.share, got, tc.want)
		}
	}
}

// TestSyncAccountOptions: a --mode sync account takes its state directory
// under --state-dir (none: a usage error naming the flag), its pass's
// --force, and refuses the copy-only columns.
func TestSyncAccountOptions(t *testing.T) {
	base := copyOptions{}
	base.common.workers, base.common.timeout, base.common.logFormat = 4, time.Minute, "text"
	for _, tc := range []struct {
		name, stateDir string
		row            batch.Row
		err            string
	}{
		{"state dir", "/shared/state", batch.Row{ID: "alice", Src: "maildir:/a", Dst: "maildir:/b"}, ""},
		{"no state dir", "", batch.Row{ID: "alice", Src: "maildir:/a", Dst: "maildir:/b"}, "--state-dir"},
		{"map column", "/shared/state", batch.Row{ID: "alice", Src: "maildir:/a", Dst: "maildir:/b", Map: []string{"a=b"}}, "map, since and gmail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &batchRunner{base: base, stateDir: tc.stateDir}
			o, err := r.syncAccountOptions(context.Background(), &batch.Account{Batch: "staff", Mode: batch.ModeSync, Force: true, Row: tc.row})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || exitCode(err) != exitcode.Usage {
					t.Fatalf("syncAccountOptions = %v; want a usage error saying %q", err, tc.err)
				}
				return
			}
			if err != nil || o.checkpoint != filepath.Join(tc.stateDir, "staff", "alice.sync") || !o.force || !o.common.json {
				t.Fatalf("syncAccountOptions = %+v, %v; want the state in %s/staff/alice.sync, --force, --json", o, err, tc.stateDir)
			}
		})
	}
}

// TestSyncAccountFence: a --mode sync account whose fence says no (the
// worker's hold on the account lapsed) changes neither side and fails;
// the same account without a fence then syncs both ways, so the fenced
// run recorded nothing that would make the next one skip a message.
// sync/twoway TestRunFenceStopsEveryChange checks each step of a run.
func TestSyncAccountFence(t *testing.T) {
	base := copyOptions{}
	base.common.workers, base.common.timeout, base.common.logFormat = 2, time.Minute, "text"
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeMaildir(t, a, 1, 40)
	writeMaildir(t, b, 100, 2)
	var stderr bytes.Buffer
	r := &batchRunner{base: base, stateDir: filepath.Join(dir, "state"),
		env: &cliEnv{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr, getenv: func(string) string { return "" }}}
	acct := &batch.Account{Batch: "staff", Mode: batch.ModeSync, Row: batch.Row{ID: "alice", Src: "maildir:" + a, Dst: "maildir:" + b}}
	errLapsed := errors.New("the account's lease lapsed")
	asked := 0
	acct.Fence = func() error { asked++; return errLapsed }
	out := r.RunAccount(context.Background(), acct)
	if out.ExitCode == exitcode.OK || !strings.Contains(out.Error, errLapsed.Error()) || asked == 0 {
		t.Fatalf("fenced sync = %+v (fence asked %d times); want a failure naming the fence", out, asked)
	}
	if na, nb := len(maildirSubjects(t, a)), len(maildirSubjects(t, b)); na != 40 || nb != 2 {
		t.Fatalf("after the fenced sync A holds %d, B %d; want 40 and 2, unchanged", na, nb)
	}
	acct.Fence = nil
	if out := r.RunAccount(context.Background(), acct); out.ExitCode != exitcode.OK || out.Totals.Copied != 42 {
		t.Fatalf("sync after the fenced one = %+v\n%s; want done, 42 copied", out, stderr.String())
	}
	if na, nb := len(maildirSubjects(t, a)), len(maildirSubjects(t, b)); na != 42 || nb != 42 {
		t.Errorf("after the sync A holds %d, B %d; want 42 each", na, nb)
	}
}
