package imapconn

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/sync/mail"
)

// Pool keeps the idle logged-in connections of one account for whoever
// needs one next: the source and the sink of one side of a two-way sync,
// and their successive steps (statuses, change listing, bodies, flag
// writes, appends, removals). Each login is a TLS handshake and, on
// Dovecot, a new imap process; a sync after a few changes otherwise pays
// one per role and step where mbsync pays one.
//
// It holds the two kinds of connection apart: an imapclient connection
// (Client) and a raw one driven by hand (Session). go-imap v2 beta.8's
// client cannot be switched to the raw path, and must never see ENABLE
// QRESYNC (docs/library-notes.md), so one kind is never handed out as
// the other. A connection taken from the pool may have any mailbox
// selected (or none): the taker selects what it needs. One that failed is
// closed by its taker, never put back.
type Pool struct {
	cfg Config
	o   mail.OpenOptions
	log *slog.Logger

	mu       sync.Mutex
	clients  []*Client
	sessions []*Session
	closed   bool
	ns       *namespace      // the personal namespace, once a taker learnt it
	caps     map[string]bool // the capabilities after login, once a session logged in

	logins atomic.Int64
	// writes logs this process's writes per mailbox (ownwrites.go):
	// guarded by mu.
	writes map[string]*ownWrites
}

// Client is an imapclient connection of a Pool, with what was enabled on
// it (which travels with the connection to its next taker).
type Client struct {
	C    *imapclient.Client
	Conn *Conn // the connection under C (Conn.SetIdle, a close that never blocks)
	// CondStore says a CONDSTORE enabling command was sent on it
	// (sources/imap status.go sends one once per connection).
	CondStore bool
	// Box is the mailbox the last taker left EXAMINEd, with its
	// UIDVALIDITY and message count then, so that the next taker reading
	// it (the source's fetches of a first sync, batch after batch) needs
	// no EXAMINE of its own; "" when the last taker cannot say (the sink
	// selects without noting it).
	Box         string
	UIDValidity uint32
	Messages    uint32
}

func (c *Client) dead() bool {
	if c.Conn.Closed() {
		return true
	}
	select {
	case <-c.C.Closed():
		return true
	default:
		return false
	}
}

func (c *Client) close() {
	_ = c.Conn.Close() // first: Client.Close waits for its reader
	_ = c.C.Close()
}

// SharedPool returns the pool of cfg's account kept in o.Share, made on
// first use with o's options (the dialling options of one side are the
// same for its source and its sink); nil when o has no Share: the caller
// then dials its own connections, as before pools.
func SharedPool(cfg *Config, o *mail.OpenOptions) *Pool {
	if o == nil || o.Share == nil {
		return nil
	}
	key := "imapconn " + cfg.Scheme() + "://" + cfg.User + "@" + cfg.Addr()
	p, _ := o.Share.Get(key, func() io.Closer { return newPool(cfg, o) }).(*Pool)
	return p
}

func newPool(cfg *Config, o *mail.OpenOptions) *Pool {
	p := &Pool{cfg: *cfg, o: *o, log: Logger(cfg, o)}
	p.cfg.Mailbox = "" // the account, not the part of it one endpoint reads
	if pw := o.Password; pw != nil {
		// Looked up once for every connection (it may run a command).
		var mu sync.Mutex
		var cached *string
		p.o.Password = func(ctx context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			if cached != nil {
				return *cached, nil
			}
			s, err := pw(ctx)
			if err == nil {
				cached = &s
			}
			return s, err
		}
	}
	return p
}

// namespace is an account's personal namespace (RFC 2342).
type namespace struct {
	prefix string
	delim  rune
}

// SetNamespace keeps the personal namespace a taker read (NAMESPACE), so
// that the others need not ask it again.
func (p *Pool) SetNamespace(prefix string, delim rune) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ns = &namespace{prefix: prefix, delim: delim}
}

// Namespace returns the personal namespace a taker kept (ok false: none
// yet, ask the server).
func (p *Pool) Namespace() (prefix string, delim rune, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ns == nil {
		return "", 0, false
	}
	return p.ns.prefix, p.ns.delim, true
}

// Caps returns the capabilities the server announced after a login of
// the pool (upper case; the same on every connection of the account), so
// that a taker need not log in only to read them; ok false: none yet.
func (p *Pool) Caps() (caps map[string]bool, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.caps, p.caps != nil
}

// Logins is how many connections the pool logged in (tests, --trace
// readers).
func (p *Pool) Logins() int64 { return p.logins.Load() }

// errClosed is the error of a take after Close.
func (p *Pool) errClosed() error {
	return fmt.Errorf("imap: %s: %w", p.cfg.Ident(), mail.ErrClosed)
}

// Client returns an idle imapclient connection, or dials one. The caller
// gives it back with PutClient once done, or closes it if it failed.
func (p *Pool) Client(ctx context.Context) (*Client, error) {
	got, err := takeIdle(p, &p.clients, (*Client).dead, (*Client).close)
	if err != nil {
		return nil, err
	}
	if got != nil {
		got.Conn.SetIdle(false)
		return got, nil
	}
	c, dc, err := DialConn(ctx, &p.cfg, &p.o, p.log)
	if err != nil {
		return nil, err
	}
	p.logins.Add(1)
	return &Client{C: c, Conn: dc}, nil
}

// takeIdle takes the most recently given back connection of idle (one of
// p's lists) that is still alive, closing the dead ones it passes (the
// server hung up while they were idle) outside the lock; nil when none is
// left, an error after Close.
func takeIdle[C any](p *Pool, idle *[]C, dead func(C) bool, closeConn func(C)) (C, error) {
	var got, none C
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return none, p.errClosed()
	}
	var stale []C
	found := false
	for len(*idle) > 0 && !found {
		c := (*idle)[len(*idle)-1]
		*idle = (*idle)[:len(*idle)-1]
		if dead(c) {
			stale = append(stale, c)
			continue
		}
		got, found = c, true
	}
	p.mu.Unlock()
	for _, c := range stale {
		closeConn(c)
	}
	return got, nil
}

// PutClient gives back a connection that is in step with the server (no
// command or literal left half read); a dead one is closed.
func (p *Pool) PutClient(c *Client) {
	p.mu.Lock()
	if !p.closed && !c.dead() {
		c.Conn.SetIdle(true) // no inactivity limit while nobody uses it
		p.clients = append(p.clients, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	c.close()
}

// Session returns an idle raw session, or dials one (QRESYNC not yet
// enabled: Session.EnableQResync does it once per connection). The caller
// gives it back with PutSession once done, or closes it if it failed.
func (p *Pool) Session(ctx context.Context) (*Session, error) {
	got, err := takeIdle(p, &p.sessions, func(s *Session) bool { return s.rc.Closed() }, func(s *Session) { _ = s.rc.Close() })
	if err != nil {
		return nil, err
	}
	if got != nil {
		return got, nil
	}
	rc, err := DialRaw(ctx, &p.cfg, &p.o)
	if err != nil {
		return nil, err
	}
	p.logins.Add(1)
	p.mu.Lock()
	p.caps = rc.Caps
	p.mu.Unlock()
	return NewSession(rc, nil), nil
}

// PutSession gives back a session that is in step with the server (every
// command sent was answered); a closed one is dropped. Capabilities a
// taker hid (Session.Ignore) are not passed on.
func (p *Pool) PutSession(s *Session) {
	s.Ignore = nil
	p.mu.Lock()
	if !p.closed && !s.rc.Closed() {
		p.sessions = append(p.sessions, s)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = s.rc.Close()
}

// Close closes the idle connections; later takes fail with
// mail.ErrClosed and connections given back are closed. Connections in
// use are their takers' to close.
func (p *Pool) Close() error {
	p.mu.Lock()
	clients, sessions := p.clients, p.sessions
	p.clients, p.sessions, p.closed = nil, nil, true
	p.mu.Unlock()
	for _, c := range clients {
		c.close()
	}
	for _, s := range sessions {
		_ = s.rc.Close() // nothing was in flight: nothing to report
	}
	return nil
}

// RawConn returns the connection the session drives, for a caller that
// drives it by other means for a while (the sink's append connection)
// and gives the session back only once every command it sent there was
// answered and nothing more is buffered for it to read.
func (s *Session) RawConn() *RawConn { return s.rc }

// Closed reports whether the connection was closed (by us: a server that
// hung up is noticed at the next read).
func (rc *RawConn) Closed() bool { return rc.dc != nil && rc.dc.Closed() }
