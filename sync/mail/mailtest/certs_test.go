package mailtest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// roots reads a CA file into a pool, as mail.OpenOptions.CAFile does.
func roots(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", caFile)
	}
	return pool
}

// TestPKILeaf verifies each kind of leaf against the PKI's CA file for a
// host name: the defaults pass for localhost and 127.0.0.1, and each
// deviation fails the check it is made for.
func TestPKILeaf(t *testing.T) {
	pki, other := NewPKI(t), NewPKI(t)
	for _, tc := range []struct {
		name  string
		pki   *PKI
		spec  CertSpec
		host  string
		want  string // "" = verifies
		chain bool   // a root-signed leaf: two certificates in the chain
	}{
		{name: "DefaultLocalhost", pki: pki, host: "localhost", chain: true},
		{name: "DefaultIP", pki: pki, host: "127.0.0.1", chain: true},
		{name: "DefaultOtherHost", pki: pki, host: "mail.example.org", want: "not mail.example.org"},
		{name: "Hosts", pki: pki, spec: CertSpec{Hosts: []string{"mail.example.org"}}, host: "mail.example.org", chain: true},
		{name: "HostsNoIP", pki: pki, spec: CertSpec{Hosts: []string{"mail.example.org"}}, host: "127.0.0.1", want: "doesn't contain any IP SANs"},
		{name: "Expired", pki: pki, spec: CertSpec{NotBefore: -2 * time.Hour, NotAfter: -time.Hour}, host: "localhost", want: "expired"},
		{name: "NotYetValid", pki: pki, spec: CertSpec{NotBefore: time.Hour, NotAfter: 2 * time.Hour}, host: "localhost", want: "not yet valid"},
		{name: "SelfSigned", pki: pki, spec: CertSpec{SelfSigned: true}, host: "localhost", want: "unknown authority"},
		{name: "OtherRoot", pki: other, host: "localhost", want: "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, pin := tc.pki.Leaf(t, tc.spec)
			if cert.Leaf == nil || !bytes.Equal(cert.Leaf.Raw, cert.Certificate[0]) {
				t.Fatal("Leaf is not the parsed certificate")
			}
			if want := mail.SPKIPin(cert.Leaf); pin != want {
				t.Errorf("pin %q, want %q", pin, want)
			}
			chains, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: roots(t, pki.CAFile), DNSName: tc.host})
			if tc.want == "" {
				if err != nil || len(chains) != 1 || len(chains[0]) != 2 || !chains[0][1].Equal(pki.Root) {
					t.Fatalf("Verify(%s) = %d chains, %v; want one chain to the root", tc.host, len(chains), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify(%s) = %v, want an error containing %q", tc.host, err, tc.want)
			}
		})
	}
	// Pins name keys: two leaves of one spec differ.
	_, a := pki.Leaf(t, CertSpec{})
	_, b := pki.Leaf(t, CertSpec{})
	if a == b {
		t.Errorf("two leaves share the pin %q", a)
	}
}

// TestLocalCert: a client trusting the CA file completes a handshake with
// a server using the configuration, by name and by address, and every
// call serves the same certificate with a fresh configuration.
func TestLocalCert(t *testing.T) {
	cfg, ca := LocalCert(t)
	cfg2, ca2 := LocalCert(t)
	if cfg == cfg2 || ca == ca2 {
		t.Errorf("LocalCert shares its configuration or CA file between calls")
	}
	if !bytes.Equal(cfg.Certificates[0].Certificate[0], cfg2.Certificates[0].Certificate[0]) {
		t.Errorf("LocalCert made two certificates in one binary")
	}
	ln := tls.NewListener(Listen(t), cfg)
	Serve(t, ln, func(c net.Conn) { io.WriteString(c, "hello") })
	for _, name := range []string{"localhost", "127.0.0.1"} {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots(t, ca2), ServerName: name})
		if err != nil {
			t.Fatalf("handshake as %s: %v", name, err)
		}
		b, err := io.ReadAll(c)
		c.Close()
		if string(b) != "hello" || err != nil {
			t.Errorf("read %q, %v; want hello", b, err)
		}
	}
}
