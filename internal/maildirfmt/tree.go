package maildirfmt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/internal/fsevidence"
	"github.com/mailferry/mailferry/sync/mail"
)

// Tree reads a Maildir++ tree rooted at a directory (the root is INBOX,
// ".A.B" is mailbox "A/B"): the reading half that sources/maildir serves as a
// mail.Source and sinks/maildir serves as its Index and OpenStored. It never
// changes the tree, and is safe for concurrent use.
//
// Envelope fields: ID is the file's base name without the ":2,..." info, so
// it survives flag changes and the move from new/ to cur/; Flags come from the
// info letters (and dovecot-keywords, when present); Date is the file's mtime,
// which Dovecot uses as the received date, to the second; Size is the file's size.
// Symbolic links are never followed below the root: a folder directory,
// cur/, new/ or a message file that is a symlink is ignored.
type Tree struct {
	root string
	log  *slog.Logger

	mu sync.Mutex
	// where caches, per folder directory, ID -> path relative to the folder
	// ("cur/<name>"). It is filled only when a guessed path missed (the
	// file moved, or its info holds letters FlagLetters does not produce),
	// and rebuilt when a cached path misses too.
	where map[string]map[string]string
}

// NewTree returns a Tree over root (cleaned), which the caller has checked
// is a directory; log gets the warnings of Mailboxes (nil: discarded).
// NewTree touches nothing.
func NewTree(root string, log *slog.Logger) *Tree {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tree{root: filepath.Clean(root), log: log, where: map[string]map[string]string{}}
}

// Root returns the tree's root directory.
func (t *Tree) Root() string { return t.root }

// Forget drops the cache of where messages were found.
func (t *Tree) Forget() {
	t.mu.Lock()
	t.where = map[string]map[string]string{}
	t.mu.Unlock()
}

// Mailboxes lists INBOX (always: the root) and every folder directory below
// the root that has cur/ or new/, decoded with MailboxName, INBOX first and
// the rest sorted. A directory whose name does not decode is skipped with a
// warning: FolderDir could not reach it, so listing it would be a mailbox
// that List cannot open.
func (t *Tree) Mailboxes(ctx context.Context) ([]string, error) {
	ents, err := os.ReadDir(t.root)
	if err != nil {
		return nil, fmt.Errorf("maildir: list %s: %w", t.root, err)
	}
	names := []string{inbox}
	for _, e := range ents {
		// DirEntry types come from readdir: a symlink is not IsDir.
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(t.root, e.Name())
		if !isRealDir(filepath.Join(dir, "cur")) && !isRealDir(filepath.Join(dir, "new")) {
			continue
		}
		name, ok := MailboxName(e.Name())
		if !ok {
			t.log.Warn("maildir: skipping a folder whose directory name is not canonical Maildir++", "mailbox", e.Name())
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names[1:])
	return names, nil
}

// folder returns the directory of mailbox, or ErrMailboxNotFound when it is
// not a real folder (missing, a symlink, no cur/ and no new/). INBOX always
// exists.
func (t *Tree) folder(mailbox string) (string, error) {
	dir, err := FolderDir(t.root, mailbox)
	if err != nil {
		return "", fmt.Errorf("maildir: mailbox %q: %w", mailbox, mail.ErrMailboxNotFound)
	}
	if dir == t.root {
		return dir, nil
	}
	if !isRealDir(dir) || (!isRealDir(filepath.Join(dir, "cur")) && !isRealDir(filepath.Join(dir, "new"))) {
		return "", fmt.Errorf("maildir: mailbox %q: %w", mailbox, mail.ErrMailboxNotFound)
	}
	return dir, nil
}

// isRealDir reports whether p is a directory and not a symlink.
func isRealDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// entry is one message file found by a directory scan.
type entry struct {
	id   string
	path string // relative to the folder: "cur/<name>" or "new/<name>"
}

// eachEntry calls fn for every message file of the folder dir: new/ and
// then cur/ (one readdir each, no stat), so an ID found in both (a message
// moved to cur/ meanwhile, seen at least once) comes last with its cur/
// entry, the later state.
func eachEntry(ctx context.Context, dir string, fn func(entry)) error {
	for _, sub := range []string{"new", "cur"} {
		names, err := readNames(ctx, filepath.Join(dir, sub))
		if err != nil {
			return err
		}
		for _, n := range names {
			// Hidden files are not messages (Maildir description); Dovecot
			// and others keep state files there.
			if n == "" || n[0] == '.' {
				continue
			}
			id, _ := splitName(n)
			fn(entry{id: id, path: sub + "/" + n})
		}
	}
	return nil
}

// scan returns the messages of the folder dir sorted by ID, an ID found in
// both new/ and cur/ with its cur/ entry.
func scan(ctx context.Context, dir string) ([]entry, error) {
	var all []entry
	if err := eachEntry(ctx, dir, func(e entry) { all = append(all, e) }); err != nil {
		return nil, err
	}
	return byID(all), nil
}

// byID sorts entries read from new/ then cur/ by ID, keeping one entry per
// ID: its cur/ one when both hold it (sorted after its new/ one). Two of
// one ID in the same directory (names that differ in their info) keep the
// greater name.
func byID(all []entry) []entry {
	slices.SortFunc(all, func(a, b entry) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		if ac, bc := strings.HasPrefix(a.path, "cur/"), strings.HasPrefix(b.path, "cur/"); ac != bc {
			if ac {
				return 1
			}
			return -1
		}
		return strings.Compare(a.path, b.path)
	})
	out := all[:0]
	for _, e := range all {
		if len(out) > 0 && out[len(out)-1].id == e.id {
			out[len(out)-1] = e
			continue
		}
		out = append(out, e)
	}
	return out
}

// index maps every message ID of the folder dir to its path, as scan
// finds them but unsorted: a lookup needs no order, and sorting a
// 50,000-message folder cost more than reading it.
func index(ctx context.Context, dir string) (map[string]string, error) {
	m := map[string]string{}
	if err := eachEntry(ctx, dir, func(e entry) { m[e.id] = e.path }); err != nil { // cur/ last: it wins
		return nil, err
	}
	return m, nil
}

// readNames lists the names in dir, which may be missing (no messages) but
// must not be a symlink. It checks ctx between chunks.
func readNames(ctx context.Context, dir string) ([]string, error) {
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("maildir: %w", err)
		}
		return nil, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("maildir: %w", err)
	}
	defer func() { _ = f.Close() }()
	var names []string
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		chunk, err := f.Readdirnames(4096)
		names = append(names, chunk...)
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("maildir: read %s: %w", dir, err)
		}
	}
}

// HoldsAny reports whether new/ or cur/ of mailbox holds a message file
// (a name not starting with '.', as scan counts them), reading each
// directory only up to the first one: its cost does not grow with the
// folder, unlike List's. A missing mailbox holds nothing.
func (t *Tree) HoldsAny(ctx context.Context, mailbox string) (bool, error) {
	dir, err := t.folder(mailbox)
	if errors.Is(err, mail.ErrMailboxNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, sub := range []string{"new", "cur"} {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		held, err := holdsAnyIn(filepath.Join(dir, sub))
		if held || err != nil {
			return held, err
		}
	}
	return false, nil
}

// HoldsSince is HoldsAny vouched for by change evidence
// (mail.HoldEvidencer): the stamps of the folder's new/ and cur/
// (internal/fsevidence: device, inode, mtime and ctime), taken before the
// directories are read. When they equal since, evidence an earlier call
// returned with a message found, neither directory gained or lost an entry
// since (an entry added, removed or renamed moves its directory's mtime and
// ctime; a folder deleted, replaced or unmounted changes device or inode),
// so the message is still there: no directory is read. Otherwise the
// folder is read as HoldsAny does, and the stamps are returned for next
// time when a message was found and they are older than
// fsevidence.SettleWindow at now (a change in the same clock tick as the
// stamp would not move it, so younger stamps are not kept).
func (t *Tree) HoldsSince(ctx context.Context, mailbox, since string, now time.Time) (bool, string, error) {
	dir, err := t.folder(mailbox)
	if errors.Is(err, mail.ErrMailboxNotFound) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	stamps := make([]fsevidence.Stamp, 2)
	for i, sub := range []string{"new", "cur"} {
		if stamps[i], err = fsevidence.Of(filepath.Join(dir, sub)); err != nil {
			return false, "", fmt.Errorf("maildir: %w", err)
		}
	}
	ev := "hold:" + stamps[0].String() + "," + stamps[1].String()
	if since != "" && ev == since {
		return true, since, nil
	}
	held, err := t.HoldsAny(ctx, mailbox)
	if !held || err != nil || !fsevidence.Settled(now, stamps...) {
		return held, "", err
	}
	return true, ev, nil
}

// holdsAnyIn reports whether dir (missing, or a symlink: none) has a name
// not starting with '.'.
func holdsAnyIn(dir string) (bool, error) {
	if !isRealDir(dir) {
		return false, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("maildir: %w", err)
	}
	defer func() { _ = f.Close() }()
	for {
		names, err := f.Readdirnames(64)
		for _, n := range names {
			if n != "" && n[0] != '.' {
				return true, nil
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("maildir: read %s: %w", dir, err)
		}
	}
}

// List calls fn for every message in new/ and cur/ of mailbox, sorted by ID.
// It stats each file for its size and mtime and moves nothing. A file that
// vanished between the directory read and the stat is looked up again by ID
// (it may have moved to cur/ or changed flags) and skipped if it is gone.
func (t *Tree) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	return t.ListFiles(ctx, mailbox, func(env mail.Envelope, _ fs.FileInfo) error { return fn(env) })
}

// ListFiles is List, with each message's file as its stat found it (two-way
// sync keeps its inode and mtime to tell a file edited in place from one
// renamed).
func (t *Tree) ListFiles(ctx context.Context, mailbox string, fn func(mail.Envelope, fs.FileInfo) error) error {
	return t.eachListed(ctx, mailbox, scan, func(dir string, e entry, kw Keywords) error {
		fi, err := os.Lstat(filepath.Join(dir, e.path))
		if errors.Is(err, fs.ErrNotExist) {
			p, ok, lerr := t.locate(ctx, dir, e.id, true)
			if lerr != nil {
				return fmt.Errorf("maildir: list %q: %w", mailbox, lerr)
			}
			if !ok {
				return nil
			}
			e.path = p
			fi, err = os.Lstat(filepath.Join(dir, p))
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("maildir: list %q: stat %s: %w", mailbox, e.path, err)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		return fn(mail.Envelope{
			Mailbox: mailbox,
			ID:      mail.ID(e.id),
			Size:    fi.Size(),
			Date:    fi.ModTime().Truncate(time.Second), // IMAP dates have seconds
			Flags:   e.flags(kw),
		}, fi)
	})
}

// locate finds the file holding id in the folder dir from the cache, after
// rebuilding the cache with one scan when fresh is set or the cached path is
// stale. It returns the path relative to dir.
func (t *Tree) locate(ctx context.Context, dir, id string, fresh bool) (string, bool, error) {
	t.mu.Lock()
	m := t.where[dir]
	t.mu.Unlock()
	if p, ok := m[id]; ok && !fresh {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			return p, true, nil
		}
	}
	m, err := index(ctx, dir)
	if err != nil {
		return "", false, err
	}
	t.mu.Lock()
	t.where[dir] = m
	t.mu.Unlock()
	p, ok := m[id]
	return p, ok, nil
}

// validID reports whether id can name a file in cur/ or new/: no path
// separators, NUL or info, not hidden.
func validID(id string) bool {
	return id != "" && id[0] != '.' && !strings.ContainsAny(id, "/:\x00")
}

// Open streams the message env.ID of env.Mailbox. The file may have moved
// from new/ to cur/ or changed flags since List: Open tries the paths env
// implies, then looks the ID up with one rescan of the folder (cached for
// later misses). A message that is gone gives mail.ErrNotFound. The file is
// opened with O_NOFOLLOW. Reads fail with ctx's error once ctx is done.
func (t *Tree) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	dir, err := t.folder(env.Mailbox)
	if err != nil {
		return nil, err
	}
	id := string(env.ID)
	if !validID(id) {
		return nil, fmt.Errorf("maildir: open %q %q: %w", env.Mailbox, id, mail.ErrNotFound)
	}
	guesses := []string{"new/" + id, "cur/" + id + ":2," + FlagLetters(env.Flags)}
	if len(env.Flags) > 0 {
		guesses[0], guesses[1] = guesses[1], guesses[0]
	}
	for _, g := range guesses {
		f, err := openFile(filepath.Join(dir, g))
		if err == nil {
			return &reader{ctx: ctx, f: f}, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("maildir: open %q %s: %w", env.Mailbox, id, err)
		}
	}
	for _, fresh := range []bool{false, true} {
		p, ok, err := t.locate(ctx, dir, id, fresh)
		if err != nil {
			return nil, fmt.Errorf("maildir: open %q %s: %w", env.Mailbox, id, err)
		}
		if !ok {
			break
		}
		f, err := openFile(filepath.Join(dir, p))
		if err == nil {
			return &reader{ctx: ctx, f: f}, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("maildir: open %q %s: %w", env.Mailbox, id, err)
		}
	}
	return nil, fmt.Errorf("maildir: open %q %s: %w", env.Mailbox, id, mail.ErrNotFound)
}

// openFile opens a regular file without following a symlink.
func openFile(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fs.ErrNotExist
		}
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fs.ErrNotExist
	}
	return f, nil
}

// reader is the body returned by Open.
type reader struct {
	ctx context.Context
	f   *os.File
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.f.Read(p)
}

func (r *reader) Close() error { return r.f.Close() }
