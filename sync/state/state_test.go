package state

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

const epA, epB = "imaps://alice@example.org", "maildir:/tmp/x"

func openT(t testing.TB, dir string) *State {
	t.Helper()
	s, err := Open(dir, epA, epB, Options{Now: fixedNow})
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	return s
}

func fixedNow() time.Time { return time.Unix(1_800_000_000, 0) }

func folderT(t testing.TB, s *State, name string) *Folder {
	t.Helper()
	f, err := s.Folder(name)
	if err != nil {
		t.Fatalf("Folder(%q) = %v", name, err)
	}
	return f
}

func TestRecordsSurviveReopen(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
	}{
		{"plain", Message{Src: "7.1", Dst: "d1", Flags: `\Seen \Flagged`, FlagsKnown: true, Size: 10, Date: 1700000000, MsgID: "0011223344556677", SHA256: "ab", Stored: 5}},
		{"flags unknown", Message{Src: "7.2", Size: -1}},
		{"flags known empty", Message{Src: "7.3", FlagsKnown: true}},
		{"separators in ids", Message{Src: "a\tb%c\nd\re", Dst: "%09%", Flags: "=x\t", FlagsKnown: true}},
		{"unicode", Message{Src: "ünï 1", Dst: "cur/1.M2P3:2,S", Flags: "$Label1", FlagsKnown: true}},
		{"stored filled in", Message{Src: "9"}},
		{"line longer than the read buffer", Message{Src: "long", Dst: mail.ID(strings.Repeat("x\t", 70<<10))}},
	}
	dir := filepath.Join(t.TempDir(), "sub", "st")
	s := openT(t, dir)
	for _, box := range []string{"INBOX", "Sent/ü\tx"} {
		f := folderT(t, s, box)
		for _, tc := range tests {
			if err := f.Put(tc.msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	defer s.Close()
	if got := s.Folders(); !reflect.DeepEqual(got, []string{"INBOX", "Sent/ü\tx"}) {
		t.Fatalf("Folders = %q", got)
	}
	for _, box := range s.Folders() {
		f := folderT(t, s, box)
		for _, tc := range tests {
			want := tc.msg
			if want.Stored == 0 {
				want.Stored = fixedNow().Unix()
			}
			if got, ok := f.Get(tc.msg.Src); !ok || got != want {
				t.Errorf("%s/%s: Get = %+v, %v; want %+v", box, tc.name, got, ok, want)
			}
		}
	}
}

func TestUpdateAndForget(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	f := folderT(t, s, "INBOX")
	f.Put(Message{Src: "1", Flags: "a", FlagsKnown: true})
	f.Put(Message{Src: "2"})
	f.Put(Message{Src: "1", Flags: "b", FlagsKnown: true})
	f.Forget("2")
	f.Forget("never")
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	f = folderT(t, s, "INBOX")
	if got := f.Messages(); len(got) != 1 || got[0].Flags != "b" {
		t.Fatalf("Messages = %+v, want only 1 with flags b", got)
	}
	var each []Message
	f.Each(func(m Message) { each = append(each, m) })
	if !reflect.DeepEqual(each, f.Messages()) {
		t.Fatalf("Each gave %+v, Messages %+v", each, f.Messages())
	}
}

// TestOpenRefuses covers a garbled or foreign state (scenario A9, E4): it
// is refused with ErrUnusable and left exactly as it was, and Reset starts
// afresh.
func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mangle func(t *testing.T, dir string)
		folder bool // the refusal comes when the folder is read
	}{
		{"summary garbled", func(t *testing.T, dir string) { writeT(t, dir, summaryName, "{\"mailferry\":") }, false},
		{"summary not a state", func(t *testing.T, dir string) { writeT(t, dir, summaryName, "{}\n") }, false},
		{"summary missing beside logs", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, summaryName)) }, false},
		{"other endpoints", func(t *testing.T, dir string) { replaceT(t, dir, summaryName, "alice", "bob") }, false},
		{"future version", func(t *testing.T, dir string) { replaceT(t, dir, summaryName, `"v":1`, `"v":9`) }, false},
		{"bad generation", func(t *testing.T, dir string) { replaceT(t, dir, summaryName, `"g":1`, `"g":99`) }, false},
		{"log missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "1.log")) }, true},
		{"log empty", func(t *testing.T, dir string) { writeT(t, dir, "1.log", "") }, true},
		{"corrupt middle line", func(t *testing.T, dir string) { replaceT(t, dir, "1.log", "\tP\t1\t", "\tP\t7\t") }, true},
		{"log of another folder", func(t *testing.T, dir string) { replaceT(t, dir, "1.log", "\tINBOX\n", "\tSent\n") }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := seedT(t)
			tc.mangle(t, dir)
			before := snapshot(t, dir)
			s, err := Open(dir, epA, epB, Options{})
			if err == nil && tc.folder {
				_, err = s.Folder("INBOX")
				s.Close()
			}
			if !errors.Is(err, ErrUnusable) || !errors.Is(err, checkpoint.ErrUnusable) {
				t.Fatalf("err = %v, want ErrUnusable", err)
			}
			if after := snapshot(t, dir); !reflect.DeepEqual(before, after) {
				t.Fatalf("a refused state was modified:\nbefore %q\nafter  %q", before, after)
			}
			s, err = Open(dir, epA, epB, Options{Reset: true})
			if err != nil {
				t.Fatalf("Open with Reset = %v", err)
			}
			defer s.Close()
			if f := folderT(t, s, "INBOX"); f.Len() != 0 {
				t.Fatalf("reset state has %d records", f.Len())
			}
		})
	}
}

// TestTornTail: a last line cut mid-write, or whose CRC fails (zeros a
// file system left), is dropped with a warning, kept on disk until the next
// append, and cut then.
func TestTornTail(t *testing.T) {
	tests := []struct {
		name string
		tail string
	}{
		{"cut mid-line", "0badc0de\tP\t9\t"},
		{"cut before the newline", strings.TrimSuffix(string(putLine(nil, Message{Src: "9"})), "\n")},
		{"zeros", strings.Repeat("\x00", 300)},
		{"bad crc with newline", "00000000\tP\t9\t\t\t0\t0\t\t\t0\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := seedT(t)
			f, _ := os.OpenFile(filepath.Join(dir, "1.log"), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(tc.tail)
			f.Close()
			before := snapshot(t, dir)
			s := openT(t, dir)
			fo := folderT(t, s, "INBOX")
			if fo.Dropped == "" || fo.Len() != 3 || fo.Has("9") {
				t.Fatalf("Dropped %q, Len %d, has 9 %v; want the tail dropped and 3 records", fo.Dropped, fo.Len(), fo.Has("9"))
			}
			s.Close()
			if after := snapshot(t, dir); !reflect.DeepEqual(before, after) {
				t.Fatal("reading a torn log changed it")
			}
			s = openT(t, dir)
			folderT(t, s, "INBOX").Put(Message{Src: "10"})
			s.Close()
			s = openT(t, dir)
			defer s.Close()
			if fo := folderT(t, s, "INBOX"); fo.Dropped != "" || fo.Len() != 4 {
				t.Fatalf("after an append: Dropped %q, Len %d; want 4 whole records", fo.Dropped, fo.Len())
			}
		})
	}
}

// TestE3SecondOpenLocked: two runs on one state (scenario E3); the second
// gets the checkpoint's ErrLocked (exit 7) naming the first's pid.
func TestE3SecondOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	_, err := Open(dir, epA, epB, Options{})
	if !errors.Is(err, checkpoint.ErrLocked) || !strings.Contains(err.Error(), "(pid ") {
		t.Fatalf("second Open = %v, want ErrLocked with the pid", err)
	}
	s.Close()
	s = openT(t, dir) // released on Close
	s.Close()
}

// countFS counts the folder logs opened.
type countFS struct {
	FS
	logs atomic.Int64
}

func (c *countFS) OpenFile(name string, flag int, perm os.FileMode) (checkpoint.FSFile, error) {
	if strings.HasSuffix(name, ".log") {
		c.logs.Add(1)
	}
	return c.FS.OpenFile(name, flag, perm)
}

// TestNoOpRunReadsNoLog: a run that reads every folder's summary and skips
// them all opens no folder log and changes no file but the lock's pid.
func TestNoOpRunReadsNoLog(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	for _, box := range []string{"INBOX", "Sent", "Archive"} {
		f := folderT(t, s, box)
		f.Put(Message{Src: "1"})
		if err := s.CompletePass(box, SideStatus{UIDValidity: 7, UIDNext: 2, Messages: 1}, SideStatus{}, true); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	before := snapshot(t, dir)
	cfs := &countFS{FS: osFS{}}
	s, err := Open(dir, epA, epB, Options{FS: cfs})
	if err != nil {
		t.Fatal(err)
	}
	for _, box := range s.Folders() {
		if sum, ok := s.Summary(box); !ok || sum.A.UIDNext != 2 || sum.Len != 1 || sum.Complete == 0 {
			t.Fatalf("Summary(%s) = %+v, %v", box, sum, ok)
		}
	}
	s.Close()
	if n := cfs.logs.Load(); n != 0 {
		t.Fatalf("a no-op run opened %d folder logs", n)
	}
	if after := snapshot(t, dir); !reflect.DeepEqual(before, after) {
		t.Fatalf("a no-op run changed the state:\nbefore %q\nafter  %q", before, after)
	}
}

func TestIdentitiesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	if a, b := s.Identities(); a != "" || b != "" {
		t.Fatalf("new state has identities %q %q", a, b)
	}
	if err := s.SetIdentities("imap:alice@x uv=7", "maildir:marker-1"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	if a, b := s.Identities(); a != "imap:alice@x uv=7" || b != "maildir:marker-1" {
		t.Fatalf("Identities = %q %q", a, b)
	}
}

func TestFullDue(t *testing.T) {
	tests := []struct {
		sum   Summary
		every int
		want  bool
	}{
		{Summary{}, 7, true},
		{Summary{Complete: 1}, 7, false},
		{Summary{Complete: 1, SinceFull: 5}, 7, false},
		{Summary{Complete: 1, SinceFull: 6}, 7, true},
		{Summary{Complete: 1, SinceFull: 100}, 0, false},
		{Summary{Complete: 1}, 1, true},
	}
	for _, tc := range tests {
		if got := tc.sum.FullDue(tc.every); got != tc.want {
			t.Errorf("%+v.FullDue(%d) = %v, want %v", tc.sum, tc.every, got, tc.want)
		}
	}
}

// TestPassCounter: over DefaultFullEvery runs that list in full when
// FullDue says so, exactly one listing in every seven is full.
func TestPassCounter(t *testing.T) {
	dir := t.TempDir()
	var full []bool
	for range 15 {
		s := openT(t, dir)
		sum, _ := s.Summary("INBOX")
		due := sum.FullDue(DefaultFullEvery)
		full = append(full, due)
		if err := s.CompletePass("INBOX", SideStatus{}, SideStatus{}, due); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	want := []bool{true, false, false, false, false, false, false, true, false, false, false, false, false, false, true}
	if !reflect.DeepEqual(full, want) {
		t.Fatalf("full listings %v, want %v", full, want)
	}
}

func TestResetFolderAndRemove(t *testing.T) {
	dir := seedT(t)
	s := openT(t, dir)
	if err := s.ResetFolder("INBOX"); err != nil {
		t.Fatal(err)
	}
	f := folderT(t, s, "INBOX")
	f.Put(Message{Src: "new"})
	s.Close()
	s = openT(t, dir)
	if sum, _ := s.Summary("INBOX"); sum.Complete != 0 {
		t.Fatalf("a reset folder kept its pass state %+v", sum)
	}
	if got := folderT(t, s, "INBOX").Messages(); len(got) != 1 || got[0].Src != "new" {
		t.Fatalf("after ResetFolder: %+v", got)
	}
	if err := s.RemoveFolder("INBOX"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	if len(s.Folders()) != 0 || folderT(t, s, "INBOX").Len() != 0 {
		t.Fatal("a removed folder came back")
	}
	if names, _ := (osFS{}).ReadDirNames(dir); len(names) != 3 { // lock, summary, the new empty log
		t.Fatalf("files left: %q", names)
	}
}

// TestCompaction: a log of mostly superseded lines is rewritten at the end
// of a pass, keeping every live record and the pass state.
func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	f := folderT(t, s, "INBOX")
	for round := range 5 {
		for i := range 500 {
			f.Put(Message{Src: mail.ID(string(rune('a'+i%26)) + string(rune('0'+i/26))), Size: int64(round)})
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	before := fileSize(t, dir, "1.log")
	if err := s.CompletePass("INBOX", SideStatus{UIDNext: 9}, SideStatus{}, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	sum, _ := s.Summary("INBOX")
	f = folderT(t, s, "INBOX")
	if f.Len() != 500 || sum.A.UIDNext != 9 || sum.Len != 500 {
		t.Fatalf("after compaction: %d records, summary %+v", f.Len(), sum)
	}
	if m, _ := f.Get("a0"); m.Size != 4 {
		t.Fatalf("compaction kept a stale record: %+v", m)
	}
	if after := fileSize(t, dir, "2.log"); after*4 > before {
		t.Fatalf("log of %d bytes compacted to %d", before, after)
	}
}

func TestUnflushedRecordsAreNotDurable(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	f := folderT(t, s, "INBOX")
	f.Put(Message{Src: "unflushed-1"})
	b, _ := os.ReadFile(filepath.Join(dir, "1.log"))
	if strings.Contains(string(b), "unflushed-1") {
		t.Fatal("record reached the log before Flush")
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "1.log"))
	if !strings.Contains(string(b), "unflushed-1") {
		t.Fatal("record not in the log after Flush")
	}
	s.Close()
	if err := f.Put(Message{Src: "late"}); !errors.Is(err, mail.ErrClosed) {
		t.Fatalf("Put after Close = %v, want ErrClosed", err)
	}
}

// seedT makes a state with folder INBOX (generation 1, records 1..3, a
// completed pass) and returns its directory.
func seedT(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s := openT(t, dir)
	f := folderT(t, s, "INBOX")
	for _, id := range []mail.ID{"1", "2", "3"} {
		f.Put(Message{Src: id, Dst: "d" + id})
	}
	if err := s.CompletePass("INBOX", SideStatus{UIDValidity: 5, UIDNext: 4, Messages: 3}, SideStatus{}, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return dir
}

func writeT(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func replaceT(t *testing.T, dir, name, old, repl string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q (%v)", name, old, err)
	}
	writeT(t, dir, name, strings.Replace(string(b), old, repl, 1))
}

func fileSize(t *testing.T, dir, name string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// snapshot maps each file of dir but the lock to its content and mtime.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	names, _ := (osFS{}).ReadDirNames(dir)
	for _, n := range names {
		if n == lockName {
			continue
		}
		p := filepath.Join(dir, n)
		b, _ := os.ReadFile(p)
		fi, _ := os.Stat(p)
		out[n] = fi.ModTime().String() + " " + string(b)
	}
	return out
}

// TestReadOnlyWritesNothing: a dry run (docs/failure-model.md H2) reads a
// state, asks for a folder it does not know, and writes nothing; on a
// state that does not exist it creates nothing.
func TestReadOnlyWritesNothing(t *testing.T) {
	dir := seedT(t)
	missing := filepath.Join(t.TempDir(), "none")
	for _, d := range []string{dir, missing} {
		before := snapshot(t, d)
		s, err := Open(d, epA, epB, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if f := folderT(t, s, "INBOX"); d == dir && f.Len() != 3 {
			t.Fatalf("read-only INBOX has %d records, want 3", f.Len())
		}
		f := folderT(t, s, "New")
		writes := map[string]error{
			"Put":          f.Put(Message{Src: "1"}),
			"CompletePass": s.CompletePass("INBOX", SideStatus{}, SideStatus{}, true),
			"ResetFolder":  s.ResetFolder("INBOX"),
			"RemoveFolder": s.RemoveFolder("INBOX"),
		}
		for op, err := range writes {
			if !errors.Is(err, ErrReadOnly) {
				t.Errorf("%s on a read-only state = %v, want ErrReadOnly", op, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if after := snapshot(t, d); !reflect.DeepEqual(before, after) {
			t.Fatalf("a read-only open of %s wrote:\nbefore %q\nafter  %q", d, before, after)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("a read-only open created %s", missing)
	}
}
