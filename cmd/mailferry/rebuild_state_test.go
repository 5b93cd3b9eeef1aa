package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sinks/maildir"
	"github.com/mailferry/mailferry/sinks/mbox"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// a9Source is a MemSource that outlives the CLI's Close, so that one
// maildrop serves several runs and counts their downloads (Opens).
type a9Source struct{ *mailtest.MemSource }

func (a9Source) Close() error { return nil }

// a9World is a maildrop of 6 messages behind the scheme "a9src:", with the
// Maildir and mbox sinks.
func a9World(t *testing.T) (*mailtest.MemSource, *mail.Registry) {
	t.Helper()
	var fx []mailtest.Fixture
	for i := range 6 {
		fx = append(fx, mailtest.Fixture{Mailbox: "INBOX", Body: []byte(fmt.Sprintf("Subject: a9 %d\r\nMessage-ID: <a9-%d@x>\r\n\r\nbody %d\r\n", i, i, i))})
	}
	src := mailtest.NewMemSource(fx)
	reg := mail.NewRegistry()
	reg.AddSource("a9src", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Source, error) {
		return a9Source{src}, nil
	})
	maildir.Register(reg)
	mbox.Register(reg)
	return src, reg
}

func a9CLI(t *testing.T, reg *mail.Registry, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, reg: reg}
	return runEnv(context.Background(), append(args, "--progress", "never"), e), errb.String()
}

// a9Stored counts the message files in the Maildir's new/ and cur/.
func a9Stored(t *testing.T, md string) int {
	t.Helper()
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(md, sub))
		n += len(ents)
	}
	return n
}

// TestA9RebuildState covers A9's rebuild: after a completed run the
// checkpoint is deleted, emptied, cut at random or filled with garbage. A
// corrupt one is refused with exit 6, naming the file and --rebuild-state,
// and nothing is downloaded or deleted. --rebuild-state then rescans the
// destination (the ",MF=<key>" field of Maildir names): the run downloads
// nothing (0 Opens), stores nothing twice, and in delete mode deletes the
// 6 messages the destination holds; a further plain run downloads nothing
// either. A message new on the source is the only one downloaded.
func TestA9RebuildState(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  string // damageCheckpoint
		corrupt bool   // refused without --rebuild-state
		delete  bool
	}{
		{"Deleted", "deleted", false, false},
		{"DeletedDeleteMode", "deleted", false, true},
		{"Emptied", "emptied", false, true},
		{"Garbage", "garbage", true, true},
		{"CorruptMiddleLine", "corrupt-record", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, reg := a9World(t)
			dir := t.TempDir()
			md, cp := filepath.Join(dir, "out"), filepath.Join(dir, "cp.jsonl")
			args := []string{"copy", "a9src:box", "maildir:" + md, "--checkpoint", cp}
			if code, stderr := a9CLI(t, reg, args...); code != 0 {
				t.Fatalf("first run exited %d: %s", code, stderr)
			}
			src.Add(mailtest.Fixture{Mailbox: "INBOX", Body: []byte("Subject: new\r\n\r\narrived after the damage\r\n")})
			damageCheckpoint(t, cp, tc.damage)
			if tc.delete {
				args = append(args, "--delete-source")
			}
			opens := src.Opens.Load()
			if tc.corrupt {
				code, stderr := a9CLI(t, reg, args...)
				if code != exitcode.Checkpoint || !strings.Contains(stderr, cp) || !strings.Contains(stderr, "--rebuild-state") {
					t.Fatalf("run on a corrupt checkpoint: exit %d, stderr %q; want %d naming %s and --rebuild-state", code, stderr, exitcode.Checkpoint, cp)
				}
				if n := src.Opens.Load() - opens; n != 0 || len(src.Removed) != 0 {
					t.Fatalf("the refused run downloaded %d and deleted %d messages", n, len(src.Removed))
				}
			}
			code, stderr := a9CLI(t, reg, append(args, "--rebuild-state")...)
			if code != 0 {
				t.Fatalf("--rebuild-state run exited %d: %s", code, stderr)
			}
			if n := src.Opens.Load() - opens; n != 1 {
				t.Errorf("the rebuild run downloaded %d messages, want 1 (the new one): the other 6 are in the destination", n)
			}
			if n := a9Stored(t, md); n != 7 {
				t.Errorf("the Maildir holds %d messages, want 7 (6 once each, and the new one)", n)
			}
			if left := src.Len("INBOX"); tc.delete && left != 0 {
				t.Errorf("delete mode left %d messages on the source", left)
			}
			opens = src.Opens.Load()
			if code, stderr := a9CLI(t, reg, args...); code != 0 {
				t.Fatalf("plain rerun exited %d: %s", code, stderr)
			}
			if n := src.Opens.Load() - opens; n != 0 {
				t.Errorf("a rerun after the rebuild downloaded %d messages, want 0", n)
			}
			recs := checkpointRecords(t, cp)
			if len(recs) != 7 {
				t.Errorf("the rebuilt checkpoint holds %d records, want 7:\n%+v", len(recs), recs)
			}
			// Rebuilt records are as complete as copied ones: the content
			// hash of the stored copy, so a later identifier reset can
			// re-map them (A2: the state equals an uninterrupted run's).
			for _, r := range recs {
				if len(r.SHA256) != 64 {
					t.Errorf("record %+v: no content hash", r)
				}
			}
		})
	}
}

// TestA9RebuildStateNeedsIndex: a destination that cannot list what it
// stored is refused before the checkpoint is touched.
func TestA9RebuildStateNeedsIndex(t *testing.T) {
	_, reg := a9World(t)
	dir := t.TempDir()
	cp := filepath.Join(dir, "cp.jsonl")
	args := []string{"copy", "a9src:box", "mbox:" + filepath.Join(dir, "out"), "--checkpoint", cp}
	if code, stderr := a9CLI(t, reg, args...); code != 0 {
		t.Fatalf("first run exited %d: %s", code, stderr)
	}
	before := checkpointBytes(t, cp)
	code, stderr := a9CLI(t, reg, append(args, "--rebuild-state")...)
	if code != 2 || !strings.Contains(stderr, "--rebuild-state") {
		t.Fatalf("--rebuild-state into mbox: exit %d %q, want 2 naming the flag", code, stderr)
	}
	if after := checkpointBytes(t, cp); before != after {
		t.Errorf("the refused run changed the checkpoint")
	}
}
