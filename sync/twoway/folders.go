package twoway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/mailferry/mailferry/sync/mail"
)

// applyRenames renames, before any message is touched, each folder the
// other side renamed (and forgets the records of each folder to be
// recreated, forgetRecreated), then moves its state to the new name: the server
// first, so a crash between leaves the old name vanished from both sides
// and the new one on both, which the next run merges as on a first sync
// (the other order would leave a known folder missing on one side). The
// listing's envelopes follow the folder, for the moves, flags and
// deletions planned in it.
func (r *run) applyRenames(plan *Plan) error {
	for i := range plan.Folders {
		fp := &plan.Folders[i]
		if fp.Recreate[A] || fp.Recreate[B] {
			if err := r.forgetRecreated(fp); err != nil {
				return err
			}
		}
		if fp.Rename == nil {
			continue
		}
		on, from := fp.Rename.On, fp.Rename.From
		if err := r.step("rename " + from); err != nil {
			return err
		}
		if err := r.stores[on].renameFolder(r.ctx, from, fp.Name); err != nil {
			if fatal(err) {
				return err
			}
			// The folder stays under its old name there; the next run
			// tries again. Nothing else of it is done now.
			r.fail(on, fmt.Sprintf("rename %q to %q on side %s", from, fp.Name, on), err)
			*fp = FolderPlan{Name: fp.Name, Skip: "its rename failed"}
			continue
		}
		if err := r.step("rename state " + from); err != nil {
			return err
		}
		if err := r.st.RenameFolder(from, fp.Name); err != nil {
			return err
		}
		r.res.Side[on].FoldersRenamed++
		r.msgs[on][fp.Name] = r.msgs[on][from] // the listing, for run.env
		delete(r.msgs[on], from)
	}
	return nil
}

// forgetRecreated drops, durably, the records of a folder about to be
// recreated on the side that deleted it, before it is created there: a
// kill after the creation must not leave records that make the new, empty
// folder look like a side that deleted every message (held back, and with
// --force deleted on the other side too). With no records, the next run
// recreates the folder again or pairs what was copied.
func (r *run) forgetRecreated(fp *FolderPlan) error {
	if err := r.step("forget recreated " + fp.Name); err != nil {
		return err
	}
	return r.st.ResetFolder(fp.Name)
}

// applyRemovals deletes the folders the other side deleted
// (--remove-folders), children before parents, then forgets their state.
// A folder that changed since the listing is not deleted (the store
// refuses): a warning, and the next run recreates it instead.
func (r *run) applyRemovals(plan *Plan) error {
	for i := len(plan.Folders) - 1; i >= 0; i-- {
		fp := &plan.Folders[i]
		for _, on := range []Side{A, B} {
			if !fp.Remove[on] {
				continue
			}
			if err := r.removeFolder(fp, on); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *run) removeFolder(fp *FolderPlan, on Side) error {
	if err := r.step("remove folder " + fp.Name); err != nil {
		return err
	}
	msgs := r.msgs[on][fp.Name]
	holds := make([]mail.ID, 0, len(msgs))
	for _, m := range msgs {
		holds = append(holds, m.ID)
	}
	if err := r.stores[on].removeFolder(r.ctx, fp.Name, holds); err != nil {
		if fatal(err) {
			return err
		}
		r.fail(on, fmt.Sprintf("delete folder %q on side %s", fp.Name, on), err)
		return nil
	}
	r.res.Side[on].FoldersRemoved++
	r.res.Side[on].Deleted += len(holds)
	if err := r.step("forget removed folder " + fp.Name); err != nil {
		return err
	}
	return r.st.RemoveFolder(fp.Name)
}

// renameFolder renames a folder of the store: a directory rename in a
// Maildir, else the sink's mail.FolderManager (IMAP RENAME).
func (s *Store) renameFolder(ctx context.Context, from, to string) error {
	if s.Maildir != nil {
		return s.Maildir.RenameFolder(from, to)
	}
	fm := mail.FeaturesOf(s.Sink).FolderManager
	if fm == nil {
		return fmt.Errorf("rename folder %q: the store cannot rename folders: %w", from, mail.ErrUnsupported)
	}
	return fm.RenameMailbox(ctx, from, to)
}

// removeFolder deletes a folder that holds exactly the messages holds: in a
// Maildir it moves into the quarantine, else the sink's
// mail.FolderManager deletes it (IMAP DELETE).
func (s *Store) removeFolder(ctx context.Context, name string, holds []mail.ID) error {
	if s.Maildir != nil {
		return s.Maildir.RemoveFolder(ctx, name, holds)
	}
	fm := mail.FeaturesOf(s.Sink).FolderManager
	if fm == nil {
		return fmt.Errorf("delete folder %q: the store cannot delete folders: %w", name, mail.ErrUnsupported)
	}
	return fm.DeleteMailbox(ctx, name, holds)
}

// RenameFolder renames mailbox from's directory to mailbox to's (Maildir++:
// ".A.B"; the folders below from are directories of their own and are
// renamed by their own plans). Done already (from gone, to there) is no
// error, as for IMAP.
func (m *MaildirFiles) RenameFolder(from, to string) error {
	src, err := m.folderDir(from)
	if err != nil {
		return err
	}
	dst, err := m.folderDir(to)
	if err != nil {
		return err
	}
	if src == filepath.Clean(m.Root) || dst == filepath.Clean(m.Root) {
		return fmt.Errorf("maildir: rename %q to %q: INBOX cannot be renamed: %w", from, to, mail.ErrUnsupported)
	}
	if _, err := os.Lstat(dst); err == nil {
		if _, serr := os.Lstat(src); errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("maildir: rename %q to %q: %s exists", from, to, dst)
	}
	return renameSynced(src, dst)
}

// RemoveFolder moves mailbox name's directory into the quarantine
// (<Quarantine>/<day>/<directory>.<time>, pruned as deleted messages are)
// while it holds exactly the messages holds; a folder already gone is no
// error.
func (m *MaildirFiles) RemoveFolder(ctx context.Context, name string, holds []mail.ID) error {
	if m.Quarantine == "" {
		return fmt.Errorf("maildir: delete folder %q: no quarantine directory: %w", name, mail.ErrUnsupported)
	}
	dir, err := m.folderDir(name)
	if err != nil {
		return err
	}
	if dir == filepath.Clean(m.Root) {
		return fmt.Errorf("maildir: delete folder %q: INBOX cannot be deleted: %w", name, mail.ErrUnsupported)
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var have []mail.ID // as the listing saw them: regular files only
	err = m.files().List(ctx, name, func(env mail.Envelope) error {
		have = append(have, env.ID)
		return nil
	})
	if err != nil && !errors.Is(err, mail.ErrMailboxNotFound) {
		return err
	}
	if why := sameIDs(have, holds); why != "" {
		return fmt.Errorf("maildir: delete folder %q: not deleted: %s", name, why)
	}
	now := m.now().UTC()
	qdir := filepath.Join(m.Quarantine, now.Format("2006-01-02"))
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return fmt.Errorf("maildir: quarantine: %w", err)
	}
	to := filepath.Join(qdir, filepath.Base(dir)+"."+now.Format("150405.000000000"))
	err = renameSynced(dir, to)
	if errors.Is(err, syscall.EXDEV) {
		return fmt.Errorf("maildir: delete folder %q: the quarantine is on another file system: %w", name, err)
	}
	if err != nil {
		return err
	}
	return nil
}

// sameIDs says how a folder's files differ from the ids expected ("" when
// they match).
func sameIDs(ids, want []mail.ID) string {
	have := make([]string, 0, len(ids))
	for _, id := range ids {
		have = append(have, string(id))
	}
	exp := make([]string, 0, len(want))
	for _, id := range want {
		exp = append(exp, string(id))
	}
	slices.Sort(have)
	slices.Sort(exp)
	if !slices.Equal(have, exp) {
		return fmt.Sprintf("it holds %d messages, not the %d listed: it changed since the listing (%s)",
			len(have), len(exp), strings.Join(diffSample(have, exp), ", "))
	}
	return ""
}

// diffSample names up to three ids in one list and not the other.
func diffSample(a, b []string) []string {
	var out []string
	for _, pair := range [][2][]string{{a, b}, {b, a}} {
		for _, id := range pair[0] {
			if _, found := slices.BinarySearch(pair[1], id); !found && len(out) < 3 {
				out = append(out, id)
			}
		}
	}
	return out
}
