package imapconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

const (
	testUser = "alice"
	testPass = "s3cret-Pa55"
)

// memServer is go-imap's in-memory server on loopback, with an implicit-TLS
// and a STARTTLS listener.
type memServer struct {
	user      *imapmemserver.User
	tlsAddr   string
	plainAddr string
	ca        string
}

func startMem(t testing.TB, caps imap.CapSet) *memServer {
	t.Helper()
	tlsCfg, ca := mailtest.LocalCert(t)
	mem, user := mailtest.NewMemIMAP(t, testUser, testPass)
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapLiteralPlus: {}}
	}
	ln, tln := mailtest.Listen(t), tls.NewListener(mailtest.Listen(t), tlsCfg)
	mailtest.ServeIMAP(t, mem, imapserver.Options{Caps: caps, TLSConfig: tlsCfg}, ln, tln)
	return &memServer{user: user, tlsAddr: tln.Addr().String(), plainAddr: ln.Addr().String(), ca: ca}
}

// config returns the Config for the implicit-TLS (or STARTTLS) listener.
func (m *memServer) config(t testing.TB, startTLS bool) *Config {
	t.Helper()
	addr := m.tlsAddr
	mode := TLSImplicit
	if startTLS {
		addr, mode = m.plainAddr, TLSStartTLS
	}
	return addrConfig(t, addr, mode)
}

func addrConfig(t testing.TB, addr string, mode TLSMode) *Config {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return &Config{Host: host, Port: p, User: testUser, TLS: mode}
}

func (m *memServer) opts(pw string) *mail.OpenOptions {
	return &mail.OpenOptions{
		CAFile:   m.ca,
		Password: func(context.Context) (string, error) { return pw, nil },
		Timeout:  10 * time.Second,
	}
}

// literal adapts a strings.Reader to imap.LiteralReader.
type literal struct{ *strings.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

// fakeServer is a scripted IMAP server for the quirks go-imap's server will
// not produce: it speaks just enough (CAPABILITY, LOGIN, LIST, EXAMINE,
// LOGOUT) and hands every other command to handle. Greeting and caps are
// per server; lines are what clients sent, for assertions.
type fakeServer struct {
	addr     string
	greeting string
	caps     string
	handle   func(fc *fakeConn, tag, cmd, args string) bool // false: unknown

	mu    sync.Mutex
	lines []string
}

type fakeConn struct {
	net.Conn
	r *bufio.Reader
}

func (fc *fakeConn) send(format string, args ...any) {
	fmt.Fprintf(fc.Conn, format, args...)
}

func startFake(t testing.TB, f *fakeServer) *fakeServer {
	t.Helper()
	if f.greeting == "" {
		f.greeting = "* OK fake ready\r\n"
	}
	if f.caps == "" {
		f.caps = "IMAP4rev1"
	}
	ln := mailtest.Listen(t)
	f.addr = ln.Addr().String()
	mailtest.Serve(t, ln, func(c net.Conn) { f.serve(&fakeConn{Conn: c, r: bufio.NewReader(c)}) })
	return f
}

func (f *fakeServer) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

func (f *fakeServer) serve(fc *fakeConn) {
	fc.send("%s", f.greeting)
	for {
		line, err := fc.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		tag, rest, _ := strings.Cut(line, " ")
		cmd, args, _ := strings.Cut(rest, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "UID" {
			sub, a, _ := strings.Cut(args, " ")
			cmd, args = "UID "+strings.ToUpper(sub), a
		}
		if f.handle != nil && f.handle(fc, tag, cmd, args) {
			continue
		}
		switch cmd {
		case "CAPABILITY":
			fc.send("* CAPABILITY %s\r\n%s OK done\r\n", f.caps, tag)
		case "LOGIN":
			fc.send("%s OK logged in\r\n", tag)
		case "LIST":
			fc.send("* LIST () \"/\" INBOX\r\n%s OK done\r\n", tag)
		case "EXAMINE", "SELECT":
			fc.send("* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 6] n\r\n* FLAGS (\\Seen)\r\n%s OK [READ-ONLY] done\r\n", tag)
		case "FETCH": // a listing
			fc.send("* 1 FETCH (UID 5 FLAGS (\\Seen) INTERNALDATE \"02-Jan-2024 03:04:05 +0000\" RFC822.SIZE 21)\r\n%s OK done\r\n", tag)
		case "NOOP":
			fc.send("%s OK done\r\n", tag)
		case "LOGOUT":
			fc.send("* BYE bye\r\n%s OK done\r\n", tag)
			return
		default:
			fc.send("%s BAD unknown command\r\n", tag)
		}
	}
}

// fakeSession dials f over plain IMAP (STARTTLS refused, allowed by
// plainOpts) and starts a raw Session on it, closed when the test ends.
func fakeSession(t testing.TB, f *fakeServer) *Session {
	t.Helper()
	rc, err := DialRaw(context.Background(), addrConfig(t, f.addr, TLSStartTLS), plainOpts())
	if err != nil {
		t.Fatalf("DialRaw() = %v", err)
	}
	t.Cleanup(func() { rc.Close() })
	return NewSession(rc, nil)
}

// plainOpts are options for a fake server without TLS.
func plainOpts() *mail.OpenOptions {
	return &mail.OpenOptions{
		AllowPlaintext: true,
		Password:       func(context.Context) (string, error) { return testPass, nil },
		Timeout:        5 * time.Second,
	}
}
