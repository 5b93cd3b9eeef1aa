package maildirfmt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// TestFindNear: a file whose letters are the hint's or a few letters off
// is found by its name alone (no index of the folder is built); one
// further off, or with another program's letters, by the scan. The
// negative control is the scan cases: they do build the index.
func TestFindNear(t *testing.T) {
	const id = "1700000000.M1P2Q3.host,MF=k,S=10"
	for _, c := range []struct {
		name, file, hint string
		scanned          bool
	}{
		{"already there", "cur/" + id + ":2,FS", "FS", false},
		{"one letter fewer", "cur/" + id + ":2,S", "FS", false},
		{"one letter more", "cur/" + id + ":2,FRS", "FS", false},
		{"unseen in new/", "new/" + id, "F", false},
		{"no letters in cur/", "cur/" + id + ":2,", "S", false},
		{"a keyword letter off", "cur/" + id + ":2,Sb", "Sab", false},
		{"everything off", "cur/" + id + ":2,DPRT", "FS", false},
		{"another program's letter", "cur/" + id + ":2,SX", "FS", true},
		{"an unhinted keyword", "cur/" + id + ":2,Sc", "FS", true},
		{"in new/ and cur/: cur/ wins", "cur/" + id + ":2,RS", "FS", false},
		{"unseen in new/, no letters hinted", "new/" + id, "", false},
		{"in new/ and cur/ without letters: cur/ wins", "cur/" + id + ":2,", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for _, sub := range []string{"cur", "new", "tmp"} {
				if err := os.Mkdir(filepath.Join(root, sub), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(root, "cur", "1700000001.other:2,S"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, c.file), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(c.name, "new/ and cur/") { // a link(2) + unlink(2) move cut between the two
				if err := os.Link(filepath.Join(root, c.file), filepath.Join(root, "new", id)); err != nil {
					t.Fatal(err)
				}
			}
			tr := NewTree(root, nil)
			dir, rel, err := tr.FindNear(context.Background(), "INBOX", id, c.hint)
			if err != nil || dir != root || rel != c.file {
				t.Fatalf("FindNear(%q) = %q, %q, %v; want %q", c.hint, dir, rel, err, c.file)
			}
			if scanned := len(tr.where) > 0; scanned != c.scanned {
				t.Errorf("folder indexed: %v, want %v", scanned, c.scanned)
			}
		})
	}
	tr := NewTree(t.TempDir(), nil)
	if _, _, err := tr.FindNear(context.Background(), "INBOX", "missing", "S"); !errors.Is(err, mail.ErrNotFound) {
		t.Errorf("FindNear(missing) = %v, want ErrNotFound", err)
	}
}

// TestGuessesNewSecond: with no letters hinted, new/ is the second name
// tried (a message never seen), not the last of 65; with letters it stays
// last (the cur/ name is the later state).
func TestGuessesNewSecond(t *testing.T) {
	for _, c := range []struct {
		letters string
		at      int // index of "-"; -1: the last
	}{{"", 1}, {"S", -1}, {"FS", -1}} {
		g := guesses(c.letters)
		at := c.at
		if at < 0 {
			at = len(g) - 1
		}
		if g[0] != c.letters || g[at] != "-" || slices.Index(g, "-") != at {
			t.Errorf("guesses(%q) = %q...; want %q first and new/ at %d", c.letters, g[:3], c.letters, at)
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
