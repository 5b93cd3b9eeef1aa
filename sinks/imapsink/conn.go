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

	"github.com/mailferry/mailferry/sources/imap"
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

// response is one server response on an append connection.
type response struct {
	tag  string // "*" untagged, "+" continuation, otherwise the command's tag
	kind string // OK, NO, BAD, BYE, PREAUTH, or the untagged data keyword (EXISTS, FLAGS, ...)
	num  uint32 // the number of "* n EXISTS"
	code string // response code atom, upper case ("APPENDUID", "TRYCREATE")
	args string // response code arguments
	text string // human-readable text
}

func (r response) String() string {
	s := r.kind
	if r.code != "" {
		s += " [" + r.code
		if r.args != "" {
			s += " " + r.args
		}
		s += "]"
	}
	if r.text != "" {
		s += " " + r.text
	}
	return s
}

// rconn is an append connection driven by hand: go-imap cannot send
// MULTIAPPEND (RFC 3502, docs/library-notes.md §1.12), and owning the wire also lets
// the sink pipeline literals and classify every answer. A reader goroutine
// decodes responses onto resps, so the server is never blocked writing to
// us and an early tagged NO can be seen between messages of a MULTIAPPEND.
// An rconn is used by one goroutine at a time (its slot's lock).
type rconn struct {
	rc    *imap.RawConn
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
}

func newRconn(rc *imap.RawConn) *rconn {
	c := &rconn{
		rc:       rc,
		w:        bufio.NewWriterSize(rc.Conn, 64<<10),
		resps:    make(chan response, 256),
		done:     make(chan struct{}),
		litPlus:  rc.Has("LITERAL+"),
		litMinus: rc.Has("LITERAL-") || rc.Has("IMAP4REV2"),
		uidplus:  rc.Has("UIDPLUS") || rc.Has("IMAP4REV2"),
		multi:    rc.Has("MULTIAPPEND"),
	}
	go c.readLoop()
	return c
}

func (c *rconn) readLoop() {
	defer close(c.resps)
	defer c.eof.Store(true)
	for {
		r, err := readResponse(c.rc.R)
		if err != nil {
			c.rerr = err
			return
		}
		select {
		case c.resps <- r:
		case <-c.done:
			return
		}
	}
}

// close drops the connection; it is idempotent.
func (c *rconn) close() {
	c.once.Do(func() {
		close(c.done)
		c.rc.Close()
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

// readResponse reads one response, its literals read past (imap.ReadResponse).
func readResponse(r *bufio.Reader) (response, error) {
	line, err := imap.ReadResponse(r, respLineMax, respLiteralMax)
	if err != nil {
		return response{}, err
	}
	return parseResponse(line), nil
}

// parseResponse splits a response line into its parts.
func parseResponse(line string) response {
	var r response
	word := func() string {
		w, rest, _ := strings.Cut(line, " ")
		line = rest
		return w
	}
	r.tag = word()
	if r.tag == "+" {
		r.text = line
		return r
	}
	k := word()
	if n, err := strconv.ParseUint(k, 10, 32); err == nil && r.tag == "*" {
		r.num = uint32(n)
		k = word()
	}
	r.kind = strings.ToUpper(k)
	switch r.kind {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		if strings.HasPrefix(line, "[") {
			if end := strings.IndexByte(line, ']'); end > 0 {
				code := line[1:end]
				c, args, _ := strings.Cut(code, " ")
				r.code, r.args = strings.ToUpper(c), args
				line = strings.TrimPrefix(line[end+1:], " ")
			}
		}
	}
	r.text = line
	return r
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
		if r.tag == "*" {
			c.untagged(r)
		}
		return r, nil
	case <-ctx.Done():
		return response{}, ctx.Err()
	}
}

// untagged keeps what the sink needs from untagged data.
func (c *rconn) untagged(r response) {
	switch r.kind {
	case "BYE":
		c.bye = r.text
		if c.bye == "" {
			c.bye = "BYE"
		}
	case "OK":
		switch r.code {
		case "UIDVALIDITY":
			if v, err := strconv.ParseUint(r.args, 10, 32); err == nil {
				c.uidv = uint32(v)
			}
		case "PERMANENTFLAGS":
			c.perm, c.permAny = map[string]bool{}, false
			for _, f := range strings.Fields(strings.Trim(r.args, "()")) {
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
		case r.tag == tag:
			return r, nil
		case r.tag == "+" && cont:
			return r, nil
		case r.tag == "+" || r.tag != "*":
			return r, fmt.Errorf("unexpected server response %q while waiting for %s", clip(r.tag+" "+r.String(), 80), tag)
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
		return response{kind: "OK"}, nil
	}
	c.box, c.uidv, c.perm, c.permAny = "", 0, nil, false
	tag := c.newTag()
	fmt.Fprintf(c.w, "%s SELECT %s\r\n", tag, quote(encodeMUTF7(box)))
	if err := c.flush(); err != nil {
		return response{}, err
	}
	r, err := c.wait(ctx, tag, false)
	if err == nil && r.kind == "OK" {
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
		c.w.WriteString(" (" + strings.Join(fl, " ") + ")")
	}
	if !m.date.IsZero() {
		c.w.WriteString(` "` + m.date.Format("_2-Jan-2006 15:04:05 -0700") + `"`)
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
	c.w.WriteString(tag + " APPEND " + quote(encodeMUTF7(box)))
	if c.spec(m) {
		if err := c.flush(); err != nil {
			return response{}, false, err
		}
		r, err := c.wait(ctx, tag, true)
		if err != nil || r.tag != "+" {
			return r, false, err
		}
	}
	if err := c.literal(m); err != nil {
		return response{}, false, err
	}
	c.w.WriteString("\r\n")
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
		c.w.WriteString(c.open + " APPEND " + quote(encodeMUTF7(box)))
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
		if r.tag != "+" {
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
			if r.tag == "*" {
				c.untagged(r)
				continue
			}
			if r.tag == c.open {
				c.open = ""
				return &r, true
			}
		default:
			return nil, false
		}
	}
}

// multiEnd ends the open MULTIAPPEND command and returns the tagged answer.
// After a write error or a lost connection the outcome is unknown.
func (c *rconn) multiEnd(ctx context.Context) (response, error) {
	tag := c.open
	c.open = ""
	c.w.WriteString("\r\n")
	if err := c.flush(); err != nil {
		return response{}, err
	}
	return c.wait(ctx, tag, false)
}

// appendUIDs parses APPENDUID arguments (RFC 4315 §3): UIDVALIDITY and the
// UIDs in message order. It returns nil when the code is absent or bad.
func appendUIDs(r response) (uint32, []uint32) {
	if r.code != "APPENDUID" {
		return 0, nil
	}
	v, set, ok := strings.Cut(r.args, " ")
	uidv, err := strconv.ParseUint(v, 10, 32)
	if !ok || err != nil {
		return 0, nil
	}
	var uids []uint32
	for _, part := range strings.Split(set, ",") {
		lo, hi, rng := strings.Cut(part, ":")
		a, err1 := strconv.ParseUint(lo, 10, 32)
		b := a
		var err2 error
		if rng {
			b, err2 = strconv.ParseUint(hi, 10, 32)
		}
		if err1 != nil || err2 != nil || a == 0 || b < a || b-a > 1<<20 {
			return 0, nil
		}
		for u := a; u <= b; u++ {
			uids = append(uids, uint32(u))
		}
	}
	return uint32(uidv), uids
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
	case r.code == "OVERQUOTA" || (r.kind == "NO" && r.code == "" && quotaText.MatchString(r.text)):
		return mail.MakeFatal(fmt.Errorf("imapsink: %s: the destination is over quota (%s); free space there, then rerun to resume: %w", op, clip(text, 200), mail.ErrNoSpace))
	case r.code == "TOOBIG" || tooLargeText.MatchString(r.text):
		return fmt.Errorf("imapsink: %s: %s: %w", op, clip(text, 200), mail.ErrTooLarge)
	case r.code == "TRYCREATE":
		return fmt.Errorf("%w: %s", errTryCreate, clip(text, 200))
	case r.code == "UNAVAILABLE" || r.code == "INUSE" || r.code == "LIMIT" || throttledText.MatchString(r.text):
		return mail.Temp(fmt.Errorf("imapsink: %s: server busy or throttling: %s", op, clip(text, 200)))
	default:
		return fmt.Errorf("imapsink: %s: server refused: %s", op, clip(text, 200))
	}
}

// backoff is the wait a throttling answer suggests (Microsoft 365:
// "Suggested Backoff Time: 5000 milliseconds"), capped at two minutes.
func backoff(r response) time.Duration {
	m := backoffText.FindStringSubmatch(r.text)
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

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
