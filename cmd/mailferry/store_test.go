package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// oldCheckpoint turns the checkpoint at cp into what an older mailferry
// left: every record in the JSON Lines file at cp, no state.
func oldCheckpoint(t *testing.T, cp, src, dst string) int {
	t.Helper()
	recs := checkpointRecords(t, cp)
	if err := os.RemoveAll(statePath(cp)); err != nil {
		t.Fatal(err)
	}
	f, err := checkpoint.Open(cp, src, dst, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := f.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// TestOldCheckpointMigrated (issue 11 item 3): a checkpoint file of an
// older mailferry is read as it is by a dry run (which creates no state),
// migrated by the first real run (which downloads only what is new), and
// never read again: garbled afterwards, it changes nothing.
func TestOldCheckpointMigrated(t *testing.T) {
	src, reg := a9World(t)
	dir := t.TempDir()
	md, cp := filepath.Join(dir, "out"), filepath.Join(dir, "cp.jsonl")
	args := []string{"copy", "a9src:box", "maildir:" + md, "--checkpoint", cp}
	if code, stderr := a9CLI(t, reg, args...); code != 0 {
		t.Fatalf("first run exited %d: %s", code, stderr)
	}
	// The canonical endpoint names, as the state recorded them.
	st := readSummaryEnds(t, cp)
	if n := oldCheckpoint(t, cp, st.A, st.B); n != 6 {
		t.Fatalf("old checkpoint holds %d records, want 6", n)
	}
	src.Add(mailtest.Fixture{Mailbox: "INBOX", Body: []byte("Subject: new\r\n\r\narrived before the upgrade\r\n")})

	opens := src.Opens.Load()
	code, stderr := a9CLI(t, reg, append(args, "--dry-run", "--log-level", "debug")...)
	if code != 0 || src.Opens.Load() != opens {
		t.Fatalf("dry run on the old file: exit %d, %d downloads: %s", code, src.Opens.Load()-opens, stderr)
	}
	if _, err := os.Stat(statePath(cp)); err == nil {
		t.Fatal("the dry run created the state: it must write nothing")
	}

	if code, stderr := a9CLI(t, reg, args...); code != 0 || !strings.Contains(stderr, "migrated") {
		t.Fatalf("run on the old file: exit %d, stderr %q; want 0 and the migration logged", code, stderr)
	}
	if n := src.Opens.Load() - opens; n != 1 {
		t.Errorf("the migrating run downloaded %d messages, want 1 (the new one)", n)
	}
	if n := len(checkpointRecords(t, cp)); n != 7 {
		t.Errorf("the state holds %d records, want 7", n)
	}

	if err := os.WriteFile(cp, []byte("\x00garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opens = src.Opens.Load()
	if code, stderr := a9CLI(t, reg, args...); code != 0 || src.Opens.Load() != opens {
		t.Errorf("run after the old file was garbled: exit %d, %d downloads (%s); want 0, 0: the old file is never read again", code, src.Opens.Load()-opens, stderr)
	}
	if a9Stored(t, md) != 7 {
		t.Errorf("the Maildir holds %d messages, want 7", a9Stored(t, md))
	}
}

// TestResetIsNotUndoneByTheOldFile: after --reset (or --rebuild-state) the
// old checkpoint file is marked as never to be migrated, so a later run
// does not bring back the records the reset forgot.
func TestResetIsNotUndoneByTheOldFile(t *testing.T) {
	for _, reset := range []bool{false, true} {
		cp := filepath.Join(t.TempDir(), "cp.jsonl")
		f, err := checkpoint.Open(cp, "a", "b", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Add(checkpoint.Record{Mailbox: "INBOX", ID: "1", Dst: "x"}); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.DiscardHandler)
		store, fresh, err := openStore(cp, reset, "a", "b", log)
		if err != nil {
			t.Fatal(err)
		}
		if fresh != reset {
			t.Errorf("reset %v: fresh = %v", reset, fresh)
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		store, fresh, err = openStore(cp, false, "a", "b", log)
		if err != nil {
			t.Fatal(err)
		}
		if has := store.Has(checkpoint.Key{Mailbox: "INBOX", ID: "1"}); has == reset || fresh != reset {
			t.Errorf("reset %v, then a plain open: the old record is known: %v, fresh %v", reset, has, fresh)
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
