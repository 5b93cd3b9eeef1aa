package maildirfmt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mailferry/mailferry/sync/mail"
)

// ListNames is ListFiles without a stat per file: one readdir each of new/
// and cur/, and fn gets every message file's envelope with ID and Flags
// (Size -1, no Date) and its path relative to the folder, sorted by ID, an
// ID in both new/ and cur/ with its cur/ entry, as ListFiles has them. The
// file type comes from the directory entry (d_type; the standard library
// stats only where a file system gives none), so what is not a regular file
// is left out as ListFiles leaves it out. Two-way sync stats only the files
// a judgement needs (Tree.Lstat): in a 5,000-message folder where a few
// changed, 5,000 lstats were most of a sync's CPU.
//
// Files whose names end in the same info share one Flags slice (a folder's
// files have a few flag sets, not one each): fn must not change it in
// place.
func (t *Tree) ListNames(ctx context.Context, mailbox string, fn func(env mail.Envelope, rel string) error) error {
	return t.ScanNames(ctx, mailbox).Each(ctx, fn)
}

// Names is a folder's names as ScanNames read them, for Each to go
// through later: a caller may read a folder's directories while it does
// something else (two-way sync reads them while it loads the folder's
// records).
type Names struct {
	mailbox string
	l       listed
	err     error
}

// ScanNames reads mailbox's names as ListNames does, without going
// through them: Each does.
func (t *Tree) ScanNames(ctx context.Context, mailbox string) *Names {
	l, err := t.readListed(ctx, mailbox, scanRegular)
	return &Names{mailbox: mailbox, l: l, err: err}
}

// Each is ListNames over the names n holds, with the error reading them
// gave, if any.
func (n *Names) Each(ctx context.Context, fn func(env mail.Envelope, rel string) error) error {
	if n.err != nil {
		return n.err
	}
	byInfo := map[string][]mail.Flag{}
	return n.l.each(ctx, func(_ string, e entry, kw Keywords) error {
		_, info := splitName(filepath.Base(e.path))
		flags, ok := byInfo[info]
		if !ok {
			flags = parseFlags(info, kw)
			byInfo[info] = flags
		}
		return fn(mail.Envelope{Mailbox: n.mailbox, ID: mail.ID(e.id), Size: -1, Flags: flags}, e.path)
	})
}

// listed is a folder as ListNames and ListFiles read it: its directory,
// its entries sorted by ID, its keywords.
type listed struct {
	dir  string
	ents []entry
	kw   Keywords
}

// readListed reads the folder of mailbox with read: the head ListNames and
// ListFiles share.
func (t *Tree) readListed(ctx context.Context, mailbox string, read func(context.Context, string) ([]entry, error)) (listed, error) {
	dir, err := t.folder(mailbox)
	if err != nil {
		return listed{}, err
	}
	ents, err := read(ctx, dir)
	if err != nil {
		return listed{}, fmt.Errorf("maildir: list %q: %w", mailbox, err)
	}
	return listed{dir: dir, ents: ents, kw: ReadKeywords(dir)}, nil
}

// each calls fn for each entry of l in turn while ctx lasts.
func (l listed) each(ctx context.Context, fn func(dir string, e entry, kw Keywords) error) error {
	for _, e := range l.ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(l.dir, e, l.kw); err != nil {
			return err
		}
	}
	return nil
}

// flags are the flags e's file name gives.
func (e entry) flags(kw Keywords) []mail.Flag {
	_, info := splitName(filepath.Base(e.path))
	return parseFlags(info, kw)
}

// Lstat returns the file of message id of mailbox that ListNames found at
// rel, as ListFiles would have stat'ed it: a file renamed since (a flag
// changed, a move to cur/) is looked up again with one scan, and a message
// gone, or no longer a regular file, gives mail.ErrNotFound. It returns the
// path where the file was found.
func (t *Tree) Lstat(ctx context.Context, mailbox string, id mail.ID, rel string) (fs.FileInfo, string, error) {
	dir, err := t.folder(mailbox)
	if err != nil {
		return nil, "", err
	}
	fi, err := os.Lstat(filepath.Join(dir, rel))
	if errors.Is(err, fs.ErrNotExist) {
		var ok bool
		if rel, ok, err = t.locate(ctx, dir, string(id), true); err != nil {
			return nil, "", fmt.Errorf("maildir: stat %q %s: %w", mailbox, id, err)
		}
		if !ok {
			return nil, "", fmt.Errorf("maildir: %q %s: %w", mailbox, id, mail.ErrNotFound)
		}
		fi, err = os.Lstat(filepath.Join(dir, rel))
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", fmt.Errorf("maildir: %q %s: %w", mailbox, id, mail.ErrNotFound)
	case err != nil:
		return nil, "", fmt.Errorf("maildir: stat %q %s: %w", mailbox, id, err)
	case !fi.Mode().IsRegular():
		return nil, "", fmt.Errorf("maildir: %q %s: not a regular file: %w", mailbox, id, mail.ErrNotFound)
	}
	return fi, rel, nil
}

// scanRegular is scan keeping only regular files, by their directory
// entries' type.
func scanRegular(ctx context.Context, dir string) ([]entry, error) {
	var all []entry
	for _, sub := range []string{"new", "cur"} {
		if err := eachRegular(ctx, filepath.Join(dir, sub), func(n string) {
			id, _ := splitName(n)
			all = append(all, entry{id: id, path: sub + "/" + n})
		}); err != nil {
			return nil, err
		}
	}
	return byID(all), nil
}

// eachRegular calls fn with the name of every regular file in dir that is
// not hidden; dir may be missing (no messages) but not a symlink.
func eachRegular(ctx context.Context, dir string, fn func(name string)) error {
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("maildir: %w", err)
		}
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	defer func() { _ = f.Close() }()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk, err := f.ReadDir(4096)
		for _, de := range chunk {
			if n := de.Name(); n != "" && n[0] != '.' && de.Type().IsRegular() {
				fn(n)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("maildir: read %s: %w", dir, err)
		}
	}
}

// RegularNames calls fn with the name of every regular, not hidden file in
// new/ and then cur/ of the folder dir, from the directory entries alone (no
// stat): what a listing of the folder would find there, before a name in
// both is read once.
func RegularNames(ctx context.Context, dir string, fn func(sub, name string)) error {
	for _, sub := range []string{"new", "cur"} {
		if err := eachRegular(ctx, filepath.Join(dir, sub), func(n string) { fn(sub, n) }); err != nil {
			return err
		}
	}
	return nil
}

// FlagsAt returns the flags of the file at rel (relative to mailbox's
// directory, as Lstat returns it), read from its name.
func (t *Tree) FlagsAt(mailbox, rel string) []mail.Flag {
	dir, err := t.folder(mailbox)
	if err != nil {
		return FlagsOf(rel, nil)
	}
	return FlagsOf(rel, ReadKeywords(dir))
}

// IDOf returns the message ID a file name in cur/ or new/ stands for: the
// name without its ":2,..." info.
func IDOf(name string) mail.ID {
	id, _ := splitName(name)
	return mail.ID(id)
}
