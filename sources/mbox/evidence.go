package mbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/mailferry/mailferry/internal/fsevidence"
	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// An mbox has no UIDs and no mod-sequences, so a rerun learns whether a
// mailbox changed from the file system (internal/fsevidence): the stamps
// of the mbox file and of its journal (which says how much of the file is
// committed), and a hash of the file's last tailBytes. An append grows the
// size; a rewrite (a mail client expunging or changing a Status: header)
// gets a new inode when done by rename, and new times when done in place;
// the tail hash catches a same-size rewrite on a file system whose times
// did not move. The evidence is Unsettled while any time is within
// fsevidence.SettleWindow of now. Counting the messages would mean reading
// the file, so the status leaves Messages 0 and the engine keeps the count
// its last listing found.

// tailBytes is how much of a file's end the evidence hashes.
const tailBytes = 4096

var _ mail.FolderStatuser = (*Source)(nil)

// FolderStatuses implements mail.FolderStatuser from change evidence (see
// above). It reads metadata and at most the last tailBytes of each file,
// never a whole message. A mailbox without its file is absent.
func (s *Source) FolderStatuses(ctx context.Context, mailboxes []string) (map[string]mail.FolderStatus, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]mail.FolderStatus, len(mailboxes))
	for _, mb := range mailboxes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st, ok, err := s.folderStatus(mb)
		if err != nil {
			return nil, fmt.Errorf("mbox: status %q: %w", mb, err)
		}
		if ok {
			out[mb] = st
		}
	}
	return out, nil
}

// SetClock replaces the clock FolderStatuses judges the age of change
// evidence by (tests: a file written a moment ago is otherwise Unsettled).
func (s *Source) SetClock(now func() time.Time) { s.clock.Set(now) }

// folderStatus takes the evidence of one mailbox; false when its file is
// missing or not a regular file (List: ErrMailboxNotFound).
func (s *Source) folderStatus(mb string) (mail.FolderStatus, bool, error) {
	path, err := mboxfmt.FilePath(s.root, mb)
	if err != nil {
		return mail.FolderStatus{}, false, nil
	}
	now := s.clock.Now()
	file, err := fsevidence.Of(path)
	if err != nil {
		return mail.FolderStatus{}, false, err
	}
	if file.Missing {
		return mail.FolderStatus{}, false, nil
	}
	journal, err := fsevidence.Of(path + mboxfmt.JournalSuffix)
	if err != nil {
		return mail.FolderStatus{}, false, err
	}
	tail, ok, err := tailHash(s.root, path)
	if err != nil || !ok {
		return mail.FolderStatus{}, false, err
	}
	return mail.FolderStatus{Evidence: fmt.Sprintf("mbox1:f=%s;j=%s;t=%s", file, journal, tail),
		Unsettled: !fsevidence.Settled(now, file, journal)}, true, nil
}

// tailHash hashes the last tailBytes of the regular file at path (all of
// it when shorter), opened as List opens it (no symlink followed); false
// when it cannot be opened so, or is not a regular file: the folder is
// then listed in full, and List says what is wrong.
func tailHash(root, path string) (string, bool, error) {
	fh, err := mboxfmt.OpenFile(root, path)
	if err != nil {
		return "", false, nil
	}
	defer func() { _ = fh.Close() }()
	fi, err := fh.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return "", false, err
	}
	off := max(0, fi.Size()-tailBytes)
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(fh, off, fi.Size()-off)); err != nil {
		return "", false, err
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), true, nil
}
