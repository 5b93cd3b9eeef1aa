package state

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// storeWith returns a state in a new directory holding, per folder, the
// given number of records, closed and reopened: nothing is in memory.
func storeWith(t *testing.T, folders map[string]int) (string, *State) {
	t.Helper()
	dir := t.TempDir()
	s := openT(t, dir)
	st := NewStore(s)
	for mb, n := range folders {
		for i := range n {
			if err := st.Add(checkpoint.Record{Mailbox: mb, ID: mail.ID(idN(i)), Dst: mail.ID("d" + idN(i)), Size: 10}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, openT(t, dir)
}

func idN(i int) string { return string(rune('a'+i%26)) + strings.Repeat("x", i/26) }

func loaded(s *State) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for mb := range s.folders {
		out = append(out, mb)
	}
	sort.Strings(out)
	return out
}

// TestStoreReadsOnlyWhatItIsAskedFor: opening reads no folder; asking
// about one mailbox reads that folder alone; Release drops it; StampStored
// reads nothing.
func TestStoreReadsOnlyWhatItIsAskedFor(t *testing.T) {
	_, s := storeWith(t, map[string]int{"INBOX": 3, "Sent": 2, "Trash": 1})
	defer s.Close()
	st := NewStore(s)
	if got := loaded(s); len(got) != 0 {
		t.Fatalf("after Open: %v loaded, want none", got)
	}
	if n, err := st.StampStored(1); n != 0 || err != nil || len(loaded(s)) != 0 {
		t.Fatalf("StampStored = %d, %v, loaded %v; want 0, nil, none", n, err, loaded(s))
	}
	if !st.Has(checkpoint.Key{Mailbox: "Sent", ID: "b"}) || st.Has(checkpoint.Key{Mailbox: "Sent", ID: "c"}) {
		t.Fatal("Has: wrong answer for Sent")
	}
	if got := loaded(s); !slices.Equal(got, []string{"Sent"}) {
		t.Fatalf("after Has(Sent): %v loaded, want [Sent]", got)
	}
	if n := st.Len("INBOX"); n != 3 || len(st.Records("INBOX")) != 3 {
		t.Fatalf("Len(INBOX) = %d, Records %d; want 3", n, len(st.Records("INBOX")))
	}
	if err := st.Release("Sent"); err != nil {
		t.Fatal(err)
	}
	if got := loaded(s); !slices.Equal(got, []string{"INBOX"}) {
		t.Fatalf("after Release(Sent): %v loaded, want [INBOX]", got)
	}
}

// TestStoreRecordsRoundTrip: what Add records, Records returns field for
// field, flags unknown (nil) kept apart from no flags ("").
func TestStoreRecordsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	st := NewStore(s)
	none, some := "", `\seen $label1`
	want := []checkpoint.Record{
		{Mailbox: "INBOX", ID: "1", Dst: "x:2,S", Size: 5, SHA256: "ab", MsgID: "0011", Date: 17, Flags: &some, Stored: 3},
		{Mailbox: "INBOX", ID: "2", Size: -1, Flags: &none, Stored: 4},
		{Mailbox: "INBOX", ID: "3", Dst: "y", Stored: 5},
	}
	for _, r := range want {
		if err := st.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	defer s.Close()
	got := NewStore(s).Records("INBOX")
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	for i := range want {
		if !sameRecord(got[i], want[i]) {
			t.Errorf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestStoreVanished: a record marked Vanished keeps the mark across a
// reopen and a compaction (its V line follows its P line), IDs leaves it
// out while Has, Get and Records still find it, and putting it again
// without the mark clears it.
func TestStoreVanished(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	st := NewStore(s)
	for _, id := range []mail.ID{"1", "2", "3"} {
		if err := st.Add(checkpoint.Record{Mailbox: "INBOX", ID: id, Dst: "d" + id, Size: 5}); err != nil {
			t.Fatal(err)
		}
	}
	rec, _ := st.Get(checkpoint.Key{Mailbox: "INBOX", ID: "2"})
	rec.Vanished = true
	if err := st.Add(rec); err != nil {
		t.Fatal(err)
	}
	check := func(when string, vanished bool) {
		t.Helper()
		ids := st.IDs("INBOX")
		slices.Sort(ids)
		want := []mail.ID{"1", "2", "3"}
		if vanished {
			want = []mail.ID{"1", "3"}
		}
		got, ok := st.Get(checkpoint.Key{Mailbox: "INBOX", ID: "2"})
		if !slices.Equal(ids, want) || !ok || got.Vanished != vanished || got.Dst != "d2" || len(st.Records("INBOX")) != 3 {
			t.Errorf("%s: IDs %v, Get(2) = %+v, %v, %d records; want IDs %v, vanished %v, 3 records", when, ids, got, ok, len(st.Records("INBOX")), want, vanished)
		}
	}
	check("marked", true)
	reopen := func() {
		t.Helper()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		s = openT(t, dir)
		st = NewStore(s)
	}
	reopen()
	check("reopened", true)
	f, err := s.Folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	err = s.rewriteFolder(f, f.recs) // what a compaction writes
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	reopen()
	check("compacted and reopened", true)
	rec.Vanished = false
	if err := st.Add(rec); err != nil {
		t.Fatal(err)
	}
	reopen()
	check("put again unmarked", false)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

func sameRecord(a, b checkpoint.Record) bool {
	fa, fb := a.Flags, b.Flags
	a.Flags, b.Flags = nil, nil
	return a == b && (fa == nil) == (fb == nil) && (fa == nil || *fa == *fb)
}

// TestStoreDamagedLog: a folder log garbled before its last line is
// refused when the folder is first asked for (Load), and the refusal
// sticks: Has reads false, and Add, Flush and Close report it, so nothing
// is recorded on top of a log that was not read. Other folders are not
// affected until then.
func TestStoreDamagedLog(t *testing.T) {
	_, s := storeWith(t, map[string]int{"INBOX": 4, "Sent": 1})
	defer s.Close()
	s.mu.Lock()
	path := s.logPath(s.sum.Folders["INBOX"].Gen)
	s.mu.Unlock()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines[2] = "garbled\n"
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	st := NewStore(s)
	if !st.Has(checkpoint.Key{Mailbox: "Sent", ID: "a"}) {
		t.Fatal("Sent is readable and holds a")
	}
	if err := st.Load("INBOX"); !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "--rebuild-state") {
		t.Fatalf("Load(INBOX) = %v, want ErrUnusable naming --rebuild-state", err)
	}
	if st.Has(checkpoint.Key{Mailbox: "INBOX", ID: "a"}) {
		t.Error("Has on a damaged folder = true")
	}
	for name, err := range map[string]error{
		"Add":   st.Add(checkpoint.Record{Mailbox: "Sent", ID: "z"}),
		"Flush": st.Flush(),
		"Close": st.Close(),
	} {
		if !errors.Is(err, ErrUnusable) {
			t.Errorf("%s after the refusal = %v, want ErrUnusable", name, err)
		}
	}
}

// TestReleaseThenCompletePass: a folder released before its pass is
// recorded is not read again for it, and the pass records its count.
func TestReleaseThenCompletePass(t *testing.T) {
	_, s := storeWith(t, map[string]int{"INBOX": 5})
	defer s.Close()
	st := NewStore(s)
	if st.Len("INBOX") != 5 {
		t.Fatal("INBOX should hold 5")
	}
	if err := st.Release("INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := s.CompletePass("INBOX", SideStatus{UIDNext: 6}, SideStatus{}, true); err != nil {
		t.Fatal(err)
	}
	if got := loaded(s); len(got) != 0 {
		t.Errorf("CompletePass read %v again", got)
	}
	if sum, _ := s.Summary("INBOX"); sum.Len != 5 {
		t.Errorf("Summary.Len = %d, want 5", sum.Len)
	}
}

// TestEmpty: a state without records is empty, told without reading a
// log; one record makes it not.
func TestEmpty(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	if e, err := s.Empty(); !e || err != nil {
		t.Fatalf("new state: Empty = %v, %v", e, err)
	}
	if _, err := s.Folder("INBOX"); err != nil { // a log with its header only
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	if e, err := s.Empty(); !e || err != nil {
		t.Fatalf("header-only log: Empty = %v, %v", e, err)
	}
	if err := NewStore(s).Add(checkpoint.Record{Mailbox: "INBOX", ID: "1"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	if e, err := s.Empty(); e || err != nil || len(loaded(s)) != 0 {
		t.Fatalf("one record: Empty = %v, %v (loaded %v); want false without reading", e, err, loaded(s))
	}
}

// TestMigrateKeepsStoreTimeAndPass: a checkpoint record with a store time
// keeps it (only one without gets the file's mtime), and a folder whose
// pass an earlier run recorded beside the checkpoint keeps that pass, now
// with its record count.
func TestMigrateKeepsStoreTimeAndPass(t *testing.T) {
	cpPath := filepath.Join(t.TempDir(), "cp.jsonl")
	cp, err := checkpoint.Open(cpPath, epA, epB, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []checkpoint.Record{{Mailbox: "INBOX", ID: "1", Stored: 42}, {Mailbox: "INBOX", ID: "2"}} {
		if err := cp.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(cpPath)
	s := openT(t, t.TempDir())
	defer s.Close()
	if err := s.CompletePass("INBOX", SideStatus{UIDNext: 3}, SideStatus{}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(s, cpPath, epA, epB); err != nil {
		t.Fatal(err)
	}
	f := folderT(t, s, "INBOX")
	if m, _ := f.Get("1"); m.Stored != 42 {
		t.Errorf("record 1 stored at %d, want 42 (its own)", m.Stored)
	}
	if m, _ := f.Get("2"); m.Stored != fi.ModTime().Unix() {
		t.Errorf("record 2 stored at %d, want the file's mtime %d", m.Stored, fi.ModTime().Unix())
	}
	if sum, _ := s.Summary("INBOX"); sum.Complete == 0 || sum.Len != 2 {
		t.Errorf("INBOX summary after migration %+v: want the pass kept, with 2 records", sum)
	}
}
