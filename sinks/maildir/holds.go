package maildir

import (
	"context"
	"time"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

var (
	_ mail.Holder          = (*Sink)(nil)
	_ mail.AnyHolder       = (*Sink)(nil)
	_ mail.HoldEvidencer   = (*Sink)(nil)
	_ mail.MailboxReleaser = (*Sink)(nil)
)

// ReleaseMailbox implements mail.MailboxReleaser: it drops the folder's
// index of stored keys (about 150 bytes a message, for the life of the
// run otherwise) when no message of it is pending or being put. The next
// Put there indexes the folder again from its file names.
func (s *Sink) ReleaseMailbox(mailbox string) {
	dir, err := maildirfmt.FolderDir(s.root, mailbox)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.folders[dir]
	if f == nil {
		return
	}
	for _, p := range s.pending {
		if p.folder == f {
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, st := range f.keys {
		if st.done != nil { // a Put is writing it
			return
		}
	}
	delete(s.folders, dir)
}

// HoldsAny implements mail.AnyHolder: whether the folder's new/ or cur/
// holds a message file, read only up to the first one.
func (s *Sink) HoldsAny(ctx context.Context, mailbox string) (bool, error) {
	if err := s.live(ctx); err != nil {
		return false, err
	}
	return s.tree.HoldsAny(ctx, mailbox)
}

// HoldsSince implements mail.HoldEvidencer with the stamps of the
// folder's new/ and cur/ (maildirfmt.Tree.HoldsSince): a no-op rerun that
// finds them as they were reads neither directory.
func (s *Sink) HoldsSince(ctx context.Context, mailbox, since string) (bool, string, error) {
	if err := s.live(ctx); err != nil {
		return false, "", err
	}
	return s.tree.HoldsSince(ctx, mailbox, since, s.clock.Now())
}

// SetClock replaces the clock HoldsSince judges the age of its evidence
// by (nil: time.Now), for tests: a folder written a moment ago has
// evidence too recent to keep.
func (s *Sink) SetClock(now func() time.Time) { s.clock.Set(now) }

// Holds implements mail.Holder: a message is held while a file named with
// its delivery key (given, or in the ID Put returned) is in the folder's cur/ or new/, whatever its flags or
// place (a mail client may have renamed it). One listing of the folder.
func (s *Sink) Holds(ctx context.Context, mailbox string, stored []mail.Stored) ([]bool, error) {
	keys := map[string]bool{}
	err := s.Index(ctx, mailbox, func(env mail.Envelope) error {
		if env.Key != "" {
			keys[env.Key] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(stored))
	for i, st := range stored {
		// The ID the sink returned carries the key too: a record re-mapped
		// to a new source ID still names its copy by it.
		k := keyOf(string(st.ID))
		out[i] = st.Key != "" && keys[safeKey(st.Key)] || k != "" && keys[k]
	}
	return out, nil
}
