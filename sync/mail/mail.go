package mail

import (
	"context"
	"io"
	"time"
)

// ID identifies a message within one endpoint and mailbox. It is stable for as
// long as the endpoint can keep it so: a POP3 UIDL, an IMAP "uidvalidity.uid",
// a Maildir base name, an mbox byte offset.
type ID string

// Flag is a message flag in IMAP spelling: a system flag such as `\Seen` or a
// keyword atom such as `$Forwarded` (RFC 9051 §2.3.2).
type Flag string

// The system flags every endpoint understands. \Recent is deliberately absent:
// it is session state, and servers reject it in APPEND.
const (
	FlagSeen     Flag = `\Seen`
	FlagAnswered Flag = `\Answered`
	FlagFlagged  Flag = `\Flagged`
	FlagDeleted  Flag = `\Deleted`
	FlagDraft    Flag = `\Draft`
)

// Envelope describes one message as a source lists it. Everything but Mailbox
// and ID is a hint that may be zero.
type Envelope struct {
	// Mailbox is the folder in UTF-8 with '/' as the hierarchy separator.
	// POP3 is always "INBOX".
	Mailbox string
	// ID is the source's identifier for the message in Mailbox.
	ID ID
	// Size is the size in octets as the source announced it, or -1 if unknown.
	// It is a hint: never trust it as the exact length of the body.
	Size int64
	// Date is the internal (received) date; zero if unknown.
	Date time.Time
	// Flags are the message's flags; nil when the source has none (POP3).
	Flags []Flag
	// MessageID is the Message-ID header value when cheaply known.
	MessageID string
	// Key is assigned by the engine before Put: a stable hex digest of the
	// source endpoint, Mailbox and ID. A sink that can store it beside the
	// message (a Maildir file name) uses it to make Put idempotent, so a crash
	// between a durable Put and the checkpoint record cannot duplicate.
	Key string
}

// HasFlag reports whether e carries flag f.
func (e Envelope) HasFlag(f Flag) bool {
	for _, g := range e.Flags {
		if g == f {
			return true
		}
	}
	return false
}

// Limits describes how an endpoint may be used concurrently.
type Limits struct {
	// Conns is the most concurrent Open or Put calls the endpoint serves well;
	// 0 means no limit. A POP3 maildrop allows one session, so it says 1.
	Conns int
	// Batch is how many messages a sink prefers per Commit; 0 leaves it to
	// the engine (64). An IMAP sink ends every open APPEND command at each
	// Commit and waits for all its server sessions, so it commits less often.
	Batch int
}

// Source is where messages come from.
//
// Methods may be called from several goroutines, up to Limits().Conns of them
// at once for Open. Cancelling ctx aborts the call and returns an error for
// which errors.Is(err, context.Canceled) (or DeadlineExceeded) holds.
type Source interface {
	// Mailboxes lists the selectable mailboxes, in UTF-8 with '/' separators.
	Mailboxes(ctx context.Context) ([]string, error)
	// List calls fn once per message in mailbox, on the caller's goroutine.
	// An error from fn stops List, which returns it unchanged. A mailbox that
	// does not exist gives ErrMailboxNotFound.
	List(ctx context.Context, mailbox string, fn func(Envelope) error) error
	// Open streams the raw message, exactly as the source stores it. The
	// caller must Close the reader, even before EOF, and a later Open must
	// still work. A message that no longer exists gives ErrNotFound. A body
	// cut short returns an error from Read (never a silent io.EOF).
	Open(ctx context.Context, env Envelope) (io.ReadCloser, error)
	// Limits says how many concurrent Opens the source serves.
	Limits() Limits
	// Close releases connections. It is idempotent.
	Close() error
}

// Sink is where messages go.
//
// Put may be called from up to Limits().Conns goroutines at once.
type Sink interface {
	// CreateMailbox makes name (and its parents) exist. An existing mailbox
	// is not an error.
	CreateMailbox(ctx context.Context, name string) error
	// Put reads body to EOF and stores it in env.Mailbox with env's flags
	// and date, byte for byte. It returns the sink's ID for the message once
	// the message is durable, or, for a sink that implements Committer, once
	// the next Commit will make it durable. If body fails or ctx is
	// cancelled, Put returns that error and leaves nothing visible.
	// After Close it returns ErrClosed.
	Put(ctx context.Context, env Envelope, body io.Reader) (ID, error)
	// Limits says how many concurrent Puts the sink serves.
	Limits() Limits
	// Close releases resources. It is idempotent; later Puts get ErrClosed.
	// Messages Put but not yet committed are discarded.
	Close() error
}
