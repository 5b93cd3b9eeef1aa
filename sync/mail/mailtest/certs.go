package mailtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// rootName is the subject common name of every PKI's root; TLS errors
// quote it, and tests look for it.
const rootName = "mailferry test root"

// PKI is a test root CA that issues server certificates. Its certificate is
// in the PEM file CAFile, for mail.OpenOptions.CAFile and --ca-file.
type PKI struct {
	CAFile string            // the root certificate, PEM
	Root   *x509.Certificate // the root certificate, parsed

	key *ecdsa.PrivateKey
}

// CertSpec describes a server certificate for PKI.Leaf. The zero value is
// a certificate for localhost and 127.0.0.1, signed by the PKI's root and
// valid from an hour ago to a day from now.
type CertSpec struct {
	SelfSigned bool          // the leaf signs itself instead of the root
	Hosts      []string      // DNS names and IP addresses; nil: localhost, 127.0.0.1
	NotBefore  time.Duration // from now; 0: -1h
	NotAfter   time.Duration // from now; 0: +24h
}

// serial numbers certificates uniquely within a test binary.
var serial atomic.Int64

// NewPKI makes a root CA valid from two days ago to two days from now and
// writes it to a PEM file in t.TempDir().
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p, rootDER, err := newPKI()
	if err != nil {
		t.Fatalf("mailtest: pki: %v", err)
	}
	p.CAFile = writePEM(t, "root.pem", rootDER)
	return p
}

func newPKI() (*PKI, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: rootName},
		NotBefore:             time.Now().Add(-48 * time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return &PKI{Root: root, key: key}, der, nil
}

// Leaf issues a server certificate per s and returns it, with Leaf set,
// and its SPKI pin (mail.SPKIPin), the value of --pin-sha256.
func (p *PKI) Leaf(t testing.TB, s CertSpec) (tls.Certificate, string) {
	t.Helper()
	cert, err := p.leaf(s)
	if err != nil {
		t.Fatalf("mailtest: leaf certificate: %v", err)
	}
	return cert, mail.SPKIPin(cert.Leaf)
}

func (p *PKI) leaf(s CertSpec) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	nb, na := s.NotBefore, s.NotAfter
	if nb == 0 {
		nb = -time.Hour
	}
	if na == 0 {
		na = 24 * time.Hour
	}
	hosts := s.Hosts
	if hosts == nil {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: "mailferry test server"},
		NotBefore:    time.Now().Add(nb),
		NotAfter:     time.Now().Add(na),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	parent, signer := p.Root, p.key
	if s.SelfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return tls.Certificate{}, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, nil
}

// local is the certificate LocalCert serves, made once per test binary:
// key generation is cheap, but every fake server of every test needs one.
var local struct {
	once    sync.Once
	cert    tls.Certificate
	rootDER []byte
	err     error
}

// LocalCert returns a server configuration presenting a certificate for
// localhost and 127.0.0.1 and a PEM file (in t.TempDir()) of the root that
// signed it, for mail.OpenOptions.CAFile. Every call in a test binary
// serves the same certificate, so any of its CA files trusts any of its
// servers. The configuration is new on each call: callers may change it.
func LocalCert(t testing.TB) (*tls.Config, string) {
	t.Helper()
	local.once.Do(func() {
		var p *PKI
		if p, local.rootDER, local.err = newPKI(); local.err == nil {
			local.cert, local.err = p.leaf(CertSpec{})
		}
	})
	if local.err != nil {
		t.Fatalf("mailtest: local certificate: %v", local.err)
	}
	return &tls.Config{Certificates: []tls.Certificate{local.cert}}, writePEM(t, "ca.pem", local.rootDER)
}

// writePEM writes der as a PEM certificate to a new file in t.TempDir().
func writePEM(t testing.TB, name string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatalf("mailtest: %v", err)
	}
	return path
}
