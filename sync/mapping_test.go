package sync

import (
	"context"
	"errors"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

func TestParseMapRenames(t *testing.T) {
	m, err := ParseMap([]string{
		`INBOX/(.*)=$1`,             // Courier-style source: drop the INBOX. prefix
		`Sent Items(/.*)?=Sent${1}`, // rename with its children
		`Archives/(\d{4})/(.*)=Old/$2/${1}x`,
		`a\=b=eq`,       // a literal '=' in the expression
		`Empty/(.*)=$1`, // may expand to nothing: then no match
		`(.*)/Übersicht=$1/Overview`,
		`Sent Items=never`, // shadowed by the earlier rule
	})
	if err != nil {
		t.Fatalf("ParseMap = %v", err)
	}
	f := m.Func()
	for in, want := range map[string]string{
		"INBOX":                  "INBOX",
		"INBOX/Sent":             "Sent",
		"INBOX/Lists/go/nuts":    "Lists/go/nuts",
		"Sent Items":             "Sent",
		"Sent Items/2023/Q1":     "Sent/2023/Q1",
		"Sent Itemsx":            "Sent Itemsx", // whole-name match only
		"Archives/2019/Projekte": "Old/Projekte/2019x",
		"a=b":                    "eq",
		"Empty/":                 "Empty/",
		"Kunden/A/Übersicht":     "Kunden/A/Overview",
		"Drafts":                 "Drafts",
	} {
		if got := f(in); got != want {
			t.Errorf("map(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseMapErrors(t *testing.T) {
	for _, spec := range []string{"noequals", "=dst", "src=", "src=/", "(unclosed=x"} {
		if _, err := ParseMap([]string{spec}); !errors.Is(err, mail.ErrConfig) {
			t.Errorf("ParseMap(%q) = %v, want a config error", spec, err)
		}
	}
	var nilMap *FolderMap
	if got := nilMap.Func()("x/y"); got != "x/y" {
		t.Errorf("nil map renamed x/y to %q", got)
	}
}

func TestRoleMap(t *testing.T) {
	src := map[string]string{
		"Sent Items":             `\Sent`,
		"Deleted Items":          `\trash`, // any case
		"Archive":                `\Archive`,
		"[Gmail]/All Mail":       `\All`, // virtual: never mapped
		"Junk E-mail":            `\Junk`,
		"Sent Items/Sub/Deleted": `\Trash`, // innermost role folder wins
	}
	dst := map[string]string{
		"Sent":    `\Sent`,
		"Trash":   `\Trash`,
		"All":     `\All`,
		"Archive": `\Archive`,
		"Zsent":   `\Sent`, // second \Sent: the first in sort order is used
	}
	f := RoleMap(src, dst)
	for in, want := range map[string]string{
		"Sent Items":               "Sent",
		"Sent Items/2023":          "Sent/2023",
		"Sent Items/Sub/Deleted":   "Trash",
		"Sent Items/Sub/Deleted/x": "Trash/x",
		"Deleted Items":            "Trash",
		"Archive/2020":             "Archive/2020",
		"[Gmail]/All Mail":         "[Gmail]/All Mail",
		"Junk E-mail":              "Junk E-mail", // no \Junk on the destination
		"INBOX":                    "INBOX",
		"Sent Itemsx":              "Sent Itemsx",
	} {
		if got := f(in); got != want {
			t.Errorf("RoleMap(%q) = %q, want %q", in, got, want)
		}
	}
	// --map rules override roles.
	m, _ := ParseMap([]string{`Sent Items=Gesendet`})
	g := m.Then(f)
	if got := g("Sent Items"); got != "Gesendet" {
		t.Errorf("map then roles(Sent Items) = %q", got)
	}
	if got := g("Deleted Items"); got != "Trash" {
		t.Errorf("map then roles(Deleted Items) = %q", got)
	}
}

type roleSource struct {
	*mailtest.MemSource
	roles map[string]string
}

func (r roleSource) MailboxRoles(context.Context) (map[string]string, error) { return r.roles, nil }

type roleSink struct {
	*mailtest.MemSink
	roles map[string]string
}

func (r roleSink) MailboxRoles(context.Context) (map[string]string, error) { return r.roles, nil }

func TestRoleMapForCopy(t *testing.T) {
	src := roleSource{mailtest.NewMemSource([]mailtest.Fixture{
		{Mailbox: "Sent Items", Body: []byte("Subject: a\r\n\r\na\r\n")},
		{Mailbox: "Sent Items/2023", Body: []byte("Subject: b\r\n\r\nb\r\n")},
	}), map[string]string{"Sent Items": `\Sent`}}
	dst := roleSink{mailtest.NewMemSink(), map[string]string{"Sent": `\Sent`}}
	ctx := context.Background()
	f, err := RoleMapFor(ctx, src, dst)
	if err != nil || f == nil {
		t.Fatalf("RoleMapFor = %v, nil func: %v", err, f == nil)
	}
	if _, err := Copy(ctx, src, dst, Options{MapMailbox: f}); err != nil {
		t.Fatal(err)
	}
	if n := len(dst.Messages("Sent")) + len(dst.Messages("Sent/2023")); n != 2 {
		t.Errorf("Sent and Sent/2023 hold %d messages, want 2 (mailboxes %v)", n, dst.Mailboxes())
	}
	if f, _ := RoleMapFor(ctx, src.MemSource, dst); f != nil {
		t.Error("RoleMapFor without a RoleLister source returned a mapping")
	}
}

// TestC11GmailFolders: under the Gmail preset All Mail is the archive, and
// Gmail's special folders go to the destination's folders of their role,
// else to plain names; labels keep their names.
func TestC11GmailFolders(t *testing.T) {
	src := map[string]string{
		"[Gmail]/All Mail": mail.RoleAll, "[Gmail]/Sent Mail": mail.RoleSent, "[Gmail]/Drafts": mail.RoleDrafts,
		"[Gmail]/Spam": mail.RoleJunk, "[Gmail]/Trash": mail.RoleTrash,
	}
	withRoles := map[string]string{"Archives": mail.RoleArchive, "Sent Items": mail.RoleSent}
	for _, tc := range []struct {
		dst        map[string]string
		name, want string
	}{
		{nil, "[Gmail]/All Mail", "Archive"},
		{nil, "[Gmail]/Sent Mail", "Sent"},
		{nil, "[Gmail]/Drafts", "Drafts"},
		{nil, "[Gmail]/Spam", "Junk"},
		{nil, "[Gmail]/Trash", "Trash"},
		{nil, "INBOX", "INBOX"},
		{nil, "Work/2024", "Work/2024"},
		{withRoles, "[Gmail]/All Mail", "Archives"},
		{withRoles, "[Gmail]/Sent Mail", "Sent Items"},
		{withRoles, "[Gmail]/Drafts", "Drafts"},
		{withRoles, "Label1", "Label1"},
	} {
		if got := GmailFolders(src, tc.dst)(tc.name); got != tc.want {
			t.Errorf("GmailFolders(dst %v)(%q) = %q, want %q", tc.dst, tc.name, got, tc.want)
		}
	}
}
