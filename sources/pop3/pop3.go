// Package pop3 is the POP3 source: it copies a maildrop (RFC 1939) over
// implicit TLS (pop3s://) or STLS (pop3://, RFC 2595), identifying messages
// by UIDL and, in delete mode, removing them with DELE committed at QUIT.
// In delete mode a server without UIDL is also served, its messages
// identified by a SHA-256 of their content.
//
// Servers that hide a message from later sessions once it was retrieved
// (Gmail; EXPIRE 0, RFC 2449 §6.7) are recognised: nothing is retrieved
// ahead of need, and a message retrieved but not stored is named by
// Unstored and keeps the session from ending with QUIT.
//
// Every response on a connection is read by one reader, the session's
// bufio.Reader (wire.go): status lines, listings, and RETR and TOP bodies
// streamed through dotReader, with commands pipelined (RFC 2449 §6.6) when
// the server allows it.
//
// knadh/go-pop3 v1.0.2 is not used (docs/library-notes.md §3). Its Conn
// parses through a bufio.Reader of its own that reads past the response it
// parses, so no second reader can share the socket
// (TestGoPOP3ReadsPastItsResponse); it sends one command at a time (no
// pipelining), collects every multi-line response whole in a bytes.Buffer
// (TestGoPOP3RetrBuffersWholeMessage), takes no context, sets no deadline,
// has no STLS, takes an empty status line for +OK, returns -ERR and I/O
// failures alike, and stops at the first malformed UIDL or LIST line without
// an error. What was left for it (USER, PASS, STAT, DELE, QUIT) is one
// command and one status line each, which the reader here parses anyway.
package pop3

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mailferry/mailferry/sync/mail"
)

// maxAhead is the most RETR commands written ahead of the one being read
// when the server allows pipelining.
const maxAhead = 8

// deleBatch is the most DELE commands written at once when pipelining.
const deleBatch = 64

var (
	_ mail.Source           = (*Source)(nil)
	_ mail.Remover          = (*Source)(nil)
	_ mail.DeleteAware      = (*Source)(nil)
	_ mail.UnstoredReporter = (*Source)(nil)
	_ mail.HeaderFetcher    = (*Source)(nil)
	_ mail.Statter          = (*Source)(nil)
	_ mail.BatchOpener      = (*Source)(nil)
)

// Register adds the pop3 and pop3s source schemes to r.
func Register(r *mail.Registry) {
	for _, scheme := range []string{"pop3", "pop3s"} {
		r.Add(mail.Factory{Scheme: scheme, Kind: mail.KindServer, Source: mail.NewSource(ParseURL, New)})
	}
}

// Source reads one POP3 maildrop through a single session: POP3 servers
// lock the maildrop, so Limits reports one connection. Its methods are safe
// for concurrent use; they take turns on the connection.
//
// The only mailbox is "INBOX". Envelope IDs are the server's UIDLs and
// Sizes its LIST octet counts (servers count CRLF line endings; the bytes
// served may differ a little). Bodies are served as the server sends them,
// with CRLF line endings and the byte-stuffing removed.
//
// If the connection drops, the next call opens a new session; the
// listing is reloaded and messages are found again by UIDL.
type Source struct {
	cfg  *Config
	opts mail.OpenOptions
	log  *slog.Logger

	mu     sync.Mutex
	ss     *session // nil when there is no usable session
	closed bool
	// removals are the UIDLs passed to Remove and not yet known to be gone,
	// in the order given; DELE is sent (again, after a reconnect) in each
	// session until QUIT commits them.
	removals map[mail.ID]bool
	order    []mail.ID
	// deleFailed counts DELEs the server refused.
	deleFailed int
	// byContent: DeleteAfterCopy was called, so a server without UIDL is
	// listed by content (session.listByContent).
	byContent bool
	// readAway: a session showed the server hides retrieved messages from
	// later sessions (session.readAway). retrieved holds, in order, every
	// message RETR was sent for since then; unstored those of them
	// Unstored found were not stored, which makes Close skip QUIT.
	readAway  bool
	retrieved []mail.ID
	sentRetr  map[mail.ID]bool
	unstored  []mail.ID
}

// New connects to the maildrop cfg names and logs in, so that a wrong
// password or an untrusted certificate shows at once. o may be nil (no
// password, default timeout). Errors wrap mail.ErrUnreachable (dial, TLS,
// a refused or missing STLS), mail.ErrAuth (USER or PASS refused), or are
// *mail.ConfigError.
func New(ctx context.Context, cfg *Config, o *mail.OpenOptions) (*Source, error) {
	s := &Source{cfg: cfg, removals: map[mail.ID]bool{}, sentRetr: map[mail.ID]bool{}}
	if o != nil {
		s.opts = *o
	}
	s.log = s.opts.Log().With("side", side(s.opts.Side), "scheme", cfg.Scheme())
	ss, err := connect(ctx, cfg, &s.opts, s.log)
	if err != nil {
		return nil, err
	}
	s.ss = ss
	s.noteSession(ss)
	return s, nil
}

// DeleteAfterCopy tells the source that every message copied will be
// passed to Remove (the engine calls it in delete mode, before listing).
// Only then is a server without UIDL accepted: its messages are identified
// by a SHA-256 of their content, which costs one extra retrieval of each
// message per session, and byte-identical copies count as one message.
// Without it, List on such a server returns a *NoUIDLError.
func (s *Source) DeleteAfterCopy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byContent = true
}

// noteSession learns from a new session whether the server hides retrieved
// messages.
func (s *Source) noteSession(ss *session) {
	if !s.readAway && ss.readAway() {
		s.readAway = true
		s.log.Warn("pop3: this server hides a message from later sessions once it was retrieved (Gmail, or EXPIRE 0): a message retrieved but not stored may not be offered again")
	}
}

// load loads the session's listing, by content when allowed.
func (s *Source) load(ctx context.Context, ss *session) error {
	if ss.listed {
		return nil
	}
	err := ss.loadListing(ctx, s.byContent)
	if ss.byContent {
		// Listing by content retrieved every message it listed.
		for _, e := range ss.list {
			s.noteRetr(e.uidl)
		}
	}
	if err == nil && len(ss.twins) > 0 {
		s.log.Info("pop3: the maildrop holds byte-identical copies of some messages; each is stored once", "size", len(ss.twins))
	}
	return err
}

// noteRetr records that RETR was sent for id on a server that hides what
// was retrieved.
func (s *Source) noteRetr(id mail.ID) {
	if s.readAway && !s.sentRetr[id] {
		s.sentRetr[id] = true
		s.retrieved = append(s.retrieved, id)
	}
}

// Unstored is for servers that hide a message from later sessions once it
// was retrieved (Gmail's POP3 does so after a session that ends with QUIT,
// whatever the client deleted; EXPIRE 0 servers, RFC 2449 §6.7, delete
// it). The engine calls it once the copy is over, with stored reporting
// whether the caller durably stored a message. It returns the messages this
// source retrieved that were not stored: the server may no longer offer
// them. Close then ends the session without QUIT, which on Gmail keeps them
// offered (and commits no DELE, which the next run sends again). On other
// servers it returns nil.
func (s *Source) Unstored(stored func(mail.Envelope) bool) []mail.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mail.Envelope
	s.unstored = s.unstored[:0]
	for _, id := range s.retrieved {
		env := mail.Envelope{Mailbox: "INBOX", ID: id, Size: -1}
		if !stored(env) {
			out = append(out, env)
			s.unstored = append(s.unstored, id)
		}
	}
	return out
}

func side(s string) string {
	if s == "" {
		return "src"
	}
	return s
}

// Limits reports one connection: a maildrop allows one session at a time.
func (s *Source) Limits() mail.Limits { return mail.Limits{Conns: 1} }

// Mailboxes returns ["INBOX"]: a maildrop has no folders.
func (s *Source) Mailboxes(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("pop3: mailboxes: %w", mail.ErrClosed)
	}
	return []string{"INBOX"}, nil
}

func isInbox(mb string) bool { return strings.EqualFold(mb, "INBOX") }

// session returns the current session, connecting a new one when there is
// none or the last one broke.
func (s *Source) session(ctx context.Context) (*session, error) {
	if s.ss != nil && s.ss.dead == nil {
		return s.ss, nil
	}
	if s.ss != nil {
		s.log.Warn("pop3: reconnecting", "err", s.ss.dead)
		s.ss = nil
	}
	ss, err := connect(ctx, s.cfg, &s.opts, s.log)
	if err != nil {
		return nil, err
	}
	s.ss = ss
	s.noteSession(ss)
	return ss, nil
}

// settle makes ss idle: the body a caller is reading (if any) is read to its
// end and cut off from its reader, and every pipelined RETR response is read
// and thrown away.
func (s *Source) settle(ctx context.Context, ss *session) error {
	if err := abandon(ctx, ss); err != nil {
		return err
	}
	return s.skip(ctx, ss, len(ss.queue))
}

// abandon reads the body a caller is reading (if any) to its end and cuts
// it off from its reader, whose later Reads fail.
func abandon(ctx context.Context, ss *session) error {
	b := ss.active
	if b == nil {
		return nil
	}
	ss.active = nil
	b.superseded = true
	_, err := io.Copy(io.Discard, b.dr)
	// The abandoned body's context must no longer be able to close the
	// connection, which serves others now.
	if b.stop != nil {
		b.stop()
		b.stop = nil
	}
	if err != nil {
		return ss.ioErr(ctx, "retr "+string(b.id), err)
	}
	return nil
}

// skip reads and discards the responses to the first n queued RETRs.
func (s *Source) skip(ctx context.Context, ss *session, n int) error {
	for ; n > 0; n-- {
		e := ss.list[ss.queue[0]]
		ss.queue = ss.queue[1:]
		ok, _, err := ss.status()
		if err != nil {
			return ss.ioErr(ctx, "retr "+string(e.uidl), err)
		}
		if ok {
			if _, err := io.Copy(io.Discard, newDotReader(ss.br)); err != nil {
				return ss.ioErr(ctx, "retr "+string(e.uidl), err)
			}
		}
		s.log.Debug("pop3: skipped a prefetched message", "id", e.uidl)
	}
	return nil
}

// List calls fn for every message in the maildrop, in message-number order,
// with ID = UIDL and Size = LIST octets. Only "INBOX" exists; another
// mailbox gives mail.ErrMailboxNotFound. A server without UIDL gives a
// *NoUIDLError, unless DeleteAfterCopy was called: then the IDs are
// content digests ("sha256-<hex>"), found by retrieving every message.
// Invalid or duplicate UIDLs are an error naming the messages. Messages
// passed to Remove are left out. fn runs without the connection held, so it
// may block while Open is called.
func (s *Source) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pop3: list: %w", err)
	}
	if !isInbox(mailbox) {
		return fmt.Errorf("pop3: list %q: a maildrop has only INBOX: %w", mailbox, mail.ErrMailboxNotFound)
	}
	envs, err := s.listing(ctx)
	if err != nil {
		return err
	}
	for _, e := range envs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("pop3: list: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *Source) listing(ctx context.Context) ([]mail.Envelope, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("pop3: list: %w", mail.ErrClosed)
	}
	ss, err := s.session(ctx)
	if err != nil {
		return nil, err
	}
	if !ss.listed {
		stop := ss.watch(ctx)
		defer stop()
		if err := s.settle(ctx, ss); err != nil {
			return nil, err
		}
		if err := s.load(ctx, ss); err != nil {
			return nil, err
		}
	}
	envs := make([]mail.Envelope, 0, len(ss.list))
	for _, e := range ss.list {
		if !s.removals[e.uidl] && !e.twin {
			envs = append(envs, mail.Envelope{Mailbox: "INBOX", ID: e.uidl, Size: e.size})
		}
	}
	return envs, nil
}

// Stat returns the number and total size of the messages in the maildrop,
// as STAT reports them (RFC 1939 §5), for `mailferry ls`. Once the
// listing is loaded it is answered from there, without messages passed to
// Remove. The maildrop is mailbox INBOX (mail.Statter); any other gives
// mail.ErrMailboxNotFound.
func (s *Source) Stat(ctx context.Context, mailbox string) (messages int, bytes int64, err error) {
	if !isInbox(mailbox) {
		return 0, 0, fmt.Errorf("pop3: stat %q: a maildrop has only INBOX: %w", mailbox, mail.ErrMailboxNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, fmt.Errorf("pop3: stat: %w", mail.ErrClosed)
	}
	ss, err := s.session(ctx)
	if err != nil {
		return 0, 0, err
	}
	if ss.listed {
		for _, e := range ss.list {
			if !s.removals[e.uidl] {
				messages++
				bytes += e.size
			}
		}
		return messages, bytes, nil
	}
	stop := ss.watch(ctx)
	defer stop()
	if err := s.settle(ctx, ss); err != nil {
		return 0, 0, err
	}
	ok, text, err := ss.cmd(ctx, "stat", "STAT")
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, fmt.Errorf("pop3: stat %s: server says %q", s.cfg.ident(), clip(text))
	}
	if messages, bytes, err = parseSTAT(text); err != nil {
		return 0, 0, fmt.Errorf("pop3: stat %s: %w", s.cfg.ident(), err)
	}
	return messages, bytes, nil
}

// OpenBatch reads ahead (mail.ReadAhead): while the engine stores one
// message, the next ones are read, so that the network and the disk work at
// the same time; with one session per maildrop they would otherwise take
// turns. Not on a server that hides what was retrieved (readAway): a message
// read ahead and then not stored, because the run stopped, would not be
// offered again. There OpenBatch passes nothing to fn and the engine opens
// each message itself, one at a time.
func (s *Source) OpenBatch(ctx context.Context, envs []mail.Envelope, fn func(mail.Envelope, io.Reader) error) error {
	s.mu.Lock()
	away := s.readAway
	s.mu.Unlock()
	if away {
		return nil
	}
	return mail.ReadAhead{Open: s.Open}.OpenBatch(ctx, envs, fn)
}

// Open streams the message env.ID names (RFC 1939 §7 RETR), un-dot-stuffed.
// A UIDL missing from the maildrop, or passed to Remove, gives
// mail.ErrNotFound. A body cut short fails Read with an error marked
// temporary (io.ErrUnexpectedEOF or the network error), never io.EOF.
//
// Only one body is read at a time: an Open while another body is still open
// reads the old one to its end and makes its later Reads fail. Close reads
// an unfinished body to its end so that the session stays usable. Cancelling
// ctx, during Open or while the body is read, closes the connection.
//
// When the server announces PIPELINING and messages are opened in listing
// order, Open also sends RETR for up to eight following messages, so the
// server never waits for a round trip. Messages opened out of order or
// skipped stay correct: responses that were prefetched but not wanted are
// read and thrown away, and prefetching stops until the order is
// sequential again.
func (s *Source) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pop3: retr %s: %w", env.ID, err)
	}
	if !isInbox(env.Mailbox) {
		return nil, fmt.Errorf("pop3: retr %s/%s: a maildrop has only INBOX: %w", env.Mailbox, env.ID, mail.ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("pop3: retr %s: %w", env.ID, mail.ErrClosed)
	}
	for attempt := 0; ; attempt++ {
		reused := s.ss != nil && s.ss.dead == nil
		rc, err := s.open(ctx, env)
		// A session that sat idle may have been dropped by the server
		// (autologout, RFC 1939 §3): try once more on a fresh one.
		if err != nil && attempt == 0 && reused && s.ss != nil && s.ss.dead != nil && ctx.Err() == nil {
			continue
		}
		return rc, err
	}
}

func (s *Source) open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	ss, err := s.session(ctx)
	if err != nil {
		return nil, err
	}
	stop := ss.watch(ctx)
	rc, err := s.retr(ctx, ss, env)
	if err != nil {
		stop()
		return nil, err
	}
	rc.stop = stop
	return rc, nil
}

func (s *Source) retr(ctx context.Context, ss *session, env mail.Envelope) (*body, error) {
	if err := abandon(ctx, ss); err != nil {
		return nil, err
	}
	if !ss.listed {
		if err := s.settle(ctx, ss); err != nil {
			return nil, err
		}
		if err := s.load(ctx, ss); err != nil {
			return nil, err
		}
	}
	idx, ok := ss.byID[env.ID]
	if !ok || s.removals[env.ID] {
		return nil, fmt.Errorf("pop3: retr %s: not in the maildrop: %w", env.ID, mail.ErrNotFound)
	}
	// Responses come in the order commands were sent: those queued before
	// idx are not wanted now.
	if pos := slices.Index(ss.queue, idx); pos >= 0 {
		if err := s.skip(ctx, ss, pos); err != nil {
			return nil, err
		}
	} else if err := s.skip(ctx, ss, len(ss.queue)); err != nil {
		return nil, err
	}
	if err := s.sendRetr(ss, idx); err != nil {
		return nil, ss.ioErr(ctx, "retr "+string(env.ID), err)
	}
	ss.queue = ss.queue[1:]
	ok, text, err := ss.status()
	if err != nil {
		return nil, ss.ioErr(ctx, "retr "+string(env.ID), err)
	}
	e := ss.list[idx]
	if !ok {
		err := fmt.Errorf("pop3: retr %s (message %d): server says %q", env.ID, e.num, clip(text))
		if strings.Contains(strings.ToUpper(text), "[SYS/TEMP]") { // RFC 3206 §4
			return nil, mail.Temp(err)
		}
		return nil, fmt.Errorf("%w: %w", err, mail.ErrNotFound)
	}
	s.log.Debug("pop3: retr", "id", env.ID, "size", e.size)
	b := &body{s: s, ss: ss, id: env.ID, ctx: ctx, dr: newDotReader(ss.br)}
	ss.active = b
	return b, nil
}

// sendRetr makes sure RETR for idx is at the head of the queue, and when
// pipelining, that the messages likely to be opened next follow it. The
// window grows while Opens follow the listing order (1, 2, 4, 8) and is zero
// after a jump, so a caller that skips most messages (a resumed run) does
// not make the server send bodies nobody reads.
func (s *Source) sendRetr(ss *session, idx int) error {
	if idx == ss.last+1 {
		ss.streak++
	} else {
		ss.streak = 0
	}
	ss.last = idx
	ahead := 0
	// No read-ahead on a server that hides what was retrieved: a message
	// prefetched but never stored (the run stopped) would be lost from view.
	if ss.pipelining() && ss.streak > 0 && !s.readAway {
		ahead = min(maxAhead, 1<<min(ss.streak-1, 3))
	}
	var cmds []string
	if len(ss.queue) == 0 {
		ss.queue = append(ss.queue, idx)
		cmds = append(cmds, "RETR "+strconv.Itoa(ss.list[idx].num))
		s.noteRetr(ss.list[idx].uidl)
	}
	for j := ss.queue[len(ss.queue)-1] + 1; j < len(ss.list) && len(ss.queue) <= ahead; j++ {
		if s.removals[ss.list[j].uidl] || ss.list[j].twin {
			continue
		}
		ss.queue = append(ss.queue, j)
		cmds = append(cmds, "RETR "+strconv.Itoa(ss.list[j].num))
		s.noteRetr(ss.list[j].uidl)
	}
	if len(cmds) == 0 {
		return nil
	}
	return ss.send(cmds...)
}

// body is the reader Open returns.
type body struct {
	s          *Source
	ss         *session
	id         mail.ID
	ctx        context.Context
	stop       func() bool
	dr         *dotReader
	superseded bool // a later Open (or Close, Stat, Remove) took the connection
	closed     bool
	err        error
}

func (b *body) Read(p []byte) (int, error) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	switch {
	case b.closed:
		return 0, fmt.Errorf("pop3: retr %s: read after Close: %w", b.id, mail.ErrClosed)
	case b.err != nil:
		return 0, b.err
	case b.superseded:
		b.err = fmt.Errorf("pop3: retr %s: the body was abandoned by a later call on the source", b.id)
		return 0, b.err
	case b.dr.done:
		return 0, io.EOF
	case b.ss.dead != nil:
		b.err = b.ss.ioErr(b.ctx, "retr "+string(b.id), b.ss.dead)
		return 0, b.err
	}
	n, err := b.dr.Read(p)
	switch {
	case err == io.EOF:
		b.finish()
	case errors.Is(err, mail.ErrTooLarge):
		b.err = b.ss.kill(fmt.Errorf("pop3: retr %s: %w", b.id, err))
		err = b.err
	case err != nil:
		b.err = b.ss.ioErr(b.ctx, "retr "+string(b.id), err)
		err = b.err
	}
	return n, err
}

// finish releases the connection after the terminator was read.
func (b *body) finish() {
	if b.ss.active == b {
		b.ss.active = nil
	}
	if b.stop != nil && !b.stop() && b.ctx.Err() != nil {
		// ctx ended just now and closed the connection: the body is
		// complete, but the session is gone.
		_ = b.ss.kill(b.ctx.Err())
	}
	b.stop = nil
}

// Close reads the rest of an unfinished body so the session stays in step,
// and releases the connection. It is idempotent.
func (b *body) Close() error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.ss.active == b && b.ss.dead == nil && b.err == nil {
		if _, err := io.Copy(io.Discard, b.dr); err != nil {
			_ = b.ss.ioErr(b.ctx, "retr "+string(b.id), err)
		}
	}
	b.finish()
	return nil
}

// Remove marks messages for deletion (RFC 1939 §5 DELE). The engine calls
// it only after the messages are durable in the sink and recorded in the
// checkpoint. When the connection is idle the DELEs are sent at once, and a
// -ERR is returned; while a body is being read or RETRs are pipelined they
// are sent at Close. Deletions take effect only when Close ends the session
// with QUIT (RFC 1939 §6); if the connection drops first, nothing is
// deleted, the DELEs are sent again on the next session, and Close reports
// what was not committed. Removed messages disappear from List and Open.
func (s *Source) Remove(ctx context.Context, envs []mail.Envelope) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pop3: dele: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("pop3: dele: %w", mail.ErrClosed)
	}
	for _, e := range envs {
		if !isInbox(e.Mailbox) {
			return fmt.Errorf("pop3: dele %s/%s: a maildrop has only INBOX: %w", e.Mailbox, e.ID, mail.ErrNotFound)
		}
	}
	for _, e := range envs {
		if !s.removals[e.ID] {
			s.removals[e.ID] = true
			s.order = append(s.order, e.ID)
		}
	}
	ss, err := s.session(ctx)
	if err != nil {
		return err
	}
	if ss.active != nil || len(ss.queue) > 0 {
		return nil // sent once the connection is idle, at the latest in Close
	}
	stop := ss.watch(ctx)
	defer stop()
	return s.flushDele(ctx, ss)
}

// flushDele sends DELE for every removal this session has not deleted yet,
// pipelined when the server allows it. The session must be idle. UIDLs no
// longer in the maildrop are dropped from the removals: there is nothing
// left to delete. Whoever chooses which messages to delete (the delete
// mode; later a retention age) goes through Remove, which ends here, and
// Close, whose QUIT commits.
func (s *Source) flushDele(ctx context.Context, ss *session) error {
	if err := s.load(ctx, ss); err != nil {
		return err
	}
	todo := s.pendingDele(ss)
	// One DELE per message number: a message listed by content may
	// stand for several byte-identical copies.
	var cmds []command
	var owner []mail.ID // the removal each command deletes
	for _, id := range todo {
		for _, num := range ss.nums(id) {
			cmds = append(cmds, command{line: "DELE " + strconv.Itoa(num), op: "dele " + string(id)})
			owner = append(owner, id)
		}
	}
	why := map[mail.ID]string{} // the first refusal of each removal
	err := ss.pipeline(ctx, cmds, deleBatch, func(i int, ok bool, text string) error {
		if _, seen := why[owner[i]]; !ok && !seen {
			why[owner[i]] = cmp.Or(text, "-ERR")
		}
		return nil
	})
	if err != nil {
		return err
	}
	var refused []string
	for _, id := range todo {
		text, bad := why[id]
		if !bad {
			ss.deleted[id] = true
			continue
		}
		refused = append(refused, fmt.Sprintf("%s: %s", id, clip(text)))
		delete(s.removals, id)
		s.deleFailed++
	}
	s.order = slices.DeleteFunc(s.order, func(id mail.ID) bool { return !s.removals[id] })
	if len(refused) > 0 {
		return fmt.Errorf("pop3: dele %s: server refused %d deletion(s): %s", s.cfg.ident(), len(refused), strings.Join(refused, "; "))
	}
	return nil
}

// pendingDele returns the removals, in order, that this session has not
// deleted yet, and forgets those no longer in the maildrop.
func (s *Source) pendingDele(ss *session) []mail.ID {
	var todo []mail.ID
	for _, id := range s.order {
		if !s.removals[id] || ss.deleted[id] {
			continue
		}
		if _, ok := ss.byID[id]; !ok {
			delete(s.removals, id)
			continue
		}
		todo = append(todo, id)
	}
	s.order = slices.DeleteFunc(s.order, func(id mail.ID) bool { return !s.removals[id] })
	return todo
}

// DeleteError is what Close returns when messages passed to Remove were not
// deleted: the session ended without a successful QUIT (RFC 1939 §6 commits
// deletions only then), or the server refused some DELEs. The messages
// stay on the server; nothing was lost.
type DeleteError struct {
	// Pending is how many messages were to be deleted and were not.
	Pending int
	// Err is the cause.
	Err error
}

func (e *DeleteError) Error() string {
	return fmt.Sprintf("pop3: %d message(s) were not deleted from the server (they are safe there; deletions happen only at a successful QUIT, RFC 1939 §6): %v", e.Pending, e.Err)
}

func (e *DeleteError) Unwrap() error { return e.Err }

// Close ends the session. With removals pending it finishes any unread
// body, sends the outstanding DELEs and QUIT, and returns a *DeleteError if
// the deletions were not committed. Without removals it sends QUIT only if
// the connection is idle. After Unstored named messages, it sends no QUIT
// at all (see Unstored). It is idempotent; later calls on the source get
// mail.ErrClosed.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ss := s.ss
	s.ss = nil
	pending := len(s.removals)
	failed := s.deleFailed
	if len(s.unstored) > 0 {
		// QUIT would let the server hide messages retrieved but not
		// stored (Gmail); without it they stay offered, and so do the
		// DELEs' messages, which the next run deletes.
		s.log.Warn("pop3: ending the session without QUIT: the server might otherwise no longer offer messages that were retrieved but not stored", "size", len(s.unstored))
		if ss != nil {
			_ = ss.kill(mail.ErrClosed)
		}
		if pending > 0 {
			return &DeleteError{Pending: pending, Err: errors.New("QUIT was not sent, so that the server keeps offering messages retrieved but not stored")}
		}
		return nil
	}
	if pending == 0 && failed == 0 {
		if ss != nil && ss.dead == nil {
			if ss.active == nil && len(ss.queue) == 0 {
				if err := ss.quit(context.Background()); err != nil {
					s.log.Debug("pop3: quit", "err", err)
				}
			}
			_ = ss.kill(mail.ErrClosed)
		}
		return nil
	}
	if ss == nil || ss.dead != nil {
		cause := errors.New("the connection was lost before QUIT")
		if ss != nil {
			cause = fmt.Errorf("the connection was lost before QUIT: %w", ss.dead)
		}
		return &DeleteError{Pending: pending, Err: cause}
	}
	defer func() { _ = ss.kill(mail.ErrClosed) }()
	// Close has no context: each read and write is still bounded by the
	// idle timeout.
	ctx := context.Background()
	if err := s.settle(ctx, ss); err != nil {
		return &DeleteError{Pending: pending, Err: err}
	}
	deleErr := s.flushDele(ctx, ss)
	if ss.dead != nil {
		return &DeleteError{Pending: len(s.removals), Err: deleErr}
	}
	pending = len(s.removals)
	if err := ss.quit(ctx); err != nil {
		return &DeleteError{Pending: pending, Err: fmt.Errorf("quit %s: %w", s.cfg.ident(), err)}
	}
	s.log.Debug("pop3: quit: deletions committed")
	if s.deleFailed > 0 {
		return &DeleteError{Pending: s.deleFailed, Err: errors.New("the server refused DELE")}
	}
	return nil
}
