package mail_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// oneBodySource serves bodies like a POP3 session: one open at a time (an
// Open while another body is open is a test failure) and only in order.
type oneBodySource struct {
	mail.Source
	bodies  map[mail.ID]string
	missing mail.ID // Open gives ErrNotFound
	broken  mail.ID // Open fails with a connection error

	mu     sync.Mutex
	open   bool
	opened []mail.ID
	misuse error
}

type closeFunc struct {
	io.Reader
	close func()
}

func (c closeFunc) Close() error { c.close(); return nil }

func (s *oneBodySource) Open(_ context.Context, env mail.Envelope) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open && s.misuse == nil {
		s.misuse = fmt.Errorf("Open %s while another body is open", env.ID)
	}
	s.opened = append(s.opened, env.ID)
	switch env.ID {
	case s.missing:
		return nil, mail.ErrNotFound
	case s.broken:
		return nil, errors.New("connection reset")
	}
	s.open = true
	return closeFunc{Reader: bytes.NewReader([]byte(s.bodies[env.ID])), close: func() {
		s.mu.Lock()
		s.open = false
		s.mu.Unlock()
	}}, nil
}

func TestReadAhead(t *testing.T) {
	long := string(bytes.Repeat([]byte("0123456789"), 10))
	tests := []struct {
		name    string
		ids     []mail.ID
		missing mail.ID
		broken  mail.ID
		failAt  mail.ID // fn returns an error for this one
		wantFn  []mail.ID
		wantErr string
	}{
		{name: "all small, in order", ids: []mail.ID{"1", "2", "3", "4", "5", "6"}, wantFn: []mail.ID{"1", "2", "3", "4", "5", "6"}},
		{name: "a long body is streamed", ids: []mail.ID{"1", "long", "3", "long2", "5"}, wantFn: []mail.ID{"1", "long", "3", "long2", "5"}},
		{name: "a vanished message is skipped", ids: []mail.ID{"1", "2", "3"}, missing: "2", wantFn: []mail.ID{"1", "3"}},
		{name: "a failed Open ends the batch", ids: []mail.ID{"1", "2", "3"}, broken: "2", wantFn: []mail.ID{"1"}, wantErr: "connection reset"},
		{name: "fn's error ends the batch", ids: []mail.ID{"1", "2", "3", "4", "5", "6"}, failAt: "2", wantFn: []mail.ID{"1", "2"}, wantErr: "disk full"},
		{name: "fn's error on a streamed body", ids: []mail.ID{"1", "long", "3"}, failAt: "long", wantFn: []mail.ID{"1", "long"}, wantErr: "disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &oneBodySource{bodies: map[mail.ID]string{}, missing: tt.missing, broken: tt.broken}
			var envs []mail.Envelope
			for _, id := range tt.ids {
				src.bodies[id] = "body of " + string(id)
				if id == "long" || id == "long2" {
					src.bodies[id] += long
				}
				envs = append(envs, mail.Envelope{Mailbox: "INBOX", ID: id})
			}
			ra := mail.ReadAhead{Open: src.Open, Depth: 2, MaxBody: 50}
			var got []mail.ID
			err := ra.OpenBatch(context.Background(), envs, func(env mail.Envelope, body io.Reader) error {
				got = append(got, env.ID)
				b, err := io.ReadAll(body)
				if err != nil {
					t.Fatalf("read %s: %v", env.ID, err)
				}
				if string(b) != src.bodies[env.ID] {
					t.Errorf("%s: got %q, want %q", env.ID, b, src.bodies[env.ID])
				}
				if env.ID == tt.failAt {
					return errors.New("disk full")
				}
				return nil
			})
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Fatalf("OpenBatch: %v, want error %q", err, tt.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantFn) {
				t.Errorf("fn saw %v, want %v", got, tt.wantFn)
			}
			// After OpenBatch returned the reader is gone: the caller's
			// one-by-one Open cannot meet an open body.
			src.mu.Lock()
			defer src.mu.Unlock()
			if src.misuse != nil {
				t.Error(src.misuse)
			}
			if src.open {
				t.Error("a body was left open after OpenBatch returned")
			}
			for i, id := range src.opened {
				if id != tt.ids[i] {
					t.Fatalf("Opens %v are not in the batch's order %v", src.opened, tt.ids)
				}
			}
		})
	}
}
