package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// fileOf returns the one file of the folder dir holding id, as "sub/name".
func fileOf(t *testing.T, dir string, id mail.ID) string {
	t.Helper()
	var found []string
	for _, sub := range []string{"new", "cur"} {
		for _, n := range files(t, dir, sub) {
			if n == string(id) || strings.HasPrefix(n, string(id)+":") {
				found = append(found, sub+"/"+n)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("files of %s in %s: %q, want one", id, dir, found)
	}
	return found[0]
}

// TestSetFlags: SetFlags renames the file's info to the new flags (system
// letters, dovecot-keywords letters), moves it from new/ to cur/ once it
// has any, keeps what other programs' letters mean, and the message keeps
// its ID: Index lists it with the new flags and OpenStored reads it.
func TestSetFlags(t *testing.T) {
	for _, c := range []struct {
		name   string
		before []mail.Flag
		info   string // an info Put would not write, set by hand ("": Put's)
		set    []mail.Flag
		want   string // the file's path relative to the folder, after the ID
		listed []mail.Flag
	}{
		{"seen moves new/ to cur/", nil, "", []mail.Flag{mail.FlagSeen}, "cur/:2,S", []mail.Flag{mail.FlagSeen}},
		{"flagged and a keyword", []mail.Flag{mail.FlagSeen}, "", []mail.Flag{mail.FlagSeen, mail.FlagFlagged, "$Label1"}, "cur/:2,FSa", []mail.Flag{"$Label1", mail.FlagFlagged, mail.FlagSeen}},
		{"keyword alone moves to cur/", nil, "", []mail.Flag{"Project-X"}, "cur/:2,a", []mail.Flag{"Project-X"}},
		{"no flags, unseen in new/: unchanged", nil, "", []mail.Flag{}, "new/", []mail.Flag{}},
		{"cleared: stays in cur/", []mail.Flag{mail.FlagSeen, mail.FlagAnswered, "$Label1"}, "", []mail.Flag{}, "cur/:2,", []mail.Flag{}},
		{"the same flags: the same name", []mail.Flag{mail.FlagSeen, mail.FlagFlagged}, "", []mail.Flag{`\flagged`, `\SEEN`}, "cur/:2,FS", []mail.Flag{mail.FlagFlagged, mail.FlagSeen}},
		{"recent is not a stored flag", nil, "", []mail.Flag{`\Recent`, mail.FlagDraft}, "cur/:2,D", []mail.Flag{mail.FlagDraft}},
		{"another program's letters kept", nil, ":2,SX", []mail.Flag{mail.FlagFlagged}, "cur/:2,FX", []mail.Flag{mail.FlagFlagged}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			s := newTestSink(t, root, nil)
			id := put(t, s, mail.Envelope{Mailbox: "Work", Key: "k1", Flags: c.before}, "Subject: x\r\n\r\nbody\r\n")
			commit(t, s)
			dir := filepath.Join(root, ".Work")
			if c.info != "" {
				if err := os.Rename(filepath.Join(dir, fileOf(t, dir, id)), filepath.Join(dir, "cur", string(id)+c.info)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.SetFlags(ctx, "Work", id, c.set); err != nil {
				t.Fatalf("SetFlags = %v", err)
			}
			sub, info, _ := strings.Cut(c.want, "/")
			if got, want := fileOf(t, dir, id), sub+"/"+string(id)+info; got != want {
				t.Errorf("file %q, want %q", got, want)
			}
			var idx []mail.Envelope
			if err := s.Index(ctx, "Work", func(e mail.Envelope) error { idx = append(idx, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(idx) != 1 || idx[0].ID != id || idx[0].Key != "k1" || !reflect.DeepEqual(idx[0].Flags, c.listed) {
				t.Errorf("Index = %+v, want ID %s, key k1, flags %q", idx, id, c.listed)
			}
			rc, err := s.OpenStored(ctx, "Work", id)
			if err != nil {
				t.Fatalf("OpenStored after SetFlags = %v", err)
			}
			b, err := io.ReadAll(rc)
			if err = errors.Join(err, rc.Close()); err != nil {
				t.Fatal(err)
			}
			if string(b) != "Subject: x\r\n\r\nbody\r\n" {
				t.Errorf("OpenStored reads %q", b)
			}
		})
	}
}

// TestSetFlagsNotThere: an unknown ID or one that could name another file
// gives ErrNotFound, a mailbox that does not exist gives
// ErrMailboxNotFound and is not created, and a closed sink ErrClosed.
func TestSetFlagsNotThere(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, nil)
	id := put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "k1"}, "body")
	commit(t, s)
	for _, c := range []struct {
		mailbox string
		id      mail.ID
		want    error
	}{
		{"INBOX", "no-such-id", mail.ErrNotFound},
		{"INBOX", "../new/" + id, mail.ErrNotFound},
		{"INBOX", id + ":2,S", mail.ErrNotFound},
		{"INBOX", "", mail.ErrNotFound},
		{"Missing", id, mail.ErrMailboxNotFound},
	} {
		if err := s.SetFlags(ctx, c.mailbox, c.id, []mail.Flag{mail.FlagSeen}); !errors.Is(err, c.want) {
			t.Errorf("SetFlags(%q, %q) = %v, want %v", c.mailbox, c.id, err, c.want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, ".Missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SetFlags created the missing mailbox: %v", err)
	}
	if got := fileOf(t, root, id); got != "new/"+string(id) {
		t.Errorf("the message moved to %s", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFlags(ctx, "INBOX", id, nil); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("SetFlags after Close = %v, want ErrClosed", err)
	}
}

// TestSetFlagsDurableOrder: the rename is followed by an fsync of cur/ and
// then of new/ (the new name durable before the old one's removal), all
// before SetFlags returns; a call that finds the flags already there (a
// run killed after the rename, before the engine recorded it) renames
// nothing and fsyncs the directory again.
func TestSetFlagsDurableOrder(t *testing.T) {
	root := t.TempDir()
	rec := &recFS{}
	s := newTestSink(t, root, rec)
	id := put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "k1"}, "body")
	commit(t, s)
	cur, nw := filepath.Join(root, "cur"), filepath.Join(root, "new")
	for _, c := range []struct {
		name  string
		rerun bool // a fresh sink, as the next run opens
		want  []string
	}{
		{"first", false, []string{"rename " + filepath.Join(nw, string(id)) + " " + filepath.Join(cur, string(id)+":2,FS"), "syncdir " + cur, "syncdir " + nw}},
		{"again, as after a kill before the record", true, []string{"syncdir " + cur}},
	} {
		s2 := s
		if c.rerun {
			s2 = newTestSink(t, root, rec)
		}
		rec.Reset()
		if err := s2.SetFlags(ctx, "INBOX", id, []mail.Flag{mail.FlagSeen, mail.FlagFlagged}); err != nil {
			t.Fatalf("%s: SetFlags = %v", c.name, err)
		}
		if got := rec.Events(); !slices.Equal(got, c.want) {
			t.Errorf("%s: events\n%s\nwant\n%s", c.name, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}
}

// TestSetFlagsRepairs: what a kill or another program leaves is repaired:
// the file renamed by another program between the lookup and the rename
// is looked up again; a second name of the file left in new/ by the
// link(2) fallback killed before its unlink is removed; a failed directory
// fsync is an error, so the engine does not record the flags and the next
// run tries again.
func TestSetFlagsRepairs(t *testing.T) {
	for _, c := range []struct {
		name    string
		prepare func(t *testing.T, rec *recFS, dir string, id mail.ID)
		wantErr bool
	}{
		{"renamed by another program meanwhile", func(t *testing.T, rec *recFS, dir string, id mail.ID) {
			once := false
			rec.failRename = func(oldpath, _ string) error {
				if !once {
					once = true
					return os.Rename(oldpath, filepath.Join(dir, "cur", string(id)+":2,R"))
				}
				return nil
			}
		}, false},
		{"link fallback killed before its unlink", func(t *testing.T, rec *recFS, dir string, id mail.ID) {
			if err := os.Link(filepath.Join(dir, "new", string(id)), filepath.Join(dir, "cur", string(id)+":2,S")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"directory fsync fails", func(t *testing.T, rec *recFS, dir string, id mail.ID) {
			rec.failSyncDir = func(string) error { return errors.New("EIO") }
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			rec := &recFS{}
			s := newTestSink(t, root, rec)
			id := put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "k1"}, "body")
			commit(t, s)
			c.prepare(t, rec, root, id)
			err := s.SetFlags(ctx, "INBOX", id, []mail.Flag{mail.FlagSeen})
			if c.wantErr {
				if err == nil {
					t.Fatal("SetFlags = nil, want the fsync's error")
				}
				return
			}
			if err != nil {
				t.Fatalf("SetFlags = %v", err)
			}
			if got := fileOf(t, root, id); got != "cur/"+string(id)+":2,S" {
				t.Errorf("file %s, want cur/%s:2,S alone", got, id)
			}
		})
	}
}

// TestSetFlagsKeywordsPast26: a keyword that does not fit the folder's 26
// letters is dropped (with the other flags set), as Put drops it.
func TestSetFlagsKeywordsPast26(t *testing.T) {
	root := t.TempDir()
	var table strings.Builder
	for i := range maildirfmt.MaxKeywords {
		fmt.Fprintf(&table, "%d k%02d\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(root, maildirfmt.KeywordsFile), []byte(table.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newTestSink(t, root, nil)
	id := put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "k1"}, "body")
	commit(t, s)
	if err := s.SetFlags(ctx, "INBOX", id, []mail.Flag{mail.FlagFlagged, "k25", "TooMany"}); err != nil {
		t.Fatal(err)
	}
	if got := fileOf(t, root, id); got != "cur/"+string(id)+":2,Fz" {
		t.Errorf("file %s, want cur/%s:2,Fz", got, id)
	}
}
