package mbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.Holder = (*Sink)(nil)

// Holds implements mail.Holder: a message is held while the journal knows
// its delivery key and a "From " line still starts an entry at the offset
// recorded for it, below the committed length. It reads only: a file this
// run has not opened is read through a descriptor of its own, without the
// lock (closing a second descriptor of a file this process locks would
// drop the lock). A file shorter than its journal's committed length was
// rewritten by another program: nothing in it is confirmed. The journal
// keeps the keys of the newest 100,000 messages (maxKeys): older ones are
// not confirmed. A mailbox that does not exist holds nothing.
func (s *Sink) Holds(ctx context.Context, mailbox string, stored []mail.Stored) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := s.file(mailbox)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, mail.ErrClosed
	}
	v := holdView{keys: m.keys, committed: m.committed, r: m.f}
	if m.f == nil {
		var closeFn func()
		if v, closeFn, err = s.readView(m.path); err != nil {
			return nil, fmt.Errorf("mbox: holds %s: %w", mailbox, err)
		}
		defer closeFn()
	}
	out := make([]bool, len(stored))
	for i, st := range stored {
		if out[i], err = v.holds(st.Key); err != nil {
			return nil, fmt.Errorf("mbox: holds %s: %w", mailbox, err)
		}
	}
	return out, nil
}

// holdView is what Holds checks keys against.
type holdView struct {
	keys      map[string]int64
	committed int64
	r         io.ReaderAt // nil: the file holds nothing
}

// readView reads the journal and opens the file of a mailbox this run has
// not opened.
func (s *Sink) readView(path string) (holdView, func(), error) {
	none := func() {}
	j, err := mboxfmt.ReadJournal(path + mboxfmt.JournalSuffix)
	if err != nil || j == nil {
		return holdView{}, none, err // no journal: no key to confirm
	}
	f, err := s.fs.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return holdView{}, none, nil
	}
	if err != nil {
		return holdView{}, none, err
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() < j.Committed {
		_ = f.Close() // read-only: nothing to lose
		return holdView{}, none, err
	}
	return holdView{keys: j.Keys, committed: j.Committed, r: f}, func() { _ = f.Close() }, nil
}

// holds reports whether key names a committed entry still in the file.
func (v holdView) holds(key string) (bool, error) {
	off, ok := v.keys[key]
	if v.r == nil || !ok || !mboxfmt.ValidKey(key) || off+5 > v.committed {
		return false, nil
	}
	var b [5]byte
	if _, err := v.r.ReadAt(b[:], off); err != nil {
		return false, err
	}
	return string(b[:]) == "From ", nil
}
