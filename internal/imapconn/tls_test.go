package imapconn

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// startTLSMem serves go-imap's memory server with cert on an implicit-TLS
// and a STARTTLS listener, limited to TLS versions [minV, maxV] (0: Go's
// defaults), and returns their addresses.
func startTLSMem(t testing.TB, cert tls.Certificate, minV, maxV uint16) (tlsAddr, plainAddr string) {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minV, MaxVersion: maxV}
	mem, _ := mailtest.NewMemIMAP(t, testUser, testPass)
	ln, tln := mailtest.Listen(t), tls.NewListener(mailtest.Listen(t), cfg)
	mailtest.ServeIMAP(t, mem, imapserver.Options{Caps: imap.CapSet{imap.CapIMAP4rev1: {}}, TLSConfig: cfg}, ln, tln)
	return tln.Addr().String(), ln.Addr().String()
}

// TestF4CertificateMatrix dials a server presenting each certificate of the
// F4 matrix, over implicit TLS and STARTTLS. Each bad certificate is
// refused as unreachable (exit 5) with a message naming the check that
// failed, before the password is even asked for; --ca-file, --pin-sha256
// and --insecure-skip-verify each make their case pass; neither of the
// latter lowers the TLS 1.2 floor.
func TestF4CertificateMatrix(t *testing.T) {
	pki := mailtest.NewPKI(t)
	other := mailtest.NewPKI(t) // a root nobody trusts
	type opt struct {
		ca   bool     // --ca-file with pki's root
		pins []string // --pin-sha256
		skip bool     // --insecure-skip-verify
	}
	selfCert, selfPin := pki.Leaf(t, mailtest.CertSpec{SelfSigned: true})
	expCert, expPin := pki.Leaf(t, mailtest.CertSpec{NotBefore: -48 * time.Hour, NotAfter: -24 * time.Hour})
	futCert, _ := pki.Leaf(t, mailtest.CertSpec{NotBefore: 24 * time.Hour, NotAfter: 48 * time.Hour})
	sanCert, sanPin := pki.Leaf(t, mailtest.CertSpec{Hosts: []string{"mail.example.org"}})
	untrusted, _ := other.Leaf(t, mailtest.CertSpec{})
	good, _ := pki.Leaf(t, mailtest.CertSpec{})
	_, otherPin := pki.Leaf(t, mailtest.CertSpec{})
	for _, tc := range []struct {
		name       string
		cert       tls.Certificate
		minV, maxV uint16
		o          opt
		want       string // "" = the login succeeds
	}{
		{name: "SelfSigned", cert: selfCert, want: "is self-signed (its --pin-sha256 is " + selfPin + ")"},
		{name: "SelfSignedCAFileOtherRoot", cert: selfCert, o: opt{ca: true}, want: "self-signed"},
		{name: "Expired", cert: expCert, o: opt{ca: true}, want: "expired on " + time.Now().Add(-24*time.Hour).UTC().Format(time.DateOnly)},
		{name: "NotYetValid", cert: futCert, o: opt{ca: true}, want: "is not valid before"},
		{name: "SANMismatch", cert: sanCert, o: opt{ca: true}, want: "certificate is for mail.example.org, not 127.0.0.1"},
		{name: "UntrustedRoot", cert: untrusted, want: `issued by "CN=mailferry test root", which is not a trusted root`},
		{name: "UntrustedRootOtherCAFile", cert: untrusted, o: opt{ca: true}, want: "not a trusted root"},
		{name: "TLS10Only", cert: good, minV: tls.VersionTLS10, maxV: tls.VersionTLS10, o: opt{ca: true}, want: "only TLS versions older than 1.2"},
		{name: "TLS11Only", cert: good, minV: tls.VersionTLS11, maxV: tls.VersionTLS11, o: opt{ca: true}, want: "only TLS versions older than 1.2"},
		{name: "TLS11OnlySkipVerify", cert: good, minV: tls.VersionTLS10, maxV: tls.VersionTLS11, o: opt{skip: true}, want: "only TLS versions older than 1.2"},
		{name: "TLS11OnlyPinned", cert: selfCert, minV: tls.VersionTLS10, maxV: tls.VersionTLS11, o: opt{pins: []string{selfPin}}, want: "only TLS versions older than 1.2"},
		{name: "PinMismatchTrustedChain", cert: good, o: opt{ca: true, pins: []string{otherPin}}, want: "does not match --pin-sha256"},
		{name: "PinMismatchSelfSigned", cert: selfCert, o: opt{pins: []string{expPin}}, want: "does not match --pin-sha256 (its pin is " + selfPin + ")"},

		{name: "TrustedCAFile", cert: good, o: opt{ca: true}},
		{name: "TLS12Only", cert: good, minV: tls.VersionTLS12, maxV: tls.VersionTLS12, o: opt{ca: true}},
		{name: "PinnedSelfSigned", cert: selfCert, o: opt{pins: []string{selfPin}}},
		{name: "PinnedOneOfTwo", cert: selfCert, o: opt{pins: []string{otherPin, selfPin}}},
		// A pin names the key: its chain, names and dates are not checked.
		{name: "PinnedExpired", cert: expCert, o: opt{pins: []string{expPin}}},
		{name: "PinnedSANMismatch", cert: sanCert, o: opt{pins: []string{sanPin}}},
		{name: "SkipVerifySelfSigned", cert: selfCert, o: opt{skip: true}},
		{name: "SkipVerifyExpired", cert: expCert, o: opt{skip: true}},
	} {
		tlsAddr, plainAddr := startTLSMem(t, tc.cert, tc.minV, tc.maxV)
		for _, mode := range []TLSMode{TLSImplicit, TLSStartTLS} {
			addr, mname := tlsAddr, "Implicit"
			if mode == TLSStartTLS {
				addr, mname = plainAddr, "STARTTLS"
			}
			t.Run(tc.name+"/"+mname, func(t *testing.T) {
				var asked atomic.Int32
				o := &mail.OpenOptions{
					PinSHA256:          tc.o.pins,
					InsecureSkipVerify: tc.o.skip,
					Password:           func(context.Context) (string, error) { asked.Add(1); return testPass, nil },
					Timeout:            10 * time.Second,
				}
				if tc.o.ca {
					o.CAFile = pki.CAFile
				}
				c, err := Dial(context.Background(), addrConfig(t, addr, mode), o)
				if tc.want == "" {
					if err != nil {
						t.Fatalf("Dial() = %v, want a session", err)
					}
					defer c.Close()
					if _, err := c.Select("INBOX", nil).Wait(); err != nil {
						t.Fatalf("SELECT INBOX = %v", err)
					}
					return
				}
				if err == nil {
					c.Close()
					t.Fatalf("Dial() succeeded, want a refusal with %q", tc.want)
				}
				if !errors.Is(err, mail.ErrUnreachable) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Dial() = %v\nwant ErrUnreachable containing %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q spans lines", err)
				}
				if n := asked.Load(); n != 0 {
					t.Errorf("the password was asked for %d times before a refused handshake", n)
				}
			})
		}
	}
}

// TestF4BadPin: a pin that is not base64 of 32 bytes is a usage error
// before anything is dialled.
func TestF4BadPin(t *testing.T) {
	for _, pin := range []string{"", "abc", "sha256//AAAA", strings.Repeat("A", 43) + "=" + "x"} {
		o := plainOpts0()
		o.PinSHA256 = []string{pin}
		_, err := Dial(context.Background(), &Config{Host: "127.0.0.1", Port: 1, User: "a", TLS: TLSImplicit}, o)
		var ce *mail.ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "--pin-sha256") {
			t.Errorf("Dial(pin %q) = %v, want a *mail.ConfigError naming --pin-sha256", pin, err)
		}
	}
}

// TestF5PlaintextPolicy: a server without STARTTLS is refused by default;
// AllowPlaintext alone lets the session go on but, with
// RefusePlaintextAuth (the CLI's --allow-plaintext without
// --allow-plaintext-auth), no credential is sent: the dial is refused
// before LOGIN, for imapclient and for the sink's raw connection alike.
// LOGINDISABLED is honoured in clear text even when AUTH=PLAIN is offered.
func TestF5PlaintextPolicy(t *testing.T) {
	for _, tc := range []struct {
		name         string
		caps         string
		allow, clear bool   // AllowPlaintext, and not RefusePlaintextAuth
		want         string // "" = logged in
		config       bool   // a *mail.ConfigError rather than unreachable
	}{
		{name: "Default", caps: "IMAP4rev1", want: "does not offer STARTTLS"},
		{name: "AllowPlaintextOnly", caps: "IMAP4rev1", allow: true, want: "--allow-plaintext-auth"},
		{name: "AllowPlaintextAuth", caps: "IMAP4rev1", allow: true, clear: true},
		{name: "LoginDisabled", caps: "IMAP4rev1 LOGINDISABLED", allow: true, clear: true, want: "disables login without TLS", config: true},
		{name: "LoginDisabledAuthPlain", caps: "IMAP4rev1 AUTH=PLAIN LOGINDISABLED", allow: true, clear: true, want: "disables login without TLS", config: true},
	} {
		for _, raw := range []bool{false, true} {
			name := tc.name
			if raw {
				name += "/Raw"
			}
			t.Run(name, func(t *testing.T) {
				f := startFake(t, &fakeServer{caps: tc.caps})
				var asked atomic.Int32
				o := plainOpts()
				o.AllowPlaintext, o.RefusePlaintextAuth = tc.allow, !tc.clear
				o.Password = func(context.Context) (string, error) { asked.Add(1); return testPass, nil }
				var err error
				if raw {
					var rc *RawConn
					if rc, err = DialRaw(context.Background(), addrConfig(t, f.addr, TLSStartTLS), o); err == nil {
						rc.Close()
					}
				} else {
					var c interface{ Close() error }
					if c, err = Dial(context.Background(), addrConfig(t, f.addr, TLSStartTLS), o); err == nil {
						c.Close()
					}
				}
				logins := 0
				for _, l := range f.sent() {
					if u := strings.ToUpper(l); strings.Contains(u, " LOGIN") || strings.Contains(u, "AUTHENTICATE") || strings.Contains(l, testPass) {
						logins++
					}
				}
				if tc.want == "" {
					if err != nil || logins != 1 {
						t.Fatalf("dial = %v with %d logins, want a session after one login", err, logins)
					}
					return
				}
				var ce *mail.ConfigError
				if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.config && !errors.As(err, &ce)) || (!tc.config && !errors.Is(err, mail.ErrUnreachable)) {
					t.Fatalf("dial = %v, want a refusal with %q (config error: %v)", err, tc.want, tc.config)
				}
				if logins != 0 || asked.Load() != 0 {
					t.Errorf("credentials went out: %d login commands, password asked %d times: %q", logins, asked.Load(), f.sent())
				}
			})
		}
	}
}
