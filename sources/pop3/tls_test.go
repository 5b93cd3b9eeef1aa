package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// tlsPOP3 is a minimal implicit-TLS POP3 server with one certificate and
// TLS version range, answering an empty maildrop; pass counts PASS
// commands received.
type tlsPOP3 struct {
	port int
	pass atomic.Int32
}

func startTLSPOP3(t *testing.T, cert tls.Certificate, minV, maxV uint16) *tlsPOP3 {
	t.Helper()
	ln := tls.NewListener(mailtest.Listen(t), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minV, MaxVersion: maxV})
	s := &tlsPOP3{port: ln.Addr().(*net.TCPAddr).Port}
	mailtest.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("+OK ready\r\n")); err != nil {
			return // the handshake failed
		}
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			cmd, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			reply := "+OK\r\n"
			switch strings.ToUpper(cmd) {
			case "CAPA":
				reply = "+OK\r\nUSER\r\nUIDL\r\n.\r\n"
			case "PASS":
				s.pass.Add(1)
			case "UIDL", "LIST":
				reply = "+OK\r\n.\r\n"
			case "QUIT":
				c.Write([]byte(reply))
				return
			}
			c.Write([]byte(reply))
		}
	})
	return s
}

// TestF4CertificateMatrixPOP3 runs the F4 cases through the POP3 dialer
// (the IMAP package has the full matrix; the verification is shared
// mail.TLSConfig): each refusal names its cause and sends no PASS, and
// the pin and skip options make their cases pass.
func TestF4CertificateMatrixPOP3(t *testing.T) {
	pki := mailtest.NewPKI(t)
	self, selfPin := pki.Leaf(t, mailtest.CertSpec{SelfSigned: true})
	expired, _ := pki.Leaf(t, mailtest.CertSpec{NotBefore: -2 * time.Hour, NotAfter: -time.Hour})
	future, _ := pki.Leaf(t, mailtest.CertSpec{NotBefore: time.Hour, NotAfter: 2 * time.Hour})
	good, _ := pki.Leaf(t, mailtest.CertSpec{})
	for _, tc := range []struct {
		name       string
		cert       tls.Certificate
		minV, maxV uint16
		pins       []string
		skip       bool
		want       string
	}{
		{name: "SelfSigned", cert: self, want: "self-signed (its --pin-sha256 is " + selfPin},
		{name: "Expired", cert: expired, want: "expired on"},
		{name: "NotYetValid", cert: future, want: "not valid before"},
		{name: "TLS10Only", cert: good, minV: tls.VersionTLS10, maxV: tls.VersionTLS11, want: "older than 1.2"},
		{name: "TLS10OnlySkipVerify", cert: good, minV: tls.VersionTLS10, maxV: tls.VersionTLS11, skip: true, want: "older than 1.2"},
		{name: "PinMismatch", cert: good, pins: []string{selfPin}, want: "does not match --pin-sha256"},
		{name: "Trusted", cert: good},
		{name: "Pinned", cert: self, pins: []string{selfPin}},
		{name: "SkipVerify", cert: expired, skip: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startTLSPOP3(t, tc.cert, tc.minV, tc.maxV)
			o := options(t)
			o.CAFile, o.PinSHA256, o.InsecureSkipVerify = pki.CAFile, tc.pins, tc.skip
			s, err := New(context.Background(), &Config{Host: "127.0.0.1", Port: srv.port, User: testUser, TLS: TLSImplicit}, o)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New() = %v", err)
				}
				s.Close()
				if srv.pass.Load() != 1 {
					t.Errorf("server got %d PASS, want 1", srv.pass.Load())
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("New() succeeded, want a refusal with %q", tc.want)
			}
			if !errors.Is(err, mail.ErrUnreachable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New() = %v\nwant ErrUnreachable containing %q", err, tc.want)
			}
			if n := srv.pass.Load(); n != 0 {
				t.Errorf("PASS sent %d times", n)
			}
		})
	}
}

// TestF5PlaintextAuthPOP3: with plaintext allowed but plaintext auth
// refused, a server without STLS (or refusing it) gets no USER or PASS and
// the password is not even asked for.
func TestF5PlaintextAuthPOP3(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts fakeOpts
	}{
		{"NotOffered", fakeOpts{plain: true}},
		{"Refused", fakeOpts{plain: true, stls: true, stlsErr: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, tc.opts, bodies(1)...)
			o := options(t)
			o.AllowPlaintext, o.RefusePlaintextAuth = true, true
			var asked atomic.Int32
			o.Password = func(context.Context) (string, error) { asked.Add(1); return testPass, nil }
			_, err := New(context.Background(), f.config(), o)
			if !errors.Is(err, mail.ErrUnreachable) || !strings.Contains(err.Error(), "--allow-plaintext-auth") {
				t.Fatalf("New() = %v, want ErrUnreachable naming --allow-plaintext-auth", err)
			}
			if n := f.count("USER") + f.count("PASS"); n != 0 || asked.Load() != 0 {
				t.Errorf("server received %d USER/PASS, password asked %d times", n, asked.Load())
			}
		})
	}
}
