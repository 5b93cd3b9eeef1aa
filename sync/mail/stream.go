package mail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Digest is what HashReader learned about a stream.
type Digest struct {
	Bytes  int64
	SHA256 [32]byte
}

// Hex returns the SHA-256 in hex.
func (d Digest) Hex() string { return fmt.Sprintf("%x", d.SHA256) }

// HashReader counts and hashes the bytes read through it.
type HashReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

// NewHashReader wraps r.
func NewHashReader(r io.Reader) *HashReader { return &HashReader{r: r, h: sha256.New()} }

func (h *HashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// Digest returns the count and hash of what was read so far.
func (h *HashReader) Digest() Digest {
	var d Digest
	d.Bytes = h.n
	copy(d.SHA256[:], h.h.Sum(nil))
	return d
}

// ContextReader fails reads with ctx's error once ctx is done, so a Put
// copying from a slow source notices cancellation between reads.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return &ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// CopyBody copies r to w through a pooled buffer, failing with ctx's error
// once ctx is done. It fills the buffer before each write: network sources
// hand out a few KiB per Read (imapclient's literal reader), and one write
// per 64 KiB instead of one per Read cut the write syscalls of an IMAP copy
// into a Maildir by about 8x.
func CopyBody(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	r = ContextReader(ctx, r)
	var total int64
	for {
		n := 0
		var rerr error
		for n < len(buf) && rerr == nil {
			var k int
			k, rerr = r.Read(buf[n:])
			n += k
		}
		if n > 0 {
			k, werr := w.Write(buf[:n])
			total += int64(k)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// Spool copies r into an unlinked temporary file in dir ("" for the system
// default) and returns it positioned at the start, with its exact size. Sinks
// that must announce a length before sending (IMAP APPEND) use it when the
// body's size is unknown; memory stays flat. The caller closes the file.
func Spool(ctx context.Context, dir string, r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, "mailferry-spool-*")
	if err != nil {
		return nil, 0, err
	}
	_ = os.Remove(f.Name()) // unlinked: nothing is left behind even on kill -9
	n, err := CopyBody(ctx, f, r)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// TLSConfig returns the client TLS configuration for host under o's
// settings (o may be nil): TLS 1.2 or later, and the server's certificate
// verified against the system roots plus the PEM certificates in o.CAFile.
//
// o.PinSHA256 replaces that verification by key pinning: the leaf
// certificate's SubjectPublicKeyInfo must hash (SHA-256, standard base64,
// as `openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl
// dgst -sha256 -binary | base64` prints) to one of the pins, and then chain,
// names and dates are not checked: the pin names the one key the user
// trusts, which is stronger than all three (a self-signed certificate on a
// home server is the usual case). A key that matches no pin is refused even
// when its chain is valid. o.InsecureSkipVerify accepts any certificate;
// the caller warns about it. Neither lowers the protocol floor or allows
// clear text.
//
// Verification runs in VerifyConnection rather than inside crypto/tls so a
// refusal says which check failed (self-signed, untrusted root, expired,
// not yet valid, other host name) and what the certificate's pin is; the
// x509 error stays wrapped for errors.As.
func TLSConfig(host string, o *OpenOptions) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if o == nil {
		o = &OpenOptions{}
	}
	var pins map[string]bool
	for _, p := range o.PinSHA256 {
		b, err := base64.StdEncoding.DecodeString(p)
		if err != nil || len(b) != sha256.Size {
			return nil, &ConfigError{Msg: fmt.Sprintf("--pin-sha256 %q: want the base64 of a SHA-256 hash (44 characters)", p)}
		}
		if pins == nil {
			pins = map[string]bool{}
		}
		pins[base64.StdEncoding.EncodeToString(b)] = true
	}
	roots, err := caRoots(o.CAFile)
	if err != nil {
		return nil, err
	}
	// Our own VerifyConnection below does the checking: crypto/tls's
	// built-in one is off only so that it does.
	cfg.InsecureSkipVerify = true
	if o.InsecureSkipVerify && pins == nil {
		return cfg, nil
	}
	now := time.Now
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server sent no certificate")
		}
		leaf := cs.PeerCertificates[0]
		if pins != nil {
			if pin := SPKIPin(leaf); !pins[pin] {
				return fmt.Errorf("certificate key of %s does not match --pin-sha256 (its pin is %s)", host, pin)
			}
			return nil
		}
		opts := x509.VerifyOptions{DNSName: host, Intermediates: x509.NewCertPool(), CurrentTime: now()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if roots != nil {
			// The --ca-file roots alone first: a chain they accept is one
			// the system roots plus them accept too, and loading the system
			// pool (x509.SystemCertPool parses every certificate of
			// /etc/ssl/certs, about 12 ms) is most of what a no-op rerun
			// against a server with its own CA would cost in TLS.
			opts.Roots = roots.file
			if _, err := leaf.Verify(opts); err == nil {
				return nil
			}
			opts.Roots = roots.all()
		}
		if _, err := leaf.Verify(opts); err != nil {
			return certError(host, leaf, opts.CurrentTime, err)
		}
		return nil
	}
	return cfg, nil
}

// caPools are the roots a --ca-file adds to the system's: the file's alone,
// and (loaded on first need) the system pool plus them.
type caPools struct {
	file *x509.CertPool
	all  func() *x509.CertPool
}

// caRoots reads the PEM certificates of the --ca-file path (nil, nil for
// none: the system pool alone).
func caRoots(path string) (*caPools, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{Msg: "read --ca-file: " + err.Error()}
	}
	p := &caPools{file: x509.NewCertPool()}
	if !p.file.AppendCertsFromPEM(pem) {
		return nil, &ConfigError{Msg: fmt.Sprintf("--ca-file %s holds no PEM certificate", path)}
	}
	p.all = sync.OnceValue(func() *x509.CertPool {
		all, err := x509.SystemCertPool()
		if err != nil || all == nil {
			all = x509.NewCertPool()
		}
		all.AppendCertsFromPEM(pem)
		return all
	})
	return p, nil
}

// SPKIPin returns the pin of cert for --pin-sha256: the standard base64 of
// the SHA-256 of its DER SubjectPublicKeyInfo (the form curl's
// --pinnedpubkey and HPKP use).
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// certError says which check refused leaf, wrapping the x509 error.
func certError(host string, leaf *x509.Certificate, now time.Time, err error) error {
	pin := " (its --pin-sha256 is " + SPKIPin(leaf) + ")"
	var ce x509.CertificateInvalidError
	var he x509.HostnameError
	var ue x509.UnknownAuthorityError
	switch {
	case errors.As(err, &ce) && ce.Reason == x509.Expired && now.After(leaf.NotAfter):
		return fmt.Errorf("certificate of %s expired on %s: %w", host, leaf.NotAfter.UTC().Format(time.DateOnly), err)
	case errors.As(err, &ce) && ce.Reason == x509.Expired && now.Before(leaf.NotBefore):
		return fmt.Errorf("certificate of %s is not valid before %s (check the clock): %w", host, leaf.NotBefore.UTC().Format(time.RFC3339), err)
	case errors.As(err, &he):
		return fmt.Errorf("certificate is for %s, not %s: %w", certNames(leaf), host, err)
	case errors.As(err, &ue) && bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil:
		return fmt.Errorf("certificate of %s is self-signed%s: %w", host, pin, err)
	case errors.As(err, &ue):
		return fmt.Errorf("certificate of %s is issued by %q, which is not a trusted root%s: %w", host, leaf.Issuer.String(), pin, err)
	}
	return fmt.Errorf("certificate of %s%s: %w", host, pin, err)
}

func certNames(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		names = append(names, "CN="+c.Subject.CommonName)
	}
	if len(names) > 4 {
		names = append(names[:4], "...")
	}
	return strings.Join(names, ", ")
}

// TLSHandshakeError rewrites a failed handshake's error where crypto/tls's
// wording hides the cause: a server offering only TLS 1.0 or 1.1, which
// are refused (RFC 8996). Other errors are returned as they are.
func TLSHandshakeError(err error) error {
	var ae tls.AlertError
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if (errors.As(err, &ae) && ae == 70) || strings.Contains(msg, "protocol version not supported") || strings.Contains(msg, "unsupported protocol version") {
		return fmt.Errorf("server offers only TLS versions older than 1.2, which are refused (RFC 8996): %w", err)
	}
	return err
}
