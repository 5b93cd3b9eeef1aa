package imapsink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// Bounds on what the server may send on an append connection (rule 7 of
// docs/failure-model.md): one response line, and a literal inside a response
// (which an append connection never asks for and discards).
const (
	respLineMax    = 256 << 10
	respLiteralMax = 16 << 20
	// nonSyncMax is the largest literal LITERAL- (RFC 7888) lets a client
	// send without waiting for "+".
	nonSyncMax = 4096
)

// response is one server response (imapconn.Response).
type response = imapconn.Response

// readResponse reads one response on an append connection, its literals
// read past.
func readResponse(r *bufio.Reader) (response, error) {
	return imapconn.ReadParsed(r, respLineMax, respLiteralMax)
}

// rconn is an append connection driven by hand: go-imap cannot send
// MULTIAPPEND (RFC 3502, docs/library-notes.md §1.12), and owning the wire also lets
// the sink pipeline literals and classify every answer. A reader goroutine
// decodes responses onto resps, so the server is never blocked writing to
// us and an early tagged NO can be seen between messages of a MULTIAPPEND.
// An rconn is used by one goroutine at a time (its slot's lock).
type rconn struct {
	rc    *imapconn.RawConn
	w     *bufio.Writer
	resps chan response
	done  chan struct{}
	once  sync.Once
	rerr  error       // the reader's error; read only after resps is closed
	eof   atomic.Bool // the reader stopped: the connection is unusable
	seq   int

	litPlus, litMinus, uidplus, multi bool

	box     string // server name of the selected mailbox, "" if none
	uidv    uint32
	permAny bool            // PERMANENTFLAGS holds \*: any keyword may be created
	perm    map[string]bool // PERMANENTFLAGS, lower case

	open    string // tag of the open MULTIAPPEND command, "" if none
	openBox string
	bye     string // text of an untagged BYE, once seen

	// A connection of the shared pool (OpenOptions.Share) goes back there
	// between commits (detach): sess is its session, selects counts the
	// SELECTs sent here, modseq and noModSeq what the last one said, for
	// the session's next taker (a flag write in the same folder).
	sess     *imapconn.Session
	selects  int
	modseq   uint64
	noModSeq bool
	stopTag  atomic.Pointer[string] // the reader stops after this tag's answer
	stopped  atomic.Bool            // the reader stopped there (stopTag), not on an error
	exited   chan struct{}          // closed when the reader stopped
}

func newRconn(rc *imapconn.RawConn) *rconn {
	c := &rconn{
		rc:       rc,
		w:        bufio.NewWriterSize(rc.Conn, 64<<10),
		resps:    make(chan response, 256),
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
		litPlus:  rc.Has("LITERAL+"),
		litMinus: rc.Has("LITERAL-") || rc.Has("IMAP4REV2"),
		uidplus:  rc.Has("UIDPLUS") || rc.Has("IMAP4REV2"),
		multi:    rc.Has("MULTIAPPEND"),
	}
	go c.readLoop()
	return c
}

func (c *rconn) readLoop() {
	defer close(c.exited)
	defer close(c.resps)
	defer c.eof.Store(true)
	for {
		r, err := readResponse(c.rc.R)
		if err != nil {
			c.rerr = err
			return
		}
		t := c.stopTag.Load()
		select {
		case c.resps <- r:
		case <-c.done:
			return
		}
		if t != nil && r.Tag == *t {
			c.stopped.Store(true)
			return // detach: nothing more is read from the connection here
		}
	}
}

// adopt takes over what the pooled session sess has selected, so that
// the first append there needs no SELECT of its own.
func (c *rconn) adopt(sess *imapconn.Session) {
	c.sess = sess
	box, sel, ok := sess.SelectedCondStore()
	if !ok || sel.ReadOnly {
		return
	}
	c.box, c.uidv, c.modseq, c.noModSeq = box, sel.UIDValidity, sel.HighestModSeq, sel.NoModSeq
	if !sel.Permanent {
		c.perm, c.permAny = nil, true // not said: every flag is permanent (RFC 9051 §7.1), as selectBox
		return
	}
	c.perm, c.permAny = map[string]bool{}, false
	for _, f := range sel.PermanentFlags {
		c.permAny = c.permAny || f == `\*`
		c.perm[strings.ToLower(f)] = true
	}
}

// detach stops the reader after one NOOP answered (every earlier answer
// was read: no command is open), or takes it as stopped after the last
// MULTIAPPEND's answer (multiEnd with stop: no NOOP, no round trip), and
// returns the pooled session, told what is selected now; nil when the
// connection is not a pooled one or not in step, and the caller closes
// it.
func (c *rconn) detach(ctx context.Context) *imapconn.Session {
	if c.sess == nil || c.open != "" || !c.stopped.Load() && !c.noop(ctx) {
		return nil
	}
	<-c.exited
	if c.bye != "" || !c.stopped.Load() {
		return nil
	}
	sess := c.sess
	c.sess = nil
	if c.selects > 0 {
		sel := imapconn.Selected{UIDValidity: c.uidv, HighestModSeq: c.modseq, NoModSeq: c.noModSeq, Permanent: c.perm != nil}
		for f := range c.perm {
			sel.PermanentFlags = append(sel.PermanentFlags, f)
		}
		sess.Resume(c.box, sel)
	}
	return sess
}

// noop sends a NOOP the reader stops after and reports whether it was
// answered OK.
func (c *rconn) noop(ctx context.Context) bool {
	if c.dead() {
		return false
	}
	tag := c.newTag()
	c.stopTag.Store(&tag)
	fmt.Fprintf(c.w, "%s NOOP\r\n", tag)
	if err := c.flush(); err != nil {
		return false
	}
	stop := c.guard(ctx)
	r, err := c.wait(ctx, tag, false)
	return stop() && err == nil && r.Kind == "OK"
}

// close drops the connection; it is idempotent.
func (c *rconn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.rc.Close()
	})
}

// dead reports whether the connection is known to be unusable: closed,
// BYE seen, or the server side gone (also after the inactivity timeout of
// an idle connection).
func (c *rconn) dead() bool {
	select {
	case <-c.done:
		return true
	default:
		return c.bye != "" || c.eof.Load()
	}
}

// next returns the next response, or the reader's error.
func (c *rconn) next(ctx context.Context) (response, error) {
	select {
	case r, ok := <-c.resps:
		if !ok {
			if c.rerr == nil {
				return response{}, io.ErrUnexpectedEOF
			}
			return response{}, c.rerr
		}
		if r.Tag == "*" {
			c.untagged(r)
		}
		return r, nil
	case <-ctx.Done():
		return response{}, ctx.Err()
	}
}

// untagged keeps what the sink needs from untagged data.
func (c *rconn) untagged(r response) {
	switch r.Kind {
	case "BYE":
		c.bye = r.Text
		if c.bye == "" {
			c.bye = "BYE"
		}
	case "OK":
		switch r.Code {
		case "UIDVALIDITY":
			if v, err := strconv.ParseUint(r.Args, 10, 32); err == nil {
				c.uidv = uint32(v)
			}
		case "HIGHESTMODSEQ":
			if v, err := strconv.ParseUint(r.Args, 10, 64); err == nil {
				c.modseq = v
			}
		case "NOMODSEQ":
			c.noModSeq = true
		case "PERMANENTFLAGS":
			c.perm, c.permAny = map[string]bool{}, false
			for _, f := range strings.Fields(strings.Trim(r.Args, "()")) {
				if f == `\*` {
					c.permAny = true
				}
				c.perm[strings.ToLower(f)] = true
			}
		}
	}
}

// wait reads until the tagged answer to tag. With cont, a continuation
// request ends the wait too (returned with tag "+").
func (c *rconn) wait(ctx context.Context, tag string, cont bool) (response, error) {
	for {
		r, err := c.next(ctx)
		if err != nil {
			return r, err
		}
		switch {
		case r.Tag == tag:
			return r, nil
		case r.Tag == "+" && cont:
			return r, nil
		case r.Tag == "+" || r.Tag != "*":
			return r, fmt.Errorf("unexpected server response %q while waiting for %s", imapconn.Clip(r.Tag+" "+r.String(), 80), tag)
		}
	}
}

func (c *rconn) newTag() string {
	c.seq++
	return "W" + strconv.Itoa(c.seq)
}

func (c *rconn) flush() error { return c.w.Flush() }

// guard closes the connection when ctx ends; the returned func reports
// false if that happened (the caller then returns ctx.Err()).
func (c *rconn) guard(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, c.close)
}

// selectBox SELECTs box (read-write, for PERMANENTFLAGS and because Dovecot
// appends faster into the selected mailbox) unless it already is.
func (c *rconn) selectBox(ctx context.Context, box string) (response, error) {
	if c.box == box {
		return response{Kind: "OK"}, nil
	}
	c.box, c.uidv, c.perm, c.permAny = "", 0, nil, false
	c.modseq, c.noModSeq = 0, false
	c.selects++
	tag := c.newTag()
	fmt.Fprintf(c.w, "%s SELECT %s\r\n", tag, quote(encodeMUTF7(box)))
	if err := c.flush(); err != nil {
		return response{}, err
	}
	r, err := c.wait(ctx, tag, false)
	if err == nil && r.Kind == "OK" {
		c.box = box
		if c.perm == nil {
			c.permAny = true // no PERMANENTFLAGS: RFC 9051 §7.1 says all flags can be changed
		}
	}
	return r, err
}

// message is what an APPEND sends for one message: the spooled body and
// its sanitised flags and date.
type message struct {
	body  io.ReaderAt
	size  int64
	flags []string
	date  time.Time
}

// spec writes " (flags) "date" {n}" and reports whether the literal is
// synchronising (the caller must then wait for "+").
func (c *rconn) spec(m *message) bool {
	if fl := c.allowed(m.flags); len(fl) > 0 {
		_, _ = c.w.WriteString(" (" + strings.Join(fl, " ") + ")") // bufio: an error sticks and Flush reports it
	}
	if !m.date.IsZero() {
		_, _ = c.w.WriteString(` "` + m.date.Format("_2-Jan-2006 15:04:05 -0700") + `"`) // bufio: an error sticks and Flush reports it
	}
	if c.litPlus || (c.litMinus && m.size <= nonSyncMax) {
		fmt.Fprintf(c.w, " {%d+}\r\n", m.size)
		return false
	}
	fmt.Fprintf(c.w, " {%d}\r\n", m.size)
	return true
}

// allowed keeps the flags the selected mailbox can store: system flags
// always, keywords when PERMANENTFLAGS lists them or holds \* (a keyword
// the server refuses kills the connection, docs/library-notes.md §0.7).
func (c *rconn) allowed(flags []string) []string {
	var out []string
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) || c.box == "" || c.permAny || c.perm[strings.ToLower(f)] {
			out = append(out, f)
		}
	}
	return out
}

// literal writes the message body, exactly m.size bytes.
func (c *rconn) literal(m *message) error {
	n, err := io.Copy(c.w, io.NewSectionReader(m.body, 0, m.size))
	if err == nil && n != m.size {
		err = fmt.Errorf("spool gave %d of %d bytes", n, m.size)
	}
	return err
}

// appendOne runs a plain APPEND and returns the server's tagged answer.
// sent reports whether the whole literal went out (after that, a lost
// connection leaves the outcome unknown).
func (c *rconn) appendOne(ctx context.Context, box string, m *message) (r response, sent bool, err error) {
	tag := c.newTag()
	_, _ = c.w.WriteString(tag + " APPEND " + quote(encodeMUTF7(box))) // bufio: an error sticks and Flush reports it
	if c.spec(m) {
		if err := c.flush(); err != nil {
			return response{}, false, err
		}
		r, err := c.wait(ctx, tag, true)
		if err != nil || r.Tag != "+" {
			return r, false, err
		}
	}
	if err := c.literal(m); err != nil {
		return response{}, false, err
	}
	_, _ = c.w.WriteString("\r\n") // bufio: an error sticks and Flush reports it
	if err := c.flush(); err != nil {
		return response{}, false, err
	}
	r, err = c.wait(ctx, tag, false)
	return r, true, err
}

// multiAdd adds m to the open MULTIAPPEND command into box, opening one if
// needed. A non-nil *response means the server already ended the command
// (a tagged NO or BAD before we finished): nothing of it was stored.
func (c *rconn) multiAdd(ctx context.Context, box string, m *message) (*response, error) {
	if c.open == "" {
		c.open, c.openBox = c.newTag(), box
		_, _ = c.w.WriteString(c.open + " APPEND " + quote(encodeMUTF7(box))) // bufio: an error sticks and Flush reports it
	} else if r, ended := c.poll(); ended {
		return r, nil
	}
	if c.spec(m) {
		if err := c.flush(); err != nil {
			return nil, err
		}
		r, err := c.wait(ctx, c.open, true)
		if err != nil {
			return nil, err
		}
		if r.Tag != "+" {
			c.open = ""
			return &r, nil
		}
	}
	if err := c.literal(m); err != nil {
		return nil, err
	}
	return nil, c.flush()
}

// poll looks, without blocking, for an early end of the open command.
func (c *rconn) poll() (*response, bool) {
	for {
		select {
		case r, ok := <-c.resps:
			if !ok {
				return nil, false // the next write or wait reports it
			}
			if r.Tag == "*" {
				c.untagged(r)
				continue
			}
			if r.Tag == c.open {
				c.open = ""
				return &r, true
			}
		default:
			return nil, false
		}
	}
}

// multiEnd ends the open MULTIAPPEND command and returns the tagged
// answer. With stop, the reader stops after that answer (a pooled
// connection that goes back to its pool next: detach needs no NOOP); the
// caller closes the connection unless the answer was OK.
// After a write error or a lost connection the outcome is unknown.
func (c *rconn) multiEnd(ctx context.Context, stop bool) (response, error) {
	tag := c.open
	c.open = ""
	if stop && c.sess != nil {
		c.stopTag.Store(&tag)
	}
	_, _ = c.w.WriteString("\r\n") // bufio: an error sticks and Flush reports it
	if err := c.flush(); err != nil {
		return response{}, err
	}
	return c.wait(ctx, tag, false)
}

// Classification of APPEND answers (RFC 5530 response codes and the texts
// big providers use instead).
var (
	tooLargeText  = regexp.MustCompile(`(?i)too (large|big)|maximum size|size limit|exceeds`)
	throttledText = regexp.MustCompile(`(?i)throttl|try again later|rate limit`)
	backoffText   = regexp.MustCompile(`(?i)backoff time:\s*(\d+)\s*(milliseconds|ms|seconds|s)`)
	quotaText     = regexp.MustCompile(`(?i)quota`)
)

// errTryCreate marks NO [TRYCREATE]: the caller creates the mailbox and
// retries once.
var errTryCreate = errors.New("imapsink: mailbox does not exist (TRYCREATE)")

// verdict turns a tagged NO or BAD answer to APPEND into an error:
// OVERQUOTA is fatal for the run, TOOBIG and size limits are
// mail.ErrTooLarge, TRYCREATE is errTryCreate, UNAVAILABLE, INUSE, LIMIT and
// throttling texts are temporary, anything else fails this message.
func verdict(op string, r response) error {
	text := r.String()
	switch {
	case r.Code == "OVERQUOTA" || (r.Kind == "NO" && r.Code == "" && quotaText.MatchString(r.Text)):
		return mail.MakeFatal(fmt.Errorf("imapsink: %s: the destination is over quota (%s); free space there, then rerun to resume: %w", op, imapconn.Clip(text, 200), mail.ErrNoSpace))
	case r.Code == "TOOBIG" || tooLargeText.MatchString(r.Text):
		return fmt.Errorf("imapsink: %s: %s: %w", op, imapconn.Clip(text, 200), mail.ErrTooLarge)
	case r.Code == "TRYCREATE":
		return fmt.Errorf("%w: %s", errTryCreate, imapconn.Clip(text, 200))
	case r.Code == "UNAVAILABLE" || r.Code == "INUSE" || r.Code == "LIMIT" || throttledText.MatchString(r.Text):
		return mail.Temp(fmt.Errorf("imapsink: %s: server busy or throttling: %s", op, imapconn.Clip(text, 200)))
	default:
		return fmt.Errorf("imapsink: %s: server refused: %s", op, imapconn.Clip(text, 200))
	}
}

// backoff is the wait a throttling answer suggests (Microsoft 365:
// "Suggested Backoff Time: 5000 milliseconds"), capped at two minutes.
func backoff(r response) time.Duration {
	m := backoffText.FindStringSubmatch(r.Text)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	d := time.Duration(n) * time.Second
	if strings.HasPrefix(strings.ToLower(m[2]), "m") {
		d = time.Duration(n) * time.Millisecond
	}
	return min(d, 2*time.Minute)
}
