package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadFolder feeds arbitrary bytes as INBOX's log: loading gives the
// records or ErrUnusable, never a panic; a log that loads takes an append
// that survives a reopen, with every record it had.
func FuzzLoadFolder(f *testing.F) {
	f.Add(headerLine(nil, 1, "INBOX"))
	f.Add(putLine(headerLine(nil, 1, "INBOX"), Message{Src: "1.1", Dst: "x\ty", FlagsKnown: true}))
	f.Add(forgetLine(putLine(headerLine(nil, 1, "INBOX"), Message{Src: "1"}), "1"))
	f.Add(append(headerLine(nil, 1, "INBOX"), "0000"...))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		s := openT(t, dir)
		folderT(t, s, "INBOX")
		s.Close()
		os.WriteFile(filepath.Join(dir, "1.log"), data, 0o600)
		s = openT(t, dir)
		fo, err := s.Folder("INBOX")
		if err != nil {
			s.Close()
			if !errors.Is(err, ErrUnusable) {
				t.Fatalf("Folder = %v, want nil or ErrUnusable", err)
			}
			return
		}
		before := fo.Messages()
		fo.Put(Message{Src: "fuzz\x00%\n"})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openT(t, dir)
		defer s.Close()
		fo, err = s.Folder("INBOX")
		if err != nil {
			t.Fatalf("reopen after append = %v", err)
		}
		if !fo.Has("fuzz\x00%\n") {
			t.Fatal("appended record lost")
		}
		for _, m := range before {
			if got, ok := fo.Get(m.Src); !ok || (got != m && m.Src != "fuzz\x00%\n") {
				t.Fatalf("record %q changed across an append: %+v -> %+v", m.Src, m, got)
			}
		}
	})
}

// FuzzLoadSummary feeds arbitrary bytes as summary.json: Open and reading
// every folder it names give a state or ErrUnusable, never a panic.
func FuzzLoadSummary(f *testing.F) {
	f.Add([]byte(`{"mailferry":"state","v":1,"a":"` + epA + `","b":"` + epB + `","gen":2,"folders":{"INBOX":{"g":1,"a":{"un":5},"b":{},"c":1}}}`))
	f.Add([]byte(`{"mailferry":"state","v":1,"a":"` + epA + `","b":"` + epB + `","gen":1,"folders":{}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, summaryName), data, 0o600)
		os.WriteFile(filepath.Join(dir, "1.log"), headerLine(nil, 1, "INBOX"), 0o600)
		s, err := Open(dir, epA, epB, Options{})
		if err != nil {
			if !errors.Is(err, ErrUnusable) {
				t.Fatalf("Open = %v, want nil or ErrUnusable", err)
			}
			return
		}
		defer s.Close()
		for _, name := range s.Folders() {
			if _, err := s.Folder(name); err != nil && !errors.Is(err, ErrUnusable) {
				t.Fatalf("Folder(%q) = %v, want nil or ErrUnusable", name, err)
			}
		}
	})
}
