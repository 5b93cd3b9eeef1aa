package mboxfmt

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

func TestFilePath(t *testing.T) {
	root := "/srv/mail"
	for _, c := range []struct {
		name, want string
	}{
		{"INBOX", "/srv/mail/INBOX.mbox"},
		{"A/B", "/srv/mail/A/B.mbox"},
		{"A", "/srv/mail/A.mbox"},
		{"A.mbox", "/srv/mail/A.mbox.mbox"},
		{"Übersicht", "/srv/mail/Übersicht.mbox"},
		{"日本語/メール", "/srv/mail/日本語/メール.mbox"},
		{"Tom & Jerry", "/srv/mail/Tom & Jerry.mbox"},
		{" spaced ", "/srv/mail/ spaced .mbox"},
		{".hidden", "/srv/mail/.hidden.mbox"},
		{"...", "/srv/mail/....mbox"},
		{`back\slash`, `/srv/mail/back\slash.mbox`},
		{strings.Repeat("a", MaxComponent), "/srv/mail/" + strings.Repeat("a", MaxComponent) + ".mbox"},
	} {
		got, err := FilePath(root, c.name)
		if err != nil || got != c.want {
			t.Errorf("FilePath(%q) = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	for _, name := range []string{
		"", "/", "/etc/passwd", "..", "../x", "a/../../x", "a/..", ".", "./a", "a/./b", "a//b", "a/", "/a",
		"a\x00b", "a\nb", "a\rb", "a\tb", "a\x7fb", "a\u0085b", "\xff\xfe", strings.Repeat("a", MaxComponent+1),
		strings.Repeat("a/", MaxName/2) + "a", "A.mbox/B", "A.lock/B", "A.mfjournal/B", "A.tmp/B",
	} {
		got, err := FilePath(root, name)
		var ce *mail.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("FilePath(%q) = %q, %v; want a *mail.ConfigError", name, got, err)
		}
	}
}

func TestMailboxName(t *testing.T) {
	root := "/srv/mail"
	for _, c := range []struct {
		path, want string
		ok         bool
	}{
		{"/srv/mail/INBOX.mbox", "INBOX", true},
		{"/srv/mail/A/B.mbox", "A/B", true},
		{"/srv/mail/.mbox", "", false},
		{"/srv/mail/A.mbox/B.mbox", "", false},
		{"/srv/mail/INBOX", "", false},
		{"/srv/mail/INBOX.mbox.lock", "", false},
		{"/elsewhere/INBOX.mbox", "", false},
	} {
		got, ok := MailboxName(root, c.path)
		if got != c.want || ok != c.ok {
			t.Errorf("MailboxName(%q) = %q, %v; want %q, %v", c.path, got, ok, c.want, c.ok)
		}
	}
}

// FuzzFilePath checks F10's properties of the name->path mapper: an
// accepted name maps inside root to a file ending in .mbox that maps back to
// the name (so the mapping is injective), and two distinct names never need
// the same path as a file and as a directory.
func FuzzFilePath(f *testing.F) {
	for _, s := range []string{"INBOX", "A/B", "A", "../x", "a//b", "A.mbox/B", "日本語/メール", "a/.", "\x00"} {
		f.Add(s, "A/B")
	}
	root := "/srv/mail"
	f.Fuzz(func(t *testing.T, a, b string) {
		pa, errA := FilePath(root, a)
		pb, errB := FilePath(root, b)
		for _, c := range []struct {
			name, path string
			err        error
		}{{a, pa, errA}, {b, pb, errB}} {
			if c.err != nil {
				var ce *mail.ConfigError
				if !errors.As(c.err, &ce) {
					t.Fatalf("FilePath(%q) error %v is not a *mail.ConfigError", c.name, c.err)
				}
				continue
			}
			rel, err := filepath.Rel(root, c.path)
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) || filepath.Clean(c.path) != c.path {
				t.Fatalf("FilePath(%q) = %q escapes %s", c.name, c.path, root)
			}
			if !strings.HasSuffix(c.path, Ext) {
				t.Fatalf("FilePath(%q) = %q does not end in %s", c.name, c.path, Ext)
			}
			if back, ok := MailboxName(root, c.path); !ok || back != c.name {
				t.Fatalf("MailboxName(FilePath(%q)) = %q, %v", c.name, back, ok)
			}
		}
		if errA != nil || errB != nil || a == b {
			return
		}
		if pa == pb {
			t.Fatalf("FilePath(%q) == FilePath(%q) == %q", a, b, pa)
		}
		if strings.HasPrefix(pb, pa+"/") || strings.HasPrefix(pa, pb+"/") {
			t.Fatalf("%q and %q need %q and %q: a file where a directory must be", a, b, pa, pb)
		}
		for _, s := range []string{JournalSuffix, LockSuffix, JournalSuffix + TempSuffix} {
			if strings.HasPrefix(pb, pa+s+"/") || pb == pa+s || strings.HasPrefix(pa, pb+s+"/") || pa == pb+s {
				t.Fatalf("%q and %q clash through the sidecar %s", a, b, s)
			}
		}
	})
}
