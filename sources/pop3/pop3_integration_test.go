package pop3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"

	gopop3 "github.com/knadh/go-pop3"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// dovecotSource opens a Source on the Dovecot address addr ("host:port").
func dovecotSource(t *testing.T, d *mailtest.Dovecot, addr string, mode TLSMode, user, pw string, noPipe bool) *Source {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	cfg := &Config{Host: host, Port: p, User: user, TLS: mode, NoPipelining: noPipe}
	s, err := New(context.Background(), cfg, &mail.OpenOptions{
		CAFile:   d.CAFile,
		Password: func(context.Context) (string, error) { return pw, nil },
	})
	if err != nil {
		t.Fatalf("New(%s) = %v", cfg, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestDovecotReadAndDelete seeds a fresh user over IMAP with the corpus and a
// 12 MB message, reads the maildrop over POP3 (implicit TLS and STLS,
// pipelined and one at a time) and compares with CRLF normalisation; then
// delete mode empties the maildrop at QUIT.
func TestDovecotReadAndDelete(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	fixtures := mailtest.Corpus(t)
	fixtures = append(fixtures, mailtest.Fixture{Name: "big", Mailbox: "INBOX", Body: mailtest.Big(12 << 20)})
	var seed []mailtest.SeedMessage
	want := map[[32]byte]int{}
	for _, f := range fixtures {
		seed = append(seed, mailtest.SeedMessage{Body: f.Body})
		want[sha256.Sum256(mailtest.CRLF(f.Body))]++
	}
	d.Seed(t, user, pw, "INBOX", seed)

	var first []mail.Envelope
	for _, v := range []struct {
		name   string
		addr   string
		mode   TLSMode
		noPipe bool
	}{
		{"pop3s", d.POP3S, TLSImplicit, false},
		{"pop3sOneAtATime", d.POP3S, TLSImplicit, true},
		{"stls", d.POP3STLS, TLSSTLS, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			s := dovecotSource(t, d, v.addr, v.mode, user, pw, v.noPipe)
			envs := listIDs(t, s)
			if len(envs) != len(fixtures) {
				t.Fatalf("List gave %d messages, want %d", len(envs), len(fixtures))
			}
			if first == nil {
				first = envs
			} else {
				for i := range envs {
					if envs[i].ID != first[i].ID {
						t.Fatalf("UIDL of message %d changed between sessions: %s then %s", i+1, first[i].ID, envs[i].ID)
					}
				}
			}
			n, size, err := s.Stat(context.Background(), "INBOX")
			if err != nil || n != len(fixtures) {
				t.Fatalf("Stat() = %d, %d, %v", n, size, err)
			}
			got := map[[32]byte]int{}
			for _, e := range envs {
				body := read(t, s, e)
				// Dovecot adds a CRLF to a message without a final newline
				// in RETR but not in LIST: Size is a hint.
				if n := int64(len(body)); e.Size < n-2 || e.Size > n {
					t.Errorf("%s: LIST size %d, RETR gave %d bytes", e.ID, e.Size, len(body))
				}
				got[sha256.Sum256(mailtest.CRLF(body))]++
			}
			for h, c := range want {
				if got[h] != c {
					t.Errorf("a fixture came back %d times, want %d", got[h], c)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
		})
	}

	t.Run("DeleteMode", func(t *testing.T) {
		s := dovecotSource(t, d, d.POP3S, TLSImplicit, user, pw, false)
		envs := listIDs(t, s)
		for _, e := range envs {
			rc, err := s.Open(context.Background(), e)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, rc)
			rc.Close()
		}
		if err := s.Remove(context.Background(), envs); err != nil {
			t.Fatalf("Remove = %v", err)
		}
		// Not yet committed: a second session would still see them, but
		// the maildrop is locked; check after QUIT instead.
		if err := s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		s2 := dovecotSource(t, d, d.POP3S, TLSImplicit, user, pw, false)
		if left := listIDs(t, s2); len(left) != 0 {
			t.Fatalf("after delete mode the maildrop holds %d messages", len(left))
		}
		s2.Close()
		if inbox := d.Fetch(t, user, pw)["INBOX"]; len(inbox) != 0 {
			t.Fatalf("IMAP sees %d messages in INBOX after delete mode", len(inbox))
		}
	})
}

// TestDovecotRemoveWithoutQuitKeepsMail: DELE in a session that ends without
// QUIT deletes nothing (RFC 1939 §6).
func TestDovecotRemoveWithoutQuitKeepsMail(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{{Body: []byte("Subject: a\r\n\r\na\r\n")}, {Body: []byte("Subject: b\r\n\r\nb\r\n")}})
	s := dovecotSource(t, d, d.POP3S, TLSImplicit, user, pw, false)
	envs := listIDs(t, s)
	if err := s.Remove(context.Background(), envs); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.ss.kill(io.ErrUnexpectedEOF) // the connection drops before QUIT
	s.mu.Unlock()
	var de *DeleteError
	if err := s.Close(); err == nil || !errors.As(err, &de) || de.Pending != 2 {
		t.Fatalf("Close() = %v, want a *DeleteError for 2", err)
	}
	s2 := dovecotSource(t, d, d.POP3S, TLSImplicit, user, pw, false)
	left := listIDs(t, s2)
	if len(left) != 2 {
		t.Fatalf("maildrop holds %d messages after a session without QUIT, want 2", len(left))
	}
	if b := read(t, s2, left[0]); !bytes.Contains(b, []byte("Subject: a")) {
		t.Fatalf("first message %q", b)
	}
}

// BenchmarkDovecotRetr reads a maildrop of 1,500 messages (about 50 MB) from
// Dovecot over TLS: pipelined and one at a time through the Source, and with
// go-pop3's RetrRaw for comparison (docs/performance.md). Run with
// go test -run X -bench DovecotRetr -benchtime 3x.
func BenchmarkDovecotRetr(b *testing.B) {
	d := mailtest.NeedDovecot(b)
	user, pw := d.NewUser(b)
	var seed []mailtest.SeedMessage
	total := 0
	for i := 0; i < 1500; i++ {
		body := mailtest.Big(1<<10 + (i*7919)%(64<<10))
		total += len(body)
		seed = append(seed, mailtest.SeedMessage{Body: body})
	}
	d.Seed(b, user, pw, "INBOX", seed)
	host, port, _ := net.SplitHostPort(d.POP3S)
	p, _ := strconv.Atoi(port)
	for _, v := range []struct {
		name   string
		noPipe bool
	}{{"Pipelined", false}, {"OneAtATime", true}} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(total))
			for range b.N {
				cfg := &Config{Host: host, Port: p, User: user, TLS: TLSImplicit, NoPipelining: v.noPipe}
				s, err := New(context.Background(), cfg, &mail.OpenOptions{CAFile: d.CAFile, Password: func(context.Context) (string, error) { return pw, nil }})
				if err != nil {
					b.Fatal(err)
				}
				err = s.List(context.Background(), "INBOX", func(e mail.Envelope) error {
					rc, err := s.Open(context.Background(), e)
					if err != nil {
						return err
					}
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
	b.Run("GoPOP3RetrRaw", func(b *testing.B) {
		b.SetBytes(int64(total))
		for range b.N {
			c, err := gopop3.New(gopop3.Opt{Host: host, Port: p, TLSEnabled: true, TLSSkipVerify: true}).NewConn()
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Auth(user, pw); err != nil {
				b.Fatal(err)
			}
			list, err := c.List(0)
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range list {
				if _, err := c.RetrRaw(m.ID); err != nil {
					b.Fatal(err)
				}
			}
			c.Quit()
		}
	})
}
