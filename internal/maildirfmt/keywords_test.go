package maildirfmt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

func TestKeywordsLetters(t *testing.T) {
	kw := Keywords{"$Label1", "", "NonJunk"}
	for _, c := range []struct {
		name    string
		flags   []mail.Flag
		letters string
		missing []string
	}{
		{"none", nil, "", nil},
		{"system flags have no keyword letter", []mail.Flag{mail.FlagSeen, FlagForwarded, `\Flagged`}, "", nil},
		{"known, sorted, case-insensitive", []mail.Flag{"nonjunk", "$Label1", "NonJunk"}, "ac", nil},
		{"missing once each, in order", []mail.Flag{"Project-X", "$label1", "Zed", "project-x"}, "a", []string{"Project-X", "Zed"}},
		{"not an atom: not storable", []mail.Flag{"two words", "a(b", "", "x\x01"}, "", nil},
	} {
		letters, missing := kw.Letters(c.flags)
		if letters != c.letters || !reflect.DeepEqual(missing, c.missing) {
			t.Errorf("%s: Letters(%q) = %q, %q; want %q, %q", c.name, c.flags, letters, missing, c.letters, c.missing)
		}
	}
}

func TestAddKeywords(t *testing.T) {
	many := make([]string, MaxKeywords+2)
	for i := range many {
		many[i] = fmt.Sprintf("k%02d", i)
	}
	for _, c := range []struct {
		name     string
		existing string // dovecot-keywords before; "" none
		add      []string
		want     Keywords
	}{
		{"new file", "", []string{"$Label1", "NonJunk"}, Keywords{"$Label1", "NonJunk"}},
		{"existing letters kept, a free slot reused", "0 $Label1\n2 Work\n", []string{"NonJunk", "work"}, Keywords{"$Label1", "NonJunk", "Work"}},
		{"past 26: left out", "", many, Keywords(many[:MaxKeywords])},
		{"nothing new: file untouched", "0 $Label1\n", []string{"$label1"}, Keywords{"$Label1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, KeywordsFile)
			if c.existing != "" {
				if err := os.WriteFile(path, []byte(c.existing), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := AddKeywords(t.Context(), dir, c.add, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("AddKeywords = %q, want %q", got, c.want)
			}
			if back := ReadKeywords(dir); !reflect.DeepEqual(back, c.want) {
				t.Errorf("file reads back %q, want %q", back, c.want)
			}
			if _, err := os.Lstat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("lock left behind: %v", err)
			}
		})
	}
}

// TestAddKeywordsMtimeMoves: Dovecot rereads dovecot-keywords only when its
// mtime's second changes, so a rewrite within the same second must move it.
func TestAddKeywordsMtimeMoves(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, KeywordsFile)
	if err := os.WriteFile(path, []byte("0 a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, time.Time{}, future); err != nil {
		t.Fatal(err)
	}
	if _, err := AddKeywords(t.Context(), dir, []string{"b"}, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.ModTime().Unix() <= future.Unix() {
		t.Errorf("mtime %v, want past the old file's %v", fi.ModTime(), future)
	}
}

func TestAddKeywordsLock(t *testing.T) {
	for _, c := range []struct {
		name    string
		age     time.Duration
		wantErr bool
	}{
		{"live lock: waits, gives up with ctx", 0, true},
		{"stale lock: removed", keywordsLockStale + time.Minute, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			lock := filepath.Join(dir, KeywordsFile+".lock")
			if err := os.WriteFile(lock, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(lock, time.Time{}, time.Now().Add(-c.age)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			if c.wantErr {
				cancel() // the wait sees a done context at its first poll
			}
			defer cancel()
			_, err := AddKeywords(ctx, dir, []string{"x"}, 0o600)
			if c.wantErr != (err != nil) {
				t.Fatalf("AddKeywords = %v, want error %v", err, c.wantErr)
			}
			if c.wantErr {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled", err)
				}
				if _, err := os.Lstat(lock); err != nil {
					t.Errorf("another program's lock was removed: %v", err)
				}
				return
			}
			if got := ReadKeywords(dir); !reflect.DeepEqual(got, Keywords{"x"}) {
				t.Errorf("keywords = %q", got)
			}
		})
	}
}

// A write that AnyKeyword and HasKeywordLetters both say needs no table
// must come out the same with no table as with any (what lets the two-way
// sync skip reading dovecot-keywords then).
func TestKeywordsNeeded(t *testing.T) {
	kw := Keywords{"$Label1", "NonJunk"}
	for _, c := range []struct {
		name    string
		flags   []mail.Flag
		anyKw   bool
		letters bool
	}{
		{"cur/1.x:2,S", []mail.Flag{mail.FlagSeen}, false, false},
		{"cur/1.x:2,FSa", []mail.Flag{"$Label1"}, true, true},
		{"cur/1.x:2,P", []mail.Flag{FlagForwarded, mail.FlagFlagged}, false, false},
		{"new/1.x", nil, false, false},
		{"cur/1.x,S=12:2,b", []mail.Flag{"nonjunk", mail.FlagSeen}, true, true},
		{"cur/1.x:1,ab", []mail.Flag{mail.FlagDeleted}, false, false},
	} {
		if got := AnyKeyword(c.flags); got != c.anyKw {
			t.Errorf("AnyKeyword(%v) = %v, want %v", c.flags, got, c.anyKw)
		}
		if got := HasKeywordLetters(c.name); got != c.letters {
			t.Errorf("HasKeywordLetters(%q) = %v, want %v", c.name, got, c.letters)
		}
		if c.anyKw || c.letters {
			continue
		}
		with, _ := kw.Letters(c.flags)
		without, _ := Keywords(nil).Letters(c.flags)
		if with != without || !reflect.DeepEqual(FlagsOf(c.name, kw), FlagsOf(c.name, nil)) ||
			Retag(c.name, "S", kw) != Retag(c.name, "S", nil) {
			t.Errorf("%q %v: the table changes the result", c.name, c.flags)
		}
	}
}
