package mailtest

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// Direction names one way through a FaultProxy.
type Direction int

const (
	// Down is server to client.
	Down Direction = iota
	// Up is client to server.
	Up
)

func (d Direction) String() string {
	if d == Up {
		return "up"
	}
	return "down"
}

// Action is what a Fault does once it triggers.
type Action int

const (
	// Pass forwards everything.
	Pass Action = iota
	// Drop closes both connections (FIN): the client sees EOF.
	Drop
	// Reset closes both connections with SO_LINGER 0, so the client gets a
	// TCP RST (ECONNRESET) rather than EOF (toxiproxy reset_peer).
	Reset
	// Stall stops forwarding in both directions but keeps both connections
	// open: whatever arrives is read and discarded (toxiproxy timeout=0).
	// The client must give up on its own deadline.
	Stall
)

func (a Action) String() string {
	return [...]string{"pass", "drop", "reset", "stall"}[a]
}

// Fault is what a FaultProxy does to one connection. The zero value
// forwards everything at full speed.
type Fault struct {
	// Action happens as soon as After bytes have been delivered in
	// direction Dir: a chunk crossing offset After is cut there, and no
	// byte past it is delivered (for Stall, in either direction). After 0
	// acts on the first chunk in Dir (for Down: the greeting). A stream
	// that ends before offset After is never faulted.
	Action Action
	Dir    Direction
	After  int64
	// Rate, when positive, limits each direction to this many bytes per
	// second (delivered in slices of about 1/20 s).
	Rate int
	// RateAfter, when positive, holds Rate back until this many bytes have
	// been delivered in that direction of the connection: a throttle that
	// starts mid-session (Gmail's, once an account is over its quota), with
	// the session's login still at full speed.
	RateAfter int64
	// Fragment, when positive, delivers each chunk in writes of 1 to
	// Fragment bytes (sizes cycling 1, 2, ..., Fragment), each its own TCP
	// segment (TCP_NODELAY): the client's parser sees lines, literals and
	// the POP3 "." terminator split anywhere (toxiproxy slicer).
	Fragment int
	// OnFire, when set, is called (once, from the proxy's goroutine) when
	// the fault triggers, before its action: a test can act at a known
	// point of a session, e.g. send SIGINT mid-body. With Action Pass it is
	// a pure notification: the data keeps flowing.
	OnFire func()
	// Rewrite, when set, may change each chunk before it is delivered (a
	// man in the middle, e.g. stripping STARTTLS from a greeting). A chunk
	// is what one read returned, so a pattern split across reads is not
	// seen; greetings and short replies arrive whole on loopback.
	Rewrite func(dir Direction, chunk []byte) []byte
	// Inject, when set, is delivered in Dir where the action happens: after
	// the bytes before it, before a Drop or Reset closes the connection (or
	// a Stall starts). It is a server's last words, e.g. Gmail's
	// "* BYE Session expired, please login again\r\n", which a client may
	// also receive in the middle of a literal (then as message bytes).
	Inject []byte
	// AtResponse moves the fault from offset After to the end of the first
	// IMAP response (RFC 9051 section 2.2.2: a line that does not announce a
	// literal, the literals inside it skipped) that ends at or after After
	// in Dir: where a real server can send an untagged BYE between two
	// FETCH responses. A stream with no response end past After is never
	// faulted. Meant for Dir Down.
	AtResponse bool
}

// FirstConn returns a schedule that applies f to the first connection only:
// later connections (the client's retry, or the next run) work.
func FirstConn(f Fault) func(n int) Fault {
	return func(n int) Fault {
		if n == 1 {
			return f
		}
		return Fault{}
	}
}

// EveryConn returns a schedule that applies f to every connection: a
// persistent fault.
func EveryConn(f Fault) func(n int) Fault {
	return func(int) Fault { return f }
}

// ConnStats describes one connection that went through a FaultProxy.
type ConnStats struct {
	// Bytes delivered, indexed by Direction.
	Bytes [2]int64
	// Fault is what the schedule gave this connection, and Fired whether
	// its action happened.
	Fault Fault
	Fired bool
}

// FaultProxy is a TCP proxy for network-fault tests (docs/failure-model.md
// H-Toxi): it listens on 127.0.0.1, forwards each accepted connection to a
// target, and applies the Fault its schedule returns for that connection
// (numbered from 1 in accept order). Its methods are safe for concurrent
// use. Close (registered with t.Cleanup) closes the listener and every
// connection, and waits for its goroutines.
type FaultProxy struct {
	// Addr is the listening address, "127.0.0.1:port".
	Addr string

	target string
	ln     net.Listener
	done   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	schedule func(n int) Fault
	conns    []*proxyConn
	record   bool
	recorded [2]bytes.Buffer
	closed   bool
}

// recordMax bounds what Record keeps per direction.
const recordMax = 16 << 20

// NewFaultProxy starts a proxy to target ("host:port") that forwards
// everything until SetSchedule says otherwise.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mailtest: fault proxy: %v", err)
	}
	p := &FaultProxy{Addr: ln.Addr().String(), target: target, ln: ln, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Port returns the listening port, for URLs that must keep a host name
// matching the server certificate ("localhost:" + p.Port()).
func (p *FaultProxy) Port() string {
	_, port, _ := net.SplitHostPort(p.Addr)
	return port
}

// SetSchedule sets the fault for connections accepted from now on: f(n)
// for the n-th connection since the proxy started. nil forwards everything.
func (p *FaultProxy) SetSchedule(f func(n int) Fault) {
	p.mu.Lock()
	p.schedule = f
	p.mu.Unlock()
}

// Record turns recording of delivered bytes on or off (at most 16 MiB per
// direction are kept), and Recorded returns them, all connections
// concatenated in delivery order.
func (p *FaultProxy) Record(on bool) {
	p.mu.Lock()
	p.record = on
	p.mu.Unlock()
}

// Recorded returns a copy of the bytes recorded in direction d.
func (p *FaultProxy) Recorded(d Direction) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.recorded[d].Bytes())
}

// Conns returns the statistics of every connection accepted so far, in
// accept order.
func (p *FaultProxy) Conns() []ConnStats {
	p.mu.Lock()
	conns := p.conns
	p.mu.Unlock()
	// c.mu is taken after p.mu is released: pumps hold c.mu while
	// recording, which takes p.mu.
	out := make([]ConnStats, len(conns))
	for i, c := range conns {
		c.mu.Lock()
		out[i] = ConnStats{Bytes: c.bytes, Fault: c.fault, Fired: c.fired}
		c.mu.Unlock()
	}
	return out
}

// Close stops the proxy: the listener and all connections are closed. It
// is idempotent.
func (p *FaultProxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	conns := p.conns
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range conns {
		c.closeAll(false)
	}
	p.wg.Wait()
	return err
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = client.Close()
			return
		}
		var f Fault
		if p.schedule != nil {
			f = p.schedule(len(p.conns) + 1)
		}
		c := &proxyConn{p: p, client: client, fault: f}
		p.conns = append(p.conns, c)
		p.wg.Add(1)
		p.mu.Unlock()
		go c.run()
	}
}

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	p      *FaultProxy
	client net.Conn
	fault  Fault

	mu      sync.Mutex
	server  net.Conn
	bytes   [2]int64
	fired   bool
	stalled bool
	closed  bool
}

func (c *proxyConn) run() {
	defer c.p.wg.Done()
	server, err := net.DialTimeout("tcp", c.p.target, 10*time.Second)
	c.mu.Lock()
	if err != nil || c.closed {
		c.mu.Unlock()
		_ = c.client.Close()
		if server != nil {
			_ = server.Close()
		}
		return
	}
	c.server = server
	c.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pump(Down, server, c.client) }()
	go func() { defer wg.Done(); c.pump(Up, c.client, server) }()
	wg.Wait()
}

// pump copies src to dst for direction dir, applying the fault.
func (c *proxyConn) pump(dir Direction, src, dst net.Conn) {
	f := c.fault
	size := 32 << 10
	if f.Rate > 0 {
		size = max(1, min(size, f.Rate/20))
	}
	buf := make([]byte, size)
	start := time.Now()
	var sent int64
	throttled := f.Rate > 0 && f.RateAfter <= 0
	seg := 0 // the last fragment size
	var resp respScanner
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if f.Rewrite != nil {
				chunk = f.Rewrite(dir, chunk)
			}
			c.mu.Lock()
			if c.stalled || c.closed {
				c.mu.Unlock()
				continue // a stall discards; after a drop reads fail soon
			}
			chunk, act, onFire := c.fire(dir, chunk, &resp)
			c.bytes[dir] += int64(len(chunk))
			c.p.keep(dir, chunk)
			c.mu.Unlock()
			if onFire != nil {
				onFire()
			}
			if err := c.write(dst, chunk, &seg); err != nil {
				c.closeAll(false)
				return
			}
			if act && f.Action != Stall {
				c.closeAll(f.Action == Reset)
				return
			}
			// Only this goroutine writes c.bytes[dir]: reading it unlocked
			// races with nothing.
			if f.Rate > 0 && !throttled && c.bytes[dir] >= f.RateAfter {
				throttled, start = true, time.Now()
			} else if throttled && !c.pace(&sent, int64(len(chunk)), start, f.Rate) {
				return
			}
		}
		if rerr != nil {
			c.mu.Lock()
			stalled := c.stalled
			c.mu.Unlock()
			// While stalled, a server that hangs up must not release the
			// client: only the client's own give-up (or Close) ends it.
			if !stalled || dir == Up {
				c.closeAll(false)
			}
			return
		}
	}
}

// fire applies the fault to chunk when this is where it strikes: it
// returns the chunk to deliver (cut at the fault and followed by its
// Inject), whether the fault acts on the connection, and its OnFire. It
// is called with c.mu held.
func (c *proxyConn) fire(dir Direction, chunk []byte, resp *respScanner) ([]byte, bool, func()) {
	f := c.fault
	if (f.Action == Pass && f.OnFire == nil) || dir != f.Dir || c.fired {
		return chunk, false, nil
	}
	left := f.After - c.bytes[dir]
	cut := -1
	switch {
	case f.AtResponse:
		cut = resp.end(chunk, left)
	case int64(len(chunk)) >= left:
		cut = int(max(left, 0))
	}
	if cut < 0 {
		return chunk, false, nil
	}
	c.fired = true
	act := false
	if f.Action != Pass {
		// A new slice: chunk shares buf, which the next read reuses.
		chunk, act = append(chunk[:cut:cut], f.Inject...), true
	}
	if f.Action == Stall {
		c.stalled = true // before the write: the other pump stops now too
	}
	return chunk, act, f.OnFire
}

// write delivers b to dst, in fragments if the fault says so.
func (c *proxyConn) write(dst net.Conn, b []byte, seg *int) error {
	if c.fault.Fragment <= 0 {
		_, err := dst.Write(b)
		return err
	}
	for len(b) > 0 {
		*seg = *seg%c.fault.Fragment + 1
		n := min(*seg, len(b))
		if _, err := dst.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// pace waits until sent bytes are due at rate bytes per second; false
// when the proxy closed meanwhile.
func (c *proxyConn) pace(sent *int64, n int64, start time.Time, rate int) bool {
	*sent += n
	due := start.Add(time.Duration(float64(*sent) / float64(rate) * float64(time.Second)))
	wait := time.Until(due)
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.p.done:
		return false
	}
}

// closeAll closes both connections, with an RST towards the client when
// reset is set.
func (c *proxyConn) closeAll(reset bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	server := c.server
	c.mu.Unlock()
	if tc, ok := c.client.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	if tc, ok := server.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = c.client.Close()
	if server != nil {
		_ = server.Close()
	}
}

// keep records delivered bytes; c.mu is held, p.mu is taken.
func (p *FaultProxy) keep(dir Direction, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.record && p.recorded[dir].Len()+len(b) <= recordMax {
		p.recorded[dir].Write(b)
	}
}

// respScanner finds where IMAP responses end in the bytes a server sends,
// for Fault.AtResponse. Its zero value is at the start of a stream.
type respScanner struct {
	lit  int64  // literal bytes still to skip
	tail []byte // the end of the current line, enough to hold "{n+}\r\n"
}

// end feeds b and returns the offset in b just past the first response
// that ends at offset from or later, or -1. The bytes of b after that
// offset are not fed: the caller cuts the stream there.
func (s *respScanner) end(b []byte, from int64) int {
	for i := 0; i < len(b); i++ {
		if s.lit > 0 {
			n := min(s.lit, int64(len(b)-i))
			s.lit -= n
			i += int(n) - 1
			continue
		}
		if len(s.tail) == 24 {
			s.tail = append(s.tail[:0], s.tail[1:]...)
		}
		s.tail = append(s.tail, b[i])
		if b[i] != '\n' {
			continue
		}
		n, ok := literalAnnounced(s.tail)
		s.tail = s.tail[:0]
		if ok {
			s.lit = n
			continue
		}
		if int64(i+1) >= from {
			return i + 1
		}
	}
	return -1
}

// literalAnnounced reports whether line (ending in LF) ends with a literal
// announcement, "{n}", "{n+}" or "~{n}" before its CRLF, and returns n.
func literalAnnounced(line []byte) (int64, bool) {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	digits := bytes.TrimSuffix(line[open+1:len(line)-1], []byte("+"))
	if len(digits) == 0 {
		return 0, false
	}
	var n int64
	for _, d := range digits {
		if d < '0' || d > '9' || n > 1<<40 {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}
