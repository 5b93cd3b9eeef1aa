package mail

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"hash"
	"io"
	"os"
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

// Spool copies r into an unlinked temporary file in dir ("" for the system
// default) and returns it positioned at the start, with its exact size. Sinks
// that must announce a length before sending (IMAP APPEND) use it when the
// body's size is unknown; memory stays flat. The caller closes the file.
func Spool(ctx context.Context, dir string, r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, "mailferry-spool-*")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name()) // unlinked: nothing is left behind even on kill -9
	n, err := io.Copy(f, ContextReader(ctx, r))
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// TLSConfig returns a client TLS configuration that verifies the server's
// certificate for host against the system roots plus the PEM certificates in
// caFile (if any). Verification is never switched off.
func TLSConfig(host, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, &ConfigError{Msg: "read --ca-file: " + err.Error()}
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &ConfigError{Msg: fmt.Sprintf("--ca-file %s holds no PEM certificate", caFile)}
	}
	cfg.RootCAs = pool
	return cfg, nil
}
