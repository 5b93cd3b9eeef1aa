package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// writeCheckpoint writes a checkpoint with the current sync/checkpoint code:
// two mailboxes, records with and without flags, Message-ID hash and date.
func writeCheckpoint(t *testing.T, path string) []checkpoint.Record {
	t.Helper()
	seen, none := `\Seen $Label1`, ""
	recs := []checkpoint.Record{
		{Mailbox: "INBOX", ID: "42.1", Dst: "1700000000.M1P2.host,U=1,MF=ab:2,S", Size: 1234, SHA256: "aa", MsgID: checkpoint.MsgIDSum("<a@x>"), Date: 1700000000, Flags: &seen},
		{Mailbox: "INBOX", ID: "42.2", Dst: "1700000001.M1P2.host", Size: 99, Flags: &none},
		{Mailbox: "INBOX", ID: "42.3", Dst: "", Size: -1},
		{Mailbox: "Sent/Ü", ID: "7.1", Dst: "x", Size: 5, MsgID: checkpoint.MsgIDSum("<b@x>")},
		{Mailbox: "INBOX", ID: "42.1", Dst: "1700000000.M1P2.host,U=1,MF=ab:2,S", Size: 1234, SHA256: "aa", MsgID: checkpoint.MsgIDSum("<a@x>"), Date: 1700000000, Flags: &none},
	}
	cp, err := checkpoint.Open(path, epA, epB, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := cp.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	return recs[1:] // the last record of 42.1 replaces the first
}

func TestMigrate(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string) (func(), []checkpoint.Record)
		wantErr error
	}{
		{"whole checkpoint", func(t *testing.T, path string) (func(), []checkpoint.Record) {
			return func() {}, writeCheckpoint(t, path)
		}, nil},
		{"torn last line", func(t *testing.T, path string) (func(), []checkpoint.Record) {
			recs := writeCheckpoint(t, path)
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(`{"m":"INBOX","id":"42.`)
			f.Close()
			return func() {}, recs
		}, nil},
		{"no checkpoint", func(t *testing.T, path string) (func(), []checkpoint.Record) { return func() {}, nil }, nil},
		{"checkpoint of other endpoints", func(t *testing.T, path string) (func(), []checkpoint.Record) {
			cp, _ := checkpoint.Open(path, "pop3://bob@x", epB, false)
			cp.Close()
			return func() {}, nil
		}, checkpoint.ErrUnusable},
		{"a copy is running on it", func(t *testing.T, path string) (func(), []checkpoint.Record) {
			writeCheckpoint(t, path)
			cp, err := checkpoint.Open(path, epA, epB, false)
			if err != nil {
				t.Fatal(err)
			}
			return func() { cp.Close() }, nil
		}, checkpoint.ErrLocked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cpPath := filepath.Join(t.TempDir(), "cp.jsonl")
			done, want := tc.prepare(t, cpPath)
			defer done()
			dir := filepath.Join(t.TempDir(), "st")
			s := openT(t, dir)
			defer s.Close()
			n, err := Migrate(s, cpPath, epA, epB)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Migrate = %d, %v; want %v", n, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if n != len(want) {
				t.Fatalf("Migrate = %d records, want %d", n, len(want))
			}
			s.Close()
			s = openT(t, dir)
			checkMigrated(t, s, cpPath, want)
			if n, err := Migrate(s, cpPath, epA, epB); n != 0 || err != nil {
				t.Fatalf("second Migrate = %d, %v; want 0, nil", n, err)
			}
		})
	}
}

// checkMigrated checks that s holds every checkpoint record, field for
// field, so a run on s finds every message the checkpoint knew (and
// downloads none of them again).
func checkMigrated(t *testing.T, s *State, cpPath string, want []checkpoint.Record) {
	t.Helper()
	var mtime int64
	if fi, err := os.Stat(cpPath); err == nil {
		mtime = fi.ModTime().Unix()
		if s.Migrated() != cpPath {
			t.Fatalf("Migrated = %q, want %q", s.Migrated(), cpPath)
		}
	}
	total := 0
	for _, box := range s.Folders() {
		f := folderT(t, s, box)
		total += f.Len()
		if sum, _ := s.Summary(box); !sum.FullDue(DefaultFullEvery) {
			t.Fatalf("a migrated folder %s has pass state %+v: its first pass must list in full", box, sum)
		}
	}
	if total != len(want) {
		t.Fatalf("state holds %d records, the checkpoint %d", total, len(want))
	}
	for _, r := range want {
		m, ok := folderT(t, s, r.Mailbox).Get(r.ID)
		exp := Message{Src: r.ID, Dst: r.Dst, Size: r.Size, Date: r.Date, MsgID: r.MsgID, SHA256: r.SHA256, Stored: mtime}
		if r.Flags != nil {
			exp.Flags, exp.FlagsKnown = *r.Flags, true
		}
		if !ok || m != exp {
			t.Errorf("%s/%s: %+v, %v; want %+v", r.Mailbox, r.ID, m, ok, exp)
		}
	}
}

// TestMigrateResumes: a migration cut after some folders (no Migrated
// mark) is run again to the same result.
func TestMigrateResumes(t *testing.T) {
	cpPath := filepath.Join(t.TempDir(), "cp.jsonl")
	want := writeCheckpoint(t, cpPath)
	dir := t.TempDir()
	s := openT(t, dir)
	f := folderT(t, s, "INBOX") // what a cut migration left: part of one folder
	f.Put(Message{Src: mail.ID("42.2"), Dst: "stale"})
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	if _, err := Migrate(s, cpPath, epA, epB); err != nil {
		t.Fatal(err)
	}
	checkMigrated(t, s, cpPath, want)
}
