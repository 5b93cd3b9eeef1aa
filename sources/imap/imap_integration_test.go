package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// dovecotSource opens the source on Dovecot's implicit-TLS or STARTTLS port
// as host "localhost", the name in its certificate.
func dovecotSource(t testing.TB, d *mailtest.Dovecot, user, pw string, startTLS bool, conns int) *Source {
	t.Helper()
	addr, mode := d.IMAPS, TLSImplicit
	if startTLS {
		addr, mode = d.IMAPStartTLS, TLSStartTLS
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	cfg := &Config{Host: "localhost", Port: p, User: user, TLS: mode}
	s, err := New(context.Background(), cfg, &mail.OpenOptions{
		CAFile:   d.CAFile,
		Password: func(context.Context) (string, error) { return pw, nil },
		Conns:    conns,
	})
	if err != nil {
		t.Fatalf("New(%s) = %v", cfg, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestDovecotListAndOpen seeds INBOX with the corpus and a nested non-ASCII
// mailbox, then checks that the source lists and serves exactly what
// Dovecot holds: bytes, flags, dates, IDs, sizes and Message-IDs.
func TestDovecotListAndOpen(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	var inbox []mailtest.SeedMessage
	for _, f := range mailtest.Corpus(t) {
		var flags []imap.Flag
		for _, fl := range f.Flags {
			flags = append(flags, imap.Flag(fl))
		}
		inbox = append(inbox, mailtest.SeedMessage{Body: f.Body, Flags: flags, Date: f.Date})
	}
	d.Seed(t, user, pw, "INBOX", inbox)
	d.Seed(t, user, pw, "Archiv/Übersicht", []mailtest.SeedMessage{
		{Body: []byte("Message-ID: <ue1@example.org>\r\nSubject: =?utf-8?q?=C3=9C?=\r\n\r\nÜbersicht eins\r\n"),
			Flags: []imap.Flag{imap.FlagSeen, "$Forwarded"}, Date: time.Date(2019, 12, 31, 23, 59, 58, 0, time.FixedZone("", -5*3600))},
		{Body: []byte("Subject: zwei\r\n\r\nÜbersicht zwei\r\n"), Flags: []imap.Flag{imap.FlagFlagged, imap.FlagAnswered},
			Date: time.Date(2020, 1, 1, 0, 0, 1, 0, time.UTC)},
	})
	want := d.Fetch(t, user, pw)

	for _, startTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("startTLS=%v", startTLS), func(t *testing.T) {
			s := dovecotSource(t, d, user, pw, startTLS, 0)
			ctx := context.Background()
			boxes, err := s.Mailboxes(ctx)
			if err != nil {
				t.Fatalf("Mailboxes() = %v", err)
			}
			var wantBoxes []string
			for b := range want {
				wantBoxes = append(wantBoxes, b)
			}
			sort.Strings(wantBoxes)
			if strings.Join(boxes, "|") != strings.Join(wantBoxes, "|") {
				t.Fatalf("Mailboxes() = %q, want %q", boxes, wantBoxes)
			}
			t.Logf("mailboxes: %q", boxes)
			for _, box := range boxes {
				envs := listBox(t, s, box)
				ref := want[box]
				if len(envs) != len(ref) {
					t.Fatalf("List(%q) gave %d messages, want %d", box, len(envs), len(ref))
				}
				for i, e := range envs {
					r := ref[i]
					if _, uid, _ := parseID(e.ID); uid != r.UID {
						t.Errorf("%s %d: ID %s, want UID %d", box, i, e.ID, r.UID)
					}
					if body := readAll(t, s, e); body != string(r.Body) {
						t.Errorf("%s/%s: body differs (%d bytes, want %d)", box, e.ID, len(body), len(r.Body))
					}
					if e.Size != int64(len(r.Body)) {
						t.Errorf("%s/%s: Size %d, want %d", box, e.ID, e.Size, len(r.Body))
					}
					if !e.Date.Equal(r.Date) {
						t.Errorf("%s/%s: Date %v, want %v", box, e.ID, e.Date, r.Date)
					}
					if got, w := flagString(e.Flags), flagString(toFlags(r.Flags)); got != w {
						t.Errorf("%s/%s: Flags %s, want %s", box, e.ID, got, w)
					}
					if w := messageID(strings.NewReader(headerOf(string(r.Body)))); e.MessageID != w {
						t.Errorf("%s/%s: MessageID %q, want %q", box, e.ID, e.MessageID, w)
					}
				}
				n, size, err := s.Stat(ctx, box)
				var wantSize int64
				for _, r := range ref {
					wantSize += int64(len(r.Body))
				}
				if err != nil || n != len(ref) || size != wantSize {
					t.Errorf("Stat(%q) = %d, %d, %v, want %d, %d", box, n, size, err, len(ref), wantSize)
				}
			}

			// A partial read, then Close, leaves Open working.
			envs := listBox(t, s, "INBOX")
			rc, err := s.Open(ctx, envs[0])
			if err != nil {
				t.Fatal(err)
			}
			io.CopyN(io.Discard, rc, 5)
			rc.Close()
			readAll(t, s, envs[1])
			if _, err := s.Open(ctx, mail.Envelope{Mailbox: "INBOX", ID: mail.ID(fmt.Sprintf("%s.999999", strings.Split(string(envs[0].ID), ".")[0]))}); !errors.Is(err, mail.ErrNotFound) {
				t.Errorf("Open(unknown UID) = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestDovecotWrongPassword(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, _ := d.NewUser(t)
	_, port, _ := net.SplitHostPort(d.IMAPS)
	p, _ := strconv.Atoi(port)
	_, err := imapconn.Dial(context.Background(), &Config{Host: "localhost", Port: p, User: user, TLS: TLSImplicit}, &mail.OpenOptions{
		CAFile:   d.CAFile,
		Password: func(context.Context) (string, error) { return "wrong-password", nil },
	})
	if !errors.Is(err, mail.ErrAuth) || strings.Contains(err.Error(), "wrong-password") {
		t.Fatalf("Dial(wrong password) = %v, want ErrAuth without the password", err)
	}
}

func headerOf(body string) string {
	if i := strings.Index(body, "\r\n\r\n"); i >= 0 {
		return body[:i+4]
	}
	return body
}

func flagString(fs []mail.Flag) string {
	var s []string
	for _, f := range fs {
		s = append(s, strings.ToLower(string(f)))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// BenchmarkDovecotFetch measures listing and fetching 500 messages of
// 20 KiB and one of 30 MiB through the pool, and reports throughput and the
// Go heap in use at the end (bodies stream: it must stay small).
func BenchmarkDovecotFetch(b *testing.B) {
	d := mailtest.NeedDovecot(b)
	user, pw := d.NewUser(b)
	{ // in a block: the bodies can be collected before the timed loop
		var msgs []mailtest.SeedMessage
		for i := 0; i < 500; i++ {
			msgs = append(msgs, mailtest.SeedMessage{Body: []byte(fmt.Sprintf("Message-ID: <%d@bench>\r\nSubject: %d\r\n\r\n%s\r\n", i, i, strings.Repeat("0123456789abcdef0123456789abcde\r\n", 640)))})
		}
		msgs = append(msgs, mailtest.SeedMessage{Body: mailtest.Big(30 << 20)})
		d.Seed(b, user, pw, "INBOX", msgs)
	}
	s := dovecotSource(b, d, user, pw, false, 4)
	ctx := context.Background()
	b.ResetTimer()
	var total int64
	for i := 0; i < b.N; i++ {
		runtime.GC()
		peak := make(chan uint64)
		stop := make(chan struct{})
		go func() { // samples the heap; ReadMemStats is too slow for a hot loop
			var highest uint64
			var ms runtime.MemStats
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > highest {
					highest = ms.HeapAlloc
				}
				select {
				case <-stop:
					peak <- highest
					return
				case <-tick.C:
				}
			}
		}()
		start := time.Now()
		envs := listBox(b, s, "INBOX")
		listed := time.Since(start)
		jobs := make(chan mail.Envelope)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var n int64
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for e := range jobs {
					rc, err := s.Open(ctx, e)
					if err != nil {
						b.Error(err)
						continue
					}
					k, err := io.Copy(io.Discard, rc)
					rc.Close()
					if err != nil {
						b.Error(err)
					}
					mu.Lock()
					n += k
					mu.Unlock()
				}
			}()
		}
		for _, e := range envs {
			jobs <- e
		}
		close(jobs)
		wg.Wait()
		total += n
		el := time.Since(start)
		close(stop)
		b.Logf("listed %d in %v; fetched %.1f MiB in %v (%.1f MiB/s); peak heap %.1f MiB",
			len(envs), listed, float64(n)/(1<<20), el, float64(n)/(1<<20)/el.Seconds(), float64(<-peak)/(1<<20))
	}
	b.SetBytes(total / int64(b.N))
}
