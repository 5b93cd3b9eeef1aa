package maildirfmt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// Changing the flags of a stored message renames its file: the unique part
// (the ID) stays, the ":2," info gets the new letters, and a file in new/
// moves to cur/ once it has any (the Maildir description: a message leaves
// new/ when a reader has seen it; one with info belongs in cur/). Because
// the ID is the name without its info, the ID a checkpoint holds still
// finds the file after the rename (Tree.Open, Tree.Find).

// Rename is where a message file goes when its flags change: Old and New are
// paths relative to the folder ("cur/<id>:2,FS", "new/<id>"); Same when
// nothing changes.
type Rename struct {
	Old, New string
}

// Same reports whether the file keeps its name.
func (r Rename) Same() bool { return r.Old == r.New }

// Retag returns where the file at rel (relative to its folder) goes when its
// flags become the letters letters (FlagLetters followed by the keyword
// letters of kw, the folder's table). Letters of the old info that mean
// nothing here (an uppercase letter outside DFPRST, a keyword letter whose
// slot kw does not hold) are kept: they are another program's, and the
// flags the source knows cannot say anything about them. A file in new/
// with no letters at all stays there.
func Retag(rel, letters string, kw Keywords) Rename {
	sub, name, _ := strings.Cut(rel, "/")
	id, info := splitName(name)
	set := map[byte]bool{}
	for i := 0; i < len(letters); i++ {
		set[letters[i]] = true
	}
	if strings.HasPrefix(info, "2,") {
		for i := 2; i < len(info); i++ {
			if c := info[i]; !meaningful(c, kw) {
				set[c] = true
			}
		}
	}
	if sub == "new" && len(set) == 0 && info == "" {
		return Rename{Old: rel, New: rel}
	}
	out := make([]byte, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return Rename{Old: rel, New: "cur/" + id + ":2," + string(out)}
}

// meaningful reports whether the info letter c stands for a flag this
// package reads: a system letter, or a keyword letter kw holds.
func meaningful(c byte, kw Keywords) bool {
	if c >= 'a' && c <= 'z' {
		n := int(c - 'a')
		return n < len(kw) && kw[n] != ""
	}
	for _, l := range letters {
		if byte(l.letter) == c {
			return true
		}
	}
	return false
}

// Find returns the directory of mailbox and the path, relative to it, of
// the file holding the message id ("cur/<id>:2,FS" or "new/<id>"), from
// the cache of earlier lookups when that path still exists, else after one
// scan of the folder (fresh: always scan, for a caller whose path just
// vanished). A message that is not there gives mail.ErrNotFound; a mailbox
// that is not, mail.ErrMailboxNotFound.
func (t *Tree) Find(ctx context.Context, mailbox string, id mail.ID, fresh bool) (dir, rel string, err error) {
	dir, err = t.folder(mailbox)
	if err != nil {
		return "", "", err
	}
	if !validID(string(id)) {
		return "", "", fmt.Errorf("maildir: %q %q: %w", mailbox, id, mail.ErrNotFound)
	}
	for {
		rel, ok, err := t.locate(ctx, dir, string(id), fresh)
		if err != nil {
			return "", "", fmt.Errorf("maildir: find %q %s: %w", mailbox, id, err)
		}
		if !ok {
			return "", "", fmt.Errorf("maildir: %q %s: %w", mailbox, id, mail.ErrNotFound)
		}
		// What List lists, and only that, is a message: a symlink (or any
		// other non-regular file) under a message's name is neither listed
		// nor opened, so it is not renamed, moved or quarantined either.
		fi, err := os.Lstat(filepath.Join(dir, rel))
		switch {
		case err == nil && fi.Mode().IsRegular():
			return dir, rel, nil
		case err == nil:
			return "", "", fmt.Errorf("maildir: %q %s: not a regular file: %w", mailbox, id, mail.ErrNotFound)
		case errors.Is(err, fs.ErrNotExist) && !fresh: // renamed since the folder was read
			fresh = true
		case errors.Is(err, fs.ErrNotExist):
			return "", "", fmt.Errorf("maildir: %q %s: %w", mailbox, id, mail.ErrNotFound)
		default:
			return "", "", fmt.Errorf("maildir: find %q %s: %w", mailbox, id, err)
		}
	}
}

// Moved records that the message id of the folder dir is now at rel, so
// the next Find or Open need not scan the folder again.
func (t *Tree) Moved(dir string, id mail.ID, rel string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.where[filepath.Clean(dir)]; m != nil {
		m[string(id)] = rel
	}
}

// maxGuessLetters bounds the letters whose every combination FindNear tries
// (2^8 = 256 names); with more, it tries those one or two letters away.
const maxGuessLetters = 8

// FindNear is Find for a caller that knows which info letters the file
// probably has (letters: those it is about to give it, sorted, as Retag
// writes them): before scanning the folder it tries the names a file with
// those letters, or with one or two system or given letters more or fewer,
// would have, and new/<id>. Each try is one lstat, where a scan of a
// 50,000-message folder reads 50,000 names (25 ms of kernel time on ext4)
// and builds an index to find one file. A file whose letters are further
// off (a mail client's own, unknown letters) is found by the scan.
func (t *Tree) FindNear(ctx context.Context, mailbox string, id mail.ID, letters string) (dir, rel string, err error) {
	dir, err = t.folder(mailbox)
	if err != nil {
		return "", "", err
	}
	if validID(string(id)) {
		for _, g := range guesses(letters) {
			p := "new/" + string(id)
			if g != "-" {
				p = "cur/" + string(id) + ":2," + g
			}
			if fi, err := os.Lstat(filepath.Join(dir, p)); err == nil && fi.Mode().IsRegular() {
				return dir, p, nil
			}
		}
	}
	return t.Find(ctx, mailbox, id, false)
}

// guesses lists the info letter sets FindNear tries, nearest to letters
// first: every subset of the system letters and letters when they are at
// most maxGuessLetters, else those at most two letters away; "-", last,
// stands for new/ without info. new/ comes last because a file may be in
// both (SetFlags' link(2) fallback killed before its unlink): the cur/
// name is the later state, as Find's index has it; for no letters it comes
// second (below).
func guesses(letters string) []string {
	set := map[byte]bool{}
	for _, c := range []byte(systemLetters + letters) {
		set[c] = true
	}
	universe := make([]byte, 0, len(set))
	for c := range set {
		universe = append(universe, c)
	}
	sort.Slice(universe, func(i, j int) bool { return universe[i] < universe[j] })
	in := map[byte]bool{}
	for i := 0; i < len(letters); i++ {
		in[letters[i]] = true
	}
	maxDist := 2
	if len(universe) <= maxGuessLetters {
		maxDist = len(universe)
	}
	out := []string{letters}
	if letters == "" {
		// A file without flags is most often one delivered and never
		// seen: in new/, where it would otherwise be found only after
		// every letter set (64 lstats). A cur/ twin of it (SetFlags'
		// link(2) fallback killed before its unlink) with no letters was
		// tried first; one with letters was listed with them, so the
		// caller would not have expected none.
		out = append(out, "-")
	}
	for d := 1; d <= maxDist; d++ {
		out = appendAtDistance(out, universe, in, d)
	}
	if letters == "" {
		return out
	}
	return append(out, "-")
}

// appendAtDistance appends the sorted letter sets that differ from in by
// exactly d letters of universe.
func appendAtDistance(out []string, universe []byte, in map[byte]bool, d int) []string {
	var pick func(from, left int, flip map[byte]bool)
	pick = func(from, left int, flip map[byte]bool) {
		if left == 0 {
			var b []byte
			for _, c := range universe {
				if in[c] != flip[c] {
					b = append(b, c)
				}
			}
			out = append(out, string(b))
			return
		}
		for i := from; i <= len(universe)-left; i++ {
			flip[universe[i]] = true
			pick(i+1, left-1, flip)
			delete(flip, universe[i])
		}
	}
	pick(0, d, map[byte]bool{})
	return out
}

// systemLetters are the info letters FlagLetters writes, sorted.
var systemLetters = func() string {
	b := make([]byte, len(letters))
	for i, l := range letters {
		b[i] = byte(l.letter)
	}
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}()
