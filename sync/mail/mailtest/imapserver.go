package mailtest

import (
	"io"
	"log"
	"net"
	"testing"

	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// NewMemIMAP returns go-imap's in-memory IMAP backend holding one user,
// name with password pass, whose INBOX exists and is empty.
func NewMemIMAP(t testing.TB, name, pass string) (*imapmemserver.Server, *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser(name, pass)
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatalf("mailtest: create INBOX: %v", err)
	}
	mem.AddUser(user)
	return mem, user
}

// ServeIMAP serves go-imap's IMAP server with opts on each of lns until
// the test ends. A nil opts.NewSession serves sessions of mem; a nil
// opts.Logger discards the server's log, which would only be noise.
func ServeIMAP(t testing.TB, mem *imapmemserver.Server, opts imapserver.Options, lns ...net.Listener) {
	t.Helper()
	if opts.NewSession == nil {
		opts.NewSession = func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		}
	}
	if opts.Logger == nil {
		opts.Logger = log.New(io.Discard, "", 0)
	}
	srv := imapserver.New(&opts)
	for _, ln := range lns {
		go func() { _ = srv.Serve(ln) }()
	}
	t.Cleanup(func() {
		_ = srv.Close()
		for _, ln := range lns { // in case Close came before Serve took it
			_ = ln.Close()
		}
	})
}
