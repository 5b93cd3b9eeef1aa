package twoway

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	sinkmaildir "github.com/mailferry/mailferry/sinks/maildir"
	srcmaildir "github.com/mailferry/mailferry/sources/maildir"
	"github.com/mailferry/mailferry/sync/mail"
)

// maildirSide opens root as a sync store the way the command does.
func maildirSide(t *testing.T, root, quarantine string) (*Store, func()) {
	t.Helper()
	ctx := context.Background()
	sink, err := sinkmaildir.New(ctx, root, &mail.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := srcmaildir.New(ctx, root, &mail.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := MaildirIdentity(root)
	if err != nil {
		t.Fatal(err)
	}
	if id == "" {
		if id, err = WriteMaildirMarker(root); err != nil {
			t.Fatal(err)
		}
	}
	st := &Store{Source: src, Sink: sink, Identity: id, StableIDs: true,
		Maildir: &MaildirFiles{Root: root, Quarantine: quarantine}}
	return st, func() { src.Close(); sink.Close() }
}

// syncMaildir syncs memory store a with the Maildir at root.
func syncMaildir(t *testing.T, a *memStore, root, dir string, opt RunOptions) *Result {
	t.Helper()
	b, done := maildirSide(t, root, filepath.Join(dir, "quarantine"))
	defer done()
	st := openState(t, filepath.Join(dir, "state"), false)
	defer st.Close()
	res, err := Run(context.Background(), [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, b}, st, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// describeMaildir is root's content as memStore.describe gives it.
func describeMaildir(t *testing.T, root string) map[string]string {
	t.Helper()
	ctx := context.Background()
	src, err := srcmaildir.New(ctx, root, &mail.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, mb := range boxes {
		var parts []string
		err := src.List(ctx, mb, func(env mail.Envelope) error {
			rc, err := src.Open(ctx, env)
			if err != nil {
				return err
			}
			defer rc.Close()
			body, err := io.ReadAll(rc)
			subj := strings.SplitN(strings.SplitN(string(body), "Subject: ", 2)[1], "\r\n", 2)[0]
			parts = append(parts, subj+":"+setOf(env.Flags).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(parts)
		out[mb] = strings.Join(parts, ",")
	}
	return out
}

// maildirFile returns the path of token tok's file in folder dir.
func maildirFile(t *testing.T, dir string, tok int) string {
	t.Helper()
	want := string(tokenBody(tok))
	for _, sub := range []string{"cur", "new"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			p := filepath.Join(dir, sub, e.Name())
			if b, _ := os.ReadFile(p); string(b) == want {
				return p
			}
		}
	}
	t.Fatalf("token %d not in %s", tok, dir)
	return ""
}

func TestRunWithMaildir(t *testing.T) {
	root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	a := newMemStore("a", "INBOX", "Archive")
	a.add("INBOX", 1, mail.FlagSeen)
	a.add("INBOX", 2)
	a.add("INBOX", 3)
	a.add("INBOX", 6, "$Work")
	a.add("Archive", 4)
	syncMaildir(t, a, root, dir, RunOptions{})
	want := map[string]string{"INBOX": `1:\Seen,2:,3:,6:$Work`, "Archive": `4:`}
	if got := describeMaildir(t, root); !reflect.DeepEqual(got, want) {
		t.Fatalf("first sync: the Maildir holds %v, want %v", got, want)
	}

	// A mail client changes the Maildir: a flag (rename), a move between
	// folders (same base name), a deletion; the other side changes too.
	p2 := maildirFile(t, root, 2)
	base2, _, _ := strings.Cut(filepath.Base(p2), ":")
	if err := os.Rename(p2, filepath.Join(root, "cur", base2+":2,FS")); err != nil {
		t.Fatal(err)
	}
	p3 := maildirFile(t, root, 3)
	if err := os.Rename(p3, filepath.Join(root, ".Archive", "cur", filepath.Base(p3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(maildirFile(t, root, 1)); err != nil {
		t.Fatal(err)
	}
	a.add("INBOX", 5)
	a.setFlagsOf("Archive", 4, mail.FlagFlagged, "$Later")
	opens := a.opens()
	res := syncMaildir(t, a, root, dir, RunOptions{})
	want = map[string]string{"INBOX": `2:\Flagged \Seen,5:,6:$Work`, "Archive": `3:,4:$Later \Flagged`}
	for _, got := range []map[string]string{describeMaildir(t, root), a.describe()} {
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("second sync: holds %v, want %v", got, want)
		}
	}
	if res.Side[A].Moved != 1 || res.Side[A].Deleted != 1 || res.Side[B].Flagged != 1 {
		t.Errorf("counts %+v", res.Side)
	}
	if n := a.opens() - opens; n != 2 { // the new message, and the move's copy within A
		t.Errorf("A served %d bodies, want 2", n)
	}

	// A deletion on A moves the Maildir file into the quarantine.
	a.removeTok("Archive", 4)
	syncMaildir(t, a, root, dir, RunOptions{})
	day := time.Now().UTC().Format("2006-01-02")
	q, _ := filepath.Glob(filepath.Join(dir, "quarantine", day, ".Archive", "*"))
	if len(q) != 1 {
		t.Fatalf("quarantine holds %q, want token 4's file", q)
	}
}

// TestRunMaildirReplacedByEmptyDirectory: the Maildir side is an empty
// directory (a disk not mounted): nothing is deleted anywhere, and the
// Maildir is filled again.
func TestRunMaildirReplacedByEmptyDirectory(t *testing.T) {
	root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	a := newMemStore("a", "INBOX", "Archive")
	for tok := 1; tok <= 30; tok++ {
		a.add("INBOX", tok)
	}
	a.add("Archive", 31)
	syncMaildir(t, a, root, dir, RunOptions{})
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	res := syncMaildir(t, a, root, dir, RunOptions{})
	if res.Side[A].Deleted != 0 || res.Side[A].Held != 0 || len(a.describe()["INBOX"]) == 0 {
		t.Fatalf("deleted on A after the Maildir vanished: %+v", res.Side)
	}
	if got := describeMaildir(t, root); len(strings.Split(got["INBOX"], ",")) != 30 || got["Archive"] != "31:" {
		t.Fatalf("the Maildir was not filled again: %v", got)
	}
	if res := syncMaildir(t, a, root, dir, RunOptions{}); res.Side != [2]Counts{} {
		t.Fatalf("a sync right after did %+v", res.Side)
	}
}

func TestQuarantinePrune(t *testing.T) {
	q := t.TempDir()
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for _, d := range []string{"2026-11-06", "2026-11-07", "2026-12-01", "notes"} {
		if err := os.MkdirAll(filepath.Join(q, d, "INBOX"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	m := &MaildirFiles{Quarantine: q, Now: func() time.Time { return now }}
	if err := m.Prune(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(q)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if want := []string{"2026-11-07", "2026-12-01", "notes"}; !reflect.DeepEqual(left, want) {
		t.Fatalf("after pruning: %q, want %q", left, want)
	}
}

// TestRunMaildirEditedFile: a mail client rewrote a Maildir file (same
// name, other content). It is a new message: copied to the other side,
// where the version the state knew is deleted; and when the other side
// deleted that version meanwhile, the edited file is not deleted but
// copied again (rule 4).
func TestRunMaildirEditedFile(t *testing.T) {
	for _, tc := range []struct {
		name       string
		deleteOnA  bool
		wantDelete int // deletions on A
		fullEvery  int // RunOptions.FullEvery of the sync after the edit
	}{
		// An edit nothing deletes is found by a full listing
		// (mdlisting.go).
		{"edited", false, 1, 1},
		// No full listing: the deletion waits on the edit check.
		{"edited on B while deleted on A", true, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
			a := newMemStore("a", "INBOX")
			a.add("INBOX", 1)
			a.add("INBOX", 2)
			syncMaildir(t, a, root, dir, RunOptions{})
			edited := append(tokenBody(2), "an edit by a mail client\r\n"...)
			if err := os.WriteFile(maildirFile(t, root, 2), edited, 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.deleteOnA {
				a.removeTok("INBOX", 2)
			}
			res := syncMaildir(t, a, root, dir, RunOptions{FullEvery: tc.fullEvery})
			if res.Side[A].Copied != 1 || res.Side[A].Deleted != tc.wantDelete || res.Side[B].Deleted != 0 {
				t.Fatalf("counts %+v, want 1 copied to A and %d deleted there", res.Side, tc.wantDelete)
			}
			var bodies []string
			for _, m := range a.folders["INBOX"] {
				bodies = append(bodies, string(m.body))
			}
			sort.Strings(bodies)
			if want := []string{string(tokenBody(1)), string(edited)}; !reflect.DeepEqual(bodies, want) {
				t.Fatalf("A holds %q, want %q", bodies, want)
			}
			if got := describeMaildir(t, root)["INBOX"]; got != "1:,2:" {
				t.Fatalf("the Maildir holds %s", got)
			}
			if res := syncMaildir(t, a, root, dir, RunOptions{}); res.Side != [2]Counts{} {
				t.Fatalf("a sync right after did %+v", res.Side)
			}
		})
	}
}

// TestMaildirSetFlagsKeepsForeignLetters: a flag write renames as the
// Maildir sink does (maildirfmt.Retag): letters another program set that
// mean nothing here stay, a file without flags stays in new/.
func TestMaildirSetFlagsKeepsForeignLetters(t *testing.T) {
	for _, tc := range []struct {
		file  string
		flags []mail.Flag
		want  string
	}{
		{"cur/1.M1.h:2,SX", []mail.Flag{mail.FlagFlagged}, "cur/1.M1.h:2,FX"},
		{"new/1.M1.h", nil, "new/1.M1.h"},
		{"new/1.M1.h", []mail.Flag{mail.FlagSeen}, "cur/1.M1.h:2,S"},
		{"cur/1.M1.h:2,S", nil, "cur/1.M1.h:2,"},
	} {
		root := t.TempDir()
		for _, sub := range []string{"cur", "new", "tmp"} {
			mustDo(t, os.MkdirAll(filepath.Join(root, sub), 0o700))
		}
		mustDo(t, os.WriteFile(filepath.Join(root, tc.file), tokenBody(1), 0o600))
		m := &MaildirFiles{Root: root}
		if err := m.SetFlags(context.Background(), "INBOX", "1.M1.h", tc.flags); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(root, tc.want)); err != nil {
			t.Errorf("SetFlags(%s, %v): %v", tc.file, tc.flags, err)
		}
	}
}

// TestMaildirSymlinkIsNoMessage: a symlink in cur/ under a message's name
// is no message anywhere (one walk, internal/maildirfmt): not listed, so
// not copied; and a flag write, a move or a deletion naming its id finds
// nothing, leaving the link and what it points at as they were. Before
// MaildirFiles used maildirfmt.Tree, its own walk and the tree's disagreed
// on what a name that is not a regular file is.
func TestMaildirSymlinkIsNoMessage(t *testing.T) {
	root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	a := newMemStore("a", "INBOX", "Archive")
	a.add("INBOX", 1)
	a.add("Archive", 2)
	syncMaildir(t, a, root, dir, RunOptions{})
	secret := filepath.Join(t.TempDir(), "secret")
	mustDo(t, os.WriteFile(secret, tokenBody(3), 0o600))
	link := filepath.Join(root, "cur", "1700000000.link.host:2,")
	mustDo(t, os.Symlink(secret, link))

	res := syncMaildir(t, a, root, dir, RunOptions{})
	if res.Side[A].Copied != 0 || a.describe()["INBOX"] != "1:" {
		t.Fatalf("the symlink was synced: counts %+v, A holds %v", res.Side, a.describe())
	}
	ctx := context.Background()
	m := &MaildirFiles{Root: root, Quarantine: filepath.Join(dir, "q")}
	id := mail.ID("1700000000.link.host")
	for name, err := range map[string]error{
		"SetFlags": m.SetFlags(ctx, "INBOX", id, []mail.Flag{mail.FlagSeen}),
		"Move": func() error {
			_, err := m.Move(ctx, mail.Envelope{Mailbox: "INBOX", ID: id}, "Archive", nil)
			return err
		}(),
	} {
		if !errors.Is(err, mail.ErrNotFound) {
			t.Errorf("%s of the symlink's id = %v, want ErrNotFound", name, err)
		}
	}
	mustDo(t, m.Remove(ctx, []mail.Envelope{{Mailbox: "INBOX", ID: id}}))
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was renamed or moved: %v", err)
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != string(tokenBody(3)) {
		t.Fatalf("what the symlink points at changed: %q, %v", b, err)
	}
}

// TestRunMaildirEditedSameSize: a mail client rewrote a Maildir file in
// place with the same size (rule 4: copied again, the old version deleted
// on the other side). The evidence is the file's mtime in ns: a later
// write moves it; a write in the same tick of the file system's clock does
// not, so a file whose mtime was too recent when the sync recorded it is
// compared by content. A rename (a flag change) moves neither and is no
// edit. Before the evidence, a same-size edit went unseen.
func TestRunMaildirEditedSameSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client bool // the file is the mail client's, written just now (racy)
		change func(t *testing.T, p string, mtime time.Time) string
		copied int // copies to A on the second sync
		flags  int // flag changes on A
	}{
		{"rewritten later", false, rewrite(false), 1, 0},
		{"rewritten in the same tick", true, rewrite(true), 1, 0},
		{"renamed (a flag)", true, func(t *testing.T, p string, _ time.Time) string {
			to := strings.TrimSuffix(p, ":2,") + ":2,S"
			mustDo(t, os.Rename(p, to))
			return to
		}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
			a := newMemStore("a", "INBOX")
			a.add("INBOX", 1)
			syncMaildir(t, a, root, dir, RunOptions{})
			p := maildirFile(t, root, 1)
			if tc.client {
				mustDo(t, os.Remove(p))
				a.removeTok("INBOX", 1)
				syncMaildir(t, a, root, dir, RunOptions{Plan: Options{Force: true}})
				p = filepath.Join(root, "cur", "1700000000.client.host:2,")
				mustDo(t, os.WriteFile(p, tokenBody(2), 0o600)) // its mtime is now
				if res := syncMaildir(t, a, root, dir, RunOptions{}); res.Side[A].Copied != 1 {
					t.Fatalf("the client's file was not copied: %+v", res.Side)
				}
			}
			fi, err := os.Stat(p)
			mustDo(t, err)
			p = tc.change(t, p, fi.ModTime())
			// An edit nothing deletes is found by a full listing
			// (mdlisting.go).
			res := syncMaildir(t, a, root, dir, RunOptions{FullEvery: 1})
			if res.Side[A].Copied != tc.copied || res.Side[A].Deleted != tc.copied || res.Side[A].Flagged != tc.flags || res.Side[B].Copied+res.Side[B].Deleted != 0 {
				t.Fatalf("counts %+v, want %d copied to A and deleted there, %d flag changes", res.Side, tc.copied, tc.flags)
			}
			want, _ := os.ReadFile(p)
			var bodies []string
			for _, m := range a.folders["INBOX"] {
				bodies = append(bodies, string(m.body))
			}
			if len(bodies) != 1 || bodies[0] != string(want) {
				t.Fatalf("A holds %q, want the Maildir's %q", bodies, want)
			}
			if res := syncMaildir(t, a, root, dir, RunOptions{}); res.Side != [2]Counts{} {
				t.Fatalf("a sync right after did %+v", res.Side)
			}
		})
	}
}

// rewrite returns a change that rewrites a file in place with as many
// bytes (its last letter's case flipped); sameTick then sets its mtime
// back, as a second write within the file system's clock tick leaves it.
func rewrite(sameTick bool) func(t *testing.T, p string, mtime time.Time) string {
	return func(t *testing.T, p string, mtime time.Time) string {
		b, err := os.ReadFile(p)
		mustDo(t, err)
		i := strings.LastIndexAny(string(b), "abcdefghijklmnopqrstuvwxyz")
		b[i] -= 'a' - 'A'
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		mustDo(t, err)
		_, err = f.WriteAt(b, 0)
		mustDo(t, err)
		mustDo(t, f.Close())
		if sameTick {
			mustDo(t, os.Chtimes(p, time.Time{}, mtime))
		} else if fi, _ := os.Stat(p); fi.ModTime().Equal(mtime) {
			t.Fatal("the rewrite kept the mtime")
		}
		return p
	}
}
