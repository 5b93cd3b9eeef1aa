package maildir

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailferry/mailferry/internal/fsevidence"
	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// A Maildir has no UIDs and no mod-sequences, so a rerun learns whether a
// folder changed from the file system (internal/fsevidence). Every change a
// listing can see touches a directory entry: a new message is a new name
// in new/ or cur/, a flag change renames the file, a move from new/ to
// cur/ and a deletion remove a name, and keyword letters change meaning
// only with dovecot-keywords. Each updates the mtime and ctime of new/ or
// cur/, or replaces or rewrites dovecot-keywords. So a folder's evidence
// is the stamps of new/, cur/ and dovecot-keywords and the number of
// messages (for file systems that keep directory times badly), and it is
// Unsettled while any time is within fsevidence.SettleWindow of now.

var _ mail.FolderStatuser = (*Source)(nil)

// FolderStatuses implements mail.FolderStatuser from change evidence (see
// above): Evidence, Messages and, when a directory time is too recent to
// trust, Unsettled. It reads directory entries and metadata, never a
// message. A mailbox that does not exist is absent.
func (s *Source) FolderStatuses(ctx context.Context, mailboxes []string) (map[string]mail.FolderStatus, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]mail.FolderStatus, len(mailboxes))
	for _, mb := range mailboxes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st, ok, err := s.folderStatus(ctx, mb)
		if err != nil {
			return nil, fmt.Errorf("maildir: status %q: %w", mb, err)
		}
		if ok {
			out[mb] = st
		}
	}
	return out, nil
}

// SetClock replaces the clock FolderStatuses judges the age of change
// evidence by (tests: a tree made a moment ago is otherwise Unsettled).
func (s *Source) SetClock(now func() time.Time) { s.clock.Set(now) }

// folderStatus takes the evidence of one folder; false when it is not a
// folder (as List would say ErrMailboxNotFound).
func (s *Source) folderStatus(ctx context.Context, mb string) (mail.FolderStatus, bool, error) {
	dir, ok := s.folderDir(mb)
	if !ok {
		return mail.FolderStatus{}, false, nil
	}
	now := s.clock.Now()
	var b strings.Builder
	var stamps []fsevidence.Stamp
	for _, name := range []string{"new", "cur", maildirfmt.KeywordsFile} {
		st, err := fsevidence.Of(filepath.Join(dir, name))
		if err != nil {
			return mail.FolderStatus{}, false, err
		}
		fmt.Fprintf(&b, "%s=%s;", name, st)
		stamps = append(stamps, st)
	}
	n, err := countMessages(ctx, dir)
	if err != nil {
		return mail.FolderStatus{}, false, err
	}
	fmt.Fprintf(&b, "n=%d", n)
	return mail.FolderStatus{Messages: uint32(n), Evidence: "maildir1:" + b.String(),
		Unsettled: !fsevidence.Settled(now, stamps...)}, true, nil
}

// folderDir returns the directory of mb when it is a folder List can read:
// the root (INBOX), or a real directory, not a symlink, with cur/ or new/.
func (s *Source) folderDir(mb string) (string, bool) {
	dir, err := maildirfmt.FolderDir(s.tree.Root(), mb)
	if err != nil {
		return "", false
	}
	if dir == s.tree.Root() {
		return dir, true
	}
	return dir, realDir(dir) && (realDir(filepath.Join(dir, "cur")) || realDir(filepath.Join(dir, "new")))
}

func realDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// countMessages counts the messages List would pass: names in new/ and
// cur/ that are not hidden, each ID once (a message caught moving from
// new/ to cur/ is in both). It reads names only, no file.
func countMessages(ctx context.Context, dir string) (int, error) {
	fresh := map[string]bool{}
	n := 0
	for _, sub := range []string{"new", "cur"} {
		err := eachName(ctx, filepath.Join(dir, sub), func(name string) {
			if name == "" || name[0] == '.' {
				return
			}
			id, _, _ := strings.Cut(name, ":")
			if sub == "new" {
				fresh[id] = true
			} else if fresh[id] {
				return
			}
			n++
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// eachName calls fn for each name in dir, which may be missing; a symlink
// is not read, as List does not.
func eachName(ctx context.Context, dir string, fn func(string)) error {
	if !realDir(dir) {
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, err := f.Readdirnames(4096)
		for _, n := range names {
			fn(n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
