package maildirfmt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

func TestRetag(t *testing.T) {
	kw := Keywords{"$Label1", "", "NonJunk"}
	for _, c := range []struct {
		name    string
		rel     string
		letters string
		want    string
	}{
		{"new/ without flags stays", "new/1.M2.h,S=3", "", "new/1.M2.h,S=3"},
		{"new/ to cur/ when seen", "new/1.M2.h,S=3", "S", "cur/1.M2.h,S=3:2,S"},
		{"new/ to cur/ for a keyword alone", "new/1.M2.h,S=3", "a", "cur/1.M2.h,S=3:2,a"},
		{"same flags: same name", "cur/1.M2.h,S=3:2,FS", "FS", "cur/1.M2.h,S=3:2,FS"},
		{"flag added, sorted", "cur/1.M2.h,S=3:2,S", "FS", "cur/1.M2.h,S=3:2,FS"},
		{"all cleared: stays in cur/", "cur/1.M2.h,S=3:2,FRS", "", "cur/1.M2.h,S=3:2,"},
		{"known keyword letters replaced", "cur/1.M2.h,S=3:2,Sac", "Sc", "cur/1.M2.h,S=3:2,Sc"},
		{"unknown letters kept", "cur/1.M2.h,S=3:2,SXbz", "F", "cur/1.M2.h,S=3:2,FXbz"},
		{"no info in cur/ gets one", "cur/1.M2.h,S=3", "S", "cur/1.M2.h,S=3:2,S"},
		{"experimental info replaced", "cur/1.M2.h,S=3:1,xyz", "S", "cur/1.M2.h,S=3:2,S"},
		{"Dovecot's W= field stays in the ID", "cur/1.M2.h,S=3,W=4:2,S", "FS", "cur/1.M2.h,S=3,W=4:2,FS"},
	} {
		got := Retag(c.rel, c.letters, kw)
		if got.Old != c.rel || got.New != c.want {
			t.Errorf("%s: Retag(%q, %q) = %+v, want New %q", c.name, c.rel, c.letters, got, c.want)
		}
		if got.Same() != (c.rel == c.want) {
			t.Errorf("%s: Same() = %v", c.name, got.Same())
		}
	}
}

// TestFindRefusesSymlink: Find names only what List lists, a regular file:
// a symlink under a message's name gives ErrNotFound, so no caller (the
// Maildir sink's flag writes, two-way sync's renames, moves and
// quarantine) renames it.
func TestFindRefusesSymlink(t *testing.T) {
	root := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "cur", "1.a.h:2,S"), []byte("y"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(root, "cur", "2.b.h:2,")); err != nil {
		t.Fatal(err)
	}
	tr := NewTree(root, nil)
	for _, tc := range []struct {
		id      mail.ID
		wantRel string
	}{
		{"1.a.h", "cur/1.a.h:2,S"},
		{"2.b.h", ""}, // the symlink
		{"3.c.h", ""}, // nothing
	} {
		for _, fresh := range []bool{false, true} {
			_, rel, err := tr.Find(context.Background(), "INBOX", tc.id, fresh)
			if tc.wantRel == "" && !errors.Is(err, mail.ErrNotFound) || tc.wantRel != "" && (err != nil || rel != tc.wantRel) {
				t.Errorf("Find(%s, fresh %v) = %q, %v; want %q", tc.id, fresh, rel, err, tc.wantRel)
			}
		}
	}
}
