package mbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.Holder = (*Sink)(nil)

// Holds implements mail.Holder: a message is held while the journal knows
// its delivery key and a "From " line still starts the entry at the offset
// recorded for it within the committed length. The journal keeps the keys
// of the newest 100,000 messages (maxKeys): an older one is not confirmed.
// A mailbox file that does not exist holds nothing.
func (s *Sink) Holds(ctx context.Context, mailbox string, stored []mail.Stored) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := s.file(mailbox)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(stored))
	if _, err := s.fs.Lstat(m.path); errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, mail.ErrClosed
	}
	if err := m.open(ctx, s); err != nil {
		return nil, err
	}
	for i, st := range stored {
		if out[i], err = m.holds(st.Key); err != nil {
			return nil, fmt.Errorf("mbox: holds %s: %w", mailbox, err)
		}
	}
	return out, nil
}

// holds reports whether key names a committed entry still in the file.
func (m *mfile) holds(key string) (bool, error) {
	off, ok := m.keys[key]
	if !ok || !mboxfmt.ValidKey(key) || off+5 > m.committed {
		return false, nil
	}
	var b [5]byte
	if _, err := m.f.ReadAt(b[:], off); err != nil {
		return false, err
	}
	return string(b[:]) == "From ", nil
}
