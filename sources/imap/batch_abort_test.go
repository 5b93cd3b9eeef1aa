package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
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
