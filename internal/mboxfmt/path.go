package mboxfmt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/mailferry/mailferry/sync/mail"
)

// Ext is the file name extension of a mailbox file.
const Ext = ".mbox"

// Sidecar file suffixes, appended to a mailbox file's name. No mailbox file
// ends in them, and no directory made for a mailbox name may either (see
// FilePath), so sidecars never collide with mailboxes.
const (
	JournalSuffix = ".mfjournal" // the sink's commit journal
	LockSuffix    = ".lock"      // the dotlock
	TempSuffix    = ".tmp"       // a journal being rewritten
)

// Limits on mailbox names, in bytes. A component plus the longest suffix
// (".mbox.mfjournal.tmp") stays under the usual 255-byte file name limit.
const (
	MaxComponent = 200
	MaxName      = 1024
)

// FilePath maps a mailbox name to its file under root: "INBOX" to
// root/INBOX.mbox, "A/B" to root/A/B.mbox. Names are UTF-8 with '/' as the
// hierarchy separator.
//
// The mapping never leaves root and is injective: it refuses (with a
// *mail.ConfigError) absolute names, empty, "." and ".." components, NUL and
// other control characters, invalid UTF-8, components over MaxComponent bytes
// and names over MaxName bytes, and a component followed by another that ends
// in ".mbox" or a sidecar suffix, since its directory would clash with a file.
// So "A" (A.mbox) and "A/B" (directory A, file A/B.mbox) coexist. It does not
// touch the file system; callers open the result without following symlinks.
//
// On a case-insensitive or normalising file system (macOS), names that differ
// only in case or Unicode normalisation share a file.
func FilePath(root, mailbox string) (string, error) {
	if err := checkName(mailbox); err != nil {
		return "", &mail.ConfigError{Msg: fmt.Sprintf("mbox: mailbox %q cannot be a file name: %v", mailbox, err), Hint: "rename the folder, or leave it out"}
	}
	return filepath.Join(root, filepath.FromSlash(mailbox)+Ext), nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > MaxName:
		return fmt.Errorf("longer than %d bytes", MaxName)
	case !utf8.ValidString(name):
		return errors.New("not UTF-8")
	case strings.HasPrefix(name, "/"):
		return errors.New("absolute name")
	}
	for _, r := range name {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return fmt.Errorf("control character %U", r)
		}
	}
	parts := strings.Split(name, "/")
	for i, c := range parts {
		switch {
		case c == "":
			return errors.New("empty component")
		case c == "." || c == "..":
			return fmt.Errorf("component %q", c)
		case len(c) > MaxComponent:
			return fmt.Errorf("component longer than %d bytes", MaxComponent)
		case i < len(parts)-1 && reservedDir(c):
			return fmt.Errorf("folder %q ends in a reserved suffix", c)
		}
	}
	return nil
}

// reservedDir reports whether a directory named c could clash with a
// mailbox file or a sidecar.
func reservedDir(c string) bool {
	for _, s := range []string{Ext, JournalSuffix, LockSuffix, TempSuffix} {
		if strings.HasSuffix(c, s) {
			return true
		}
	}
	return false
}

// MailboxName is FilePath's inverse: the mailbox stored at path under root,
// or false when path is not a mailbox file FilePath would produce.
func MailboxName(root, path string) (string, bool) {
	rel, err := filepath.Rel(root, path)
	if err != nil || !strings.HasSuffix(rel, Ext) {
		return "", false
	}
	name := filepath.ToSlash(strings.TrimSuffix(rel, Ext))
	if p, err := FilePath(root, name); err != nil || p != filepath.Join(root, rel) {
		return "", false
	}
	return name, true
}

// OpenFile opens path under root for reading without following a symlink
// in any component below root. A missing file gives an error wrapping
// fs.ErrNotExist.
func OpenFile(root, path string) (*os.File, error) {
	if err := checkNoSymlinks(root, filepath.Dir(path)); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
}

// checkNoSymlinks verifies that every directory from below root down to dir
// is a real directory, not a symlink.
func checkNoSymlinks(root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." {
		return err
	}
	p := root
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("mbox: %s: %w", p, errNotDir)
		}
	}
	return nil
}

var errNotDir = errors.New("not a directory (symlinks are not followed)")
