package maildirfmt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// Keywords (IMAP flags without a backslash, such as $Label1 or NonJunk) are
// stored as Dovecot stores them: a folder's dovecot-keywords file maps each
// to a slot 0-25, and a message file carries the letter 'a'+slot in its
// ":2," info, after the system letters. Dovecot serving the Maildir shows
// them over IMAP, and sources/maildir reads them back.
//
// Only 26 fit. Past that, a keyword is not stored: the message keeps its
// other flags and the sink logs a warning naming the keyword. (Dovecot itself
// keeps the 27th and later only in its index, which is lost when the index
// is rebuilt; a file name that loses nothing is not possible.)
const (
	// KeywordsFile is the per-folder file that maps letters to keywords.
	KeywordsFile = "dovecot-keywords"
	// MaxKeywords is the number of letters, a-z.
	MaxKeywords = 26
	// keywordsLockStale is the age past which a dovecot-keywords.lock is
	// taken to be left by a crash: Dovecot holds it only to write the few
	// hundred bytes of the file.
	keywordsLockStale = 2 * time.Minute
	// keywordsLockWait bounds the wait for a live lock.
	keywordsLockWait = 10 * time.Second
)

// Keywords is a folder's keyword table: entry i is stored as the letter
// 'a'+i; "" is a free slot.
type Keywords []string

// ReadKeywords reads the dovecot-keywords file in dir: lines "N name", where
// keyword N is stored as the letter 'a'+N. A missing or odd file just means
// no keywords.
func ReadKeywords(dir string) Keywords {
	f, err := os.Open(filepath.Join(dir, KeywordsFile))
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	var kw Keywords
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		num, name, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 0 || n >= MaxKeywords || name == "" {
			continue
		}
		for len(kw) <= n {
			kw = append(kw, "")
		}
		kw[n] = name
	}
	return kw
}

// slot returns the index of name in k (keywords compare case-insensitively,
// as IMAP flags do), or -1.
func (k Keywords) slot(name string) int {
	for i, n := range k {
		if n != "" && strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// Letters returns the letters, sorted, of the keywords among flags that k
// holds, and the storable keywords it does not hold (missing), once each in
// the order given. System flags and $Forwarded (the letter P, see
// FlagLetters) are neither.
func (k Keywords) Letters(flags []mail.Flag) (letters string, missing []string) {
	var have [MaxKeywords]bool
	for _, f := range flags {
		name := string(f)
		if !storableKeyword(name) {
			continue
		}
		if i := k.slot(name); i >= 0 {
			have[i] = true
			continue
		}
		if Keywords(missing).slot(name) < 0 {
			missing = append(missing, name)
		}
	}
	var b []byte
	for i, ok := range have {
		if ok {
			b = append(b, byte('a'+i))
		}
	}
	return string(b), missing
}

// AnyKeyword reports whether flags hold a keyword stored as a
// dovecot-keywords letter: without one, Letters gives "" whatever the
// table, and a write of flags needs no keywords file.
func AnyKeyword(flags []mail.Flag) bool {
	for _, f := range flags {
		if storableKeyword(string(f)) {
			return true
		}
	}
	return false
}

// HasKeywordLetters reports whether the file name name (a path whose last
// element is "<id>:2,<letters>") has a keyword letter a-z: without one,
// FlagsOf and Retag read nothing of the folder's table.
func HasKeywordLetters(name string) bool {
	_, info := splitName(name[strings.LastIndexByte(name, '/')+1:])
	return strings.HasPrefix(info, "2,") && strings.ContainsFunc(info[2:], func(c rune) bool { return c >= 'a' && c <= 'z' })
}

// storableKeyword reports whether name is a keyword a dovecot-keywords line
// can hold and that has no system letter: an IMAP atom (RFC 3501
// flag-keyword: no space, control character, or any of `(){%*"\]`), not a
// \-flag and not $Forwarded.
func storableKeyword(name string) bool {
	if name == "" || strings.EqualFold(name, string(FlagForwarded)) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// AddKeywords makes the dovecot-keywords file of the folder dir hold names,
// the way Dovecot writes it: it takes Dovecot's dotlock by creating
// dovecot-keywords.lock exclusively, reads the file again under it, writes
// the new table into the lock file, fsyncs it, renames it over the file
// (Dovecot's file_dotlock_replace) and fsyncs dir, so a message named with a
// new letter is never durable before the letter's meaning. Existing entries
// keep their letters; a new name takes the lowest free slot; names that do
// not fit (MaxKeywords) are left out. It returns the table as written.
//
// Dovecot rereads the file when its mtime's second changes, so the new file's
// mtime is at least one second past the old one's.
func AddKeywords(ctx context.Context, dir string, names []string, perm os.FileMode) (Keywords, error) {
	lockPath := filepath.Join(dir, KeywordsFile+".lock")
	lock, err := takeKeywordsLock(ctx, lockPath, perm)
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			_ = lock.Close()
			_ = os.Remove(lockPath)
		}
	}()
	path := filepath.Join(dir, KeywordsFile)
	kw := ReadKeywords(dir)
	kw, added := kw.with(names)
	if !added {
		return kw, nil
	}
	if _, err := lock.WriteString(kw.encode()); err != nil {
		return nil, fmt.Errorf("maildir: write %s: %w", lockPath, err)
	}
	if err := lock.Sync(); err != nil {
		return nil, fmt.Errorf("maildir: fsync %s: %w", lockPath, err)
	}
	if err := lock.Close(); err != nil {
		return nil, fmt.Errorf("maildir: close %s: %w", lockPath, err)
	}
	if err := bumpMtime(lockPath, path); err != nil {
		return nil, err
	}
	if err := os.Rename(lockPath, path); err != nil {
		return nil, fmt.Errorf("maildir: %w", err)
	}
	done = true
	if err := mail.SyncDir(dir); err != nil {
		return nil, fmt.Errorf("maildir: fsync %s: %w", dir, err)
	}
	return kw, nil
}

// with returns k with names added in free slots, and whether any was.
func (k Keywords) with(names []string) (Keywords, bool) {
	out := append(Keywords(nil), k...)
	added := false
	for _, name := range names {
		if !storableKeyword(name) || out.slot(name) >= 0 {
			continue
		}
		i := 0
		for i < len(out) && out[i] != "" {
			i++
		}
		if i >= MaxKeywords {
			continue
		}
		if i == len(out) {
			out = append(out, "")
		}
		out[i] = name
		added = true
	}
	return out, added
}

// encode is the file's text: "N name" lines in slot order, as Dovecot writes it.
func (k Keywords) encode() string {
	var b strings.Builder
	for i, n := range k {
		if n != "" {
			fmt.Fprintf(&b, "%d %s\n", i, n)
		}
	}
	return b.String()
}

// bumpMtime sets the mtime of the new file at lockPath to now, or to one
// second past the old file's when that is not later.
func bumpMtime(lockPath, oldPath string) error {
	now := time.Now()
	if fi, err := os.Stat(oldPath); err == nil && fi.ModTime().Unix() >= now.Unix() {
		now = time.Unix(fi.ModTime().Unix()+1, 0)
		if err := os.Chtimes(lockPath, time.Time{}, now); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
	}
	return nil
}

// takeKeywordsLock creates the dotlock exclusively, waiting (polling: a
// dotlock has nothing to wait on) while another holds it, and removing one
// older than keywordsLockStale.
func takeKeywordsLock(ctx context.Context, lockPath string, perm os.FileMode) (*os.File, error) {
	deadline := time.Now().Add(keywordsLockWait)
	for {
		f, err := os.OpenFile(lockPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, perm)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("maildir: lock %s: %w", lockPath, err)
		}
		if fi, err := os.Lstat(lockPath); err == nil && time.Since(fi.ModTime()) > keywordsLockStale {
			_ = os.Remove(lockPath)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("maildir: %s is held by another program for over %v", lockPath, keywordsLockWait)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
