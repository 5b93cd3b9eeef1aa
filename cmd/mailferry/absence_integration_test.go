package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// Lost state and lost destinations (docs/failure-model.md A9, A10, design rule
// 5: "never hard-delete on the strength of absence"), through the real
// binary against Dovecot's POP3, the one source that deletes.

// absenceSetup seeds a fresh maildrop with 6 messages and copies it once in
// leave mode into dir/out, recording dir/cp.jsonl.
func absenceSetup(t *testing.T, d *mailtest.Dovecot) (fp *faultPipe, dir string, args func(extra ...string) []string) {
	t.Helper()
	fp = &faultPipe{d: d, scheme: "pop3s", target: d.POP3S}
	fp.user, fp.pw = d.NewUser(t)
	seed := crashCorpus()[:6]
	fp.boxes = map[string][]mailtest.SeedMessage{"INBOX": seed}
	fp.want = map[string]map[[32]byte]int{"INBOX": multiset(seed)}
	d.Seed(t, fp.user, fp.pw, "INBOX", seed)
	dir = t.TempDir()
	args = func(extra ...string) []string {
		return append([]string{"copy", "pop3s://" + fp.user + "@" + d.POP3S, "maildir:" + filepath.Join(dir, "out"),
			"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--ca-file", d.CAFile, "--progress", "never", "--json"}, extra...)
	}
	if r := runBinLimit(t, runLimit, fp.env(), args()...); r.code != 0 {
		t.Fatalf("first copy exited %d: %s", r.code, r.stderr)
	}
	return fp, dir, args
}

// TestA10LostDestinationNoDelete covers A10: the checkpoint says 6 messages
// are stored, but the destination was removed, replaced by an empty
// directory (an unmounted mount point) or by a dangling symlink. A run in
// delete mode must not delete anything from the server: its only evidence
// that the mail is safe is gone.
func TestA10LostDestinationNoDelete(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, out string)
	}{
		{"Removed", func(t *testing.T, out string) { os.RemoveAll(out) }},
		{"EmptyDirectory", func(t *testing.T, out string) { os.RemoveAll(out); os.Mkdir(out, 0o700) }},
		{"DanglingSymlink", func(t *testing.T, out string) {
			os.RemoveAll(out)
			if err := os.Symlink(out+".unmounted", out); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fp, dir, args := absenceSetup(t, d)
			tc.lose(t, filepath.Join(dir, "out"))
			r := runBinLimit(t, runLimit, fp.env(), args("--delete-source")...)
			left := fp.onServer(t)
			n := 0
			for _, k := range left {
				n += k
			}
			t.Logf("delete-mode run on a lost destination: exit %d, %d of 6 messages left on the server: %s", r.code, n, lastLine(r.stderr))
			if n != 6 {
				t.Errorf("rule 5 / A10: the server deleted %d message(s) that are stored nowhere (the destination is gone, only the checkpoint remembers them)", 6-n)
			}
			if r.code == 0 {
				t.Errorf("the run exited 0; want a refusal naming the destination and the checkpoint")
			}
		})
	}
}

// TestA9LostCheckpoint covers A9 with a full destination: a deleted or
// emptied checkpoint is rebuilt from the Maildir sink's keys (",MF=<key>"
// in file names), so the rerun downloads and stores nothing again, and a
// delete-mode rerun deletes only what the Maildir holds. A corrupt
// checkpoint is refused with exit 6 naming the file, and nothing is
// deleted.
func TestA9LostCheckpoint(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct {
		name   string
		damage string // damageCheckpoint
		delete bool
		code   int
	}{
		{"Deleted", "deleted", false, 0},
		{"Truncated", "emptied", false, 0},
		{"DeletedDeleteMode", "deleted", true, 0},
		{"Garbage", "garbage", true, exitcode.Checkpoint},
		{"TornHeader", "torn-summary", true, -2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fp, dir, args := absenceSetup(t, d)
			cp := filepath.Join(dir, "cp.jsonl")
			damageCheckpoint(t, cp, tc.damage)
			var extra []string
			if tc.delete {
				extra = append(extra, "--delete-source")
			}
			r := runBinLimit(t, runLimit, fp.env(), args(extra...)...)
			switch {
			case tc.code == -2:
				// A cut inside the header or the records: either refused (6)
				// or a dropped torn tail; never anything else.
				if r.code != 0 && r.code != exitcode.Checkpoint {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
			case r.code != tc.code:
				t.Fatalf("exit %d, want %d: %s", r.code, tc.code, r.stderr)
			}
			if r.code == exitcode.Checkpoint && !strings.Contains(lastLine(r.stderr), cp) {
				t.Errorf("the refusal %q does not name the checkpoint file", lastLine(r.stderr))
			}
			got := stored(t, dir, true)["INBOX"]
			if !sameMultiset(got, fp.want["INBOX"]) {
				t.Errorf("the Maildir holds %v, want each of the 6 messages exactly once", got)
			}
			left := fp.onServer(t)
			switch {
			case tc.delete && r.code == 0 && len(left) != 0:
				t.Errorf("the delete-mode rerun left %d messages on the server", len(left))
			case r.code != 0 && !sameMultiset(left, fp.want["INBOX"]):
				t.Errorf("a refused run changed the server")
			}
			if tc.code == 0 {
				// The empty checkpoint was rebuilt from the Maildir's keys:
				// nothing is downloaded again.
				if n := copiedCount(t, r.stdout); n != 0 {
					t.Errorf("the rerun copied %d message(s), want 0", n)
				}
			}
		})
	}
}

// TestC4RenumberedMaildrop covers C4: between two sessions another client
// deletes message 1, so every message number shifts. A delete-mode run must
// resolve its DELEs by UIDL in the new session: the recorded messages go,
// and a new message it did not store (over --max-size, so skipped) stays.
func TestC4RenumberedMaildrop(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	fp, dir, args := absenceSetup(t, d)
	fetched := d.Fetch(t, fp.user, fp.pw)["INBOX"]
	d.Doveadm(t, "expunge", "-u", fp.user, "mailbox", "INBOX", "uid", fmt.Sprint(fetched[0].UID))
	big := mailtest.SeedMessage{Body: append([]byte("Subject: big, not stored\r\n\r\n"), mailtest.Big(64<<10)...)}
	d.Seed(t, fp.user, fp.pw, "INBOX", []mailtest.SeedMessage{big})
	r := runBinLimit(t, runLimit, fp.env(), args("--delete-source", "--max-size", "32K")...)
	if r.code != 0 && r.code != exitcode.Partial {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	left := fp.onServer(t)
	if want := multiset([]mailtest.SeedMessage{big}); !sameMultiset(left, want) {
		t.Errorf("the server holds %d message(s) %v; want only the unstored big one", len(left), left)
	}
	if got := stored(t, dir, true)["INBOX"]; !sameMultiset(got, fp.want["INBOX"]) {
		t.Errorf("the Maildir holds %v, want the 6 messages of the first run once each", got)
	}
}
