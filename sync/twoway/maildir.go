package twoway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// MarkerFile is the file in a Maildir's root that names it for the sync
// state (its identity): written on the first sync, so that a Maildir
// replaced by another (an empty directory, an unmounted disk's mount point)
// is not taken for the one the state knows.
const MarkerFile = "mailferry-sync-id"

// QuarantineDays is how long a file the sync deleted from a Maildir is kept
// in the quarantine.
const QuarantineDays = 30

// MaildirFiles changes a Maildir++ tree's files for the sync: flags by
// renaming a file's ":2," info, moves by renaming it into another folder
// (its id, the base name, stays), deletions by moving it into a quarantine
// directory (one subdirectory per day, pruned after QuarantineDays). Each
// rename is followed by an fsync of the directories it changed.
type MaildirFiles struct {
	Root string
	// Quarantine is the directory deleted files go to; "" refuses deletions.
	Quarantine string
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	treeOnce sync.Once
	tree     *maildirfmt.Tree
	// held, while not nil (hold), takes the directories that flag writes
	// and deletions rename in, instead of an fsync at the end of each
	// call: the applier fsyncs a folder's once each (syncHeld), before it
	// records any of those changes.
	held dirSet
}

// syncDir fsyncs a directory of a Maildir (tests observe the order of the
// fsyncs and the records through it).
var syncDir = mail.SyncDir

// hold makes the flag writes and deletions that follow leave their
// directories' fsyncs to syncHeld.
func (m *MaildirFiles) hold() { m.held = dirSet{} }

// syncHeld fsyncs the directories held since hold, once each, and ends
// the hold.
func (m *MaildirFiles) syncHeld() error {
	ds := m.held
	m.held = nil
	return ds.sync()
}

// dirs is the set a call's renames note their directories in: the held
// one, else the call's own.
func (m *MaildirFiles) dirs() dirSet {
	if m.held != nil {
		return m.held
	}
	return dirSet{}
}

// syncDirs fsyncs a call's directories, unless they are held.
func (m *MaildirFiles) syncDirs(ds dirSet) error {
	if m.held != nil {
		return nil
	}
	return ds.sync()
}

func (m *MaildirFiles) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// folderDir returns the directory of mailbox.
func (m *MaildirFiles) folderDir(mailbox string) (string, error) {
	dir, err := maildirfmt.FolderDir(m.Root, mailbox)
	if err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	return dir, nil
}

// files is the tree's reader (internal/maildirfmt): the one walk of a
// Maildir's new/ and cur/ that the Maildir source and sink use too, so a
// file is a message here exactly when it is one there (a symlink never is).
func (m *MaildirFiles) files() *maildirfmt.Tree {
	m.treeOnce.Do(func() { m.tree = maildirfmt.NewTree(m.Root, nil) })
	return m.tree
}

// locate returns the directory of mailbox and the path, relative to it, of
// the file holding id: from the tree's cache, else after one read of the
// folder (a mail client renamed the file meanwhile). A message that is not
// there, or is not a regular file, gives mail.ErrNotFound.
func (m *MaildirFiles) locate(ctx context.Context, mailbox string, id mail.ID) (dir, rel string, err error) {
	dir, rel, err = m.files().Find(ctx, mailbox, id, false)
	if errors.Is(err, mail.ErrMailboxNotFound) {
		err = fmt.Errorf("maildir: %s in %q: %w", id, mailbox, mail.ErrNotFound)
	}
	return dir, rel, err
}

// locateNear is locate for a message whose file the listing saw with
// flags expect: the names those flags give are tried first (a few lstats,
// maildirfmt.Tree.FindNear), where locate's first call in a folder reads
// all its names (a run's dozen flag changes in a 5,000-message folder
// cost a scan each of the folders they touch: a tenth of a change sync's
// CPU). A file named otherwise is found by the scan, as before. The
// folder's dovecot-keywords is read only when expect has a keyword.
func (m *MaildirFiles) locateNear(ctx context.Context, mailbox string, id mail.ID, expect []mail.Flag) (dir, rel string, err error) {
	dir, err = m.folderDir(mailbox)
	if err != nil {
		return m.locate(ctx, mailbox, id)
	}
	kw, _ := keywordsFor(dir, "", expect).Letters(expect)
	b := []byte(maildirfmt.FlagLetters(expect) + kw)
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	dir, rel, err = m.files().FindNear(ctx, mailbox, id, string(b))
	if errors.Is(err, mail.ErrMailboxNotFound) {
		err = fmt.Errorf("maildir: %s in %q: %w", id, mailbox, mail.ErrNotFound)
	}
	return dir, rel, err
}

// keywordsFor is folder dir's keyword table as its dovecot-keywords holds
// it now, read only when a write to its file rel ("" for none) with the
// flag sets fs needs it: a keyword among them or a keyword letter in rel's
// name. Else it is nil, and reading the file (absent in most folders)
// would change nothing: no keyword letter is read, kept or written.
func keywordsFor(dir, rel string, fs ...[]mail.Flag) maildirfmt.Keywords {
	need := rel != "" && maildirfmt.HasKeywordLetters(rel)
	for _, f := range fs {
		need = need || maildirfmt.AnyKeyword(f)
	}
	if !need {
		return nil
	}
	return maildirfmt.ReadKeywords(dir)
}

// stat returns the file of message id in mailbox: first under the names
// a file with flags (space separated) or a few letters off has
// (locateNear), else wherever locate finds it.
func (m *MaildirFiles) stat(ctx context.Context, mailbox string, id mail.ID, flags string) (fs.FileInfo, error) {
	if _, err := m.folderDir(mailbox); err != nil {
		return nil, err
	}
	var fl []mail.Flag
	for _, f := range strings.Fields(flags) {
		fl = append(fl, mail.Flag(f))
	}
	// Not one guess: a file without flags in cur/, or with a keyword,
	// missed it, and the folder was read whole to find one file.
	dir, rel, err := m.locateNear(ctx, mailbox, id, fl)
	if err != nil {
		return nil, err
	}
	return os.Lstat(filepath.Join(dir, rel))
}

// letters returns the info letters of flags in folder dir, whose keyword
// table kw is (read by the write calling it), and the folder's keyword
// table, adding keywords its dovecot-keywords lacks (past 26 a keyword is
// dropped, as the Maildir sink does; AddKeywords reads the file again
// under its lock).
func letters(ctx context.Context, dir string, kw maildirfmt.Keywords, flags []mail.Flag) (string, maildirfmt.Keywords, error) {
	kwLetters, missing := kw.Letters(flags)
	if len(missing) > 0 {
		var err error
		if kw, err = maildirfmt.AddKeywords(ctx, dir, missing, 0o600); err != nil {
			return "", nil, err
		}
		kwLetters, _ = kw.Letters(flags)
	}
	return maildirfmt.FlagLetters(flags) + kwLetters, kw, nil
}

// SetFlags renames message id of mailbox so that its info holds flags, as
// the Maildir sink does (maildirfmt.Retag: into cur/ once it has any, and
// letters another program set that mean nothing here are kept).
func (m *MaildirFiles) SetFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	ds := dirSet{}
	if err := m.setFlags(ctx, mailbox, id, flags, ds); err != nil {
		return err
	}
	return ds.sync()
}

// setFlags is SetFlags leaving the directory it renamed in to ds, to
// fsync.
func (m *MaildirFiles) setFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag, ds dirSet) error {
	dir, rel, err := m.locate(ctx, mailbox, id)
	if err != nil {
		return err
	}
	return m.retagAt(ctx, dir, rel, id, flags, keywordsFor(dir, rel, flags), ds)
}

// retagAt renames the file rel of folder dir, message id, so that its info
// holds flags, leaving the directory to ds; kw is the folder's keyword
// table, as the write read it.
func (m *MaildirFiles) retagAt(ctx context.Context, dir, rel string, id mail.ID, flags []mail.Flag, kw maildirfmt.Keywords, ds dirSet) error {
	lt, kw, err := letters(ctx, dir, kw, flags)
	if err != nil {
		return err
	}
	rn := maildirfmt.Retag(rel, lt, kw)
	if rn.Same() {
		return nil
	}
	if err := ds.rename(filepath.Join(dir, rn.Old), filepath.Join(dir, rn.New)); err != nil {
		return err
	}
	m.files().Moved(dir, id, rn.New)
	return nil
}

// SetFlagsIf renames message id's file to flags only while its name still
// says expect, the flags the listing saw. A mail client that renamed it
// since (set or cleared a flag) gets its flags re-read and merged again,
// not overwritten: what UNCHANGEDSINCE does on IMAP (rule 2). Stored false
// returns the flags the file has now.
func (m *MaildirFiles) SetFlagsIf(ctx context.Context, mailbox string, id mail.ID, flags, expect []mail.Flag) (mail.FlagState, error) {
	ds := dirSet{}
	st, err := m.setFlagsIf(ctx, mailbox, id, flags, expect, ds)
	if err != nil {
		return st, err
	}
	return st, ds.sync()
}

// setFlagsIf is SetFlagsIf leaving the directory it renamed in to ds.
func (m *MaildirFiles) setFlagsIf(ctx context.Context, mailbox string, id mail.ID, flags, expect []mail.Flag, ds dirSet) (mail.FlagState, error) {
	dir, rel, err := m.locateNear(ctx, mailbox, id, expect)
	if err != nil {
		return mail.FlagState{}, err
	}
	// Read once for the flags now and the new name, not once for each.
	kw := keywordsFor(dir, rel, flags, expect)
	if now := maildirfmt.FlagsOf(rel, kw); !setOf(now).equal(setOf(expect)) {
		return mail.FlagState{Flags: now}, nil
	}
	// The file just found, not a second locate (which scans the folder).
	return mail.FlagState{Flags: flags, Stored: true}, m.retagAt(ctx, dir, rel, id, flags, kw, ds)
}

// setFlagsIfAll is SetFlagsIf for the writes ws of one folder, their
// renames made durable together: one fsync per directory, not one per
// message, before it returns (and the caller records them). A message's
// own failure is in its result; the error is the call's (a cancel, an
// fsync).
func (m *MaildirFiles) setFlagsIfAll(ctx context.Context, mailbox string, ws []flagWrite) ([]mail.FlagResult, error) {
	ds := m.dirs()
	out := make([]mail.FlagResult, len(ws))
	for i, w := range ws {
		if err := ctx.Err(); err != nil {
			_ = m.syncDirs(ds) // what was renamed stays renamed: make it durable all the same
			return nil, err
		}
		st, err := m.setFlagsIf(ctx, mailbox, w.id, w.flags, w.expect, ds)
		out[i] = mail.FlagResult{FlagState: st, Err: err}
	}
	if err := m.syncDirs(ds); err != nil {
		return nil, err
	}
	return out, nil
}

// Move renames env's file into folder to with flags; the id stays.
func (m *MaildirFiles) Move(ctx context.Context, env mail.Envelope, to string, flags []mail.Flag) (mail.ID, error) {
	dst, err := m.folderDir(to)
	if err != nil {
		return "", err
	}
	from, rel, err := m.locateNear(ctx, env.Mailbox, env.ID, env.Flags)
	if err != nil {
		return "", err
	}
	lt, _, err := letters(ctx, dst, keywordsFor(dst, "", flags), flags)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(dst, "cur"), 0o700); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	// Not Retag: a keyword letter of the old folder's table may mean
	// another keyword in dst's.
	name := "cur/" + string(env.ID) + ":2," + lt
	if err := renameSynced(filepath.Join(from, rel), filepath.Join(dst, name)); err != nil {
		return "", err
	}
	m.files().Moved(dst, env.ID, name)
	return env.ID, nil
}

// Remove moves each message's file into the quarantine: <Quarantine>/<day>/
// <folder>/<file name>. A message already gone is no error (an earlier run
// was killed after moving it).
func (m *MaildirFiles) Remove(ctx context.Context, envs []mail.Envelope) error {
	if m.Quarantine == "" {
		return fmt.Errorf("maildir: remove: no quarantine directory: %w", mail.ErrUnsupported)
	}
	day := m.now().UTC().Format("2006-01-02")
	ds := m.dirs()
	var err error
	for _, env := range envs {
		if err = ctx.Err(); err != nil {
			break
		}
		if err = m.quarantine(ctx, env, day, ds); err != nil {
			break
		}
	}
	// The renames made durable together, one fsync per directory (the
	// folder's, the quarantine's), before Remove returns and the caller
	// records them (or, held, before the applier does); also those made
	// before a failure.
	if serr := m.syncDirs(ds); err == nil {
		err = serr
	}
	return err
}

func (m *MaildirFiles) quarantine(ctx context.Context, env mail.Envelope, day string, ds dirSet) error {
	// The names env's flags (the listing's) give are tried before a scan
	// of the folder (locateNear): a run's few deletions in a big folder
	// read none of its names.
	dir, rel, err := m.locateNear(ctx, env.Mailbox, env.ID, env.Flags)
	if errors.Is(err, mail.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	folder := filepath.Base(dir)
	if dir == filepath.Clean(m.Root) {
		folder = "INBOX"
	}
	qdir := filepath.Join(m.Quarantine, day, folder)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return fmt.Errorf("maildir: quarantine: %w", err)
	}
	src, dst := filepath.Join(dir, rel), filepath.Join(qdir, filepath.Base(rel))
	err = ds.rename(src, dst)
	if errors.Is(err, syscall.EXDEV) {
		err = copyThenRemove(src, dst)
	}
	return err
}

// Prune removes the quarantine's days older than QuarantineDays.
func (m *MaildirFiles) Prune() error {
	if m.Quarantine == "" {
		return nil
	}
	ents, err := os.ReadDir(m.Quarantine)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("maildir: quarantine: %w", err)
	}
	cutoff := m.now().UTC().AddDate(0, 0, -QuarantineDays)
	for _, e := range ents {
		day, err := time.Parse("2006-01-02", e.Name())
		if err != nil || !e.IsDir() || !day.Before(cutoff) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(m.Quarantine, e.Name())); err != nil {
			return fmt.Errorf("maildir: quarantine: %w", err)
		}
	}
	return nil
}

// renameSynced renames and fsyncs both directories, so the rename survives
// a power loss.
func renameSynced(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	for _, d := range uniqueDirs(from, to) {
		if err := mail.SyncDir(d); err != nil {
			return fmt.Errorf("maildir: fsync %s: %w", d, err)
		}
	}
	return nil
}

// dirSet is the directories renames changed, fsynced together by sync:
// a folder's flag changes or deletions cost one fsync per directory, not
// one or two per message.
type dirSet map[string]bool

// rename renames from to to and notes both directories.
func (ds dirSet) rename(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	for _, d := range uniqueDirs(from, to) {
		ds[d] = true
	}
	return nil
}

// sync fsyncs every directory noted, in a fixed order, and forgets them.
func (ds dirSet) sync() error {
	dirs := make([]string, 0, len(ds))
	for d := range ds {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("maildir: fsync %s: %w", d, err)
		}
		delete(ds, d)
	}
	return nil
}

func uniqueDirs(a, b string) []string {
	da, db := filepath.Dir(a), filepath.Dir(b)
	if da == db {
		return []string{da}
	}
	return []string{db, da}
}

// copyThenRemove moves a file across file systems: copy, fsync, then
// remove the original. A crash between leaves both: the next run removes it
// again.
func copyThenRemove(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: quarantine: %w", err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = mail.SyncDir(filepath.Dir(to))
	}
	if err != nil {
		return fmt.Errorf("maildir: quarantine %s: %w", to, err)
	}
	if err := os.Remove(from); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	return mail.SyncDir(filepath.Dir(from))
}

// MaildirIdentity returns the identity in root's marker file, "" when there
// is none yet (a first sync, or a Maildir the state never saw).
func MaildirIdentity(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, MarkerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("maildir: marker: %w", err)
	}
	return "maildir:" + strings.TrimSpace(string(b)), nil
}

// WriteMaildirMarker writes a new random marker into root, durably, and
// returns the identity it gives.
func WriteMaildirMarker(root string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b[:])
	tmp := filepath.Join(root, "."+MarkerFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("maildir: marker: %w", err)
	}
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = renameSynced(tmp, filepath.Join(root, MarkerFile))
	}
	if err != nil {
		return "", fmt.Errorf("maildir: marker: %w", err)
	}
	return "maildir:" + id, nil
}
