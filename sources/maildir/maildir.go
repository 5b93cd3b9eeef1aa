// Package maildir reads a Maildir++ tree (the layout Dovecot and Courier use)
// as a mail.Source. The format itself (folder names, flags, how a tree is
// read) lives in internal/maildirfmt, which sinks/maildir shares.
//
// The source never changes the tree: unlike go-maildir's Unseen it does not
// move files from new/ to cur/, and unlike go-maildir's Walk it reads both
// new/ and cur/ (docs/library-notes.md §4).
package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/mailferry/mailferry/internal/fsevidence"
	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.Source = (*Source)(nil)

// Source reads messages from a Maildir++ tree rooted at a directory (the
// root is INBOX, ".A.B" is mailbox "A/B"). It is safe for concurrent use.
//
// Envelope fields are maildirfmt.Tree's: ID is the file's base name without
// the ":2,..." info, so it survives flag changes and the move from new/ to
// cur/; Flags come from the info letters (and dovecot-keywords, when
// present); Date is the file's mtime, which Dovecot uses as the received
// date, to the second; Size is the file's size. Symbolic links are never
// followed below the root.
type Source struct {
	tree *maildirfmt.Tree

	mu     sync.Mutex
	closed bool
	clock  fsevidence.Clock // FolderStatuses' clock (SetClock)
}

// New opens the Maildir++ tree at root, which must be an existing directory
// (the root itself may be a symlink: the user named it). A missing root gives
// a *mail.ConfigError. New touches nothing.
func New(ctx context.Context, root string, o *mail.OpenOptions) (*Source, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root = filepath.Clean(root)
	fi, err := os.Stat(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &mail.ConfigError{Msg: fmt.Sprintf("maildir: %s does not exist", root), Hint: "check the path in the maildir: URL"}
		}
		return nil, fmt.Errorf("maildir: open %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("maildir: %s is not a directory", root)}
	}
	return &Source{tree: maildirfmt.NewTree(root, o.Log().With("scheme", "maildir"))}, nil
}

// Root returns the tree's root directory.
func (s *Source) Root() string { return s.tree.Root() }

func (s *Source) check(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return mail.ErrClosed
	}
	return ctx.Err()
}

// Mailboxes lists INBOX (always: the root) and every folder directory below
// the root that has cur/ or new/, INBOX first and the rest sorted (see
// maildirfmt.Tree.Mailboxes).
func (s *Source) Mailboxes(ctx context.Context) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.tree.Mailboxes(ctx)
}

// List calls fn for every message in new/ and cur/ of mailbox, sorted by ID,
// and moves nothing (see maildirfmt.Tree.List).
func (s *Source) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.tree.List(ctx, mailbox, fn)
}

// Open streams the message env.ID of env.Mailbox, wherever it moved since
// List; a message that is gone gives mail.ErrNotFound (see
// maildirfmt.Tree.Open).
func (s *Source) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.tree.Open(ctx, env)
}

// Limits reports no limit: reading local files scales with the disk.
func (s *Source) Limits() mail.Limits { return mail.Limits{} }

// Close marks the source closed; later calls get mail.ErrClosed. It is
// idempotent.
func (s *Source) Close() error {
	s.mu.Lock()
	s.closed = true
	s.tree.Forget()
	s.mu.Unlock()
	return nil
}
