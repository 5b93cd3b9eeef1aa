package twoway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// Store is one side of a sync: a place that can be listed and read (its
// Source) and written (its Sink), over the same messages with the same ids
// (an IMAP account: sources/imap and sinks/imapsink; a Maildir tree).
type Store struct {
	Source mail.Source
	Sink   mail.Sink
	// Identity names the store (IMAP: host and user; a Maildir: its marker,
	// see MaildirIdentity). A state written for another identity is not
	// trusted to name this store's messages: the run merges, never deletes.
	Identity string
	// Maildir, when not nil, does flags, moves and deletions on the files
	// of a Maildir++ tree (renames; a deletion moves the file to its
	// quarantine) instead of through the Sink's and Source's capabilities.
	Maildir *MaildirFiles
	// StableIDs is true when a message keeps its id when moved between
	// folders (a Maildir base name).
	StableIDs bool
	// Keeps are the flags the store keeps (nil: all).
	Keeps Keeps

	// step is the run's test hook (RunOptions.step), called between the
	// durable steps of a move by copy.
	step func(what string) error
}

// uidValidityMark joins an IMAP store's Identity and its INBOX UIDVALIDITY
// in the identity the state records.
const uidValidityMark = " uidvalidity="

// identity is the store's identity as the state records it: for a store
// with folder statuses (IMAP), Identity (host and user) and INBOX's
// UIDVALIDITY, so that an account deleted and recreated under the same name
// is not taken for the one the state knows (the two-way sync issue, rule 1).
func (s *Store) identity(ctx context.Context) (string, error) {
	fs := mail.FeaturesOf(s.Source).FolderStatuser
	if s.Maildir != nil || fs == nil {
		return s.Identity, nil
	}
	st, err := fs.FolderStatuses(ctx, []string{"INBOX"})
	if err != nil {
		return "", fmt.Errorf("identity: status of INBOX: %w", err)
	}
	if v := st["INBOX"].UIDValidity; v != 0 {
		return s.Identity + uidValidityMark + strconv.FormatUint(uint64(v), 10), nil
	}
	return s.Identity, nil
}

// sameIdentity reports whether got names the store the state recorded as
// want. A state written before identities held the UIDVALIDITY names the
// store by host and user only: it matches, and the run records the whole
// identity (an upgrade must not turn every folder into a merge, which
// would copy back what was deleted since the last sync).
func sameIdentity(want, got string) bool {
	if want == "" || want == got {
		return true
	}
	base, _, _ := strings.Cut(got, uidValidityMark)
	return !strings.Contains(want, uidValidityMark) && want == base
}

// setFlags replaces the flags of message id in mailbox.
func (s *Store) setFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	if s.Maildir != nil {
		return s.Maildir.SetFlags(ctx, mailbox, id, flags)
	}
	fs := mail.FeaturesOf(s.Sink).FlagSetter
	if fs == nil {
		return fmt.Errorf("set flags %s %s: the store cannot change flags: %w", mailbox, id, mail.ErrUnsupported)
	}
	return fs.SetFlags(ctx, mailbox, id, flags)
}

// remove deletes envs (all of one mailbox).
func (s *Store) remove(ctx context.Context, envs []mail.Envelope) error {
	if s.Maildir != nil {
		return s.Maildir.Remove(ctx, envs)
	}
	rm := mail.FeaturesOf(s.Source).Remover
	if rm == nil {
		return fmt.Errorf("remove: the store cannot delete messages: %w", mail.ErrUnsupported)
	}
	return rm.Remove(ctx, envs)
}

// canRemove reports whether remove can work.
func (s *Store) canRemove() bool {
	return s.Maildir != nil || mail.FeaturesOf(s.Source).Remover != nil
}

// put stores body in env.Mailbox and returns the final id once durable
// ("" when the store does not say: the next run pairs the message).
func (s *Store) put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	id, err := s.Sink.Put(ctx, env, body)
	if err != nil {
		return "", err
	}
	return s.settle(ctx, id)
}

// settle commits what Put wrote and resolves a provisional id.
func (s *Store) settle(ctx context.Context, id mail.ID) (mail.ID, error) {
	f := mail.FeaturesOf(s.Sink)
	if f.Committer != nil {
		if err := f.Committer.Commit(ctx); err != nil {
			return "", err
		}
	}
	if f.IDResolver != nil {
		final, ok := f.IDResolver.FinalID(id)
		if !ok {
			return "", nil
		}
		id = final
	}
	return id, nil
}

// move moves env into mailbox to with flags, on the files of a Maildir
// (a rename), else by a copy within the store and a deletion of the
// original. It returns the message's id in to.
func (s *Store) move(ctx context.Context, env mail.Envelope, to string, flags []mail.Flag) (mail.ID, error) {
	if s.Maildir != nil {
		return s.Maildir.Move(ctx, env, to, flags)
	}
	if !s.canRemove() {
		return "", fmt.Errorf("move %s %s: the store cannot delete messages: %w", env.Mailbox, env.ID, mail.ErrUnsupported)
	}
	rc, err := s.Source.Open(ctx, env)
	if err != nil {
		return "", err
	}
	out := env
	out.Mailbox, out.Flags, out.Key = to, flags, putKey("move", env.Mailbox, env.ID)
	id, err := s.put(ctx, out, rc)
	_ = rc.Close()
	if err != nil {
		return "", err
	}
	if s.step != nil {
		if err := s.step("move: remove the original"); err != nil {
			return "", err
		}
	}
	return id, s.remove(ctx, []mail.Envelope{env})
}

// putKey is the Envelope.Key of a message put by the sync: a sink that
// keeps keys (a Maildir) makes a repeated put of it a no-op.
func putKey(parts ...any) string {
	sum := sha256.Sum256([]byte(fmt.Sprintln(append([]any{"mailferry-twoway"}, parts...)...)))
	return hex.EncodeToString(sum[:16])
}
