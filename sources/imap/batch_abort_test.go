package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestOpenBatchStopsEarly: when fn fails a message (a sink error, say) the
// batch ends early, and neither OpenBatch, the next Open, nor Close may
// hang on imapclient's reader, which is still delivering the rest of the
// FETCH when the connection is discarded.
func TestOpenBatchStopsEarly(t *testing.T) {
	for _, tc := range []struct {
		name string
		read bool // fn reads the body to the end before failing
	}{{"AfterBody", true}, {"BeforeBody", false}} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMem(t, nil)
			for i := 0; i < 8; i++ {
				m.add(t, "INBOX", fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, mail.ID(fmt.Sprint(i))), nil, time.Now())
			}
			s := m.source(t, m.opts(testPass))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var envs []mail.Envelope
			if err := s.List(ctx, "INBOX", func(e mail.Envelope) error { envs = append(envs, e); return nil }); err != nil {
				t.Fatal(err)
			}
			errStop := errors.New("sink says no")
			err := s.OpenBatch(ctx, envs, func(e mail.Envelope, r io.Reader) error {
				if tc.read {
					io.Copy(io.Discard, r)
				}
				return errStop
			})
			if !errors.Is(err, errStop) {
				t.Fatalf("OpenBatch = %v, want the callback's error", err)
			}
			rc, err := s.Open(ctx, envs[len(envs)-1])
			if err != nil {
				t.Fatalf("Open after an aborted batch = %v", err)
			}
			io.Copy(io.Discard, rc)
			rc.Close()
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case <-closed:
			case <-ctx.Done():
				t.Fatal("Close hangs after an aborted batch")
			}
		})
	}
}

// TestOpenBatchPanicInCallback: a panic in fn (a bug in a sink) unwinds
// through OpenBatch; its clean-up must still release the connection so that
// Close does not hang (docs/failure-model.md G2).
func TestOpenBatchPanicInCallback(t *testing.T) {
	m := startMem(t, nil)
	for i := 0; i < 4; i++ {
		m.add(t, "INBOX", fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i), nil, time.Now())
	}
	s := m.source(t, m.opts(testPass))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var envs []mail.Envelope
	if err := s.List(ctx, "INBOX", func(e mail.Envelope) error { envs = append(envs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() { recover() }()
		s.OpenBatch(ctx, envs, func(mail.Envelope, io.Reader) error { panic("sink bug") })
	}()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close hangs after a panic in the batch callback")
	}
}

// TestOpenBatchBodyCutShort: the connection drops (FIN, read as a clean
// EOF by imapclient, docs/library-notes.md §0.2) in the middle of a batch,
// at a different offset in each round. OpenBatch must report the cut body
// as temporary, also when fn swallows the read error, and must not read
// the cut body again once imapclient's reader has moved on: under -race
// that second read, which draining the command makes
// (docs/library-notes.md §0.16), is a data race on the connection's
// buffer. The server speaks plain text, so the drop is an EOF rather than
// a TLS error.
func TestOpenBatchBodyCutShort(t *testing.T) {
	mem, user := mailtest.NewMemIMAP(t, testUser, testPass)
	ln := mailtest.Listen(t)
	mailtest.ServeIMAP(t, mem, imapserver.Options{Caps: imap.CapSet{imap.CapIMAP4rev1: {}}, InsecureAuth: true}, ln)
	const size = 30000
	for i := 0; i < 6; i++ {
		body := fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, strings.Repeat("x", size))
		if _, err := user.Append("INBOX", literal{strings.NewReader(body)}, &imap.AppendOptions{Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	p := mailtest.NewFaultProxy(t, ln.Addr().String())
	s, err := New(context.Background(), addrConfig(t, p.Addr, TLSStartTLS), plainOpts())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var envs []mail.Envelope
	if err := s.List(ctx, "INBOX", func(e mail.Envelope) error { envs = append(envs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	cut := 0
	for _, swallow := range []bool{false, true} {
		for round := range 12 {
			// Each round's connection is new (the last one was
			// discarded): drop it somewhere in the first bodies.
			after := int64(1500 + round*size/4)
			p.SetSchedule(func(int) mailtest.Fault {
				return mailtest.Fault{Action: mailtest.Drop, Dir: mailtest.Down, After: after}
			})
			delivered := 0
			err := s.OpenBatch(ctx, envs, func(e mail.Envelope, r io.Reader) error {
				delivered++
				_, err := io.Copy(io.Discard, r)
				if swallow {
					return nil
				}
				return err
			})
			if err == nil {
				t.Fatalf("swallow=%v, drop after %d bytes: OpenBatch = nil after %d bodies, want the cut reported", swallow, after, delivered)
			}
			if !mail.Temporary(err) {
				t.Errorf("swallow=%v, drop after %d bytes: OpenBatch = %v, want a temporary error", swallow, after, err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) && delivered > 0 {
				cut++
			}
		}
	}
	if cut == 0 {
		t.Fatal("no round cut a body short: the test proves nothing")
	}
	p.SetSchedule(func(int) mailtest.Fault { return mailtest.Fault{} })
	rc, err := s.Open(ctx, envs[0])
	if err != nil {
		t.Fatalf("Open after the cut batches = %v", err)
	}
	if n, _ := io.Copy(io.Discard, rc); n < size {
		t.Errorf("Open after the cut batches read %d bytes, want the whole body", n)
	}
	rc.Close()
}
