package maildirfmt

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mailferry/mailferry/sync/mail"
)

const testRoot = "/srv/mail/alice"

func TestFolderDir(t *testing.T) {
	tests := []struct {
		mailbox string
		want    string // relative to the root; "." is the root
	}{
		{"INBOX", "."},
		{"inbox", "."},
		{"Inbox", "."},
		{"INBOX/Sub", ".INBOX.Sub"},
		{"Sent", ".Sent"},
		{"Archive/2024", ".Archive.2024"},
		{"Übersicht", ".&ANw-bersicht"},
		{"Entwürfe", ".Entw&APw-rfe"},
		{"a&b", ".a&-b"},
		{"&", ".&-"},
		{"日本語", ".&ZeVnLIqe-"},
		{"Café & Crème", ".Caf&AOk- &- Cr&AOg-me"},
		{"🎉 Party", ".&2DzfiQ- Party"},
		{"with space", ".with space"},
		{"a.b", `.a\2eb`},
		{`back\slash`, `.back\5cslash`},
		{".hidden", `.\2ehidden`},
		{"A/B/C", ".A.B.C"},
		{"~user", ".~user"},
		{"CON", ".CON"},
	}
	for _, tt := range tests {
		t.Run(tt.mailbox, func(t *testing.T) {
			got, err := FolderDir(testRoot, tt.mailbox)
			if err != nil {
				t.Fatalf("FolderDir(%q) = %v", tt.mailbox, err)
			}
			want := filepath.Join(testRoot, tt.want)
			if got != want {
				t.Fatalf("FolderDir(%q) = %q, want %q", tt.mailbox, got, want)
			}
			name, ok := MailboxName(tt.want)
			wantName := tt.mailbox
			if tt.want == "." {
				wantName = "INBOX"
			}
			if !ok || name != wantName {
				t.Fatalf("MailboxName(%q) = %q, %v, want %q", tt.want, name, ok, wantName)
			}
		})
	}
}

// TestFolderDirHostileF7 covers docs/failure-model.md F7: every hostile name is
// refused with a *mail.ConfigError and nothing escapes the root.
func TestFolderDirHostileF7(t *testing.T) {
	tests := []string{
		"", "/", "..", ".", "../x", "../../etc", "a/../../b", "/abs", "/etc/passwd", "a//b", "a/", "a/./b",
		"foo\x00bar", "line\nbreak", "cr\rx", "tab\tx", "del\x7f", "c1\u0085x", "\xff\xfe", "a/\xc3",
		strings.Repeat("x", 10000), strings.Repeat("ü", 100),
	}
	for _, name := range tests {
		t.Run(strings.ToValidUTF8(name[:min(len(name), 20)], "?"), func(t *testing.T) {
			dir, err := FolderDir(testRoot, name)
			var ce *mail.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("FolderDir(%q) = %q, %v, want a *mail.ConfigError", name, dir, err)
			}
			if !errors.Is(err, mail.ErrConfig) || !mail.Fatal(err) {
				t.Errorf("FolderDir(%q) error %v does not classify as config", name, err)
			}
		})
	}
}

func TestMailboxNameRejects(t *testing.T) {
	tests := []string{
		"", "cur", "new", "tmp", "..",
		".INBOX", ".inbox", ".Inbox", // would shadow INBOX
		".a..b", ".a.", "..a", // empty components
		".&", ".&AOQ", ".&-AOQ-x&", // unterminated
		".&AGE-",       // 'a' hidden in base64
		".&AOQ-&AOQ-",  // two runs where the encoder writes one
		".&AOQA5A-x",   // fine run? no: must equal re-encoding
		".&2Dw-",       // lone high surrogate
		".&3gk-",       // lone low surrogate
		".&AOR-",       // non-zero padding bits
		`.a\2Eb`,       // uppercase escape
		`.a\2`, `.a\x`, // bad escapes
		".a\x00b", ".a\nb", // control characters
		".caf\xc3\xa9", // raw 8-bit
		"." + strings.Repeat("a", 255),
	}
	for _, dir := range tests {
		if dir == ".&AOQA5A-x" {
			// ä ä x: valid and canonical; keep it as a positive control.
			if name, ok := MailboxName(dir); !ok || name != "ääx" {
				t.Errorf("MailboxName(%q) = %q, %v, want ääx", dir, name, ok)
			}
			continue
		}
		if name, ok := MailboxName(dir); ok {
			t.Errorf("MailboxName(%q) = %q, true, want false", dir, name)
		}
	}
}

func TestFolderDirLength(t *testing.T) {
	ok := strings.Repeat("a", nameMax-1) // plus the leading '.'
	if _, err := FolderDir(testRoot, ok); err != nil {
		t.Errorf("FolderDir(%d bytes) = %v, want success", len(ok), err)
	}
	if _, err := FolderDir(testRoot, ok+"a"); err == nil {
		t.Errorf("FolderDir(%d bytes) succeeded, want an error", len(ok)+1)
	}
}

// canonical is the name FolderDir's result stands for.
func canonical(name string) string {
	if isInbox(name) {
		return "INBOX"
	}
	return name
}

// checkName asserts the properties FolderDir and MailboxName promise for
// one input: containment, round trip, and validity of what is accepted.
func checkName(t *testing.T, name string) (string, bool) {
	t.Helper()
	dir, err := FolderDir(testRoot, name)
	if err != nil {
		var ce *mail.ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("FolderDir(%q) error %T, want *mail.ConfigError", name, err)
		}
		return "", false
	}
	rel, err := filepath.Rel(testRoot, dir)
	if err != nil {
		t.Fatalf("Rel(%q): %v", dir, err)
	}
	if rel != "." && (strings.ContainsRune(rel, filepath.Separator) || rel == ".." || !strings.HasPrefix(rel, ".") || filepath.Dir(dir) != testRoot) {
		t.Fatalf("FolderDir(%q) = %q: not the root or a direct child of it", name, dir)
	}
	if len(rel) > nameMax {
		t.Fatalf("FolderDir(%q) = %d bytes, over NAME_MAX", name, len(rel))
	}
	back, ok := MailboxName(rel)
	if !ok || back != canonical(name) {
		t.Fatalf("MailboxName(%q) = %q, %v, want %q", rel, back, ok, canonical(name))
	}
	if !utf8.ValidString(name) {
		t.Fatalf("FolderDir accepted invalid UTF-8 %q", name)
	}
	return rel, true
}

// FuzzFolderName checks, for arbitrary names a and b and an arbitrary
// directory name: FolderDir stays inside the root, MailboxName inverts it,
// distinct names never share a directory (injectivity, docs/failure-model.md F10),
// and any directory MailboxName accepts is the one FolderDir gives back.
func FuzzFolderName(f *testing.F) {
	for _, s := range []string{
		"INBOX", "inbox", "INBOX/x", "Übersicht", "a&b", "&", "a.b", `a\2eb`, `a\b`, "..", "../x", "/abs",
		"a//b", "x\x00y", "日本語/Sub", "🎉", "&AGE-", ".", "", "a/", "Sent/2024/Q1",
	} {
		f.Add(s, s+"x", "."+s)
	}
	f.Add("a.b", `a\2eb`, `.a\2eb`)
	f.Add("Inbox", "INBOX", ".INBOX")
	f.Fuzz(func(t *testing.T, a, b, dirName string) {
		ra, oka := checkName(t, a)
		rb, okb := checkName(t, b)
		if oka && okb && ra == rb && canonical(a) != canonical(b) {
			t.Fatalf("FolderDir(%q) == FolderDir(%q) == %q", a, b, ra)
		}
		if name, ok := MailboxName(dirName); ok {
			dir, err := FolderDir(testRoot, name)
			if err != nil || dir != filepath.Join(testRoot, dirName) {
				t.Fatalf("MailboxName(%q) = %q but FolderDir gives %q, %v", dirName, name, dir, err)
			}
		}
	})
}

func TestMUTF7(t *testing.T) {
	tests := []struct{ plain, enc string }{
		{"", ""},
		{"abc", "abc"},
		{"&", "&-"},
		{"ä", "&AOQ-"},
		{"äx", "&AOQ-x"},
		{"ää", "&AOQA5A-"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"𝄞", "&2DTdHg-"},
	}
	for _, tt := range tests {
		var b strings.Builder
		encodeMUTF7(&b, tt.plain)
		if b.String() != tt.enc {
			t.Errorf("encode(%q) = %q, want %q", tt.plain, b.String(), tt.enc)
		}
		if got, ok := decodeMUTF7(tt.enc); !ok || got != tt.plain {
			t.Errorf("decode(%q) = %q, %v, want %q", tt.enc, got, ok, tt.plain)
		}
	}
}
