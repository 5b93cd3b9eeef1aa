package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// seed writes fixtures into a Maildir++ tree the way Dovecot stores them:
// flagged messages in cur/ with ":2,<letters>", others in new/, keywords as
// letters a-z listed in the folder's dovecot-keywords, mtime = Date.
func seed(t testing.TB, root string, fixtures []mailtest.Fixture) {
	t.Helper()
	kws := map[string][]string{} // folder dir -> keywords by letter
	for i, fx := range fixtures {
		mbox := fx.Mailbox
		if mbox == "" {
			mbox = "INBOX"
		}
		dir, err := maildirfmt.FolderDir(root, mbox)
		if err != nil {
			t.Fatalf("FolderDir(%q) = %v", mbox, err)
		}
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		letters := maildirfmt.FlagLetters(fx.Flags)
		for _, f := range fx.Flags {
			if maildirfmt.FlagLetters([]mail.Flag{f}) != "" || strings.HasPrefix(string(f), `\`) {
				continue
			}
			n := slices.Index(kws[dir], string(f))
			if n < 0 {
				kws[dir] = append(kws[dir], string(f))
				n = len(kws[dir]) - 1
			}
			letters += string(rune('a' + n))
		}
		b := []byte(letters)
		sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
		name := fmt.Sprintf("%d.M%dP4242.test,S=%d", 1700000000+i, i, len(fx.Body))
		p := filepath.Join(dir, "new", name)
		if len(b) > 0 {
			p = filepath.Join(dir, "cur", name+":2,"+string(b))
		}
		if err := os.WriteFile(p, fx.Body, 0o600); err != nil {
			t.Fatal(err)
		}
		if !fx.Date.IsZero() {
			if err := os.Chtimes(p, time.Time{}, fx.Date); err != nil {
				t.Fatal(err)
			}
		}
	}
	for dir, kw := range kws {
		var sb strings.Builder
		for i, k := range kw {
			fmt.Fprintf(&sb, "%d %s\n", i, k)
		}
		if err := os.WriteFile(filepath.Join(dir, "dovecot-keywords"), []byte(sb.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func newSource(t *testing.T, root string) *Source {
	t.Helper()
	s, err := New(context.Background(), root, nil)
	if err != nil {
		t.Fatalf("New(%q) = %v", root, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func list(t *testing.T, s *Source, mailbox string) []mail.Envelope {
	t.Helper()
	var envs []mail.Envelope
	if err := s.List(context.Background(), mailbox, func(e mail.Envelope) error {
		envs = append(envs, e)
		return nil
	}); err != nil {
		t.Fatalf("List(%q) = %v", mailbox, err)
	}
	return envs
}

func read(t *testing.T, s *Source, env mail.Envelope) string {
	t.Helper()
	r, err := s.Open(context.Background(), env)
	if err != nil {
		t.Fatalf("Open(%q, %q) = %v", env.Mailbox, env.ID, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %q: %v", env.ID, err)
	}
	return string(b)
}

// tree returns every path below root with its size, to show nothing moved.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, fmt.Sprintf("%s %d", rel, fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func write(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestListReadsNewAndCurWithoutMoving(t *testing.T) {
	root := t.TempDir()
	date := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	write(t, filepath.Join(root, "new", "100.a.host"), "new message")
	write(t, filepath.Join(root, "cur", "200.b.host:2,SR"), "seen and answered")
	write(t, filepath.Join(root, "cur", "300.c.host:2,"), "in cur, no flags")
	write(t, filepath.Join(root, "cur", "400.d.host:2,PTFD"), "all the rest")
	write(t, filepath.Join(root, "cur", ".hidden"), "not a message")
	write(t, filepath.Join(root, "tmp", "500.e.host"), "being delivered")
	os.Chtimes(filepath.Join(root, "new", "100.a.host"), time.Time{}, date)
	before := tree(t, root)

	s := newSource(t, root)
	envs := list(t, s, "INBOX")
	want := []struct {
		id    string
		flags []mail.Flag
		body  string
	}{
		{"100.a.host", []mail.Flag{}, "new message"},
		{"200.b.host", []mail.Flag{mail.FlagAnswered, mail.FlagSeen}, "seen and answered"},
		{"300.c.host", []mail.Flag{}, "in cur, no flags"},
		{"400.d.host", []mail.Flag{maildirfmt.FlagForwarded, mail.FlagDeleted, mail.FlagDraft, mail.FlagFlagged}, "all the rest"},
	}
	if len(envs) != len(want) {
		t.Fatalf("List = %d messages %v, want %d", len(envs), envs, len(want))
	}
	for i, w := range want {
		e := envs[i]
		if string(e.ID) != w.id || !reflect.DeepEqual(e.Flags, w.flags) || e.Size != int64(len(w.body)) || e.Mailbox != "INBOX" {
			t.Errorf("List[%d] = %+v, want ID %q flags %v size %d", i, e, w.id, w.flags, len(w.body))
		}
		if got := read(t, s, e); got != w.body {
			t.Errorf("Open(%q) = %q, want %q", e.ID, got, w.body)
		}
	}
	if !envs[0].Date.Equal(date) {
		t.Errorf("List[0].Date = %v, want the mtime %v", envs[0].Date, date)
	}
	if after := tree(t, root); !reflect.DeepEqual(before, after) {
		t.Errorf("the tree changed:\nbefore %v\nafter  %v", before, after)
	}
}

func TestOpenFindsMovedMessage(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "new", "100.a.host"), "body")
	os.Mkdir(filepath.Join(root, "cur"), 0o700)
	s := newSource(t, root)
	env := list(t, s, "INBOX")[0]

	// Another client reads it: new/ -> cur/ with \Seen.
	if err := os.Rename(filepath.Join(root, "new", "100.a.host"), filepath.Join(root, "cur", "100.a.host:2,S")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, env); got != "body" {
		t.Fatalf("Open after new->cur = %q", got)
	}
	// Flags change again, to letters we do not guess.
	if err := os.Rename(filepath.Join(root, "cur", "100.a.host:2,S"), filepath.Join(root, "cur", "100.a.host:2,RSab")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, env); got != "body" {
		t.Fatalf("Open after a flag change = %q", got)
	}
	if again := list(t, s, "INBOX"); len(again) != 1 || again[0].ID != env.ID {
		t.Fatalf("List after the moves = %v, want the same ID %q", again, env.ID)
	}
	os.Remove(filepath.Join(root, "cur", "100.a.host:2,RSab"))
	if _, err := s.Open(context.Background(), env); !errors.Is(err, mail.ErrNotFound) {
		t.Fatalf("Open of a removed message = %v, want ErrNotFound", err)
	}
	for _, id := range []mail.ID{"", "../new/x", ".hidden", "a:2,S", "a\x00b"} {
		if _, err := s.Open(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: id}); !errors.Is(err, mail.ErrNotFound) {
			t.Errorf("Open(ID %q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestMailboxes(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	write(t, filepath.Join(outside, "cur", "1.x.host:2,S"), "outside")
	write(t, filepath.Join(root, "cur", "1.a.host"), "inbox")
	for _, d := range []string{".Sent/cur", ".Archive.2024/new", ".&ANw-bersicht/cur", `.a\2eb/cur`, ".INBOX.Sub/cur",
		".NoMaildir/other", ".INBOX/cur", ".bad&AGE-/cur", ".a..b/cur", "notfolder/cur"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(root, ".Foo")); err != nil {
		t.Fatal(err)
	}
	s := newSource(t, root)
	got, err := s.Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"INBOX", "Archive/2024", "INBOX/Sub", "Sent", "a.b", "Übersicht"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Mailboxes = %q, want %q", got, want)
	}
	// F7: the planted symlink is not followed.
	if err := s.List(context.Background(), "Foo", func(mail.Envelope) error { return nil }); !errors.Is(err, mail.ErrMailboxNotFound) {
		t.Errorf("List(symlinked Foo) = %v, want ErrMailboxNotFound", err)
	}
	for _, m := range []string{"Missing", "NoMaildir", "../x", ""} {
		if err := s.List(context.Background(), m, func(mail.Envelope) error { return nil }); !errors.Is(err, mail.ErrMailboxNotFound) {
			t.Errorf("List(%q) = %v, want ErrMailboxNotFound", m, err)
		}
	}
	if envs := list(t, s, "Sent"); len(envs) != 0 {
		t.Errorf("List(Sent) = %v, want empty", envs)
	}
}

func TestSymlinkedMessageIgnored(t *testing.T) {
	root := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	write(t, secret, "secret")
	write(t, filepath.Join(root, "cur", "1.a.host:2,S"), "real")
	if err := os.Symlink(secret, filepath.Join(root, "cur", "2.b.host:2,S")); err != nil {
		t.Fatal(err)
	}
	s := newSource(t, root)
	envs := list(t, s, "INBOX")
	if len(envs) != 1 || envs[0].ID != "1.a.host" {
		t.Fatalf("List = %v, want only the regular file", envs)
	}
	_, err := s.Open(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: "2.b.host", Flags: []mail.Flag{mail.FlagSeen}})
	if !errors.Is(err, mail.ErrNotFound) {
		t.Fatalf("Open(symlink) = %v, want ErrNotFound", err)
	}
}

func TestDovecotKeywords(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "dovecot-keywords"), "0 $Label1\n1 Junk\nbogus\n")
	write(t, filepath.Join(root, "cur", "1.a.host:2,Sabz"), "x")
	envs := list(t, newSource(t, root), "INBOX")
	want := []mail.Flag{"$Label1", "Junk", mail.FlagSeen}
	if len(envs) != 1 || !reflect.DeepEqual(envs[0].Flags, want) {
		t.Fatalf("List = %v, want flags %v", envs, want)
	}
}

func TestCancelAndClose(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "cur", "1.a.host:2,S"), "x")
	s := newSource(t, root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.List(ctx, "INBOX", func(mail.Envelope) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("List(cancelled) = %v, want context.Canceled", err)
	}
	if _, err := s.Mailboxes(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Mailboxes(cancelled) = %v", err)
	}
	stop := errors.New("stop")
	if err := s.List(context.Background(), "INBOX", func(mail.Envelope) error { return stop }); err != stop {
		t.Errorf("List with fn error = %v, want it unchanged", err)
	}
	env := list(t, s, "INBOX")[0]
	ctx, cancel = context.WithCancel(context.Background())
	r, err := s.Open(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel = %v, want context.Canceled", err)
	}
	r.Close()
	for range 2 {
		if err := s.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	}
	if err := s.List(context.Background(), "INBOX", func(mail.Envelope) error { return nil }); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("List after Close = %v, want ErrClosed", err)
	}
}

func TestNewMissingRoot(t *testing.T) {
	var ce *mail.ConfigError
	if _, err := New(context.Background(), filepath.Join(t.TempDir(), "nope"), nil); !errors.As(err, &ce) {
		t.Fatalf("New(missing) = %v, want *mail.ConfigError", err)
	}
}

func TestParseURL(t *testing.T) {
	abs := t.TempDir()
	tests := []struct {
		raw, want string
		bad       bool
	}{
		{raw: "maildir:" + abs, want: abs},
		{raw: "maildir://" + abs, want: abs},
		{raw: "maildir:" + abs + "?folders=x", bad: true},
		{raw: "maildir://host/x", bad: true},
		{raw: "maildir:", bad: true},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseURL(u)
		if tt.bad {
			var ce *mail.ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("ParseURL(%q) = %+v, %v, want a *mail.ConfigError", tt.raw, c, err)
			}
			continue
		}
		if err != nil || c.Root != tt.want {
			t.Errorf("ParseURL(%q) = %+v, %v, want root %q", tt.raw, c, err, tt.want)
		}
	}
	r := mail.NewRegistry()
	Register(r)
	src, err := r.OpenSource(context.Background(), "maildir:"+abs, nil)
	if err != nil {
		t.Fatalf("OpenSource = %v", err)
	}
	src.Close()
}
