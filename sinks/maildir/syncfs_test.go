//go:build linux

package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// newSyncfsSink is New's sink (one syncfs per Commit, for batches of any
// size: these tests commit a few files) on a recording file system:
// renames and directory fsyncs go to rec, and each syncfs records
// "syncfs" and may fail with failSyncfs.
func newSyncfsSink(t *testing.T, root string, rec *recFS, failSyncfs *error) *Sink {
	t.Helper()
	s := newFewFilesSink(t, root, rec, failSyncfs)
	s.syncfsOver = 0
	return s
}

// newFewFilesSink is New's sink as it is: syncfs for a batch of more than
// fewFiles, an fsync per file below.
func newFewFilesSink(t *testing.T, root string, rec *recFS, failSyncfs *error) *Sink {
	t.Helper()
	rec.failSyncFS = func() error { return *failSyncfs }
	s := newTestSink(t, root, rec)
	s.enableSyncFS()
	if s.syncRoot == nil {
		t.Fatal("enableSyncFS: no syncfs on Linux")
	}
	return s
}

// TestFewFilesDurabilityOrderA8 is A8's order for a batch of up to
// fewFiles messages on a sink that has syncfs (a nightly rerun's one new
// message): each file is fsynced before its rename, no syncfs, each
// directory fsynced after its renames; one file more and the batch takes
// the syncfs.
func TestFewFilesDurabilityOrderA8(t *testing.T) {
	tests := []struct {
		name       string
		n          int
		wantSyncfs bool
	}{
		{"one", 1, false},
		{"fewFiles", fewFiles, false},
		{"fewFiles+1", fewFiles + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			rec := &recFS{}
			var failSyncfs error
			s := newFewFilesSink(t, root, rec, &failSyncfs)
			var finals []string
			for i := range tt.n {
				id := put(t, s, mail.Envelope{Mailbox: "INBOX", Key: fmt.Sprintf("k%d", i)}, fmt.Sprintf("body %d", i))
				finals = append(finals, filepath.Join(root, "new", string(id)))
			}
			rec.Reset()
			commit(t, s)
			ev := rec.Events()
			syncfs, fsyncs, lastRename, dirSync := 0, 0, -1, -1
			for i, e := range ev {
				switch {
				case e == "syncfs":
					syncfs++
				case strings.HasPrefix(e, "sync "):
					fsyncs++
				case strings.HasPrefix(e, "rename "):
					lastRename = i
					if !tt.wantSyncfs && fsyncs < tt.n {
						t.Errorf("event %d %q: a rename before every file's fsync (%d of %d)", i, e, fsyncs, tt.n)
					}
				case e == "syncdir "+filepath.Join(root, "new"):
					dirSync = i
				}
			}
			if tt.wantSyncfs && (syncfs != 1 || fsyncs != 0) || !tt.wantSyncfs && (syncfs != 0 || fsyncs != tt.n) {
				t.Fatalf("%d files: %d syncfs and %d file fsyncs, want syncfs %v\n%s", tt.n, syncfs, fsyncs, tt.wantSyncfs, strings.Join(ev, "\n"))
			}
			if dirSync < lastRename {
				t.Errorf("new/ fsynced at event %d, last rename at %d", dirSync, lastRename)
			}
			for _, f := range finals {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("after Commit: %v", err)
				}
			}
		})
	}
}

// TestSyncfsDurabilityOrderA8 is A8's order for the syncfs Commit (what New
// uses on Linux): one syncfs covers every file of the batch before the
// first rename, no file is fsynced one by one, each directory is fsynced
// after its renames, and the file's mtime (set through the open file) is
// the envelope's date.
func TestSyncfsDurabilityOrderA8(t *testing.T) {
	root := t.TempDir()
	rec := &recFS{}
	var failSyncfs error
	s := newSyncfsSink(t, root, rec, &failSyncfs)
	date := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	ids := []mail.ID{
		put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "a", Flags: []mail.Flag{mail.FlagSeen}, Date: date}, "1"),
		put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "b", Date: date}, "2"),
		put(t, s, mail.Envelope{Mailbox: "New/Folder", Key: "c", Date: date}, "3"),
	}
	rec.Reset()
	commit(t, s)
	ev := rec.Events()
	syncfs, firstRename, lastRename := -1, -1, -1
	for i, e := range ev {
		switch {
		case e == "syncfs":
			if syncfs >= 0 {
				t.Errorf("second syncfs at event %d", i)
			}
			syncfs = i
		case strings.HasPrefix(e, "rename "):
			if firstRename < 0 {
				firstRename = i
			}
			lastRename = i
		case strings.HasPrefix(e, "sync "):
			t.Errorf("event %d %q: a file fsynced alone, want the batch's syncfs", i, e)
		}
	}
	if syncfs < 0 || firstRename < 0 || syncfs > firstRename {
		t.Fatalf("syncfs at event %d, first rename at %d: want syncfs first\n%s", syncfs, firstRename, strings.Join(ev, "\n"))
	}
	finals := []string{
		filepath.Join(root, "cur", string(ids[0])+":2,S"),
		filepath.Join(root, "new", string(ids[1])),
		filepath.Join(root, ".New.Folder", "new", string(ids[2])),
	}
	for _, final := range finals {
		d := -1
		for i, e := range ev {
			if e == "syncdir "+filepath.Dir(final) {
				d = i
			}
		}
		if d < lastRename {
			t.Errorf("directory of %s fsynced at event %d, last rename at %d", final, d, lastRename)
		}
		fi, err := os.Stat(final)
		if err != nil {
			t.Errorf("after Commit: %v", err)
			continue
		}
		if !fi.ModTime().Equal(date) {
			t.Errorf("%s mtime %v, want %v", final, fi.ModTime(), date)
		}
	}
	if got := tmpFiles(t, root); len(got) != 0 {
		t.Errorf("tmp/ after Commit = %q", got)
	}
	rec.Reset()
	commit(t, s) // nothing pending: no I/O, no syncfs
	if ev := rec.Events(); len(ev) != 0 {
		t.Errorf("empty Commit did %q", ev)
	}
}

// TestSyncfsFailureD2 is D2 for the syncfs Commit: when the syncfs fails,
// which file lost data is unknown, so no message of the batch is published
// (nothing renamed, tmp/ emptied), Commit fails keeping the errno, and the
// keys are free for a re-Put that then commits.
func TestSyncfsFailureD2(t *testing.T) {
	tests := []struct {
		name  string
		errno syscall.Errno
	}{
		{"EIO", syscall.EIO},
		{"ENOSPC", syscall.ENOSPC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			rec := &recFS{}
			var failSyncfs error = &os.PathError{Op: "syncfs", Path: root, Err: tt.errno}
			s := newSyncfsSink(t, root, rec, &failSyncfs)
			for _, k := range []string{"a", "b"} {
				put(t, s, mail.Envelope{Mailbox: "INBOX", Key: k}, "body "+k)
			}
			err := s.Commit(ctx)
			if err == nil || !strings.Contains(err.Error(), "2 of 2") {
				t.Fatalf("Commit = %v, want both messages failed", err)
			}
			if !errors.Is(err, tt.errno) {
				t.Errorf("Commit = %v, want errno %v kept", err, tt.errno)
			}
			if tt.errno == syscall.ENOSPC && !mail.Fatal(err) {
				t.Errorf("mail.Fatal(%v) = false, want true for ENOSPC", err)
			}
			for _, e := range rec.Events() {
				if strings.HasPrefix(e, "rename ") {
					t.Errorf("%q after a failed syncfs", e)
				}
			}
			if got := append(files(t, root, "new"), files(t, root, "cur")...); len(got) != 0 {
				t.Errorf("published after a failed syncfs: %q", got)
			}
			if got := tmpFiles(t, root); len(got) != 0 {
				t.Errorf("tmp/ after the failed Commit = %q", got)
			}
			failSyncfs = nil
			put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "a"}, "body a")
			commit(t, s)
			if got := files(t, root, "new"); len(got) != 1 {
				t.Errorf("new/ after the re-Put = %q, want 1 message", got)
			}
		})
	}
}

// TestSyncfsOnlyWhereErrorsAreReported: before Linux 5.8 syncfs(2) dropped
// write-back errors, so those kernels keep the per-file fsync (D2).
func TestSyncfsOnlyWhereErrorsAreReported(t *testing.T) {
	for release, want := range map[string]bool{
		"6.18.44-fc-v657": true, "5.8.0": true, "5.10.0-28-amd64": true,
		"5.7.19": false, "4.19.0-26-amd64": false, "3.10.0-1160.el7.x86_64": false, "": false, "garbage": false,
	} {
		if got := syncfsReportsErrors(release); got != want {
			t.Errorf("syncfsReportsErrors(%q) = %v, want %v", release, got, want)
		}
	}
}
