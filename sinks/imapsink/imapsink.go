package imapsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// DefaultConns is the number of concurrent Puts (and append connections)
// when OpenOptions.Conns is zero.
const DefaultConns = 4

const (
	// batchMax and batchBytes bound one MULTIAPPEND command: beyond them
	// the command is ended early (its messages become durable before the
	// engine's Commit), so the spool files held for a retry stay few.
	batchMax   = 256
	batchBytes = 256 << 20
	// commitBatch is the Batch the sink asks the engine for (see Limits).
	commitBatch = 256
	// commitAttempts is how often Commit re-sends a batch whose command
	// failed for a temporary reason before giving up.
	commitAttempts = 4
	// freeSpools is how many emptied spool files are kept for reuse.
	freeSpools = 64
	// memSpoolMax is the largest message spooled in memory rather than to
	// a file; memSpoolBudget bounds all of them together (in flight and
	// waiting for Commit).
	memSpoolMax    = 256 << 10
	memSpoolBudget = 16 << 20
)

// Sink appends messages to an IMAP account (RFC 9051, RFC 3501). It is safe
// for concurrent use by up to Limits().Conns Puts. See the package
// documentation for batching, identity and error handling.
type Sink struct {
	cfg   *Config
	o     mail.OpenOptions
	log   *slog.Logger
	conns int
	sem   chan struct{} // one slot per Put in flight
	avail chan struct{} // one token per idle append slot
	multi bool          // MULTIAPPEND in use
	limit int64         // APPENDLIMIT, 0 if none
	ns    namespace
	ctlMu chan struct{}      // one-slot lock for the control connection
	ctl   *imapclient.Client // guarded by ctlMu
	// pooled is ctl as the shared pool handed it out (nil: not pooled);
	// guarded by ctlMu.
	pooled *imapconn.Client
	// helloMu guards learned: whether multi, limit and ns are known (New
	// learns them, or connect on first use with OpenOptions.Lazy).
	helloMu sync.Mutex
	learned bool

	mu      sync.Mutex
	closed  bool
	slots   []*slot
	boxes   map[string]bool   // server names that exist; nil until listed
	roles   map[string]string // server name -> special-use role
	folders map[string]*folder
	free    []*os.File
	memUsed int64
	prov    uint64
	// resolved maps provisional IDs to final ones until FinalID is asked
	// (by the engine, once per message, after the Commit that covers it; a
	// message may be resolved several Commits before the engine asks).
	resolved map[mail.ID]mail.ID
	// alt counts the messages the server changed on APPEND, found when
	// their copies were recognised (see alteration).
	alt alterations
	// cond is the raw connection of SetFlagsIf (twoway.go).
	cond condConn
	// pool, when not nil, is the account's connections shared with the
	// source of the same side (OpenOptions.Share): the control and the
	// SetFlagsIf connections are taken from it for each use and given
	// back when done, instead of the sink logging in its own.
	pool *imapconn.Pool
}

var (
	_ mail.Sink       = (*Sink)(nil)
	_ mail.Committer  = (*Sink)(nil)
	_ mail.IDResolver = (*Sink)(nil)
	_ mail.FlagSetter = (*Sink)(nil)
	_ mail.RoleLister = (*Sink)(nil)

	_ mail.AlterationCounter = (*Sink)(nil)
)

// item is one message on its way: the spooled body and what the retry and
// dedupe logic need.
type item struct {
	msg       message
	file      *os.File      // spool file, or
	buf       *bytes.Buffer // the body in memory
	mem       int64         // memory budget held
	name      string        // mailbox as the engine named it
	box       string        // server name
	env       mail.Envelope
	id        identity
	prov      mail.ID
	ambiguous bool // its command may have been stored: search before re-sending
}

// New connects the control connection (to fail fast on a bad password or
// host), learns the server's namespace and capabilities, and returns the
// sink; with o.Lazy it does so on first use instead. o may be nil. Append
// connections are dialed on first use.
func New(ctx context.Context, cfg *Config, o *mail.OpenOptions) (*Sink, error) {
	if o == nil {
		o = &mail.OpenOptions{}
	}
	s := &Sink{cfg: cfg, o: *o, folders: map[string]*folder{}, resolved: map[mail.ID]mail.ID{}}
	if s.o.Side == "" {
		s.o.Side = "dst"
	}
	s.log = s.o.Log().With("side", s.o.Side, "scheme", cfg.Scheme())
	s.alt.log = s.log
	s.conns = o.Conns
	if s.conns <= 0 {
		s.conns = DefaultConns
	}
	if pw := o.Password; pw != nil {
		var pmu sync.Mutex
		var cached *string
		s.o.Password = func(ctx context.Context) (string, error) {
			pmu.Lock()
			defer pmu.Unlock()
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
	s.sem = make(chan struct{}, s.conns)
	s.ctlMu = make(chan struct{}, 1)
	s.avail = make(chan struct{}, s.conns)
	for range s.conns {
		s.slots = append(s.slots, &slot{lock: make(chan struct{}, 1)})
	}
	s.pool = imapconn.SharedPool(&cfg.Config, &s.o)
	if o.Lazy {
		return s, nil
	}
	c, err := s.dialControl(ctx)
	if err != nil {
		return nil, err
	}
	s.ctl = c
	if err := s.hello(ctx, c); err != nil {
		_ = c.Close()
		return nil, err
	}
	if s.pool != nil {
		s.pooled.Box = "" // hello selected nothing, but say so
		s.pool.PutClient(s.pooled)
		s.ctl, s.pooled = nil, nil
	}
	return s, nil
}

// connect learns, on a sink opened with OpenOptions.Lazy, what New learns
// of the server (capabilities, namespace) before the first command that
// needs it; on any other sink it does nothing.
func (s *Sink) connect(ctx context.Context) error {
	s.helloMu.Lock()
	defer s.helloMu.Unlock()
	if s.learned {
		return nil
	}
	if s.helloFromPool() {
		return nil
	}
	c, done, err := s.control(ctx)
	if err != nil {
		return err
	}
	err = s.hello(ctx, c)
	done(err == nil)
	return err
}

// hello reads what the sink needs to know of the server from the control
// connection c: MULTIAPPEND, APPENDLIMIT and the namespace.
func (s *Sink) hello(ctx context.Context, c *imapclient.Client) error {
	s.learnCaps(c.Caps())
	if err := s.learnNamespace(ctx, c); err != nil {
		return err
	}
	s.helloDone()
	return nil
}

// helloFromPool is hello from what the shared pool already knows: the
// capabilities of a login of this account and the namespace the source
// of the same side asked (a two-way sync's source logs in on the raw
// session first and asks both there). The sink then needs no control
// connection, and no login, until it sends a command there; false when
// the pool does not know both yet.
func (s *Sink) helloFromPool() bool {
	if s.pool == nil {
		return false
	}
	caps, ok := s.pool.Caps()
	prefix, delim, nsOK := s.pool.Namespace()
	if !ok || !nsOK {
		return false
	}
	set := imapv2.CapSet{}
	for c := range caps {
		set[imapv2.Cap(c)] = struct{}{}
	}
	s.learnCaps(set)
	s.ns = namespace{prefix: prefix, delim: delim}
	s.helloDone()
	return true
}

// learnCaps reads MULTIAPPEND and APPENDLIMIT from the capabilities.
func (s *Sink) learnCaps(caps imapv2.CapSet) {
	s.multi = s.cfg.MultiAppend && caps.Has(imapv2.Cap("MULTIAPPEND"))
	if l, ok := caps.AppendLimit(); ok && l != nil {
		s.limit = int64(*l)
	}
}

func (s *Sink) helloDone() {
	s.learned = true
	s.log.Debug(fmt.Sprintf("imapsink: connected; namespace %q delimiter %q, multiappend %v, appendlimit %d", s.ns.prefix, s.ns.delim, s.multi, s.limit))
}

// learnNamespace reads the personal namespace (RFC 2342) or, without
// NAMESPACE, the hierarchy delimiter from LIST "" "".
func (s *Sink) learnNamespace(ctx context.Context, c *imapclient.Client) error {
	if s.pool != nil {
		if prefix, delim, ok := s.pool.Namespace(); ok {
			s.ns = namespace{prefix: prefix, delim: delim} // the source of this side asked it
			return nil
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if c.Caps().Has(imapv2.CapNamespace) {
		nd, err := c.Namespace().Wait()
		if err == nil && len(nd.Personal) > 0 {
			s.ns = namespace{prefix: nd.Personal[0].Prefix, delim: nd.Personal[0].Delim}
			return nil
		}
		if err != nil && !isNo(err) {
			return s.ctlErr(ctx, "namespace", err)
		}
	}
	list, err := c.List("", "", nil).Collect()
	if err != nil {
		return s.ctlErr(ctx, "list delimiter", err)
	}
	s.ns = namespace{delim: '/'}
	if len(list) > 0 {
		s.ns.delim = list[0].Delim
	}
	return nil
}

// Register adds the imap and imaps sink schemes to r.
func Register(r *mail.Registry) {
	for _, scheme := range []string{"imap", "imaps"} {
		r.Add(mail.Factory{Scheme: scheme, Kind: mail.KindServer, Sink: mail.NewSink(ParseURL, New)})
	}
}

// Limits reports how many Puts may run at once: one per append connection.
func (s *Sink) Limits() mail.Limits {
	l := mail.Limits{Conns: s.conns}
	s.helloMu.Lock()
	multi := s.multi
	s.helloMu.Unlock()
	if multi {
		// Each Commit ends the open MULTIAPPEND on every connection and
		// waits for the slowest session's transaction (Dovecot: renames,
		// uidlist, index, fsyncs) while no Put can use those connections.
		// 256 rather than the engine's 64: 5,000 messages IMAP -> IMAP over
		// TLS took 4.7 s instead of 5.5 s (BENCHMARKS.md); batchMax caps one
		// command at 256 too.
		l.Batch = commitBatch
	}
	return l
}

// Close drops every connection. Messages Put but not yet committed are
// discarded: an open MULTIAPPEND command that never ends stores nothing
// (RFC 3502 §6.3.11). It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	slots, free := s.slots, s.free
	s.free = nil
	s.mu.Unlock()
	s.cond.close()
	for _, sl := range slots {
		select {
		case sl.lock <- struct{}{}:
			if c := sl.c; c != nil {
				c.close()
			}
			for _, it := range append(sl.batch, sl.retry...) {
				s.release(it)
			}
			sl.batch, sl.retry = nil, nil
			<-sl.lock
		default:
			// In use by a Put: giveSlot closes it when the Put is done.
		}
	}
	for _, f := range free {
		_ = f.Close()
	}
	// The control connection: log out politely, but never wait long.
	select {
	case s.ctlMu <- struct{}{}:
		if s.ctl != nil {
			done := make(chan struct{})
			go func() { _ = s.ctl.Logout().Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
			}
			_ = s.ctl.Close()
		}
		<-s.ctlMu
	case <-time.After(2 * time.Second):
		// In use (an index read): its holder closes it when done.
	}
	return nil
}

func (s *Sink) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// begin refuses a closed sink and connects a lazy one: the start of every
// method that talks to the server.
func (s *Sink) begin(ctx context.Context, op string) error {
	if s.isClosed() {
		return s.errClosed(op)
	}
	return s.connect(ctx)
}

func (s *Sink) errClosed(op string) error {
	return fmt.Errorf("imapsink: %s: %w", op, mail.ErrClosed)
}

// boxName maps an engine mailbox name to the server's, below the URL's
// folder if one was given.
func (s *Sink) boxName(name string) string {
	if s.cfg.Mailbox != "" {
		name = strings.Trim(s.cfg.Mailbox, "/") + "/" + name
	}
	server, changed := s.ns.serverName(name)
	if changed {
		s.log.Warn(fmt.Sprintf("imapsink: a mailbox name holds the server's separator %q; it is replaced by '_' (%q)", s.ns.delim, server), "mailbox", name)
	}
	return server
}

// CreateMailbox creates name on the server, with every missing parent, and
// subscribes what it created. An existing mailbox is not an error.
func (s *Sink) CreateMailbox(ctx context.Context, name string) error {
	if err := s.begin(ctx, "create "+name); err != nil {
		return err
	}
	return s.ensureBox(ctx, s.boxName(name))
}

// ensureBox makes server exist.
func (s *Sink) ensureBox(ctx context.Context, server string) error {
	if server == "INBOX" {
		return nil
	}
	if err := s.listBoxes(ctx, false); err != nil {
		return err
	}
	s.mu.Lock()
	exists := s.boxes[server]
	s.mu.Unlock()
	if exists {
		return nil
	}
	for _, p := range append(s.ns.parents(server), server) {
		if err := s.createBox(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// createBox CREATEs and SUBSCRIBEs one level unless it is known to exist.
// A mailbox created here starts with an empty index.
func (s *Sink) createBox(ctx context.Context, server string) error {
	s.mu.Lock()
	exists := s.boxes[server]
	s.mu.Unlock()
	if exists {
		return nil
	}
	c, done, err := s.control(ctx)
	if err != nil {
		return err
	}
	err = c.Create(server, nil).Wait()
	created := err == nil
	if err != nil {
		var ie *imapv2.Error
		if !errors.As(err, &ie) || ctx.Err() != nil {
			done(false)
			return s.ctlErr(ctx, fmt.Sprintf("create %q", server), err)
		}
		// NO: it may exist already ([ALREADYEXISTS], or a server that only
		// says so in words). Ask.
		list, lerr := c.List("", server, nil).Collect()
		if lerr != nil || len(list) == 0 || hasAttr(list[0].Attrs, imapv2.MailboxAttrNonExistent) {
			done(lerr == nil)
			return fmt.Errorf("imapsink: create %q: server refused: %s", server, ie.Text)
		}
	}
	if created {
		if err := c.Subscribe(server).Wait(); err != nil && !isNo(err) {
			done(false)
			return s.ctlErr(ctx, fmt.Sprintf("subscribe %q", server), err)
		}
		s.log.Info("imapsink: created mailbox", "mailbox", server)
	}
	done(true)
	s.mu.Lock()
	s.boxes[server] = true
	if created && s.folders[server] == nil {
		f := newFolder(server, &s.alt)
		f.loaded, f.next = true, 1
		s.folders[server] = f
	}
	s.mu.Unlock()
	return nil
}

// listBoxes runs LIST (with special-use attributes where offered) once, or
// again when force.
func (s *Sink) listBoxes(ctx context.Context, force bool) error {
	s.mu.Lock()
	have := s.boxes != nil
	s.mu.Unlock()
	if have && !force {
		return nil
	}
	c, done, err := s.control(ctx)
	if err != nil {
		return err
	}
	var opts *imapv2.ListOptions
	if c.Caps().Has(imapv2.CapSpecialUse) {
		opts = &imapv2.ListOptions{ReturnSpecialUse: true}
	}
	list, err := c.List("", "*", opts).Collect()
	if err != nil {
		keep := isNo(err)
		done(keep)
		return s.ctlErr(ctx, "list", err)
	}
	done(true)
	boxes, roles := map[string]bool{"INBOX": true}, map[string]string{}
	for _, d := range list {
		if hasAttr(d.Attrs, imapv2.MailboxAttrNonExistent) {
			continue
		}
		boxes[d.Mailbox] = true // \Noselect parents exist too: never CREATE them
		if hasAttr(d.Attrs, imapv2.MailboxAttrNoSelect) {
			continue
		}
		for _, a := range d.Attrs {
			if r := specialUse(a); r != "" {
				roles[d.Mailbox] = r
			}
		}
	}
	s.mu.Lock()
	s.boxes, s.roles = boxes, roles
	s.mu.Unlock()
	return nil
}

// MailboxRoles implements mail.RoleLister: it maps each mailbox with a
// special-use attribute (RFC 6154) to the role, e.g. "Sent" -> `\Sent`,
// naming mailboxes as CreateMailbox and Put take them.
func (s *Sink) MailboxRoles(ctx context.Context) (map[string]string, error) {
	if err := s.begin(ctx, "list roles"); err != nil {
		return nil, err
	}
	if err := s.listBoxes(ctx, true); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for server, role := range s.roles {
		name := s.ns.userName(server)
		if root := strings.Trim(s.cfg.Mailbox, "/"); root != "" {
			if !strings.HasPrefix(name, root+"/") {
				continue
			}
			name = name[len(root)+1:]
		}
		out[name] = role
	}
	return out, nil
}

func specialUse(a imapv2.MailboxAttr) string {
	for _, r := range []imapv2.MailboxAttr{imapv2.MailboxAttrAll, imapv2.MailboxAttrArchive, imapv2.MailboxAttrDrafts,
		imapv2.MailboxAttrFlagged, imapv2.MailboxAttrJunk, imapv2.MailboxAttrSent, imapv2.MailboxAttrTrash} {
		if strings.EqualFold(string(a), string(r)) {
			return string(r)
		}
	}
	return ""
}

func hasAttr(attrs []imapv2.MailboxAttr, a imapv2.MailboxAttr) bool {
	for _, b := range attrs {
		if strings.EqualFold(string(b), string(a)) {
			return true
		}
	}
	return false
}

// Put stores the message in env.Mailbox with env's flags and date, unless
// the folder already holds a message with the same identity that no other
// Put of this run was paired with (see the package documentation); then it
// reads the body and returns that message's ID.
//
// With MULTIAPPEND the message joins its connection's open command and Put
// returns a provisional ID ("pending.N", see FinalID); the message is
// durable once Commit returns nil. Otherwise Put returns only after the
// server's tagged OK, with ID "uidvalidity.uid" from APPENDUID (UIDPLUS),
// or "" when the server does not say.
func (s *Sink) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	op := fmt.Sprintf("put %s %s", env.Mailbox, env.ID)
	if err := s.begin(ctx, op); err != nil {
		return "", err
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("imapsink: %s: %w", op, ctx.Err())
	}
	defer func() { <-s.sem }()

	it := &item{name: env.Mailbox, box: s.boxName(env.Mailbox), env: env}
	if err := s.spool(ctx, it, body); err != nil {
		return "", fmt.Errorf("imapsink: %s: %w", op, err)
	}
	keep := false
	defer func() {
		if !keep {
			s.release(it)
		}
	}()
	if s.limit > 0 && it.msg.size > s.limit {
		return "", fmt.Errorf("imapsink: %s: %d bytes is over the server's APPENDLIMIT %d: %w", op, it.msg.size, s.limit, mail.ErrTooLarge)
	}
	fo, err := s.folder(ctx, it.box)
	if err != nil {
		return "", err
	}
	if err := lock(ctx, fo.lock); err != nil {
		return "", fmt.Errorf("imapsink: %s: %w", op, err)
	}
	if fo.stale {
		if err := s.readTail(ctx, fo); err != nil {
			<-fo.lock
			return "", err
		}
	}
	uid, found := fo.claim(&it.id)
	own := found && fo.ownUnsure(&it.id)
	uidv := fo.uidv
	<-fo.lock
	if own {
		// The retry of an APPEND whose outcome was unknown: the server kept
		// it, so this run stored it.
		s.log.Debug("imapsink: an APPEND whose outcome was unknown was stored; not appended again", "mailbox", env.Mailbox, "id", string(env.ID))
		return makeID(uidv, uid), nil
	}
	if found {
		s.log.Debug("imapsink: already in the destination; not appended again", "mailbox", env.Mailbox, "id", string(env.ID), "size", it.msg.size)
		// Say so (mail.PresentError): the engine counts it as present, not copied.
		id := makeID(uidv, uid)
		return id, mail.Present(id)
	}
	if s.multi {
		id, err := s.putMulti(ctx, op, it)
		keep = err == nil
		return id, err
	}
	return s.putPlain(ctx, op, it, fo)
}

// spool copies the body to memory (small messages, within a budget) or to
// a spool file, learning its exact size and identity on the way, and
// sanitises flags. Creating files is what costs most on a busy file
// system, so files are reused.
func (s *Sink) spool(ctx context.Context, it *item, body io.Reader) error {
	var idw idWriter
	r := body
	fail := func(err error) error {
		s.release(it)
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return err
	}
	var n int64
	if reserved := s.reserveMem(); reserved > 0 {
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		if sz := it.env.Size; sz > 0 && sz <= reserved {
			buf.Grow(int(sz)) // the size the source announced: no regrowing on the way
		}
		it.buf, it.mem = buf, reserved
		m, err := mail.CopyBody(ctx, io.MultiWriter(buf, &idw), io.LimitReader(r, reserved+1))
		if err != nil {
			return fail(err)
		}
		n = m
		if m <= reserved {
			s.releaseMem(reserved - m)
			it.mem = m
			r = nil // all read
		}
	}
	if r != nil {
		f, err := s.spoolFile()
		if err != nil {
			return fail(err)
		}
		it.file = f
		if it.buf != nil {
			// Too big for memory: what was read goes first.
			if _, err := f.Write(it.buf.Bytes()); err != nil {
				return fail(err)
			}
			s.releaseBuf(it)
		}
		m, err := mail.CopyBody(ctx, io.MultiWriter(f, &idw), r)
		if err != nil {
			return fail(err)
		}
		n += m
	}
	var at io.ReaderAt = it.file
	if it.buf != nil {
		at = bytes.NewReader(it.buf.Bytes())
	}
	it.msg = message{body: at, size: n, flags: sanitize(it.env.Flags), date: it.env.Date}
	it.id = idw.identity(it.env.Date)
	return nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// reserveMem reserves room for one message in memory, or returns 0 when
// the budget is spent.
func (s *Sink) reserveMem() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.memUsed+memSpoolMax > memSpoolBudget {
		return 0
	}
	s.memUsed += memSpoolMax
	return memSpoolMax
}

func (s *Sink) releaseMem(n int64) {
	s.mu.Lock()
	s.memUsed -= n
	s.mu.Unlock()
}

// releaseBuf returns an item's memory spool.
func (s *Sink) releaseBuf(it *item) {
	if it.buf == nil {
		return
	}
	s.releaseMem(it.mem)
	if it.buf.Cap() <= 2*memSpoolMax {
		bufPool.Put(it.buf)
	}
	it.buf, it.mem = nil, 0
}

// spoolFile returns an empty, unlinked temporary file.
func (s *Sink) spoolFile() (*os.File, error) {
	s.mu.Lock()
	if n := len(s.free); n > 0 {
		f := s.free[n-1]
		s.free = s.free[:n-1]
		s.mu.Unlock()
		return f, nil
	}
	s.mu.Unlock()
	f, _, err := mail.Spool(context.Background(), "", strings.NewReader(""))
	return f, err
}

// recycle empties f for reuse, or closes it.
func (s *Sink) recycle(f *os.File) {
	if f.Truncate(0) == nil {
		if _, err := f.Seek(0, io.SeekStart); err == nil {
			s.mu.Lock()
			if !s.closed && len(s.free) < freeSpools {
				s.free = append(s.free, f)
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
		}
	}
	_ = f.Close()
}

// release gives back an item's spool (memory or file).
func (s *Sink) release(it *item) {
	s.releaseBuf(it)
	if it.file != nil {
		s.recycle(it.file)
		it.file = nil
	}
}

// sanitize keeps flags an APPEND can carry: system flags other than
// \Recent (session state, refused by servers) and keywords that are valid
// atoms (RFC 9051 §9 flag-keyword). A bad flag would make the server
// answer BAD, or parse the literal as commands (docs/library-notes.md §0.7).
func sanitize(flags []mail.Flag) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range flags {
		v := string(f)
		lv := strings.ToLower(v)
		if seen[lv] {
			continue
		}
		switch {
		case strings.HasPrefix(v, `\`):
			switch lv {
			case `\seen`, `\answered`, `\flagged`, `\deleted`, `\draft`:
			default:
				continue
			}
		case !atom(v):
			continue
		}
		seen[lv] = true
		out = append(out, v)
	}
	return out
}

// atom reports whether s is a non-empty IMAP atom (RFC 9051 §9).
func atom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

func makeID(uidv, uid uint32) mail.ID {
	if uid == 0 {
		return ""
	}
	return imapconn.MakeID(uidv, uid)
}

func parseID(id mail.ID) (uint32, uint32, bool) { return imapconn.ParseID(id) }

// lock takes a one-slot channel lock, giving up when ctx ends.
func lock(ctx context.Context, l chan struct{}) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AlteredOnAppend reports how many messages this Sink found already in the
// destination in a form the server changed when it stored them (8-bit
// header bytes rewritten, a final CRLF added: see alteration), which it
// recognised and did not append again. The first one is also logged, once,
// as a warning.
func (s *Sink) AlteredOnAppend() int64 { return s.alt.n.Load() }
