package twoway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
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
	// Keeps are the flags the store keeps in every folder (nil: what
	// KeptFlags, else the Sink's mail.FlagKeeper, says per folder; all
	// when neither says).
	Keeps Keeps
	// KeptFlags, when not nil, is asked the flags each folder keeps
	// instead of the Sink (a dry run opens no Sink, and must plan with
	// what a real run would know).
	KeptFlags mail.FlagKeeper

	// step is the run's test hook (RunOptions.step), called between the
	// durable steps of a move by copy.
	step func(what string) error
}

// uidValidityMark joins an IMAP store's Identity and its INBOX UIDVALIDITY
// in the identity the state records.
const uidValidityMark = " uidvalidity="

// identity is the store's identity as the state records it: for a store
// with folder statuses (IMAP), Identity (host and user) and INBOX's
// UIDVALIDITY (status, from statuses), so that an account deleted and
// recreated under the same name is not taken for the one the state knows
// (the two-way sync issue, rule 1).
func (s *Store) identity(status map[string]mail.FolderStatus) string {
	if v := status["INBOX"].UIDValidity; v != 0 && s.Maildir == nil {
		return s.Identity + uidValidityMark + strconv.FormatUint(uint64(v), 10)
	}
	return s.Identity
}

// statuses asks an IMAP store, in one round trip, the status of INBOX and
// of the folders the state knows (names): INBOX's UIDVALIDITY names the
// account, and each folder's HIGHESTMODSEQ before the listing is what a
// conditional flag write compares with. nil for a store without them.
func (s *Store) statuses(ctx context.Context, names []string) (map[string]mail.FolderStatus, error) {
	fs := mail.FeaturesOf(s.Source).FolderStatuser
	if s.Maildir != nil || fs == nil {
		return nil, nil
	}
	if !slices.Contains(names, "INBOX") {
		names = append(names[:len(names):len(names)], "INBOX")
	}
	st, err := fs.FolderStatuses(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("folder statuses: %w", err)
	}
	return st, nil
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

// setFlagsIf replaces the flags of message id in mailbox unless another
// client changed them since the listing (rule 2): on IMAP since the
// mod-sequence since (CONDSTORE's UNCHANGEDSINCE), in a Maildir since the
// file name said expect; a server without mod-sequences, or since 0,
// writes unconditionally. The result says whether it wrote, and the flags
// the message holds.
func (s *Store) setFlagsIf(ctx context.Context, mailbox string, id mail.ID, flags, expect []mail.Flag, since uint64) (mail.FlagState, error) {
	if s.Maildir != nil {
		return s.Maildir.SetFlagsIf(ctx, mailbox, id, flags, expect)
	}
	if cf := mail.FeaturesOf(s.Sink).ConditionalFlagSetter; cf != nil && since > 0 && s.Maildir == nil {
		st, err := cf.SetFlagsIf(ctx, mailbox, id, flags, since)
		if !errors.Is(err, mail.ErrUnsupported) {
			return st, err
		}
	}
	return mail.FlagState{Flags: flags, Stored: true}, s.setFlags(ctx, mailbox, id, flags)
}

// flagWrite is one message's conditional flag write (setFlagsIfAll).
type flagWrite struct {
	id            mail.ID
	flags, expect []mail.Flag
	since         uint64
	target        flagSet // flags as a set, for the caller
}

// setFlagsIfAll is setFlagsIf for many messages of mailbox: on an IMAP
// side with mod-sequences in one round trip (ConditionalFlagSetter's
// SetFlagsIfAll), else one write after the other. A message's own failure
// is in its result; the error is the call's (the connection, a cancel).
func (s *Store) setFlagsIfAll(ctx context.Context, mailbox string, ws []flagWrite) ([]mail.FlagResult, error) {
	if s.Maildir != nil {
		return s.Maildir.setFlagsIfAll(ctx, mailbox, ws)
	}
	if cf := mail.FeaturesOf(s.Sink).ConditionalFlagSetter; cf != nil && s.Maildir == nil && allSince(ws) {
		mws := make([]mail.FlagWrite, len(ws))
		for i, w := range ws {
			mws[i] = mail.FlagWrite{ID: w.id, Flags: w.flags, Since: w.since}
		}
		res, err := cf.SetFlagsIfAll(ctx, mailbox, mws)
		if !errors.Is(err, mail.ErrUnsupported) && !errors.Is(err, mail.ErrMailboxNotFound) {
			return res, err
		}
		// No mod-sequences there, or no such mailbox: each write says so
		// (or falls back to an unconditional write) on its own.
	}
	out := make([]mail.FlagResult, len(ws))
	for i, w := range ws {
		st, err := s.setFlagsIf(ctx, mailbox, w.id, w.flags, w.expect, w.since)
		if err != nil && (mail.Fatal(err) || isCanceled(err)) {
			return nil, err
		}
		out[i] = mail.FlagResult{FlagState: st, Err: err}
	}
	return out, nil
}

// allSince reports whether every write is conditional (a mod-sequence to
// compare with).
func allSince(ws []flagWrite) bool {
	for _, w := range ws {
		if w.since == 0 {
			return false
		}
	}
	return true
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

// move moves env into mailbox to with flags: on the files of a Maildir (a
// rename), on the server where it can (Mover: UID MOVE, or COPY and
// expunge of that UID), else by a copy within the store and a deletion of
// the original. It returns the message's id in to, and whether the copy
// holds flags (a server-side move keeps the old ones until a flag write,
// which may fail on its own).
func (s *Store) move(ctx context.Context, env mail.Envelope, to string, flags []mail.Flag) (mail.ID, bool, error) {
	if s.Maildir != nil {
		id, err := s.Maildir.Move(ctx, env, to, flags)
		return id, true, err
	}
	if mv := mail.FeaturesOf(s.Sink).Mover; mv != nil {
		return s.moveOnServer(ctx, mv, env, to, flags)
	}
	if !s.canRemove() {
		return "", false, fmt.Errorf("move %s %s: the store cannot delete messages: %w", env.Mailbox, env.ID, mail.ErrUnsupported)
	}
	rc, err := s.Source.Open(ctx, env)
	if err != nil {
		return "", false, err
	}
	out := env
	out.Mailbox, out.Flags, out.Key = to, flags, putKey("move", env.Mailbox, env.ID)
	id, err := s.put(ctx, out, rc)
	_ = rc.Close()
	if err != nil {
		return "", false, err
	}
	if s.step != nil {
		if err := s.step("move: remove the original"); err != nil {
			return "", false, err
		}
	}
	return id, true, s.remove(ctx, []mail.Envelope{env})
}

// moveOnServer moves without the body travelling (rule 6), then writes
// the flags; a flag write that fails is no failed move: the caller merges
// the flags again next run.
func (s *Store) moveOnServer(ctx context.Context, mv mail.Mover, env mail.Envelope, to string, flags []mail.Flag) (mail.ID, bool, error) {
	id, err := mv.Move(ctx, env.Mailbox, env.ID, to)
	if err != nil || id == "" || setOf(flags).equal(setOf(env.Flags)) {
		return id, id != "", err
	}
	if s.step != nil {
		if err := s.step("move: flags"); err != nil {
			return "", false, err
		}
	}
	if err := s.setFlags(ctx, to, id, flags); err != nil {
		if mail.Fatal(err) || isCanceled(err) {
			return "", false, err
		}
		return id, false, nil
	}
	return id, true, nil
}

// putKey is the Envelope.Key of a message put by the sync: a sink that
// keeps keys (a Maildir) makes a repeated put of it a no-op.
func putKey(parts ...any) string {
	sum := sha256.Sum256([]byte(fmt.Sprintln(append([]any{"mailferry-twoway"}, parts...)...)))
	return hex.EncodeToString(sum[:16])
}
