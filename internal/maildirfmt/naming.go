package maildirfmt

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/mailferry/mailferry/sync/mail"
)

// Mailbox names on disk follow the Maildir++ layout exactly as Dovecot reads
// it with its defaults (LAYOUT=maildir++, UTF8 off):
//
//   - the root directory is INBOX; the name INBOX is case-insensitive
//     (RFC 3501 §5.1), so "Inbox" is the root too. Only the whole name is
//     special: "INBOX/Sub" is the ordinary folder ".INBOX.Sub".
//   - mailbox "A/B" is the directory ".A.B" directly under the root.
//   - each component is stored in IMAP modified UTF-7 (RFC 3501 §5.1.3):
//     "Übersicht" is "&ANw-bersicht", '&' is "&-".
//   - Maildir++ uses '.' as its hierarchy separator, so a '.' inside a
//     component cannot be stored as is. It is written "\2e", and the escape
//     character itself "\5c": the encoding of Dovecot's listescape plugin
//     (default listescape_char '\'), so Dovecot with that plugin shows the
//     original name and Dovecot without it shows `a\2eb`, a valid name that
//     maps back to the same directory. The mapping stays injective.
//
// Names that cannot be stored safely are refused with a *mail.ConfigError
// rather than mapped (docs/failure-model.md F7): an empty name or component (which
// covers absolute names, "a//b" and a trailing '/'), the components "." and
// "..", invalid UTF-8, control characters (C0, DEL, C1), and names whose
// directory would exceed NAME_MAX (255 bytes). Because every '.' and '/' of a
// component is escaped or is the separator, the directory name never contains
// '/', is never "." or "..", and always starts with '.': it is always a
// direct child of the root, whatever the input.

const (
	// inbox is the canonical spelling of the root mailbox.
	inbox = "INBOX"
	// nameMax is NAME_MAX on Linux and most file systems.
	nameMax = 255
	// escapeChar escapes '.' and itself inside a component (Dovecot's
	// listescape encoding: the escape character and two lowercase hex digits).
	escapeChar = '\\'
)

// FolderDir returns the directory that holds mailbox under the Maildir++
// root: root itself for INBOX (in any case), root/.A.B for "A/B". The result
// is always root or a direct child of root. A name that cannot be stored
// safely gives a *mail.ConfigError naming it. FolderDir touches no file.
func FolderDir(root, mailbox string) (string, error) {
	base, err := folderBase(mailbox)
	if err != nil {
		return "", err
	}
	if base == "" {
		return filepath.Clean(root), nil
	}
	return filepath.Join(root, base), nil
}

// MailboxName is FolderDir's inverse: it returns the mailbox stored in the
// directory dirName (a base name found in the root, such as ".A.B"; "." is
// the root itself, INBOX). It reports false for anything FolderDir would not
// have produced for that name: non-folder entries, invalid or non-canonical
// modified UTF-7, unknown escapes, and ".INBOX" (which would shadow INBOX).
// So FolderDir(root, name) == filepath.Join(root, dirName) whenever it
// reports true.
func MailboxName(dirName string) (string, bool) {
	if dirName == "." {
		return inbox, true
	}
	if len(dirName) < 2 || dirName[0] != '.' || len(dirName) > nameMax {
		return "", false
	}
	parts := strings.Split(dirName[1:], ".")
	names := make([]string, len(parts))
	for i, p := range parts {
		u, ok := decodeMUTF7(p)
		if !ok {
			return "", false
		}
		if u, ok = unescapeDots(u); !ok {
			return "", false
		}
		names[i] = u
	}
	name := strings.Join(names, "/")
	// Re-encoding and comparing rejects every non-canonical spelling in one
	// place (uppercase hex, split base64 runs, "INBOX" as a folder, ...), so
	// two directories can never decode to the same mailbox.
	if base, err := folderBase(name); err != nil || base != dirName {
		return "", false
	}
	return name, true
}

// folderBase returns the directory name for mailbox relative to the root, ""
// for INBOX.
func folderBase(mailbox string) (string, error) {
	bad := func(why string) error {
		shown := mailbox
		if len(shown) > 80 {
			shown = shown[:80] + "..."
		}
		return &mail.ConfigError{
			Msg:  fmt.Sprintf("maildir: mailbox %q cannot be stored: %s", shown, why),
			Hint: "rename or skip the folder on the source",
		}
	}
	if isInbox(mailbox) {
		return "", nil
	}
	if mailbox == "" {
		return "", bad("empty name")
	}
	if !utf8.ValidString(mailbox) {
		return "", bad("invalid UTF-8")
	}
	var b strings.Builder
	b.Grow(len(mailbox) + 8)
	for comp := range strings.SplitSeq(mailbox, "/") {
		switch comp {
		case "":
			return "", bad("empty hierarchy component (absolute name, '//' or trailing '/')")
		case ".", "..":
			return "", bad("component " + comp + " is not allowed")
		}
		for _, r := range comp {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return "", bad("control character in name")
			}
		}
		b.WriteByte('.')
		encodeMUTF7(&b, escapeDots(comp))
		if b.Len() > nameMax {
			return "", bad(fmt.Sprintf("longer than %d bytes on disk", nameMax))
		}
	}
	return b.String(), nil
}

// isInbox reports whether name is INBOX in any ASCII case. strings.EqualFold
// is not used: Unicode folding would be wider than IMAP's rule.
func isInbox(name string) bool {
	if len(name) != len(inbox) {
		return false
	}
	for i := 0; i < len(inbox); i++ {
		if c := name[i] &^ 0x20; c != inbox[i] {
			return false
		}
	}
	return true
}

// escapeDots writes '.' as \2e and '\' as \5c.
func escapeDots(s string) string {
	if !strings.ContainsAny(s, `.\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '.':
			b.WriteString(`\2e`)
		case escapeChar:
			b.WriteString(`\5c`)
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// unescapeDots undoes escapeDots; any other use of '\' is invalid.
func unescapeDots(s string) (string, bool) {
	if !strings.ContainsRune(s, escapeChar) {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != escapeChar {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], `\2e`):
			b.WriteByte('.')
		case strings.HasPrefix(s[i:], `\5c`):
			b.WriteByte(escapeChar)
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// mutf7 is the modified base64 of RFC 3501 §5.1.3: ',' replaces '/', no
// padding.
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// encodeMUTF7 appends s (valid UTF-8) in IMAP modified UTF-7 to b: printable
// US-ASCII stands for itself except '&' ("&-"); every run of other
// characters is one "&<base64 of UTF-16BE>-" section, as Dovecot writes it.
func encodeMUTF7(b *strings.Builder, s string) {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c <= 0x7e {
			if c == '&' {
				b.WriteString("&-")
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		j := i
		var units []uint16
		for j < len(s) && (s[j] < 0x20 || s[j] > 0x7e) {
			r, n := utf8.DecodeRuneInString(s[j:])
			units = utf16.AppendRune(units, r)
			j += n
		}
		raw := make([]byte, 2*len(units))
		for k, u := range units {
			raw[2*k], raw[2*k+1] = byte(u>>8), byte(u)
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(raw))
		b.WriteByte('-')
		i = j
	}
}

// decodeMUTF7 decodes IMAP modified UTF-7. It refuses malformed input:
// bytes outside printable US-ASCII, an unterminated or empty section other
// than "&-", non-zero padding bits, a partial UTF-16 unit, unpaired
// surrogates and printable US-ASCII hidden in a section. (Other non-canonical
// spellings are caught by MailboxName's re-encoding check.)
func decodeMUTF7(s string) (string, bool) {
	if !strings.Contains(s, "&") {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				return "", false
			}
		}
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", false
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", false
		}
		sec := s[i+1 : i+1+end]
		i += end + 1
		if sec == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.Strict().DecodeString(sec)
		if err != nil || len(raw)%2 != 0 {
			return "", false
		}
		units := make([]uint16, len(raw)/2)
		for k := range units {
			units[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		for k := 0; k < len(units); k++ {
			u := units[k]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if u >= 0xdc00 || k+1 >= len(units) {
					return "", false
				}
				r = utf16.DecodeRune(rune(u), rune(units[k+1]))
				if r == utf8.RuneError {
					return "", false
				}
				k++
			default:
				r = rune(u)
			}
			if r >= 0x20 && r <= 0x7e {
				return "", false
			}
			b.WriteRune(r)
		}
	}
	return b.String(), true
}
