package imapconn

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

func TestDialMemServer(t *testing.T) {
	m := startMem(t, nil)
	for _, tc := range []struct {
		name     string
		startTLS bool
	}{
		{"ImplicitTLS", false},
		{"StartTLS", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(context.Background(), m.config(t, tc.startTLS), m.opts(testPass))
			if err != nil {
				t.Fatalf("Dial() = %v", err)
			}
			defer c.Close()
			// Not c.State(): imapclient updates it just after Authenticate
			// returns, so it may still say "not authenticated".
			if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
				t.Fatalf("EXAMINE INBOX = %v", err)
			}
		})
	}
}

// TestDialF4UntrustedCert: a self-signed certificate without --ca-file is
// refused as unreachable, with a hint.
func TestDialF4UntrustedCert(t *testing.T) {
	m := startMem(t, nil)
	for _, startTLS := range []bool{false, true} {
		o := m.opts(testPass)
		o.CAFile = ""
		_, err := Dial(context.Background(), m.config(t, startTLS), o)
		if !errors.Is(err, mail.ErrUnreachable) || !strings.Contains(err.Error(), "--ca-file") {
			t.Errorf("Dial(startTLS=%v) with untrusted cert = %v, want ErrUnreachable with a --ca-file hint", startTLS, err)
		}
	}
}

func TestDialWrongPassword(t *testing.T) {
	m := startMem(t, nil)
	_, err := Dial(context.Background(), m.config(t, false), m.opts("not-the-password"))
	if !errors.Is(err, mail.ErrAuth) || !mail.Fatal(err) {
		t.Fatalf("Dial(wrong password) = %v, want fatal ErrAuth", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "alice@127.0.0.1") || strings.Contains(msg, "not-the-password") || strings.Contains(msg, "\n") {
		t.Fatalf("error %q should name alice@127.0.0.1 on one line and never the password", msg)
	}
}

func TestDialUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	_, err = Dial(context.Background(), addrConfig(t, addr, TLSImplicit), plainOpts())
	if !errors.Is(err, mail.ErrUnreachable) {
		t.Fatalf("Dial(closed port) = %v, want ErrUnreachable", err)
	}
}

func TestDialNoPasswordSource(t *testing.T) {
	o := plainOpts()
	o.Password = nil
	_, err := Dial(context.Background(), &Config{Host: "127.0.0.1", Port: 1, User: "a"}, o)
	var ce *mail.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Dial without a password source = %v, want *mail.ConfigError", err)
	}
}

// TestDialStartTLSFaults covers F1 (STARTTLS missing or refused), F2
// (cleartext injected after the STARTTLS answer) and F3 (PREAUTH, BYE and
// garbled greetings): each is refused before any credential is sent.
func TestDialStartTLSFaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		greeting string
		caps     string
		starttls string // the server's answer to STARTTLS, %s = tag
		want     string // in the error
		temp     bool   // temporary rather than unreachable
	}{
		{name: "F1NotOfferedInGreeting", greeting: "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", want: "does not offer STARTTLS"},
		{name: "F1NotOfferedInCapability", caps: "IMAP4rev1 AUTH=PLAIN", want: "does not offer STARTTLS"},
		{name: "F1Refused", caps: "IMAP4rev1 STARTTLS", starttls: "%s NO not today\r\n", want: "refused STARTTLS"},
		{name: "F1Bad", caps: "IMAP4rev1 STARTTLS", starttls: "%s BAD what\r\n", want: "refused STARTTLS"},
		{name: "F2Injection", caps: "IMAP4rev1 STARTTLS", starttls: "%s OK begin TLS\r\nT1 OK LOGIN completed\r\n* 1 EXISTS\r\n", want: "injection"},
		{name: "F3Preauth", greeting: "* PREAUTH welcome back\r\n", want: "PREAUTH"},
		{name: "F3Bye", greeting: "* BYE too many connections\r\n", want: "too many", temp: true},
		{name: "F3Garbled", greeting: "HELLO THERE\r\n", want: "invalid greeting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, &fakeServer{greeting: tc.greeting, caps: tc.caps,
				handle: func(fc *fakeConn, tag, cmd, args string) bool {
					if cmd != "STARTTLS" {
						return false
					}
					if strings.Count(tc.starttls, "%s") > 0 {
						fc.send(tc.starttls, tag)
					}
					return true
				}})
			_, err := Dial(context.Background(), addrConfig(t, f.addr, TLSStartTLS), plainOpts0())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial() = %v, want an error about %q", err, tc.want)
			}
			if tc.temp && !mail.Temporary(err) {
				t.Errorf("Dial() = %v, want a temporary error", err)
			}
			if !tc.temp && !errors.Is(err, mail.ErrUnreachable) {
				t.Errorf("Dial() = %v, want ErrUnreachable", err)
			}
			for _, l := range f.sent() {
				if u := strings.ToUpper(l); strings.Contains(u, "LOGIN") || strings.Contains(u, "AUTHENTICATE") || strings.Contains(l, testPass) {
					t.Errorf("client sent %q before TLS", l)
				}
			}
		})
	}
}

// plainOpts0 is plainOpts without AllowPlaintext: STARTTLS is required.
func plainOpts0() *mail.OpenOptions {
	o := plainOpts()
	o.AllowPlaintext = false
	return o
}

// TestDialF5AllowPlaintext: without STARTTLS the session continues in clear
// text only when allowed, and then logs in.
func TestDialF5AllowPlaintext(t *testing.T) {
	f := startFake(t, &fakeServer{caps: "IMAP4rev1"})
	c, err := Dial(context.Background(), addrConfig(t, f.addr, TLSStartTLS), plainOpts())
	if err != nil {
		t.Fatalf("Dial(AllowPlaintext) = %v", err)
	}
	c.Close()
	logins := 0
	for _, l := range f.sent() {
		if strings.Contains(strings.ToUpper(l), " LOGIN ") {
			logins++
		}
	}
	if logins != 1 {
		t.Fatalf("client sent %d LOGINs, want 1: %q", logins, f.sent())
	}
}

// TestDialB2SilentGreeting: a server that accepts but never speaks fails
// the dial within the timeout.
func TestDialB2SilentGreeting(t *testing.T) {
	ln := mailtest.Listen(t)
	mailtest.Serve(t, ln, func(c net.Conn) { io.Copy(io.Discard, c) }) // never speaks
	for _, mode := range []TLSMode{TLSImplicit, TLSStartTLS} {
		o := plainOpts()
		o.Timeout = 300 * time.Millisecond
		start := time.Now()
		_, err := Dial(context.Background(), addrConfig(t, ln.Addr().String(), mode), o)
		if el := time.Since(start); err == nil || el > 5*time.Second {
			t.Fatalf("Dial(mode %d, silent server) = %v after %v, want an error within the timeout", mode, err, el)
		}
		if !errors.Is(err, mail.ErrUnreachable) {
			t.Errorf("Dial(mode %d, silent server) = %v, want ErrUnreachable", mode, err)
		}
	}
}

func TestDialCancelled(t *testing.T) {
	m := startMem(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, m.config(t, false), m.opts(testPass)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial(cancelled) = %v, want context.Canceled", err)
	}
	// Cancelled while the password is being looked up.
	ctx, cancel = context.WithCancel(context.Background())
	o := m.opts(testPass)
	o.Password = func(ctx context.Context) (string, error) {
		cancel()
		<-ctx.Done()
		return "", ctx.Err()
	}
	if _, err := Dial(ctx, m.config(t, false), o); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial(cancelled during password lookup) = %v, want context.Canceled", err)
	}
}

// TestTraceF6MasksCredentials: the protocol trace shows the exchange but
// never the password, plain or base64 (SASL PLAIN).
func TestTraceF6MasksCredentials(t *testing.T) {
	m := startMem(t, nil)
	for _, startTLS := range []bool{false, true} {
		var mu sync.Mutex
		var lines []string
		o := m.opts(testPass)
		o.Trace = func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() }
		c, err := Dial(context.Background(), m.config(t, startTLS), o)
		if err != nil {
			t.Fatalf("Dial() = %v", err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		c.Close()
		mu.Lock()
		all := strings.Join(lines, "\n")
		mu.Unlock()
		b64 := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPass))
		if strings.Contains(all, testPass) || strings.Contains(all, b64) {
			t.Fatalf("trace leaks the password:\n%s", all)
		}
		if !strings.Contains(all, "<redacted>") || !strings.Contains(all, "SELECT") {
			t.Fatalf("trace lacks the masked login or the SELECT:\n%s", all)
		}
	}
}

func TestTracerLiteralsAndLogin(t *testing.T) {
	var lines []string
	tr := newTracer(func(l string) { lines = append(lines, l) })
	tr.feed(&tr.out, []byte("T1 LOGIN alice {6}\r\nsecret\r\n"))
	tr.feed(&tr.in, []byte("T1 OK done\r\n* 1 FETCH (UID 5 BODY[] {11}\r\nhello\r\nbody)\r\nT2 OK"))
	tr.feed(&tr.in, []byte(" done\r\n"))
	tr.feed(&tr.out, []byte("T3 NOOP\r\n"))
	want := []string{
		"C: T1 LOGIN <redacted>", "C: <6 literal bytes>", "C: <redacted>",
		"S: T1 OK done", "S: * 1 FETCH (UID 5 BODY[] {11}", "S: <11 literal bytes>", "S: )", "S: T2 OK done",
		"C: T3 NOOP",
	}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("trace =\n%q\nwant\n%q", lines, want)
	}
}

func TestLiteralSuffix(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"* 1 FETCH (BODY[] {42}", 42, true},
		{"A APPEND x {7+}", 7, true},
		{"A APPEND x ~{7}", 7, true},
		{"no literal", 0, false},
		{"{}", 0, false},
		{"{12a}", 0, false},
		{"{99999999999999999999}", 0, false},
	} {
		n, ok := literalSuffix(tc.line)
		if n != tc.n || ok != tc.ok {
			t.Errorf("literalSuffix(%q) = %d, %v, want %d, %v", tc.line, n, ok, tc.n, tc.ok)
		}
	}
}
