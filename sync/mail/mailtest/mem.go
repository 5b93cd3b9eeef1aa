package mailtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mailferry/mailferry/sync/mail"
)

// MemMessage is one message held by MemSource or MemSink.
type MemMessage struct {
	Env  mail.Envelope
	Body []byte
}

// MemSource is an in-memory mail.Source and mail.Remover for tests. Add
// messages with Add before use; it is safe for concurrent use.
type MemSource struct {
	mu       sync.Mutex
	boxes    map[string][]MemMessage
	closed   bool
	Conns    int             // Limits().Conns
	IDPrefix string          // prepended to the IDs Add assigns (a new "UIDVALIDITY")
	Removed  []mail.Envelope // what Remove deleted, in order
	Opens    atomic.Int64    // number of Open calls
}

var (
	_ mail.Source  = (*MemSource)(nil)
	_ mail.Remover = (*MemSource)(nil)
)

// NewMemSource returns a source holding fixtures, with IDs "1", "2", ... per
// mailbox in order.
func NewMemSource(fixtures []Fixture) *MemSource {
	s := &MemSource{boxes: map[string][]MemMessage{}}
	for _, f := range fixtures {
		s.Add(f)
	}
	return s
}

// Add appends a fixture and returns its ID.
func (s *MemSource) Add(f Fixture) mail.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := f.Mailbox
	if mb == "" {
		mb = "INBOX"
	}
	id := mail.ID(s.IDPrefix + strconv.Itoa(len(s.boxes[mb])+1+len(s.removedIn(mb))))
	s.boxes[mb] = append(s.boxes[mb], MemMessage{
		Env:  mail.Envelope{Mailbox: mb, ID: id, Size: int64(len(f.Body)), Date: f.Date, Flags: f.Flags},
		Body: f.Body,
	})
	return id
}

func (s *MemSource) removedIn(mb string) []mail.Envelope {
	var out []mail.Envelope
	for _, e := range s.Removed {
		if e.Mailbox == mb {
			out = append(out, e)
		}
	}
	return out
}

// Mailboxes lists the mailboxes, sorted.
func (s *MemSource) Mailboxes(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, mail.ErrClosed
	}
	var out []string
	for mb := range s.boxes {
		out = append(out, mb)
	}
	sort.Strings(out)
	return out, nil
}

// List calls fn for each message of mailbox.
func (s *MemSource) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	s.mu.Lock()
	msgs, ok := s.boxes[mailbox]
	msgs = append([]MemMessage(nil), msgs...)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("mem: list %q: %w", mailbox, mail.ErrMailboxNotFound)
	}
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(m.Env); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Open returns the body of env.
func (s *MemSource) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	s.Opens.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, mail.ErrClosed
	}
	for _, m := range s.boxes[env.Mailbox] {
		if m.Env.ID == env.ID {
			return io.NopCloser(bytes.NewReader(m.Body)), nil
		}
	}
	return nil, fmt.Errorf("mem: open %s/%s: %w", env.Mailbox, env.ID, mail.ErrNotFound)
}

// Remove deletes envs.
func (s *MemSource) Remove(ctx context.Context, envs []mail.Envelope) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range envs {
		msgs := s.boxes[e.Mailbox]
		for i, m := range msgs {
			if m.Env.ID == e.ID {
				s.boxes[e.Mailbox] = append(msgs[:i:i], msgs[i+1:]...)
				s.Removed = append(s.Removed, e)
				break
			}
		}
	}
	return nil
}

// Len returns the number of messages left in mailbox.
func (s *MemSource) Len(mailbox string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.boxes[mailbox])
}

// Limits returns the configured Conns.
func (s *MemSource) Limits() mail.Limits { return mail.Limits{Conns: s.Conns} }

// Close marks the source closed.
func (s *MemSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// MemSink is an in-memory mail.Sink for tests: Put keeps the message at once.
// It is safe for concurrent use.
type MemSink struct {
	mu     sync.Mutex
	boxes  map[string][]MemMessage
	keys   map[string]mail.ID
	closed bool
	n      int
	Conns  int          // Limits().Conns
	Puts   atomic.Int64 // Put calls that stored a message
}

var (
	_ mail.Sink       = (*MemSink)(nil)
	_ mail.FlagSetter = (*MemSink)(nil)
)

// NewMemSink returns an empty sink.
func NewMemSink() *MemSink {
	return &MemSink{boxes: map[string][]MemMessage{}, keys: map[string]mail.ID{}}
}

// CreateMailbox makes name exist.
func (s *MemSink) CreateMailbox(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return mail.ErrClosed
	}
	if _, ok := s.boxes[name]; !ok {
		s.boxes[name] = nil
	}
	return ctx.Err()
}

// Put stores body; a Key seen before is not stored twice.
func (s *MemSink) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return "", mail.ErrClosed
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, mail.ContextReader(ctx, body)); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", mail.ErrClosed
	}
	if id, ok := s.keys[env.Key]; ok && env.Key != "" {
		return id, nil
	}
	s.n++
	id := mail.ID(strconv.Itoa(s.n))
	env.ID = id
	env.Flags = append([]mail.Flag(nil), env.Flags...)
	s.boxes[env.Mailbox] = append(s.boxes[env.Mailbox], MemMessage{Env: env, Body: buf.Bytes()})
	if env.Key != "" {
		s.keys[env.Key] = id
	}
	s.Puts.Add(1)
	return id, nil
}

// SetFlags replaces the flags of message id in mailbox (mail.FlagSetter).
func (s *MemSink) SetFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range s.boxes[mailbox] {
		if m.Env.ID == id {
			s.boxes[mailbox][i].Env.Flags = append([]mail.Flag(nil), flags...)
			return nil
		}
	}
	return fmt.Errorf("mem: set flags %s/%s: %w", mailbox, id, mail.ErrNotFound)
}

// Messages returns a copy of what mailbox holds.
func (s *MemSink) Messages(mailbox string) []MemMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]MemMessage(nil), s.boxes[mailbox]...)
}

// Mailboxes returns the mailbox names, sorted.
func (s *MemSink) Mailboxes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for mb := range s.boxes {
		out = append(out, mb)
	}
	sort.Strings(out)
	return out
}

// Source returns a MemSource over a snapshot of what the sink holds.
func (s *MemSink) Source() *MemSource {
	s.mu.Lock()
	defer s.mu.Unlock()
	src := &MemSource{boxes: map[string][]MemMessage{}}
	for mb, msgs := range s.boxes {
		src.boxes[mb] = append([]MemMessage{}, msgs...)
	}
	return src
}

// Limits returns the configured Conns.
func (s *MemSink) Limits() mail.Limits { return mail.Limits{Conns: s.Conns} }

// Close marks the sink closed.
func (s *MemSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// BatchSource adds mail.BatchOpener to a MemSource. Skip lists IDs it does
// not return (as a server that lost them), and DropAfter, if positive, ends
// each batch with a temporary error after that many messages.
type BatchSource struct {
	*MemSource
	Skip      map[mail.ID]bool
	DropAfter int
	Batches   atomic.Int64
}

// OpenBatch serves envs one after the other.
func (b *BatchSource) OpenBatch(ctx context.Context, envs []mail.Envelope, fn func(mail.Envelope, io.Reader) error) error {
	b.Batches.Add(1)
	for i, e := range envs {
		if b.DropAfter > 0 && i == b.DropAfter {
			return mail.Temp(io.ErrUnexpectedEOF)
		}
		if b.Skip[e.ID] {
			continue
		}
		rc, err := b.Open(ctx, e)
		if err != nil {
			return err
		}
		err = fn(e, rc)
		_ = rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Mark replaces the flags of message id in mailbox, as another client would.
func (s *MemSource) Mark(mailbox string, id mail.ID, flags ...mail.Flag) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range s.boxes[mailbox] {
		if m.Env.ID == id {
			s.boxes[mailbox][i].Env.Flags = flags
		}
	}
}
