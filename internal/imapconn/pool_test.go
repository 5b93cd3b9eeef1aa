package imapconn

import (
	"context"
	"errors"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestPoolReuse: a connection given back is handed out again, of its own
// kind only, so a run's successive takes log in once per kind; one that
// was closed is not handed out (its taker gets a new login); a Share
// closed closes the pool, whose later takes fail with mail.ErrClosed.
func TestPoolReuse(t *testing.T) {
	m := startMem(t, nil)
	o := m.opts(testPass)
	o.Share = mail.NewShare()
	cfg := m.config(t, false)
	p := SharedPool(cfg, o)
	if p == nil || SharedPool(cfg, o) != p {
		t.Fatalf("SharedPool = %p, again %p: want one pool per account and Share", p, SharedPool(cfg, o))
	}
	if SharedPool(cfg, m.opts(testPass)) != nil {
		t.Fatal("SharedPool without a Share is not nil")
	}
	ctx := context.Background()
	steps := []struct {
		name       string
		take       func() error
		wantLogins int64
	}{
		{"first client", func() error { return takeClient(ctx, p, true) }, 1},
		{"client again", func() error { return takeClient(ctx, p, true) }, 1},
		{"first session: a client is not one", func() error { return takeSession(ctx, p, true) }, 2},
		{"session again", func() error { return takeSession(ctx, p, false) }, 2},
		{"session after it was closed (negative control)", func() error { return takeSession(ctx, p, true) }, 3},
		{"client once more", func() error { return takeClient(ctx, p, true) }, 3},
	}
	for _, st := range steps {
		if err := st.take(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := p.Logins(); got != st.wantLogins {
			t.Fatalf("%s: %d logins, want %d", st.name, got, st.wantLogins)
		}
	}
	if err := o.Share.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Client(ctx); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("Client after Close = %v, want ErrClosed", err)
	}
	if _, err := p.Session(ctx); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("Session after Close = %v, want ErrClosed", err)
	}
}

// takeClient takes a client, checks it works (NOOP) and gives it back.
func takeClient(ctx context.Context, p *Pool, keep bool) error {
	c, err := p.Client(ctx)
	if err != nil {
		return err
	}
	if err := c.C.Noop().Wait(); err != nil {
		return err
	}
	if !keep {
		c.close()
		return nil
	}
	p.PutClient(c)
	return nil
}

// takeSession takes a session, checks it works (a STATUS) and gives it
// back, closed first unless keep.
func takeSession(ctx context.Context, p *Pool, keep bool) error {
	s, err := p.Session(ctx)
	if err != nil {
		return err
	}
	if _, err := s.StatusAll([]string{"INBOX"}); err != nil {
		return err
	}
	if !keep {
		_ = s.RawConn().Close()
	}
	p.PutSession(s)
	return nil
}
