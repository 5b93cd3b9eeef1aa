package mailtest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoTarget greets each connection with greeting, then echoes what it
// reads. Each connection's received bytes are sent on got when it ends.
type echoTarget struct {
	addr string
	got  chan []byte
}

func startEchoTarget(t *testing.T, greeting []byte) *echoTarget {
	t.Helper()
	ln := Listen(t)
	e := &echoTarget{addr: ln.Addr().String(), got: make(chan []byte, 16)}
	Serve(t, ln, func(c net.Conn) {
		if _, err := c.Write(greeting); err != nil {
			e.got <- nil
			return
		}
		var in bytes.Buffer
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			in.Write(buf[:n])
			if n > 0 {
				c.Write(buf[:n])
			}
			if err != nil {
				e.got <- in.Bytes()
				return
			}
		}
	})
	return e
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func dialProxy(t *testing.T, p *FaultProxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// An upper bound only: no test waits for it unless it expects a stall.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// readUntilErr reads until an error and returns what arrived.
func readUntilErr(c net.Conn) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.Bytes(), err
		}
	}
}

func TestFaultProxyPassThrough(t *testing.T) {
	greeting := pattern(100 << 10)
	e := startEchoTarget(t, greeting)
	p := NewFaultProxy(t, e.addr)
	p.Record(true)
	c := dialProxy(t, p)
	got := make([]byte, len(greeting))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, greeting) {
		t.Fatalf("greeting through the proxy: %v, equal %v", err, bytes.Equal(got, greeting))
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 4)
	if _, err := io.ReadFull(c, echo); err != nil || string(echo) != "ping" {
		t.Fatalf("echo = %q, %v", echo, err)
	}
	c.Close()
	if in := <-e.got; string(in) != "ping" {
		t.Fatalf("target received %q, want ping", in)
	}
	if up := p.Recorded(Up); string(up) != "ping" {
		t.Fatalf("Recorded(Up) = %q", up)
	}
	st := p.Conns()
	if len(st) != 1 || st[0].Bytes[Down] != int64(len(greeting))+4 || st[0].Bytes[Up] != 4 || st[0].Fired {
		t.Fatalf("Conns() = %+v", st)
	}
}

func TestFaultProxyFaults(t *testing.T) {
	greeting := pattern(64 << 10)
	for _, tc := range []struct {
		name  string
		fault Fault
		check func(t *testing.T, got []byte, err error)
	}{
		{"DropDown", Fault{Action: Drop, Dir: Down, After: 1000}, func(t *testing.T, got []byte, err error) {
			if !errors.Is(err, io.EOF) || !bytes.Equal(got, greeting[:1000]) {
				t.Fatalf("read %d bytes then %v; want exactly 1000 then EOF", len(got), err)
			}
		}},
		{"DropDownAtZero", Fault{Action: Drop, Dir: Down}, func(t *testing.T, got []byte, err error) {
			if !errors.Is(err, io.EOF) || len(got) != 0 {
				t.Fatalf("read %d bytes then %v; want EOF at once", len(got), err)
			}
		}},
		{"ResetDown", Fault{Action: Reset, Dir: Down, After: 1000}, func(t *testing.T, got []byte, err error) {
			if !errors.Is(err, syscall.ECONNRESET) || len(got) > 1000 {
				t.Fatalf("read %d bytes then %v; want at most 1000 then ECONNRESET", len(got), err)
			}
		}},
		{"StallDown", Fault{Action: Stall, Dir: Down, After: 1000}, func(t *testing.T, got []byte, err error) {
			if !errors.Is(err, os.ErrDeadlineExceeded) || !bytes.Equal(got, greeting[:1000]) {
				t.Fatalf("read %d bytes then %v; want exactly 1000 then a timeout", len(got), err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEchoTarget(t, greeting)
			p := NewFaultProxy(t, e.addr)
			p.SetSchedule(FirstConn(tc.fault))
			c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
			switch {
			case err == nil:
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				if tc.fault.Action == Stall {
					c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				}
				got, err := readUntilErr(c)
				tc.check(t, got, err)
			case tc.fault.Action == Reset && errors.Is(err, syscall.ECONNRESET):
				// The RST arrived before Go saw the connect complete (it
				// checks SO_ERROR after the handshake): the same fault.
			default:
				t.Fatal(err)
			}
			if st := p.Conns(); !st[0].Fired {
				t.Errorf("Conns()[0] = %+v, want fired", st[0])
			}
			// The schedule faults the first connection only.
			c2 := dialProxy(t, p)
			all := make([]byte, len(greeting))
			if _, err := io.ReadFull(c2, all); err != nil || !bytes.Equal(all, greeting) {
				t.Fatalf("second connection: %v", err)
			}
		})
	}
}

// TestFaultProxyStallKeepsOpen: a stalled connection swallows what the
// client sends and stays open until the client gives up.
func TestFaultProxyStallKeepsOpen(t *testing.T) {
	e := startEchoTarget(t, []byte("hello\r\n"))
	p := NewFaultProxy(t, e.addr)
	p.SetSchedule(EveryConn(Fault{Action: Stall, Dir: Up, After: 3}))
	c := dialProxy(t, p)
	line := make([]byte, 7)
	if _, err := io.ReadFull(c, line); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("abcdef"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	got, err := readUntilErr(c)
	if !errors.Is(err, os.ErrDeadlineExceeded) || len(got) != 0 {
		t.Fatalf("after the stall read %q then %v; want nothing, then a timeout", got, err)
	}
	c.Close()
	// The target's connection ends only because the client left.
	if in := <-e.got; string(in) != "abc" {
		t.Fatalf("target received %q, want the 3 bytes before the stall", in)
	}
}

func TestFaultProxyDropUp(t *testing.T) {
	e := startEchoTarget(t, []byte("+OK\r\n"))
	p := NewFaultProxy(t, e.addr)
	p.SetSchedule(FirstConn(Fault{Action: Drop, Dir: Up, After: 2}))
	c := dialProxy(t, p)
	c.Write([]byte("hello"))
	if _, err := readUntilErr(c); err == nil {
		t.Fatal("connection still open after the drop")
	}
	if in := <-e.got; string(in) != "he" {
		t.Fatalf("target received %q, want %q", in, "he")
	}
}

func TestFaultProxySlow(t *testing.T) {
	greeting := pattern(10 << 10)
	e := startEchoTarget(t, greeting)
	p := NewFaultProxy(t, e.addr)
	p.SetSchedule(EveryConn(Fault{Rate: 20 << 10}))
	c := dialProxy(t, p)
	start := time.Now()
	got := make([]byte, len(greeting))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, greeting) {
		t.Fatal(err)
	}
	// 10 KiB at 20 KiB/s: about half a second; the first slice goes at once.
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("10 KiB at 20 KiB/s took %v, want at least 400ms", el)
	}
}

func TestFaultProxyRewrite(t *testing.T) {
	e := startEchoTarget(t, []byte("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"))
	p := NewFaultProxy(t, e.addr)
	p.SetSchedule(EveryConn(Fault{Rewrite: func(d Direction, b []byte) []byte {
		if d == Down {
			return bytes.ReplaceAll(b, []byte("STARTTLS"), []byte("XSTRIPPD"))
		}
		return b
	}}))
	c := dialProxy(t, p)
	line := make([]byte, 41)
	if _, err := io.ReadFull(c, line); err != nil {
		t.Fatal(err)
	}
	if s := string(line); strings.Contains(s, "STARTTLS") || !strings.Contains(s, "XSTRIPPD") {
		t.Fatalf("greeting %q: STARTTLS not stripped", s)
	}
}

// TestFaultProxyCloseEndsStalls: Close releases connections that are
// stalled, so a test's cleanup never hangs.
func TestFaultProxyCloseEndsStalls(t *testing.T) {
	e := startEchoTarget(t, pattern(1000))
	p := NewFaultProxy(t, e.addr)
	p.SetSchedule(EveryConn(Fault{Action: Stall, Dir: Down, After: 10}))
	c := dialProxy(t, p)
	buf := make([]byte, 10)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := readUntilErr(c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after Close the client still waits: %v", err)
	}
}

// TestFaultProxyFragment: fragmented delivery changes nothing but the
// segmentation.
func TestFaultProxyFragment(t *testing.T) {
	greeting := pattern(20 << 10)
	e := startEchoTarget(t, greeting)
	p := NewFaultProxy(t, e.addr)
	p.SetSchedule(EveryConn(Fault{Fragment: 7}))
	c := dialProxy(t, p)
	got := make([]byte, len(greeting))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, greeting) {
		t.Fatalf("fragmented greeting: %v, equal %v", err, bytes.Equal(got, greeting))
	}
}

// TestFaultProxyOnFire: a Pass fault with OnFire notifies at the offset and
// changes nothing else.
func TestFaultProxyOnFire(t *testing.T) {
	greeting := pattern(50 << 10)
	e := startEchoTarget(t, greeting)
	p := NewFaultProxy(t, e.addr)
	fired := make(chan int64, 1)
	p.SetSchedule(FirstConn(Fault{Dir: Down, After: 20 << 10, OnFire: func() { fired <- p.Conns()[0].Bytes[Down] }}))
	c := dialProxy(t, p)
	got := make([]byte, len(greeting))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, greeting) {
		t.Fatalf("greeting: %v", err)
	}
	if n := <-fired; n < 20<<10 {
		t.Fatalf("OnFire ran after %d bytes, want at least %d", n, 20<<10)
	}
}

// imapStream is a server stream of three responses whose first literal
// holds what looks like a line end and a literal announcement.
const imapStream = "* OK hi\r\n" +
	"* 1 FETCH (UID 1 BODY[] {12}\r\nab\r\n\r\n{3}\r\nxy)\r\n" +
	"* 2 FETCH (UID 2 BODY[] {4+}\r\nwxyz)\r\n" +
	"* 3 FETCH (UID 3)\r\n"

// TestFaultProxyInject: Inject delivers the server's last words where the
// fault fires, and AtResponse moves that point to the end of an IMAP
// response, skipping literals (mid-literal otherwise).
func TestFaultProxyInject(t *testing.T) {
	bye := "* BYE Session expired, please login again\r\n"
	end1 := strings.Index(imapStream, "* 2 ")
	end2 := strings.Index(imapStream, "* 3 ")
	for _, tc := range []struct {
		name  string
		fault Fault
		want  string
	}{
		{"mid-literal", Fault{Action: Drop, After: int64(end1 - 8), Inject: []byte(bye)}, imapStream[:end1-8] + bye},
		{"greeting", Fault{Action: Drop, AtResponse: true, Inject: []byte(bye)}, imapStream[:9] + bye},
		{"after a literal", Fault{Action: Drop, After: 20, AtResponse: true, Inject: []byte(bye)}, imapStream[:end1] + bye},
		{"at a boundary", Fault{Action: Drop, After: int64(end1), AtResponse: true, Inject: []byte(bye)}, imapStream[:end1] + bye},
		{"second", Fault{Action: Drop, After: int64(end1 + 1), AtResponse: true, Inject: []byte(bye)}, imapStream[:end2] + bye},
		{"no inject", Fault{Action: Drop, After: int64(end1 + 1), AtResponse: true}, imapStream[:end2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEchoTarget(t, []byte(imapStream))
			p := NewFaultProxy(t, e.addr)
			p.SetSchedule(EveryConn(tc.fault))
			got, err := readUntilErr(dialProxy(t, p))
			if !errors.Is(err, io.EOF) || string(got) != tc.want {
				t.Fatalf("read %q then %v; want %q then EOF", got, err, tc.want)
			}
			if st := p.Conns(); !st[0].Fired || st[0].Bytes[Down] != int64(len(tc.want)) {
				t.Errorf("Conns()[0] = %+v, want fired after %d bytes", st[0], len(tc.want))
			}
		})
	}
}

// TestRespScannerSplit: response ends are found however the stream is
// split into reads.
func TestRespScannerSplit(t *testing.T) {
	var want []int
	for i := range imapStream {
		if strings.HasPrefix(imapStream[i:], "* ") && i > 0 {
			want = append(want, i)
		}
	}
	want = append(want, len(imapStream))
	for _, step := range []int{1, 2, 3, 7, len(imapStream)} {
		var s respScanner
		var got []int
		for off := 0; off < len(imapStream); {
			b := []byte(imapStream[off:min(off+step, len(imapStream))])
			e := s.end(b, 0)
			if e < 0 {
				off += len(b)
				continue
			}
			got = append(got, off+e)
			off += e
		}
		if !slices.Equal(got, want) {
			t.Errorf("reads of %d bytes: response ends %v, want %v", step, got, want)
		}
	}
}

// TestFaultProxyRateAfter: the throttle starts only after RateAfter bytes.
func TestFaultProxyRateAfter(t *testing.T) {
	greeting := pattern(40 << 10)
	e := startEchoTarget(t, greeting)
	p := NewFaultProxy(t, e.addr)
	p.SetSchedule(EveryConn(Fault{Rate: 8 << 10, RateAfter: 36 << 10}))
	c := dialProxy(t, p)
	start := time.Now()
	got := make([]byte, len(greeting))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, greeting) {
		t.Fatal(err)
	}
	// 36 KiB at full speed, then 4 KiB at 8 KiB/s: about half a second
	// (all of it throttled would take five).
	if el := time.Since(start); el < 300*time.Millisecond || el > 3*time.Second {
		t.Fatalf("took %v, want about 500ms", el)
	}
}
