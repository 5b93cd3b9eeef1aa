package imapsink

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sources/imap"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// dovecotAccount returns the Config and options for a fresh Dovecot user.
func dovecotAccount(t testing.TB, d *mailtest.Dovecot) (*Config, *mail.OpenOptions) {
	t.Helper()
	user, pw := d.NewUser(t)
	host, port, err := net.SplitHostPort(d.IMAPS)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	cfg := &Config{Config: imapconn.Config{Host: host, Port: p, User: user, TLS: imapconn.TLSImplicit}, MultiAppend: true}
	return cfg, &mail.OpenOptions{
		CAFile:   d.CAFile,
		Password: func(context.Context) (string, error) { return pw, nil },
		Timeout:  30 * time.Second,
	}
}

// TestConformance runs the sink suite against Dovecot (MULTIAPPEND path)
// and reads back through the IMAP source. Dovecot serves bare LF as CRLF
// and NUL as 0x80 over IMAP: dovecotNormalize does the same to both sides.
func TestConformance(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	for _, multi := range []bool{true, false} {
		name := "MultiAppend"
		if !multi {
			name = "PlainAppend"
		}
		t.Run(name, func(t *testing.T) {
			accounts := map[mail.Sink]*Config{}
			options := map[mail.Sink]*mail.OpenOptions{}
			mailtest.TestSink(t, mailtest.SinkHarness{
				New: func(t testing.TB) mail.Sink {
					cfg, o := dovecotAccount(t, d)
					cfg.MultiAppend = multi
					s, err := New(context.Background(), cfg, o)
					if err != nil {
						t.Fatalf("New() = %v", err)
					}
					t.Cleanup(func() { s.Close() })
					accounts[s], options[s] = cfg, o
					return s
				},
				Reopen: func(t testing.TB, s mail.Sink) mail.Source {
					src, err := imap.New(context.Background(), &accounts[s].Config, options[s])
					if err != nil {
						t.Fatalf("imap.New() = %v", err)
					}
					t.Cleanup(func() { src.Close() })
					return src
				},
				Caps: mailtest.Caps{Flags: true, Date: true, Mailboxes: true, Normalize: dovecotNormalize},
			})
		})
	}
}

// dovecotNormalize is what Dovecot does to a message appended and fetched
// over IMAP: bare LF becomes CRLF, NUL becomes 0x80.
func dovecotNormalize(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	return bytes.ReplaceAll(b, []byte{0}, []byte{0x80})
}

// TestConformanceMemServer runs the suite against go-imap's in-memory
// server (plain APPEND path, UIDPLUS), so it runs without Dovecot too.
// That server stores bodies with CRLF line endings and re-serialises a
// header without its blank separator line: memNormalize does the same.
func TestConformanceMemServer(t *testing.T) {
	servers := map[mail.Sink]*memServer{}
	mailtest.TestSink(t, mailtest.SinkHarness{
		New: func(t testing.TB) mail.Sink {
			m := startMem(t)
			s := m.sink(t)
			servers[s] = m
			return s
		},
		Reopen: func(t testing.TB, s mail.Sink) mail.Source { return servers[s].source(t) },
		Caps:   mailtest.Caps{Flags: true, Date: true, Mailboxes: true, Normalize: memNormalize},
	})
}

func memNormalize(b []byte) []byte {
	b = mailtest.CRLF(b)
	if !bytes.Contains(b, []byte("\r\n\r\n")) && len(b) > 0 {
		b = append(b, '\r', '\n')
	}
	return b
}
