// Package imap is the IMAP source (RFC 9051, RFC 3501): it lists mailboxes
// and messages of one account and streams message bodies. It also owns
// dialing, TLS, authentication and mailbox-name mapping, which the IMAP
// sink (sinks/imapsink) reuses through Dial and ParseURL.
//
// It is built on go-imap v2 (imapclient) and designs around that library's
// known defects (docs/library-notes.md §0, §1): absolute literal deadlines are turned
// into inactivity limits, a truncated literal is detected by its announced
// size, a UID FETCH reply whose UID follows the body literal (which
// imapclient silently drops) is detected and served by sequence number, and
// every body streams on its own pooled connection so no command waits on a
// half-read FETCH.
package imap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/textproto"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// DefaultConns is the number of concurrent Opens when OpenOptions.Conns is
// zero: enough to hide round trips, well under Dovecot's default of 10
// connections per user and IP.
const DefaultConns = 4

const (
	// listChunk is how many messages one listing FETCH covers. The listing
	// is read into memory chunk by chunk and handed to fn only after the
	// FETCH completed, so a slow fn never holds the server's output (which
	// servers time out) and memory stays bounded.
	listChunk = 1000
	// drainMax is the most unread body bytes Close reads to keep a
	// connection; beyond it, dropping the connection and redialling is
	// cheaper.
	drainMax = 256 << 10
	// msgIDMax bounds how much of the Message-ID header field is read.
	msgIDMax = 8 << 10
)

// Source lists and reads the messages of one IMAP account. It is safe for
// concurrent use. It keeps one control connection for Mailboxes, List and
// Stat, and a pool of up to Limits().Conns connections for Open, each
// holding one mailbox EXAMINEd (read-only: listing and reading never change
// flags, and BODY.PEEK leaves \Seen alone). Only Remove (remove.go) writes,
// on a connection of its own.
//
// Message IDs are "<uidvalidity>.<uid>" (RFC 9051 §2.3.1.1): when the
// mailbox's UIDVALIDITY changes, old IDs give mail.ErrNotFound.
type Source struct {
	cfg   *Config
	o     mail.OpenOptions
	log   *slog.Logger
	conns int
	sem   chan struct{} // one slot per Open in flight
	ctlMu chan struct{} // one-slot lock for the control connection
	ctl   *conn         // guarded by ctlMu

	// prefix is the server's personal namespace prefix (RFC 2342), e.g.
	// "INBOX." on Courier-style servers; names are presented without it.
	prefix string

	// seqFetch is set once the server was caught putting UID after the
	// BODY[] literal (docs/library-notes.md §0.1): Open then fetches by sequence
	// number, which imapclient routes correctly.
	seqFetch atomic.Bool

	raw rawFirst // what New learnt on the raw session (rawfirst.go)

	rm  remover  // Remove's connection and state
	dl  delta    // FolderStatuses' and ListChanges' connection (delta.go)
	pre prefetch // what PrefetchChanges fetched for ListChanges (prefetch.go)

	// pool, when not nil, is the account's connections shared with the
	// sink of the same side (OpenOptions.Share): the control connection,
	// the Open pool's and Remove's are taken from it for each use and given
	// back when done, instead of each role keeping (and logging in) its own.
	pool *imapconn.Pool

	mu     sync.Mutex
	closed bool
	idle   []*conn
	all    map[*conn]struct{}
	boxes  map[string]string // UTF-8 '/'-separated name -> server name
	// listedAt is when New's LIST filled boxes, until a Mailboxes call
	// answers from it (prefetched); zero otherwise.
	listedAt time.Time
}

var (
	_ mail.Source      = (*Source)(nil)
	_ mail.BatchOpener = (*Source)(nil)
	_ mail.Remover     = (*Source)(nil)
	_ mail.Statter     = (*Source)(nil)
	_ mail.RoleLister  = (*Source)(nil)
)

// conn is one logged-in connection and the mailbox it has EXAMINEd.
type conn struct {
	c    *imapclient.Client
	dc   *imapconn.Conn // the TCP connection under c
	box  string         // server name of the selected mailbox, "" if none
	uidv uint32
	num  uint32 // messages in box at EXAMINE
	// condstore: CONDSTORE is enabled on the session (status.go).
	condstore bool
	// pooled: taken from Source.pool, and given back there (giveBack).
	pooled bool
}

// kill breaks the connection at once, from any goroutine: whoever is
// reading from it gets an error. It never blocks.
func (cn *conn) kill() { _ = cn.dc.Close() }

// close shuts the connection down and waits for imapclient's reader. That
// reader parks while a FETCH literal is handed out and unread, and
// Client.Close waits for it, so Client.Close alone deadlocks mid-body: kill
// first, then drain lit (if one is open, owned by the caller), whose reads
// now fail at once and release the reader.
func (cn *conn) close(lit io.Reader) {
	cn.kill()
	if lit != nil {
		_, _ = io.Copy(io.Discard, lit)
	}
	_ = cn.c.Close()
}

// tooLarge returns why cn's response guard refused a message literal as
// over MaxBodyLiteral (wrapping mail.ErrTooLarge), or nil. imapclient
// reports the failed read as text, so only the guard still knows.
func (cn *conn) tooLarge() error {
	if cn.dc == nil {
		return nil
	}
	return cn.dc.TooLarge()
}

func (cn *conn) dead() bool {
	if cn.dc.Closed() {
		return true
	}
	select {
	case <-cn.c.Closed():
		return true
	default:
		return false
	}
}

// New connects to the account in cfg (to fail fast on a wrong password or
// an unreachable server) and returns the source. o may be nil for defaults;
// its password is looked up once and reused for every pooled connection.
// Errors are those of Dial.
func New(ctx context.Context, cfg *Config, o *mail.OpenOptions) (*Source, error) {
	return newSource(ctx, cfg, o, nil)
}

// newSource is New with capabilities to act as if the server lacked them
// on the raw session from the first command on (delta.ignore; tests of
// the fallbacks).
func newSource(ctx context.Context, cfg *Config, o *mail.OpenOptions, ignore map[string]bool) (*Source, error) {
	if o == nil {
		o = &mail.OpenOptions{}
	}
	if o.AllowUnsafeExpunge && !cfg.AllowUnsafeExpunge {
		c := *cfg
		c.AllowUnsafeExpunge = true
		cfg = &c
	}
	s := &Source{cfg: cfg, o: *o, log: imapconn.Logger(cfg, o), all: map[*conn]struct{}{}}
	s.dl.ignore = ignore
	s.conns = o.Conns
	if s.conns <= 0 {
		s.conns = DefaultConns
	}
	s.sem = make(chan struct{}, s.conns)
	s.ctlMu = make(chan struct{}, 1)
	if pw := o.Password; pw != nil {
		var mu sync.Mutex
		var cached *string
		s.o.Password = func(ctx context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			if cached != nil {
				return *cached, nil
			}
			p, err := pw(ctx)
			if err == nil {
				cached = &p
			}
			return p, err
		}
	}
	s.pool = imapconn.SharedPool(cfg, &s.o)
	if o.Incremental { // a rerun: one login, on the session the change listing needs (rawfirst.go)
		if handled, err := s.newRawFirst(ctx); handled {
			if err != nil {
				return nil, err
			}
			return s, nil
		}
	}
	cn, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.ctl = cn
	s.all[s.ctl] = struct{}{}
	if err := s.learnPrefix(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	if s.pool != nil {
		// Between uses the control connection waits in the pool, where
		// the sink and the other roles find it (control takes it back).
		s.ctl = nil
		s.giveBack(cn)
	} else {
		cn.dc.SetIdle(true)
	}
	return s, nil
}

// dial returns a logged-in connection: an idle one of the shared pool, or
// a new one.
func (s *Source) dial(ctx context.Context) (*conn, error) {
	if s.pool != nil {
		pc, err := s.pool.Client(ctx)
		if err != nil {
			return nil, err
		}
		return &conn{c: pc.C, dc: pc.Conn, condstore: pc.CondStore, pooled: true, box: pc.Box, uidv: pc.UIDValidity, num: pc.Messages}, nil
	}
	c, dc, err := imapconn.DialConn(ctx, s.cfg, &s.o, s.log)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, dc: dc}, nil
}

// giveBack hands cn, which is in step with the server (nothing left half
// read), to the shared pool and forgets it, noting the mailbox it has
// EXAMINEd for the next taker of the source (examine trusts it only while
// the connection is in the selected state).
func (s *Source) giveBack(cn *conn) {
	s.mu.Lock()
	delete(s.all, cn)
	s.mu.Unlock()
	s.pool.PutClient(&imapconn.Client{C: cn.c, Conn: cn.dc, CondStore: cn.condstore, Box: cn.box, UIDValidity: cn.uidv, Messages: cn.num})
}

// learnPrefix reads the personal namespace prefix. Mailbox names are shown
// without it so that a Courier-style server's "INBOX.Sent" is "Sent", as
// on every other server, and a copy to or from one lands in the same folder
// names (the IMAP sink adds its own server's prefix back). The LIST that
// every user of a source asks first (Mailboxes) goes in the same round
// trip: a nightly rerun with nothing new is little more than its login.
// Only NAMESPACE can fail New; a failed LIST is asked again by Mailboxes.
func (s *Source) learnPrefix(ctx context.Context) error {
	stop := watch(ctx, s.ctl)
	var nc *imapclient.NamespaceCommand
	if s.ctl.c.Caps().Has(imap.CapNamespace) {
		nc = s.ctl.c.Namespace()
	}
	lc := s.ctl.c.List("", "*", nil)
	var (
		nd  *imap.NamespaceData
		err error
	)
	if nc != nil {
		nd, err = nc.Wait()
	}
	list, lerr := lc.Collect()
	if !stop() && err == nil {
		err = errors.New("connection closed")
	}
	var ie *imap.Error
	switch {
	case errors.As(err, &ie):
		nd = nil // NAMESPACE refused: no prefix
	case err != nil:
		_, err = s.wrap(ctx, "namespace "+s.cfg.Ident(), err)
		return err
	}
	if nd != nil && len(nd.Personal) > 0 {
		s.prefix = nd.Personal[0].Prefix
		if s.pool != nil {
			s.pool.SetNamespace(nd.Personal[0].Prefix, nd.Personal[0].Delim) // the sink's too
		}
	}
	if lerr == nil {
		s.nameTable(list)
		s.mu.Lock()
		s.listedAt = time.Now()
		s.mu.Unlock()
	}
	return nil
}

// prefetchFresh is how long the LIST New sent answers the first Mailboxes
// call: a source opened and listed at once (every command does) asks the
// server once; one listed later asks again.
const prefetchFresh = 30 * time.Second

// prefetched returns the table of the LIST New sent, once, while fresh.
func (s *Source) prefetched() (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := s.listedAt
	s.listedAt = time.Time{}
	if at.IsZero() || time.Since(at) > prefetchFresh || s.closed {
		return nil, false
	}
	return s.boxes, true
}

// userName is how Mailboxes names the server mailbox box: UTF-8,
// '/'-separated, INBOX in capitals, without the personal namespace prefix.
// full is the name with the prefix, which listBoxes uses when the short
// one would collide (a server folder "INBOX.INBOX", say).
func (s *Source) userName(box string, delim rune) (name, full string, escaped bool) {
	full, escaped = utf8Name(box, delim)
	full = normInbox(full)
	if p := s.prefix; p != "" && len(box) > len(p) && strings.HasPrefix(box, p) {
		name, _ = utf8Name(box[len(p):], delim)
		return normInbox(name), full, escaped
	}
	return full, full, escaped
}

// Register adds the imap and imaps source schemes to r, with the Gmail
// preset (see GmailPreset).
func Register(r *mail.Registry) {
	for _, scheme := range []string{"imap", "imaps"} {
		r.Add(mail.Factory{Scheme: scheme, Kind: mail.KindServer, Source: mail.NewSource(ParseURL, New), Presets: []string{PresetGmail}})
	}
}

// Limits reports the size of the Open pool (the control connection used by
// Mailboxes, List and Stat comes on top).
func (s *Source) Limits() mail.Limits { return mail.Limits{Conns: s.conns} }

// Close closes every connection, including those of bodies still being
// read (their Read then fails). It does not wait for those readers. It is
// idempotent; later calls of the other methods return mail.ErrClosed.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	idle := map[*conn]bool{}
	for _, cn := range s.idle {
		idle[cn] = true
	}
	all := s.all
	s.all, s.idle = map[*conn]struct{}{}, nil
	s.mu.Unlock()
	for cn := range all {
		if idle[cn] {
			cn.close(nil) // nobody reads from it
		} else {
			cn.kill() // its user finishes the shutdown when it notices
		}
	}
	s.dl.close()
	return nil
}

func (s *Source) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// newConn dials a connection and registers it for Close.
func (s *Source) newConn(ctx context.Context) (*conn, error) {
	cn, err := s.dial(ctx)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, mail.ErrUnreachable) {
			// The first connection worked, so this is the network or the
			// server having a bad moment, not a wrong host: let the engine
			// retry instead of stopping the run.
			err = mail.Temp(fmt.Errorf("imap: reconnect: %s", err.Error()))
		}
		return nil, err
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.all[cn] = struct{}{}
	}
	s.mu.Unlock()
	if closed {
		cn.close(nil)
		return nil, fmt.Errorf("imap: %s: %w", s.cfg.Ident(), mail.ErrClosed)
	}
	return cn, nil
}

// drop closes cn, which has no literal open, and forgets it.
func (s *Source) drop(cn *conn) {
	s.mu.Lock()
	delete(s.all, cn)
	s.mu.Unlock()
	cn.close(nil)
}

// control locks and returns the control connection, redialling it if it
// died. done(ok) unlocks it; ok=false discards the connection.
func (s *Source) control(ctx context.Context) (*conn, func(ok bool), error) {
	select {
	case s.ctlMu <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("imap: %s: %w", s.cfg.Ident(), ctx.Err())
	}
	unlock := func() { <-s.ctlMu }
	if s.isClosed() {
		unlock()
		return nil, nil, fmt.Errorf("imap: %s: %w", s.cfg.Ident(), mail.ErrClosed)
	}
	if s.ctl != nil && s.ctl.dead() {
		s.drop(s.ctl)
		s.ctl = nil
	}
	if s.ctl == nil {
		cn, err := s.newConn(ctx)
		if err != nil {
			unlock()
			return nil, nil, err
		}
		s.ctl = cn
	}
	cn := s.ctl
	cn.dc.SetIdle(false)
	return cn, func(ok bool) {
		switch {
		case !ok || cn.dead() || s.isClosed():
			s.drop(cn)
			s.ctl = nil
		case cn.pooled:
			s.ctl = nil
			s.giveBack(cn)
		default:
			cn.dc.SetIdle(true)
		}
		unlock()
	}, nil
}

// get takes a pooled connection (or dials one) for an Open; put gives it
// back.
func (s *Source) get(ctx context.Context) (*conn, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.sem
		return nil, mail.ErrClosed
	}
	var stale []*conn
	var cn *conn
	for len(s.idle) > 0 && cn == nil {
		c := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if c.dead() { // the server closed it while idle
			delete(s.all, c)
			stale = append(stale, c)
			continue
		}
		cn = c
	}
	s.mu.Unlock()
	for _, c := range stale {
		c.close(nil)
	}
	if cn != nil {
		cn.dc.SetIdle(false)
		return cn, nil
	}
	cn, err := s.newConn(ctx)
	if err != nil {
		<-s.sem
		return nil, err
	}
	return cn, nil
}

// put returns cn to the pool when ok, or discards it; lit is the FETCH
// literal still open on it, if any (see conn.close).
func (s *Source) put(cn *conn, ok bool, lit io.Reader) {
	s.mu.Lock()
	if ok && !s.closed && !cn.dead() && cn.pooled {
		s.mu.Unlock()
		s.giveBack(cn)
		<-s.sem
		return
	}
	if ok && !s.closed && !cn.dead() {
		cn.dc.SetIdle(true)
		s.idle = append(s.idle, cn)
		ok = true
	} else {
		delete(s.all, cn)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		cn.close(lit)
	}
	<-s.sem
}

// watch breaks cn when ctx is cancelled (imapclient takes no context);
// the returned stop reports false if that happened.
func watch(ctx context.Context, cn *conn) func() bool {
	return context.AfterFunc(ctx, cn.kill)
}

// wrap turns an error from imapclient into one for the caller and says
// whether the connection can be kept. Server verdicts (NO) keep it;
// everything else (BAD, decoding errors, a dropped connection) discards it.
// Transport failures are temporary; cancellation reports ctx.Err().
func (s *Source) wrap(ctx context.Context, op string, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, fmt.Errorf("imap: %s: %w", op, ctx.Err())
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		switch {
		case ie.Type == imap.StatusResponseTypeNo && (ie.Code == imap.ResponseCodeUnavailable || ie.Code == imap.ResponseCodeInUse ||
			ie.Code == imap.ResponseCodeLimit || ie.Code == imap.ResponseCodeServerBug):
			return true, mail.Temp(fmt.Errorf("imap: %s: %w", op, err))
		case ie.Type == imap.StatusResponseTypeNo:
			return true, fmt.Errorf("imap: %s: %w", op, err)
		default:
			return false, fmt.Errorf("imap: %s: %w", op, err)
		}
	}
	if err == io.ErrUnexpectedEOF {
		// imapclient's bare words for a connection the server closed, as
		// after "* BYE Session expired" (Gmail, scenario B5): say which
		// command it cut.
		return false, mail.Temp(fmt.Errorf("imap: %s: server closed the connection: %w", op, err))
	}
	if errors.Is(err, mail.ErrClosed) || mail.Temporary(err) || mail.Fatal(err) {
		return false, err
	}
	// imapclient formats decoding and connection errors with %v, so nothing
	// below can be classified: a broken connection is worth a retry.
	return false, mail.Temp(fmt.Errorf("imap: %s: %w", op, err))
}

// examine selects box read-only on cn unless it already is.
func (s *Source) examine(ctx context.Context, cn *conn, name, box string, force bool) error {
	if !force && cn.box == box && cn.c.State() == imap.ConnStateSelected {
		return nil
	}
	cn.box = ""
	data, err := cn.c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		var ie *imap.Error
		if ctx.Err() == nil && errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo &&
			(ie.Code == imap.ResponseCodeNonExistent || ie.Code == "") {
			return fmt.Errorf("imap: examine %q: %s: %w", name, ie.Text, mail.ErrMailboxNotFound)
		}
		return err
	}
	if data.UIDValidity == 0 {
		s.log.Warn("imap: server sent no UIDVALIDITY; IDs may not stay stable", "mailbox", name)
	}
	cn.box, cn.uidv, cn.num = box, data.UIDValidity, data.NumMessages
	return nil
}

// Mailboxes lists the selectable mailboxes (LIST "" "*", skipping \Noselect
// and \NonExistent), in UTF-8 with '/' as separator whatever the server's
// delimiter, sorted; with a mailbox in the URL, only it and its children.
//
// On a server whose delimiter is not '/', a '/' inside a name component
// would read as a level of hierarchy; it is written "%2F" instead (so
// "a/b" under '.' becomes "a%2Fb", not "a" > "b") and a warning is logged.
// Names that map to the same result are reported and only the first is
// kept. Both cases are rare and never silent.
func (s *Source) Mailboxes(ctx context.Context) ([]string, error) {
	boxes, ok := s.prefetched()
	if !ok {
		var err error
		if boxes, err = s.refresh(ctx); err != nil {
			return nil, err
		}
	}
	var out []string
	for name := range boxes {
		if s.inScope(name) {
			out = append(out, name)
		}
	}
	if s.cfg.Mailbox != "" && len(out) == 0 {
		return nil, fmt.Errorf("imap: %s: mailbox %q: %w", s.cfg.Ident(), s.cfg.Mailbox, mail.ErrMailboxNotFound)
	}
	sort.Strings(out)
	return out, nil
}

func (s *Source) inScope(name string) bool {
	f := normInbox(s.cfg.Mailbox)
	return f == "" || name == f || strings.HasPrefix(name, f+"/")
}

// refresh runs LIST on the control connection and rebuilds the name table.
func (s *Source) refresh(ctx context.Context) (map[string]string, error) {
	if s.raw.on {
		return s.refreshRaw(ctx)
	}
	cn, done, err := s.control(ctx)
	if err != nil {
		return nil, err
	}
	stop := watch(ctx, cn)
	boxes, keep, err := s.listBoxes(ctx, cn)
	if !stop() {
		keep = false
	}
	done(keep)
	return boxes, err
}

// listBoxes runs LIST "" "*" on cn and rebuilds the name table. keep says
// whether cn is still usable.
func (s *Source) listBoxes(ctx context.Context, cn *conn) (map[string]string, bool, error) {
	list, err := cn.c.List("", "*", nil).Collect()
	if err != nil {
		keep, err := s.wrap(ctx, "list "+s.cfg.Ident(), err)
		return nil, keep, err
	}
	return s.nameTable(list), true, nil
}

// nameTable rebuilds the name table from a LIST reply and returns it.
func (s *Source) nameTable(list []*imap.ListData) map[string]string {
	sort.Slice(list, func(i, j int) bool { return list[i].Mailbox < list[j].Mailbox })
	boxes := map[string]string{}
	for _, d := range list {
		if hasAttr(d.Attrs, imap.MailboxAttrNoSelect) || hasAttr(d.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		name, full, escaped := s.userName(d.Mailbox, d.Delim)
		if _, dup := boxes[name]; dup {
			name = full
		}
		if escaped {
			s.log.Warn(fmt.Sprintf("imap: mailbox name holds '/', which is not the server's separator %q; it is named with %%2F instead", d.Delim), "mailbox", name)
		}
		if prev, dup := boxes[name]; dup {
			s.log.Warn(fmt.Sprintf("imap: server mailboxes %q and %q both map to one name; skipping the second", prev, d.Mailbox), "mailbox", name)
			continue
		}
		boxes[name] = d.Mailbox
	}
	s.mu.Lock()
	s.boxes = boxes
	s.mu.Unlock()
	return boxes
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, b := range attrs {
		if strings.EqualFold(string(b), string(a)) {
			return true
		}
	}
	return false
}

// utf8Name maps a server mailbox name (already decoded from modified UTF-7
// by imapclient) with hierarchy delimiter delim to the '/'-separated form.
// escaped reports that a '/' inside a component had to be written %2F.
func utf8Name(server string, delim rune) (name string, escaped bool) {
	if delim == '/' {
		return server, false
	}
	var parts []string
	if delim == 0 { // flat namespace
		parts = []string{server}
	} else {
		parts = strings.Split(server, string(delim))
	}
	for i, p := range parts {
		if strings.Contains(p, "/") {
			parts[i], escaped = strings.ReplaceAll(p, "/", "%2F"), true
		}
	}
	return strings.Join(parts, "/"), escaped
}

// normInbox spells INBOX (case-insensitive, RFC 9051 §5.1) in capitals.
func normInbox(name string) string {
	first, rest, nested := strings.Cut(name, "/")
	if strings.EqualFold(first, "INBOX") {
		first = "INBOX"
	}
	if nested {
		return first + "/" + rest
	}
	return first
}

// serverName maps a '/'-separated mailbox name to the server's, running
// LIST when the name is not known yet.
func (s *Source) serverName(ctx context.Context, name string) (string, error) {
	if box, ok := s.known(name); ok {
		return box, nil
	}
	// Not listed yet, or created since the last LIST: look once more.
	boxes, err := s.refresh(ctx)
	if err != nil {
		return "", err
	}
	return s.lookup(boxes, name)
}

// known looks name up in the table of the last LIST.
func (s *Source) known(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	box, ok := s.boxes[normInbox(name)]
	return box, ok
}

func (s *Source) lookup(boxes map[string]string, name string) (string, error) {
	if box, ok := boxes[normInbox(name)]; ok {
		return box, nil
	}
	return "", fmt.Errorf("imap: %s: mailbox %q: %w", s.cfg.Ident(), name, mail.ErrMailboxNotFound)
}

// List EXAMINEs mailbox and calls fn once per message, in UID order, with
// ID "<uidvalidity>.<uid>", Size (RFC822.SIZE), Date (INTERNALDATE), Flags
// (\Recent dropped: it is session state) and MessageID. It fetches
// metadata by sequence-number ranges of listChunk messages — no EXPUNGE can
// renumber them during FETCH (RFC 9051 §7.5.1), and imapclient routes
// sequence-number replies even when the UID comes late — and calls fn only
// between FETCHes. An error from fn is returned unchanged.
func (s *Source) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("imap: list %q: %w", mailbox, err)
	}
	start := time.Now()
	box, err := s.serverName(ctx, mailbox)
	if err != nil {
		return err
	}
	cn, done, err := s.control(ctx)
	if err != nil {
		return err
	}
	stop := watch(ctx, cn)
	var count int
	var total int64
	keep, err := s.list(ctx, cn, normInbox(mailbox), box, true, func(e mail.Envelope) error {
		count++
		if e.Size > 0 {
			total += e.Size
		}
		return fn(e)
	})
	if !stop() {
		keep = false
	}
	done(keep)
	if err == nil {
		s.log.Debug("imap: listed", "messages", count, "mailbox", mailbox, "bytes", total, "elapsed", time.Since(start))
	}
	return err
}

// list runs the listing on cn. It returns the error and whether cn is still
// usable.
func (s *Source) list(ctx context.Context, cn *conn, name, box string, withMsgID bool, fn func(mail.Envelope) error) (bool, error) {
	op := fmt.Sprintf("list %q", name)
	if err := s.examine(ctx, cn, name, box, true); err != nil {
		if errors.Is(err, mail.ErrMailboxNotFound) {
			return true, err
		}
		return s.wrap(ctx, op, err)
	}
	uidv, total := cn.uidv, cn.num
	envs := make([]listed, 0, min(int(total), listChunk))
	for lo := uint32(1); lo <= total && lo != 0; lo += listChunk {
		hi := min(total, lo+listChunk-1)
		var set imap.SeqSet
		set.AddRange(lo, hi)
		opts := &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true}
		if withMsgID {
			opts.BodySection = []*imap.FetchItemBodySection{{
				Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true,
			}}
		}
		cmd := cn.c.Fetch(set, opts)
		envs = envs[:0]
		var perr error
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			e, err := readEnvelope(msg, name, uidv)
			if err != nil && perr == nil {
				perr = err
			}
			if err == nil {
				envs = append(envs, e)
			}
		}
		if err := cmd.Close(); err != nil {
			return s.wrap(ctx, op, err)
		}
		if perr != nil {
			// The server's reply made no sense: this connection's view is
			// suspect, and the message would be missing from the listing.
			return false, mail.Temp(fmt.Errorf("imap: %s: %w", op, perr))
		}
		if want := int(hi - lo + 1); len(envs) != want {
			return true, mail.Temp(fmt.Errorf("imap: %s: server returned %d of %d messages %d:%d (expunged meanwhile?)", op, len(envs), want, lo, hi))
		}
		sort.Slice(envs, func(i, j int) bool { return envs[i].uid < envs[j].uid })
		// fn may block for long (the engine's queue is full of big
		// messages): no command is outstanding, so the connection must not
		// time out meanwhile.
		cn.dc.SetIdle(true)
		for _, e := range envs {
			if err := ctx.Err(); err != nil {
				return true, fmt.Errorf("imap: %s: %w", op, err)
			}
			if err := fn(e.env); err != nil {
				return true, err // unchanged, as the contract says
			}
		}
		cn.dc.SetIdle(false)
	}
	return true, nil
}

// listed is one envelope of a listing chunk with its UID for sorting.
type listed struct {
	uid imap.UID
	env mail.Envelope
}

// readEnvelope consumes one listing FETCH reply.
func readEnvelope(msg *imapclient.FetchMessageData, mailbox string, uidv uint32) (listed, error) {
	e := mail.Envelope{Mailbox: mailbox, Size: -1, Flags: []mail.Flag{}}
	var uid imap.UID
	for item := msg.Next(); item != nil; item = msg.Next() {
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			uid = it.UID
		case imapclient.FetchItemDataFlags:
			e.Flags = toFlags(it.Flags)
		case imapclient.FetchItemDataInternalDate:
			e.Date = it.Time
		case imapclient.FetchItemDataRFC822Size:
			e.Size = it.Size
		case imapclient.FetchItemDataBodySection:
			if it.Literal != nil {
				e.MessageID = messageID(io.LimitReader(it.Literal, msgIDMax))
			}
		}
	}
	if uid == 0 {
		return listed{}, fmt.Errorf("FETCH reply for message %d has no UID", msg.SeqNum)
	}
	e.ID = makeID(uidv, uid)
	return listed{uid, e}, nil
}

// makeID builds "<uidvalidity>.<uid>" (imapconn.MakeID).
func makeID(uidv uint32, uid imap.UID) mail.ID { return imapconn.MakeID(uidv, uint32(uid)) }

// parseID splits an ID made by makeID (imapconn.ParseID).
func parseID(id mail.ID) (uint32, imap.UID, bool) {
	v, u, ok := imapconn.ParseID(id)
	return v, imap.UID(u), ok
}

// toFlags converts IMAP flags, dropping \Recent (session state that servers
// reject in APPEND, docs/library-notes.md §0.7) and \Deleted: that is a pending
// EXPUNGE on this server (RFC 9051 §2.3.2), set by another client or by an
// interrupted Remove, not a property to copy; carried over (or synced to an
// earlier copy), it would let the destination's next EXPUNGE destroy the
// copy. The result is sorted and never nil: IMAP always knows a message's
// flags, even when there are none.
func toFlags(in []imap.Flag) []mail.Flag {
	out := make([]mail.Flag, 0, len(in))
	for _, f := range in {
		if strings.EqualFold(string(f), `\Recent`) || strings.EqualFold(string(f), `\Deleted`) {
			continue
		}
		out = append(out, mail.Flag(f))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// messageID extracts the Message-ID field from a header block.
func messageID(r io.Reader) string {
	b, _ := io.ReadAll(r) // bounded by the caller (msgIDMax)
	tr := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("\r\n\r\n"))))
	h, _ := tr.ReadMIMEHeader()
	return strings.TrimSpace(h.Get("Message-Id"))
}

// Stat reports the number of messages and their total size in mailbox, for
// `mailferry ls`: STATUS (MESSAGES SIZE) when the server has STATUS=SIZE
// (RFC 8438) or IMAP4rev2, otherwise a metadata-only listing.
func (s *Source) Stat(ctx context.Context, mailbox string) (int, int64, error) {
	box, err := s.serverName(ctx, mailbox)
	if err != nil {
		return 0, 0, err
	}
	cn, done, err := s.control(ctx)
	if err != nil {
		return 0, 0, err
	}
	stop := watch(ctx, cn)
	keep := true
	defer func() {
		if !stop() {
			keep = false
		}
		done(keep)
	}()
	op := fmt.Sprintf("status %q", mailbox)
	if caps := cn.c.Caps(); caps.Has(imap.CapStatusSize) {
		sd, err := cn.c.Status(box, &imap.StatusOptions{NumMessages: true, Size: true}).Wait()
		if err != nil {
			keep, err = s.wrap(ctx, op, err)
			return 0, 0, err
		}
		if sd.NumMessages != nil && sd.Size != nil {
			return int(*sd.NumMessages), *sd.Size, nil
		}
	}
	var messages int
	var total int64
	keep, err = s.list(ctx, cn, normInbox(mailbox), box, false, func(e mail.Envelope) error {
		messages++
		if e.Size > 0 {
			total += e.Size
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return messages, total, nil
}

// Open streams the message env names with UID FETCH uid (UID BODY.PEEK[])
// on a pooled connection, EXAMINEing env.Mailbox there first if needed. An
// ID whose UIDVALIDITY is no longer the mailbox's, or a UID the server does
// not have, gives mail.ErrNotFound.
//
// ctx also governs reading the body: cancelling it fails the next Read.
// Read returns io.EOF only once the literal delivered exactly the announced
// number of bytes and the FETCH completed with OK; a body cut short fails
// with a temporary error wrapping io.ErrUnexpectedEOF (docs/library-notes.md §0.2).
// Close may come before EOF: a short remainder is drained to keep the
// connection, a long one costs the connection.
func (s *Source) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	op := fmt.Sprintf("fetch %s %s", env.Mailbox, env.ID)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("imap: %s: %w", op, err)
	}
	uidv, uid, ok := parseID(env.ID)
	if !ok {
		return nil, fmt.Errorf("imap: %s: not an IMAP message ID: %w", op, mail.ErrNotFound)
	}
	for _, fetch := range []fetchVia{s.fetchOnDelta, s.fetchPooled} {
		if rc, ok, err := openVia(ctx, fetch, op, env, uidv, uid); ok {
			return rc, err
		}
	}
	cn, err := s.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("imap: %s: %w", op, err)
	}
	stop := watch(ctx, cn)
	b := &body{s: s, cn: cn, ctx: ctx, stop: stop, uid: uid, op: op}
	box, ok := s.known(env.Mailbox)
	if !ok {
		// LIST on this connection, not the control one: a List holding
		// that may be waiting for this very Open to finish.
		boxes, keep, err := s.listBoxes(ctx, cn)
		if err == nil {
			box, err = s.lookup(boxes, env.Mailbox)
		}
		if err != nil {
			b.release(keep)
			return nil, err
		}
	}
	if err := b.start(normInbox(env.Mailbox), box, uidv); err != nil {
		return nil, err
	}
	s.log.Debug("imap: fetching", "mailbox", env.Mailbox, "id", string(env.ID), "size", b.lit.Size())
	return b, nil
}

// body is the ReadCloser Open returns; it owns cn until released.
type body struct {
	s      *Source
	cn     *conn
	ctx    context.Context
	stop   func() bool
	uid    imap.UID
	op     string
	cmd    *imapclient.FetchCommand
	msg    *imapclient.FetchMessageData
	lit    imap.LiteralReader
	litEnd bool // lit returned EOF or an error: imapclient's reader moved on
	n      int64
	sawUID bool
	err    error // sticky: io.EOF after a verified end, or the failure
	done   bool  // cn released
	closed bool
}

// release gives the connection back (ok) or discards it, once.
func (b *body) release(ok bool) {
	if b.done {
		return
	}
	b.done = true
	if !b.stop() {
		ok = false
	}
	var lit io.Reader
	if b.lit != nil && !b.litEnd {
		// Still open: imapclient's reader waits for it (conn.close). Once
		// it ended, that reader owns the buffer again: never touch it.
		lit = b.lit
	}
	b.s.put(b.cn, ok, lit)
}

// fail records err (or the cancellation) and discards the connection.
func (b *body) fail(err error) error {
	if b.ctx.Err() != nil {
		err = fmt.Errorf("imap: %s: %w", b.op, b.ctx.Err())
	}
	b.err = err
	b.release(false)
	return err
}

// failWrap classifies an imapclient error; a NO keeps the connection.
// A message literal over MaxBodyLiteral is a permanent failure of this
// message, not the temporary broken connection wrap would make of it: the
// server announces the same size on every attempt, so retries (and a
// rerun) cannot succeed, and the run goes on with the other messages.
func (b *body) failWrap(err error) error {
	if gerr := b.cn.tooLarge(); gerr != nil && b.ctx.Err() == nil {
		return b.fail(fmt.Errorf("imap: %s: %w", b.op, gerr))
	}
	keep, err := b.s.wrap(b.ctx, b.op, err)
	b.err = err
	b.release(keep)
	return err
}

// start EXAMINEs, checks UIDVALIDITY and issues the FETCH up to the body
// literal.
func (b *body) start(name, box string, uidv uint32) error {
	cn := b.cn
	if err := b.s.examine(b.ctx, cn, name, box, false); err != nil {
		if errors.Is(err, mail.ErrMailboxNotFound) {
			b.release(true)
			return err
		}
		return b.failWrap(err)
	}
	if cn.uidv != uidv {
		b.release(true)
		return fmt.Errorf("imap: %s: mailbox UIDVALIDITY is now %d, so the message's UID no longer names it: %w", b.op, cn.uidv, mail.ErrNotFound)
	}
	opts := &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
	if !b.s.seqFetch.Load() {
		b.cmd = cn.c.Fetch(imap.UIDSetNum(b.uid), opts)
		b.msg = b.cmd.Next()
		if b.msg == nil {
			if err := b.cmd.Close(); err != nil {
				return b.notFoundOr(err)
			}
			// Nothing came back: the message is gone, or the server put the
			// UID after the literal and imapclient dropped the reply
			// (docs/library-notes.md §0.1). Ask the server which.
			exists, err := b.uidExists()
			if err != nil {
				return b.failWrap(err)
			}
			if !exists {
				b.release(true)
				return fmt.Errorf("imap: %s: %w", b.op, mail.ErrNotFound)
			}
			if !b.s.seqFetch.Swap(true) {
				b.s.log.Warn("imap: server sends the UID after the message body, which the IMAP library drops; fetching by sequence number from now on", "mailbox", name)
			}
		}
	}
	if b.msg == nil {
		// By sequence number: SEARCH cannot be answered with EXPUNGEs in
		// between (RFC 9051 §7.5.1), so the number still names the UID.
		sd, err := cn.c.Search(&imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(b.uid)}}, nil).Wait()
		if err != nil {
			return b.failWrap(err)
		}
		seqs := sd.AllSeqNums()
		if len(seqs) == 0 {
			b.release(true)
			return fmt.Errorf("imap: %s: %w", b.op, mail.ErrNotFound)
		}
		b.cmd = cn.c.Fetch(imap.SeqSetNum(seqs[0]), opts)
		b.msg = b.cmd.Next()
		if b.msg == nil {
			if err := b.cmd.Close(); err != nil {
				return b.notFoundOr(err)
			}
			b.release(true)
			return fmt.Errorf("imap: %s: %w", b.op, mail.ErrNotFound)
		}
	}
	for {
		item := b.msg.Next()
		if item == nil {
			// A reply without BODY[]: finish the command and complain.
			if err := b.cmd.Close(); err != nil {
				return b.notFoundOr(err)
			}
			return b.fail(mail.Temp(fmt.Errorf("imap: %s: reply has no BODY[]", b.op)))
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			if it.UID != b.uid {
				_ = b.cmd.Close()
				return b.fail(fmt.Errorf("imap: %s: server answered with UID %d", b.op, it.UID))
			}
			b.sawUID = true
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil {
				_ = b.cmd.Close()
				return b.fail(mail.Temp(fmt.Errorf("imap: %s: server returned NIL for BODY[]", b.op)))
			}
			b.lit = it.Literal
			return nil
		}
	}
}

// notFoundOr maps a failed FETCH: NO [EXPUNGEISSUED] means the message was
// expunged by another session (RFC 9051 §7.1).
func (b *body) notFoundOr(err error) error {
	var ie *imap.Error
	if b.ctx.Err() == nil && errors.As(err, &ie) && ie.Code == "EXPUNGEISSUED" {
		b.release(true)
		return fmt.Errorf("imap: %s: %s: %w", b.op, ie.Text, mail.ErrNotFound)
	}
	return b.failWrap(err)
}

func (b *body) uidExists() (bool, error) {
	sd, err := b.cn.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(b.uid)}}, nil).Wait()
	if err != nil {
		return false, err
	}
	for _, u := range sd.AllUIDs() {
		if u == b.uid {
			return true, nil
		}
	}
	return false, nil
}

func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, fmt.Errorf("imap: %s: read after close", b.op)
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.ctx.Err() != nil {
		// The watchdog breaks the connection too, but asynchronously.
		return 0, b.fail(nil)
	}
	n, err := b.lit.Read(p)
	b.n += int64(n)
	if err != nil {
		b.litEnd = true
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF && b.n == b.lit.Size():
		return n, b.finish()
	case err == io.EOF:
		// imapclient reports a literal cut by a dropped connection as a
		// clean EOF (docs/library-notes.md §0.2).
		return n, b.fail(mail.Temp(fmt.Errorf("imap: %s: body cut short after %d of %d bytes: %w", b.op, b.n, b.lit.Size(), io.ErrUnexpectedEOF)))
	default:
		return n, b.fail(mail.Temp(fmt.Errorf("imap: %s: after %d of %d bytes: %w", b.op, b.n, b.lit.Size(), err)))
	}
}

// finish reads the rest of the reply after the literal, checks the UID
// and the tagged OK, and returns io.EOF or the error.
func (b *body) finish() error {
	var bad error
	for item := b.msg.Next(); item != nil; item = b.msg.Next() {
		if u, ok := item.(imapclient.FetchItemDataUID); ok {
			if u.UID != b.uid && bad == nil {
				bad = fmt.Errorf("imap: %s: reply was for UID %d", b.op, u.UID)
			}
			b.sawUID = true
		}
	}
	if err := b.cmd.Close(); err != nil {
		return b.failWrap(err)
	}
	if bad == nil && !b.sawUID {
		bad = fmt.Errorf("imap: %s: reply carries no UID", b.op)
	}
	if bad != nil {
		return b.fail(bad)
	}
	b.err = io.EOF
	b.release(true)
	return io.EOF
}

// Close ends the body. Before EOF it drains a short remainder (keeping the
// connection) or discards the connection. It is idempotent.
func (b *body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.err != nil || b.done {
		return nil
	}
	if rest := b.lit.Size() - b.n; rest <= drainMax {
		n, err := io.Copy(io.Discard, b.lit)
		b.n += n
		b.litEnd = true
		if err == nil && b.n == b.lit.Size() {
			_ = b.finish()
			return nil
		}
	}
	b.release(false)
	return nil
}
