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

	mu    sync.Mutex
	where map[string]map[mail.ID]string // folder dir -> id -> "cur/name"
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

// locate returns the path, relative to dir, of the file holding id, reading
// the folder once per run (and again when a cached name went stale: a mail
// client renamed the file meanwhile).
func (m *MaildirFiles) locate(dir string, id mail.ID) (string, error) {
	m.mu.Lock()
	rel, ok := m.where[dir][id]
	m.mu.Unlock()
	if ok {
		if _, err := os.Lstat(filepath.Join(dir, rel)); err == nil {
			return rel, nil
		}
	}
	idx, err := indexFolder(dir)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	if m.where == nil {
		m.where = map[string]map[mail.ID]string{}
	}
	m.where[dir] = idx
	m.mu.Unlock()
	if rel, ok := idx[id]; ok {
		return rel, nil
	}
	return "", fmt.Errorf("maildir: %s in %s: %w", id, dir, mail.ErrNotFound)
}

func (m *MaildirFiles) remember(dir string, id mail.ID, rel string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if idx := m.where[dir]; idx != nil {
		if rel == "" {
			delete(idx, id)
		} else {
			idx[id] = rel
		}
	}
}

// indexFolder maps the ids of a folder's files to their paths (cur/ wins
// over new/, as the source lists them).
func indexFolder(dir string) (map[mail.ID]string, error) {
	idx := map[mail.ID]string{}
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
		for _, e := range ents {
			n := e.Name()
			if n == "" || n[0] == '.' || !e.Type().IsRegular() {
				continue
			}
			id, _, _ := strings.Cut(n, ":")
			idx[mail.ID(id)] = sub + "/" + n
		}
	}
	return idx, nil
}

// letters returns the info letters of flags in folder dir and the folder's
// keyword table, adding keywords its dovecot-keywords lacks (past 26 a
// keyword is dropped, as the Maildir sink does).
func letters(ctx context.Context, dir string, flags []mail.Flag) (string, maildirfmt.Keywords, error) {
	kw := maildirfmt.ReadKeywords(dir)
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
	dir, err := m.folderDir(mailbox)
	if err != nil {
		return err
	}
	rel, err := m.locate(dir, id)
	if err != nil {
		return err
	}
	lt, kw, err := letters(ctx, dir, flags)
	if err != nil {
		return err
	}
	rn := maildirfmt.Retag(rel, lt, kw)
	if rn.Same() {
		return nil
	}
	if err := renameSynced(filepath.Join(dir, rn.Old), filepath.Join(dir, rn.New)); err != nil {
		return err
	}
	m.remember(dir, id, rn.New)
	return nil
}

// SetFlagsIf renames message id's file to flags only while its name still
// says expect, the flags the listing saw. A mail client that renamed it
// since (set or cleared a flag) gets its flags re-read and merged again,
// not overwritten: what UNCHANGEDSINCE does on IMAP (rule 2). Stored false
// returns the flags the file has now.
func (m *MaildirFiles) SetFlagsIf(ctx context.Context, mailbox string, id mail.ID, flags, expect []mail.Flag) (mail.FlagState, error) {
	dir, err := m.folderDir(mailbox)
	if err != nil {
		return mail.FlagState{}, err
	}
	rel, err := m.locate(dir, id)
	if err != nil {
		return mail.FlagState{}, err
	}
	if now := maildirfmt.FlagsOf(rel, maildirfmt.ReadKeywords(dir)); !setOf(now).equal(setOf(expect)) {
		return mail.FlagState{Flags: now}, nil
	}
	return mail.FlagState{Flags: flags, Stored: true}, m.SetFlags(ctx, mailbox, id, flags)
}

// Move renames env's file into folder to with flags; the id stays.
func (m *MaildirFiles) Move(ctx context.Context, env mail.Envelope, to string, flags []mail.Flag) (mail.ID, error) {
	from, err := m.folderDir(env.Mailbox)
	if err != nil {
		return "", err
	}
	dst, err := m.folderDir(to)
	if err != nil {
		return "", err
	}
	rel, err := m.locate(from, env.ID)
	if err != nil {
		return "", err
	}
	lt, _, err := letters(ctx, dst, flags)
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
	m.remember(from, env.ID, "")
	m.remember(dst, env.ID, name)
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
	for _, env := range envs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := m.quarantine(env, day); err != nil {
			return err
		}
	}
	return nil
}

func (m *MaildirFiles) quarantine(env mail.Envelope, day string) error {
	dir, err := m.folderDir(env.Mailbox)
	if err != nil {
		return err
	}
	rel, err := m.locate(dir, env.ID)
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
	err = renameSynced(src, dst)
	if errors.Is(err, syscall.EXDEV) {
		err = copyThenRemove(src, dst)
	}
	if err != nil {
		return err
	}
	m.remember(dir, env.ID, "")
	return nil
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
