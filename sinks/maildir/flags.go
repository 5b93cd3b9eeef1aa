package maildir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// retagAttempts bounds how often SetFlags looks the file up again when it
// vanished under the rename: another program (Dovecot serving the tree)
// renamed it meanwhile.
const retagAttempts = 3

// SetFlags implements mail.FlagSetter: it gives the message id of mailbox
// exactly flags, stored as Put stores them (system letters; keywords as the
// folder's dovecot-keywords letters, past 26 dropped with a warning;
// \Recent never), by renaming its file (maildirfmt.Retag): the ID is the
// name without its ":2," info, so the ID the checkpoint holds, Index and
// OpenStored still find the file, and a file in new/ moves to cur/. Info
// letters that mean nothing to mailferry are kept.
//
// The rename never replaces a file, and the directories it touched are
// fsynced before SetFlags returns, so the engine, which records the new
// flags after it, never records a rename a power loss can undo. A kill
// between the rename and that record leaves the file with the new flags
// and the record with the old: the next run calls SetFlags again, which
// finds nothing to rename, fsyncs the directory once more and returns nil,
// and the record catches up. A message that is not in mailbox gives
// mail.ErrNotFound; a mailbox that does not exist, mail.ErrMailboxNotFound.
func (s *Sink) SetFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	if err := s.live(ctx); err != nil {
		return err
	}
	// Look the message up first: a mailbox that is not there is not made.
	// Its file most likely has the letters it is about to get, or a few
	// fewer or more (FindNear tries those names before it scans the folder).
	dir, rel, err := s.tree.FindNear(ctx, mailbox, id, s.likelyLetters(mailbox, flags))
	if err != nil {
		return err
	}
	f, err := s.folder(ctx, mailbox)
	if err != nil {
		return err
	}
	kwLetters, kw, err := s.keywordLetters(ctx, f, mailbox, flags)
	if err != nil {
		return fmt.Errorf("maildir: set flags %q %s: %w", mailbox, id, err)
	}
	letters := maildirfmt.FlagLetters(flags) + kwLetters
	for attempt := 1; ; attempt++ {
		err := s.retag(dir, id, maildirfmt.Retag(rel, letters, kw))
		if !errors.Is(err, fs.ErrNotExist) || attempt == retagAttempts {
			return err
		}
		if dir, rel, err = s.tree.Find(ctx, mailbox, id, true); err != nil {
			return err
		}
	}
}

// likelyLetters returns the info letters flags have in mailbox with the
// keyword letters its dovecot-keywords already holds, sorted as Retag
// writes them: a guess at the name of the file SetFlags renames.
func (s *Sink) likelyLetters(mailbox string, flags []mail.Flag) string {
	var kw string
	if dir, err := maildirfmt.FolderDir(s.root, mailbox); err == nil {
		kw, _ = maildirfmt.ReadKeywords(dir).Letters(flags)
	}
	b := []byte(maildirfmt.FlagLetters(flags) + kw)
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}

// retag renames the message file of folder dir as r says, never over
// another file, then fsyncs the directory it is in and, when it moved from
// new/, new/ after it (the new name is durable before the old one's
// removal). A file that keeps its name has its directory fsynced too: an
// earlier run may have renamed it and been killed before its fsync.
func (s *Sink) retag(dir string, id mail.ID, r maildirfmt.Rename) error {
	oldPath, newPath := filepath.Join(dir, r.Old), filepath.Join(dir, r.New)
	dirs := []string{filepath.Dir(newPath)}
	if r.Same() {
		if d := s.dropLinkLeftover(dir, id, r.New); d != "" {
			dirs = append(dirs, d)
		}
	} else {
		if err := s.renameMessage(oldPath, newPath); err != nil {
			return err
		}
		s.tree.Moved(dir, id, r.New)
		if d := filepath.Dir(oldPath); d != dirs[0] {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := s.fs.SyncDir(d); err != nil {
			return fmt.Errorf("maildir: set flags: fsync %s: %w", d, err)
		}
	}
	return nil
}

// renameMessage moves oldPath to newPath without replacing a file. When
// newPath exists and is oldPath's own inode (the link(2) + unlink(2)
// fallback was killed between its two steps), the old name is removed.
func (s *Sink) renameMessage(oldPath, newPath string) error {
	err := s.fs.RenameNoReplace(oldPath, newPath)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("maildir: set flags: %w", err)
	case !sameFile(oldPath, newPath):
		return fmt.Errorf("maildir: set flags: %s exists and is another message: %w", newPath, err)
	}
	if err := s.fs.Remove(oldPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("maildir: set flags: %w", err)
	}
	return nil
}

// dropLinkLeftover removes new/<id> when it is a second name of the file
// at rel in cur/ (a move from new/ by the link(2) fallback, killed before
// its unlink), and returns the directory to fsync then ("": none).
func (s *Sink) dropLinkLeftover(dir string, id mail.ID, rel string) string {
	if !strings.HasPrefix(rel, "cur/") {
		return ""
	}
	stale := filepath.Join(dir, "new", string(id))
	if !sameFile(stale, filepath.Join(dir, rel)) || s.fs.Remove(stale) != nil {
		return ""
	}
	return filepath.Dir(stale)
}

// sameFile reports whether a and b are names of one inode.
func sameFile(a, b string) bool {
	fa, errA := os.Lstat(a)
	fb, errB := os.Lstat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}
