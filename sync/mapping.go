package sync

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// FolderMap renames destination mailboxes by rules given as repeatable
// --map 'SRC_RE=DST' flags. SRC_RE is a regular expression (RE2 syntax)
// matched against the whole source mailbox name ('/'-separated UTF-8, as
// sources list them); DST may use $1, ${1} or ${name} for the expression's
// groups (write ${1} when a letter or digit follows). The first rule that
// matches wins; a name no rule matches is kept. A '=' inside SRC_RE is
// written '\='. The zero value and nil map nothing.
type FolderMap struct {
	rules []folderRule
}

type folderRule struct {
	spec string
	re   *regexp.Regexp
	dst  string
}

// ParseMap parses --map specs. Errors are *mail.ConfigError naming the
// spec.
func ParseMap(specs []string) (*FolderMap, error) {
	m := &FolderMap{}
	for _, spec := range specs {
		src, dst, ok := splitSpec(spec)
		bad := func(msg string) error {
			return &mail.ConfigError{Msg: fmt.Sprintf("--map %q: %s", spec, msg), Hint: `write --map 'SOURCE_REGEXP=DESTINATION', e.g. --map 'INBOX/(.*)=$1' or --map 'Sent Items=Sent'`}
		}
		if !ok {
			return nil, bad("no '=' between the source expression and the destination")
		}
		if src == "" {
			return nil, bad("empty source expression")
		}
		if strings.Trim(dst, "/") == "" {
			return nil, bad("empty destination")
		}
		re, err := regexp.Compile(`^(?:` + src + `)$`)
		if err != nil {
			return nil, bad(err.Error())
		}
		m.rules = append(m.rules, folderRule{spec: spec, re: re, dst: dst})
	}
	return m, nil
}

// splitSpec splits at the first '=' not escaped with a backslash.
func splitSpec(spec string) (string, string, bool) {
	for i := 0; i < len(spec); i++ {
		switch spec[i] {
		case '\\':
			i++
		case '=':
			return spec[:i], spec[i+1:], true
		}
	}
	return "", "", false
}

// Lookup returns the destination name for mailbox and whether a rule
// matched. A rule whose expansion is empty (or only separators) does not
// count as a match, so it cannot send mail to a nameless folder.
func (m *FolderMap) Lookup(mailbox string) (string, bool) {
	if m == nil {
		return mailbox, false
	}
	for _, r := range m.rules {
		idx := r.re.FindStringSubmatchIndex(mailbox)
		if idx == nil {
			continue
		}
		out := string(r.re.ExpandString(nil, r.dst, mailbox, idx))
		if out = cleanName(out); out != "" {
			return out, true
		}
	}
	return mailbox, false
}

// cleanName drops empty components ("a//b", a leading or trailing '/').
func cleanName(name string) string {
	var parts []string
	for _, p := range strings.Split(name, "/") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

// Func returns the map as Options.MapMailbox.
func (m *FolderMap) Func() func(string) string {
	return m.Then(nil)
}

// Then returns a MapMailbox function that applies m and, for names no rule
// matched, next (when not nil): explicit --map rules override the role
// mapping of RoleMap.
func (m *FolderMap) Then(next func(string) string) func(string) string {
	return func(name string) string {
		if out, ok := m.Lookup(name); ok {
			return out
		}
		if next != nil {
			return next(name)
		}
		return name
	}
}

// String lists the rules, for logs.
func (m *FolderMap) String() string {
	if m == nil {
		return ""
	}
	var specs []string
	for _, r := range m.rules {
		specs = append(specs, r.spec)
	}
	return strings.Join(specs, "; ")
}

// mappedRoles are the special-use roles RoleMap follows. \All and \Flagged
// name virtual collections (Gmail's All Mail, a flagged view), which are
// not destinations.
var mappedRoles = map[string]bool{
	mail.RoleSent: true, mail.RoleDrafts: true, mail.RoleTrash: true,
	mail.RoleJunk: true, mail.RoleArchive: true,
}

// RoleMap returns a MapMailbox function that puts a source mailbox with a
// special-use role (RFC 6154, see mail.RoleLister) into the destination
// mailbox with the same role, and the source mailbox's children under it:
// with source "Sent Items" (\Sent) and destination "Sent" (\Sent), "Sent
// Items" becomes "Sent" and "Sent Items/2023" becomes "Sent/2023". Roles
// the destination lacks, and mailboxes without a role, keep their names.
// When the destination has several mailboxes with one role, the first in
// sort order is used.
func RoleMap(srcRoles, dstRoles map[string]string) func(string) string {
	dstByRole := map[string]string{}
	names := make([]string, 0, len(dstRoles))
	for name := range dstRoles {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		role := canonRole(dstRoles[name])
		if _, taken := dstByRole[role]; !taken && mappedRoles[role] {
			dstByRole[role] = name
		}
	}
	// Source role folders with a destination, longest first so the
	// innermost role folder wins.
	type pair struct{ src, dst string }
	var pairs []pair
	for name, role := range srcRoles {
		if dst, ok := dstByRole[canonRole(role)]; ok {
			pairs = append(pairs, pair{name, dst})
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if len(pairs[i].src) != len(pairs[j].src) {
			return len(pairs[i].src) > len(pairs[j].src)
		}
		return pairs[i].src < pairs[j].src
	})
	return func(name string) string {
		for _, p := range pairs {
			if name == p.src {
				return p.dst
			}
			if strings.HasPrefix(name, p.src+"/") {
				return p.dst + name[len(p.src):]
			}
		}
		return name
	}
}

// canonRole spells a role as the mail.Role constants do.
func canonRole(role string) string {
	for _, r := range []string{mail.RoleAll, mail.RoleArchive, mail.RoleDrafts, mail.RoleFlagged, mail.RoleJunk, mail.RoleSent, mail.RoleTrash} {
		if strings.EqualFold(role, r) {
			return r
		}
	}
	return role
}

// RoleMapFor asks src and dst for their mailbox roles and returns RoleMap of
// them, or nil (no renaming) when either side cannot tell (is not a
// mail.RoleLister).
func RoleMapFor(ctx context.Context, src, dst any) (func(string) string, error) {
	sl, dl := mail.FeaturesOf(src).RoleLister, mail.FeaturesOf(dst).RoleLister
	if sl == nil || dl == nil {
		return nil, nil
	}
	sr, err := sl.MailboxRoles(ctx)
	if err != nil {
		return nil, fmt.Errorf("source mailbox roles: %w", err)
	}
	dr, err := dl.MailboxRoles(ctx)
	if err != nil {
		return nil, fmt.Errorf("destination mailbox roles: %w", err)
	}
	return RoleMap(sr, dr), nil
}

// gmailDefaults name the destination folders of Gmail's special folders
// when the destination has no folder with their role: "[Gmail]/Sent Mail"
// becomes "Sent" rather than a folder under "[Gmail]".
var gmailDefaults = map[string]string{
	mail.RoleArchive: "Archive", mail.RoleSent: "Sent", mail.RoleDrafts: "Drafts",
	mail.RoleJunk: "Junk", mail.RoleTrash: "Trash",
}

// GmailFolders returns the MapMailbox function of the Gmail preset (see
// imap.Gmail), given the source's roles and the destination's (nil when it
// has none). Under the preset All Mail (\All) holds only archived mail, so
// it is treated as \Archive. A special folder goes to the destination's
// folder of the same role, else to "Archive", "Sent", "Drafts", "Junk" or
// "Trash"; labels keep their names ("Work/2024" stays nested).
func GmailFolders(srcRoles, dstRoles map[string]string) func(string) string {
	roles := make(map[string]string, len(srcRoles))
	for name, role := range srcRoles {
		if role = canonRole(role); role == mail.RoleAll {
			role = mail.RoleArchive
		}
		roles[name] = role
	}
	byRole := RoleMap(roles, dstRoles)
	return func(name string) string {
		if out := byRole(name); out != name {
			return out
		}
		if d, ok := gmailDefaults[roles[name]]; ok {
			return d
		}
		return name
	}
}
