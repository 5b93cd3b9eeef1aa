package state

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRenameFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "st")
	s := openT(t, dir)
	old := folderT(t, s, "Old")
	want := []Message{{Src: "1", Dst: "d1", Flags: `\Seen`, FlagsKnown: true, Stored: 5}, {Src: "2", Dst: "d2", Stored: 5}}
	for _, m := range want {
		if err := old.Put(m); err != nil {
			t.Fatal(err)
		}
	}
	folderT(t, s, "Taken")
	if err := s.RenameFolder("Old", "Taken"); err == nil {
		t.Fatal(`RenameFolder onto a known folder = nil, want an error`)
	}
	// Old's records are still buffered (not flushed): they go with it.
	if err := s.RenameFolder("Old", "New"); err != nil {
		t.Fatal(err)
	}
	if err := old.Put(Message{Src: "3"}); err == nil {
		t.Error("a Put through the old name's Folder = nil, want an error")
	}
	if err := s.RenameFolder("Old", "Other"); err == nil {
		t.Error("RenameFolder of a folder no longer known = nil, want an error")
	}
	if err := folderT(t, s, "New").Put(Message{Src: "4", Stored: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	defer func() { _ = s.Close() }()
	if got := s.Folders(); !reflect.DeepEqual(got, []string{"New", "Taken"}) {
		t.Errorf("Folders() after reopen = %q, want New and Taken", got)
	}
	if got := folderT(t, s, "New").Messages(); !reflect.DeepEqual(got, append(want, Message{Src: "4", Stored: 5})) {
		t.Errorf("records of New = %+v, want %+v and 4", got, want)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(logs) != 2 {
		t.Errorf("logs after the rename = %q, want one per folder (the old one removed)", logs)
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.json")); err != nil {
		t.Error(err)
	}
}
