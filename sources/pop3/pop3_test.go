package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gopop3 "github.com/knadh/go-pop3"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// listIDs lists INBOX and returns the envelopes.
func listIDs(t testing.TB, s mail.Source) []mail.Envelope {
	t.Helper()
	var out []mail.Envelope
	if err := s.List(context.Background(), "INBOX", func(e mail.Envelope) error { out = append(out, e); return nil }); err != nil {
		t.Fatalf("List(INBOX) = %v", err)
	}
	return out
}

func read(t testing.TB, s mail.Source, e mail.Envelope) []byte {
	t.Helper()
	rc, err := s.Open(context.Background(), e)
	if err != nil {
		t.Fatalf("Open(%s) = %v", e.ID, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", e.ID, err)
	}
	return b
}

// TestGoPOP3RetrBuffersWholeMessage proves why RETR is not done with
// go-pop3: RetrRaw returns the whole message as one *bytes.Buffer, so the
// heap grows by at least the message size (docs/library-notes.md §3).
func TestGoPOP3RetrBuffersWholeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("20 MB transfer")
	}
	const size = 20 << 20
	body := mailtest.Big(size)
	f := newFakeServer(t, fakeOpts{plain: true}, fakeMsg{uidl: "big", body: body})
	c, err := gopop3.New(gopop3.Opt{Host: "127.0.0.1", Port: f.port()}).NewConn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Auth(testUser, testPass); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	buf, err := c.RetrRaw(1)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len() < size {
		t.Fatalf("RetrRaw returned %d bytes, want the whole %d", buf.Len(), size)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("go-pop3 RetrRaw of %d MiB: %T of %d bytes, %.1f MiB allocated", size>>20, buf, buf.Len(), float64(alloc)/(1<<20))
	if alloc < size {
		t.Fatalf("RetrRaw allocated %d bytes for a %d-byte message: it no longer buffers, revisit retr.go", alloc, size)
	}
}

// pipeDialer hands go-pop3 the client end of a net.Pipe, counting what
// go-pop3 reads from it.
type pipeDialer struct {
	conn net.Conn
	read *atomic.Int64
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (d pipeDialer) Dial(_, _ string) (net.Conn, error) {
	return countingConn{Conn: d.conn, read: d.read}, nil
}

// TestGoPOP3ReadsPastItsResponse proves why go-pop3 cannot share the
// connection with another reader (the package doc): when two responses
// arrive together, as pipelined ones do, go-pop3's own bufio.Reader takes
// both while answering the first command, so the second is out of any
// other reader's reach.
func TestGoPOP3ReadsPastItsResponse(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		io.WriteString(server, "+OK hello\r\n")
		if _, err := bufio.NewReader(server).ReadString('\n'); err != nil {
			return
		}
		io.WriteString(server, "+OK first\r\n+OK second\r\n")
	}()
	var read atomic.Int64
	c, err := gopop3.New(gopop3.Opt{Dialer: pipeDialer{conn: client, read: &read}}).NewConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	answered := int64(len("+OK hello\r\n+OK first\r\n"))
	if got := read.Load(); got <= answered {
		t.Fatalf("go-pop3 read %d bytes for responses of %d: it no longer reads ahead, revisit the package doc", got, answered)
	}
}

// TestStreamsBigMessageWithFlatMemory reads a 50 MB message through the
// source: what it allocates stays far below the message size. The clear-text
// variant runs always; the TLS one not under the race detector, whose
// crypto/tls allocates per record in the in-process server.
func TestStreamsBigMessageWithFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB transfer")
	}
	const size = 50 << 20
	body := mailtest.Big(size)
	want := sha256.Sum256(body)
	for _, tc := range []struct {
		name string
		opts fakeOpts
	}{{"Plain", fakeOpts{plain: true, pipelining: true}}, {"TLS", fakeOpts{pipelining: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			if raceEnabled && !tc.opts.plain {
				t.Skip("race detector: crypto/tls allocates per record")
			}
			f := newFakeServer(t, tc.opts, fakeMsg{uidl: "big", body: body}, fakeMsg{uidl: "small", body: []byte("a\r\n")})
			o := options(t)
			o.AllowPlaintext = true
			s := f.open(t, o)
			envs := listIDs(t, s)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			rc, err := s.Open(context.Background(), envs[0])
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.CopyBuffer(h, rc, make([]byte, 32<<10))
			rc.Close()
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(body)) || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("read %d bytes, want %d identical", n, len(body))
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			inuse := int64(after.HeapInuse) - int64(before.HeapInuse)
			t.Logf("streamed %d MiB: %.2f MiB allocated (client and in-process server), heap in use %+.2f MiB", size>>20, float64(alloc)/(1<<20), float64(inuse)/(1<<20))
			if alloc > 4<<20 || inuse > 4<<20 {
				t.Fatalf("streaming %d MiB allocated %d bytes (heap in use %+d): not flat", size>>20, alloc, inuse)
			}
		})
	}
}

// fixtureSet is a maildrop exercising dot-stuffing and line endings.
func fixtureSet() []fakeMsg {
	msgs := bodies(12)
	msgs = append(msgs,
		fakeMsg{uidl: "dots", body: []byte("Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.hidden\r\n..double\r\nend\r\n.\r\n")},
		fakeMsg{uidl: "nofinal", body: []byte("Subject: x\r\n\r\nno final newline")},
		fakeMsg{uidl: "empty", body: nil},
		fakeMsg{uidl: "bare-lf", body: []byte("Subject: lf\n\n.dot\nline\n")},
	)
	return msgs
}

// expected is what the reader returns for a fixture body: as served, with
// the CRLF the server adds to a body without a final newline.
func expected(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return append(append([]byte(nil), b...), '\r', '\n')
	}
	return b
}

// TestReadsMaildrop covers implicit TLS and STLS, with and without
// pipelining: every body arrives un-dot-stuffed and identical (C12).
func TestReadsMaildrop(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts fakeOpts
		cfg  func(*Config)
	}{
		{"pop3s", fakeOpts{}, nil},
		{"pop3sPipelining", fakeOpts{pipelining: true}, nil},
		{"pop3sPipeliningOff", fakeOpts{pipelining: true}, func(c *Config) { c.NoPipelining = true }},
		{"stls", fakeOpts{plain: true, stls: true}, nil},
		{"stlsPipelining", fakeOpts{plain: true, stls: true, pipelining: true}, nil},
		{"noCAPA", fakeOpts{noCAPA: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := fixtureSet()
			f := newFakeServer(t, tc.opts, msgs...)
			cfg := f.config()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			s, err := New(context.Background(), cfg, options(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			envs := listIDs(t, s)
			if len(envs) != len(msgs) {
				t.Fatalf("List gave %d messages, want %d", len(envs), len(msgs))
			}
			for i, e := range envs {
				if e.Mailbox != "INBOX" || string(e.ID) != msgs[i].uidl || e.Size != int64(len(msgs[i].body)) {
					t.Errorf("envelope %d = %+v, want INBOX/%s size %d", i, e, msgs[i].uidl, len(msgs[i].body))
				}
				if got := read(t, s, e); !bytes.Equal(got, expected(msgs[i].body)) {
					t.Errorf("%s: body %q, want %q", e.ID, got, expected(msgs[i].body))
				}
			}
			f.mu.Lock()
			pipelined := f.pipelined
			f.mu.Unlock()
			if want := tc.opts.pipelining && (tc.cfg == nil); pipelined != want {
				t.Errorf("server saw pipelined commands = %v, want %v", pipelined, want)
			}
			for _, c := range f.commands() {
				if (c.cmd == "USER" || c.cmd == "PASS") && !c.tls {
					t.Errorf("%s sent without TLS", c.cmd)
				}
			}
		})
	}
}

// TestPipelinedOutOfOrder opens messages out of listing order, skips some,
// re-opens one, closes bodies early and interleaves Remove, all with
// pipelining on: every body read to the end is exact, and the session stays
// in step.
func TestPipelinedOutOfOrder(t *testing.T) {
	msgs := bodies(30)
	f := newFakeServer(t, fakeOpts{pipelining: true}, msgs...)
	s := f.open(t, nil)
	envs := listIDs(t, s)
	ctx := context.Background()
	type step struct {
		i       int
		partial int // bytes to read before Close; -1 reads all
	}
	steps := []step{
		{0, -1}, {1, -1}, {2, -1}, {3, 5}, // sequential: the window grows; early close
		{4, -1}, {5, -1}, {9, -1}, // skip 6-8, which were prefetched
		{6, -1}, // go back
		{7, 0}, {8, -1}, {10, 1}, {11, -1}, {12, -1}, {13, -1}, {14, -1},
		{29, -1}, {28, -1}, {15, -1}, {16, -1}, {17, -1}, {17, -1}, // the same message twice
	}
	for _, st := range steps {
		e := envs[st.i]
		rc, err := s.Open(ctx, e)
		if err != nil {
			t.Fatalf("Open(%s) = %v", e.ID, err)
		}
		want := msgs[st.i].body
		if st.partial >= 0 {
			buf := make([]byte, st.partial)
			if _, err := io.ReadFull(rc, buf); err != nil || !bytes.Equal(buf, want[:st.partial]) {
				t.Fatalf("partial read of %s = %q, %v", e.ID, buf, err)
			}
		} else if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: body %q, %v; want %q", e.ID, got, err, want)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("Close(%s) = %v", e.ID, err)
		}
		if st.i == 12 {
			// Remove while RETRs are pipelined: deferred, never mixed in.
			if err := s.Remove(ctx, []mail.Envelope{envs[20], envs[21]}); err != nil {
				t.Fatalf("Remove = %v", err)
			}
		}
	}
	// Removed messages are gone from the view, the others still read.
	if _, err := s.Open(ctx, envs[20]); !errors.Is(err, mail.ErrNotFound) {
		t.Fatalf("Open(removed) = %v, want ErrNotFound", err)
	}
	for _, i := range []int{18, 19, 22, 23} {
		if got := read(t, s, envs[i]); !bytes.Equal(got, msgs[i].body) {
			t.Fatalf("%s: body %q", envs[i].ID, got)
		}
	}
	if got := len(listIDs(t, s)); got != len(msgs)-2 {
		t.Fatalf("List after Remove gives %d messages, want %d", got, len(msgs)-2)
	}
	if f.count("QUIT") != 0 || len(f.maildrop()) != len(msgs) {
		t.Fatal("deleted before Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if got := f.maildrop(); len(got) != len(msgs)-2 || slices.Contains(got, "uid-21") || slices.Contains(got, "uid-22") {
		t.Fatalf("maildrop after QUIT = %v, want all but uid-21, uid-22", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.pipelined || f.sessions != 1 {
		t.Fatalf("pipelined=%v sessions=%d, want pipelining on one session", f.pipelined, f.sessions)
	}
}

// TestOpenWhileBodyOpen: a second Open takes over the connection; the first
// body then fails instead of returning another message's bytes.
func TestOpenWhileBodyOpen(t *testing.T) {
	msgs := bodies(3)
	f := newFakeServer(t, fakeOpts{pipelining: true}, msgs...)
	s := f.open(t, nil)
	envs := listIDs(t, s)
	first, err := s.Open(context.Background(), envs[0])
	if err != nil {
		t.Fatal(err)
	}
	first.Read(make([]byte, 3))
	if got := read(t, s, envs[1]); !bytes.Equal(got, msgs[1].body) {
		t.Fatalf("second body %q", got)
	}
	if _, err := io.ReadAll(first); err == nil {
		t.Fatal("reading the abandoned body = nil error, want an error")
	}
	first.Close()
	if got := read(t, s, envs[2]); !bytes.Equal(got, msgs[2].body) {
		t.Fatalf("third body %q", got)
	}
}

// TestB1CutMidRETR: the connection drops inside a body. Read fails with a
// temporary error (never a short message with io.EOF), and the next Open
// works on a new session.
func TestB1CutMidRETR(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		t.Run(fmt.Sprint("pipelining=", pipelining), func(t *testing.T) {
			body := mailtest.Big(256 << 10)
			f := newFakeServer(t, fakeOpts{pipelining: pipelining, dropAfter: 100 << 10, dropTimes: 1}, fakeMsg{uidl: "a", body: body}, fakeMsg{uidl: "b", body: []byte("b\r\n")})
			s := f.open(t, nil)
			envs := listIDs(t, s)
			rc, err := s.Open(context.Background(), envs[0])
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err == nil || !mail.Temporary(err) {
				t.Fatalf("reading a cut body: %d bytes, err = %v; want a temporary error", len(got), err)
			}
			if len(got) >= len(body) {
				t.Fatalf("read %d bytes of a cut body", len(got))
			}
			if got := read(t, s, envs[0]); !bytes.Equal(got, body) {
				t.Fatalf("retry read %d bytes, want %d", len(got), len(body))
			}
			if got := read(t, s, envs[1]); string(got) != "b\r\n" {
				t.Fatalf("next message %q", got)
			}
		})
	}
}

// TestB4TruncationSweep cuts the connection at every 7th byte of a session's
// RETR response: each read ends in the exact body or an error.
func TestB4TruncationSweep(t *testing.T) {
	body := []byte("Subject: sweep\r\n\r\n.\r\n..\r\nline\r\n.x\r\nend\r\n")
	wire := len(fmt.Sprintf("+OK %d octets\r\n", len(body))) + len(stuffed(body))
	for cut := 1; cut < wire+7; cut += 7 {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			f := newFakeServer(t, fakeOpts{dropAfter: cut, dropTimes: 1}, fakeMsg{uidl: "s", body: body})
			s := f.open(t, nil)
			envs := listIDs(t, s)
			rc, err := s.Open(context.Background(), envs[0])
			var got []byte
			if err == nil {
				got, err = io.ReadAll(rc)
				rc.Close()
			}
			switch {
			case err == nil && !bytes.Equal(got, body):
				t.Fatalf("cut at %d: short body %q with no error", cut, got)
			case err == nil && cut < wire && f.sessionCount() < 2:
				t.Fatalf("cut at %d of %d: no error and no new session", cut, wire)
			case err != nil && !mail.Temporary(err):
				t.Fatalf("cut at %d: %v is not temporary", cut, err)
			}
		})
	}
}

// TestB2SilentServer: a server that stops answering mid-session is given up
// after the idle timeout, with a temporary error.
func TestB2SilentServer(t *testing.T) {
	f := newFakeServer(t, fakeOpts{hangRetr: true}, bodies(1)...)
	o := options(t)
	o.Timeout = 300 * time.Millisecond
	s := f.open(t, o)
	envs := listIDs(t, s)
	start := time.Now()
	_, err := s.Open(context.Background(), envs[0])
	if err == nil || !mail.Temporary(err) {
		t.Fatalf("Open against a silent server = %v, want a temporary timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %v", d)
	}
}

// TestF1STLSRequired: pop3:// refuses to log in when STLS is missing from
// CAPA, refused, or CAPA itself is missing, unless plaintext is allowed.
func TestF1STLSRequired(t *testing.T) {
	for _, tc := range []struct {
		name           string
		opts           fakeOpts
		allowPlaintext bool
		wantErr        bool
	}{
		{"NotOffered", fakeOpts{plain: true}, false, true},
		{"Refused", fakeOpts{plain: true, stls: true, stlsErr: true}, false, true},
		{"NoCAPA", fakeOpts{plain: true, stls: true, noCAPA: true}, false, true},
		{"NotOfferedPlaintextAllowed", fakeOpts{plain: true}, true, false},
		{"OfferedPlaintextAllowed", fakeOpts{plain: true, stls: true}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, tc.opts, bodies(2)...)
			o := options(t)
			o.AllowPlaintext = tc.allowPlaintext
			asked := false
			o.Password = func(context.Context) (string, error) { asked = true; return testPass, nil }
			s, err := New(context.Background(), f.config(), o)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("New() = %v", err)
				}
				defer s.Close()
				if got := len(listIDs(t, s)); got != 2 {
					t.Fatalf("List gave %d messages", got)
				}
				return
			}
			if !errors.Is(err, mail.ErrUnreachable) || !strings.Contains(err.Error(), "TLS") {
				t.Fatalf("New() = %v, want ErrUnreachable naming TLS", err)
			}
			if asked {
				t.Error("the password was asked for")
			}
			if n := f.count("USER") + f.count("PASS"); n != 0 {
				t.Errorf("server received %d USER/PASS commands", n)
			}
		})
	}
}

// TestF2InjectionAfterSTLS: bytes that arrive with the +OK to STLS are
// refused, never parsed as responses, and no credentials are sent.
func TestF2InjectionAfterSTLS(t *testing.T) {
	for _, inject := range []string{"+OK\r\n", "+OK logged in\r\n+OK 1 10\r\n"} {
		t.Run(fmt.Sprintf("%q", inject), func(t *testing.T) {
			f := newFakeServer(t, fakeOpts{plain: true, stls: true, inject: inject}, bodies(1)...)
			o := options(t)
			o.AllowPlaintext = true // even so
			_, err := New(context.Background(), f.config(), o)
			if !errors.Is(err, mail.ErrUnreachable) {
				t.Fatalf("New() = %v, want ErrUnreachable", err)
			}
			if n := f.count("USER") + f.count("PASS"); n != 0 {
				t.Errorf("server received %d USER/PASS commands", n)
			}
		})
	}
}

// TestF3BadGreeting: a garbled, -ERR or empty greeting is refused.
func TestF3BadGreeting(t *testing.T) {
	for _, g := range []string{"-ERR busy", "", "* OK IMAP4rev1", "+OKAY"} {
		t.Run(fmt.Sprintf("%q", g), func(t *testing.T) {
			cfg := &Config{Host: "127.0.0.1", Port: newRawServer(t, g+"\r\n"), User: testUser, TLS: TLSSTLS}
			o := options(t)
			o.AllowPlaintext = true
			_, err := New(context.Background(), cfg, o)
			if !errors.Is(err, mail.ErrUnreachable) || !strings.Contains(err.Error(), "greeting") {
				t.Fatalf("New() = %v, want ErrUnreachable about the greeting", err)
			}
		})
	}
}

// TestF4UntrustedCertificate: without the test CA the self-signed
// certificate is refused, with a hint.
func TestF4UntrustedCertificate(t *testing.T) {
	for _, opts := range []fakeOpts{{}, {plain: true, stls: true}} {
		f := newFakeServer(t, opts, bodies(1)...)
		o := options(t)
		o.CAFile = ""
		_, err := New(context.Background(), f.config(), o)
		if !errors.Is(err, mail.ErrUnreachable) || !strings.Contains(err.Error(), "--ca-file") {
			t.Fatalf("New() with an untrusted certificate = %v, want ErrUnreachable with a --ca-file hint", err)
		}
		if !mail.Fatal(err) {
			t.Errorf("%v is not fatal", err)
		}
		if n := f.count("PASS"); n != 0 {
			t.Errorf("PASS sent %d times", n)
		}
	}
}

func TestAuthRejected(t *testing.T) {
	f := newFakeServer(t, fakeOpts{}, bodies(1)...)
	o := options(t)
	o.Password = func(context.Context) (string, error) { return "wrong-password", nil }
	_, err := New(context.Background(), f.config(), o)
	if !errors.Is(err, mail.ErrAuth) || !mail.Fatal(err) {
		t.Fatalf("New() with a wrong password = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "alice@127.0.0.1") || strings.Contains(err.Error(), "wrong-password") {
		t.Fatalf("error %q: want user@host named and no password", err)
	}
}

// TestLoginMaildropLocked: [IN-USE] or [SYS/TEMP] after PASS (RFC 3206) is
// a temporary failure, not rejected credentials.
func TestLoginMaildropLocked(t *testing.T) {
	for _, text := range []string{"[IN-USE] Mailbox is locked", "[SYS/TEMP] try later"} {
		f := newFakeServer(t, fakeOpts{passErr: text}, bodies(1)...)
		_, err := New(context.Background(), f.config(), options(t))
		if err == nil || errors.Is(err, mail.ErrAuth) || !mail.Temporary(err) {
			t.Fatalf("New() with PASS -ERR %s = %v, want a temporary error that is not ErrAuth", text, err)
		}
	}
}

func TestUnreachable(t *testing.T) {
	f := newFakeServer(t, fakeOpts{}, bodies(1)...)
	cfg := f.config()
	f.ln.Close()
	_, err := New(context.Background(), cfg, options(t))
	if !errors.Is(err, mail.ErrUnreachable) {
		t.Fatalf("New() to a closed port = %v, want ErrUnreachable", err)
	}
}

// TestC1NoUIDL: a server without UIDL cannot be left on safely: unless the
// messages are to be deleted (DeleteAfterCopy), List refuses with an error
// naming the capability and the alternatives, a configuration error (exit
// 2), and nothing is retrieved. Delete mode is TestC1NoUIDLDeleteMode.
func TestC1NoUIDL(t *testing.T) {
	for _, opts := range []fakeOpts{{noUIDL: true}, {noUIDL: true, noCAPA: true}} {
		f := newFakeServer(t, opts, bodies(2)...)
		s := f.open(t, nil)
		err := s.List(context.Background(), "INBOX", func(mail.Envelope) error { t.Error("fn called"); return nil })
		var nu *NoUIDLError
		if !errors.As(err, &nu) || !errors.Is(err, mail.ErrUnsupported) || !errors.Is(err, mail.ErrConfig) {
			t.Fatalf("List without UIDL = %v, want a *NoUIDLError (ErrUnsupported, ErrConfig)", err)
		}
		for _, want := range []string{"does not support UIDL", "--delete-source", "IMAP"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("List without UIDL = %q, want it to say %q", err, want)
			}
		}
		if n := f.count("RETR"); n != 0 {
			t.Errorf("%d RETR sent", n)
		}
		n, size, err := s.Stat(context.Background(), "INBOX")
		if err != nil || n != 2 || size == 0 {
			t.Fatalf("Stat() = %d, %d, %v; want 2 messages", n, size, err)
		}
	}
}

// TestC2BadUIDLs: invalid or duplicate UIDLs are an error naming the
// message, never a silent skip.
func TestC2BadUIDLs(t *testing.T) {
	for _, tc := range []struct{ name, uidl, want string }{
		{"Duplicate", "1 same\r\n2 same\r\n", "messages 1 and 2 share"},
		{"Empty", "1 ok\r\n2 \r\n", "message 2 has an invalid UIDL"},
		{"NoUID", "1 ok\r\n2\r\n", `line "2"`},
		{"TooLong", "1 " + strings.Repeat("u", 71) + "\r\n2 b\r\n", "message 1 has an invalid UIDL"},
		{"Huge", "1 " + strings.Repeat("u", 64<<10-10) + "\r\n2 b\r\n", "message 1 has an invalid UIDL"},
		{"Space", "1 a\r\n2 b c\r\n", "message 2 has an invalid UIDL"},
		{"NUL", "1 a\x00b\r\n2 b\r\n", "message 1 has an invalid UIDL"},
		{"DEL", "1 a\r\n2 b\x7f\r\n", "message 2 has an invalid UIDL"},
		{"BadNumber", "x a\r\n2 b\r\n", `line "x a"`},
		{"SameNumber", "1 a\r\n1 b\r\n", "message 1 listed twice"},
		{"Missing", "1 a\r\n", "UIDL names 1 messages, LIST 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, fakeOpts{rawUIDL: tc.uidl}, bodies(2)...)
			s := f.open(t, nil)
			err := s.List(context.Background(), "INBOX", func(mail.Envelope) error { t.Error("fn called"); return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("List = %v, want an error containing %q", err, tc.want)
			}
			if _, err := s.Open(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: "a"}); err == nil {
				t.Fatal("Open after a bad listing succeeded")
			}
		})
	}
	// 70 characters from the whole range are fine.
	ok := strings.Repeat("~", 35) + strings.Repeat("!", 35)
	f := newFakeServer(t, fakeOpts{}, fakeMsg{uidl: ok, body: []byte("x\r\n")})
	if envs := listIDs(t, f.open(t, nil)); len(envs) != 1 || string(envs[0].ID) != ok {
		t.Fatalf("List = %v", envs)
	}
}

func TestMailboxesAndNotFound(t *testing.T) {
	f := newFakeServer(t, fakeOpts{}, bodies(2)...)
	s := f.open(t, nil)
	ctx := context.Background()
	if mbs, err := s.Mailboxes(ctx); err != nil || !slices.Equal(mbs, []string{"INBOX"}) {
		t.Fatalf("Mailboxes() = %v, %v", mbs, err)
	}
	if err := s.List(ctx, "Sent", func(mail.Envelope) error { return nil }); !errors.Is(err, mail.ErrMailboxNotFound) {
		t.Fatalf("List(Sent) = %v, want ErrMailboxNotFound", err)
	}
	if _, err := s.Open(ctx, mail.Envelope{Mailbox: "INBOX", ID: "nope"}); !errors.Is(err, mail.ErrNotFound) {
		t.Fatalf("Open(unknown) = %v, want ErrNotFound", err)
	}
	if got := read(t, s, mail.Envelope{Mailbox: "INBOX", ID: "uid-2"}); !bytes.Equal(got, bodies(2)[1].body) {
		t.Fatalf("Open without List: %q", got)
	}
	if s.Limits().Conns != 1 {
		t.Fatalf("Limits() = %+v", s.Limits())
	}
	n, size, err := s.Stat(ctx, "INBOX")
	if err != nil || n != 2 || size != int64(len(bodies(2)[0].body)+len(bodies(2)[1].body)) {
		t.Fatalf("Stat() = %d, %d, %v", n, size, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	if _, err := s.Open(ctx, mail.Envelope{Mailbox: "INBOX", ID: "uid-1"}); !errors.Is(err, mail.ErrClosed) {
		t.Fatalf("Open after Close = %v, want ErrClosed", err)
	}
}

// TestDeleteCommittedAtQuit: DELE is sent only by Remove, and the server
// deletes only at QUIT; a session lost before QUIT deletes nothing and
// Close says so.
func TestDeleteCommittedAtQuit(t *testing.T) {
	ctx := context.Background()
	t.Run("Quit", func(t *testing.T) {
		f := newFakeServer(t, fakeOpts{pipelining: true}, bodies(5)...)
		s := f.open(t, nil)
		envs := listIDs(t, s)
		for _, e := range envs {
			read(t, s, e)
		}
		if n := f.count("DELE"); n != 0 {
			t.Fatalf("%d DELE before Remove", n)
		}
		if err := s.Remove(ctx, envs[:3]); err != nil {
			t.Fatalf("Remove = %v", err)
		}
		if n := f.count("DELE"); n != 3 {
			t.Fatalf("%d DELE after Remove of 3 on an idle connection", n)
		}
		if got := f.maildrop(); len(got) != 5 {
			t.Fatalf("maildrop before QUIT = %v", got)
		}
		if n, _, _ := s.Stat(ctx, "INBOX"); n != 2 {
			t.Fatalf("Stat after Remove = %d messages, want 2", n)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		if got := f.maildrop(); !slices.Equal(got, []string{"uid-4", "uid-5"}) {
			t.Fatalf("maildrop after QUIT = %v", got)
		}
	})
	for _, tc := range []struct {
		name string
		opts fakeOpts
	}{{"QuitErr", fakeOpts{quitErr: true}}, {"DropAtQuit", fakeOpts{dropBefQuit: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, tc.opts, bodies(3)...)
			s := f.open(t, nil)
			envs := listIDs(t, s)
			if err := s.Remove(ctx, envs); err != nil {
				t.Fatal(err)
			}
			err := s.Close()
			var de *DeleteError
			if !errors.As(err, &de) || de.Pending != 3 {
				t.Fatalf("Close() = %v, want a *DeleteError for 3 messages", err)
			}
			if got := f.maildrop(); len(got) != 3 {
				t.Fatalf("maildrop = %v, want untouched", got)
			}
		})
	}
	t.Run("ReconnectResendsDELE", func(t *testing.T) {
		// The first session drops in a RETR after a DELE: its DELE is lost
		// (RFC 1939 §6), so the next session must send it again.
		body := mailtest.Big(64 << 10)
		f := newFakeServer(t, fakeOpts{dropAfter: 1000, dropTimes: 1}, fakeMsg{uidl: "a", body: []byte("a\r\n")}, fakeMsg{uidl: "b", body: body})
		s := f.open(t, nil)
		envs := listIDs(t, s)
		if err := s.Remove(ctx, envs[:1]); err != nil {
			t.Fatal(err)
		}
		rc, err := s.Open(ctx, envs[1])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(rc); err == nil {
			t.Fatal("cut body read without error")
		}
		rc.Close()
		if got := read(t, s, envs[1]); !bytes.Equal(got, body) {
			t.Fatal("retry body differs")
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		if got := f.maildrop(); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("maildrop = %v, want [b]", got)
		}
		if n := f.count("DELE"); n != 2 {
			t.Fatalf("DELE sent %d times, want 2 (once per session)", n)
		}
	})
	t.Run("LostWithoutReconnect", func(t *testing.T) {
		// Every RETR drops, so the retry on a new session fails too.
		f := newFakeServer(t, fakeOpts{dropAfter: 10, dropTimes: 100}, bodies(2)...)
		s := f.open(t, nil)
		envs := listIDs(t, s)
		if err := s.Remove(ctx, envs[:1]); err != nil {
			t.Fatal(err)
		}
		if rc, err := s.Open(ctx, envs[1]); err == nil {
			io.ReadAll(rc)
			rc.Close()
		}
		var de *DeleteError
		if err := s.Close(); !errors.As(err, &de) || de.Pending != 1 {
			t.Fatalf("Close() = %v, want a *DeleteError for 1 message", err)
		}
		if got := f.maildrop(); len(got) != 2 {
			t.Fatalf("maildrop = %v, want untouched", got)
		}
	})
}

// TestContextCancel: cancelling while a body is read closes the connection
// and gives context.Canceled; the source then reconnects.
func TestContextCancel(t *testing.T) {
	body := mailtest.Big(4 << 20)
	f := newFakeServer(t, fakeOpts{}, fakeMsg{uidl: "a", body: body}, fakeMsg{uidl: "b", body: []byte("b\r\n")})
	s := f.open(t, nil)
	envs := listIDs(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := s.Open(ctx, envs[0])
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel = %v, want context.Canceled", err)
	}
	if _, err := s.Open(ctx, envs[1]); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context = %v", err)
	}
	if got := read(t, s, envs[1]); string(got) != "b\r\n" {
		t.Fatalf("after cancel: %q", got)
	}
}

// TestTraceMasksPassword: the protocol trace never shows the password.
func TestTraceMasksPassword(t *testing.T) {
	f := newFakeServer(t, fakeOpts{plain: true, stls: true, pipelining: true}, bodies(2)...)
	var mu sync.Mutex
	var trace []string
	o := options(t)
	o.Trace = func(l string) { mu.Lock(); trace = append(trace, l); mu.Unlock() }
	s := f.open(t, o)
	for _, e := range listIDs(t, s) {
		read(t, s, e)
	}
	s.Close()
	mu.Lock()
	all := strings.Join(trace, "\n")
	mu.Unlock()
	for _, want := range []string{"C: STLS", "C: USER alice", "C: PASS <redacted>", "C: RETR 1", "S: +OK logged in"} {
		if !strings.Contains(all, want) {
			t.Errorf("trace lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, testPass) || strings.Contains(all, "body line") {
		t.Errorf("trace shows the password or a body:\n%s", all)
	}
}

func TestRegister(t *testing.T) {
	r := mail.NewRegistry()
	Register(r)
	src, _ := r.Schemes()
	if !slices.Equal(src, []string{"pop3", "pop3s"}) {
		t.Fatalf("sources = %v", src)
	}
	f := newFakeServer(t, fakeOpts{}, bodies(1)...)
	s, err := r.OpenSource(context.Background(), fmt.Sprintf("pop3s://%s@127.0.0.1:%d", testUser, f.port()), options(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := len(listIDs(t, s)); got != 1 {
		t.Fatalf("List gave %d", got)
	}
	_, err = r.OpenSource(context.Background(), "pop3s://127.0.0.1", options(t))
	var ce *mail.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("OpenSource without a user = %v, want *mail.ConfigError", err)
	}
}
