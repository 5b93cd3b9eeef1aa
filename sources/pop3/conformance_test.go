package pop3

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestConformance runs the source suite against the scripted server, with
// and without pipelining. The server serves bodies with CRLF line endings,
// as real servers do, hence Normalize.
func TestConformance(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprint("pipelining=", pipelining), func(t *testing.T) {
			servers := map[mail.Source]*fakeServer{} // for Reopen
			mailtest.TestSource(t, mailtest.SourceHarness{
				New: func(t testing.TB, fixtures []mailtest.Fixture) mail.Source {
					var msgs []fakeMsg
					for i, f := range fixtures {
						if f.Mailbox != "INBOX" {
							t.Fatalf("fixture %s is in %q: a maildrop has only INBOX", f.Name, f.Mailbox)
						}
						body := mailtest.CRLF(f.Body)
						msgs = append(msgs, fakeMsg{uidl: fmt.Sprintf("%04d-%x", i, sha256.Sum256(body))[:20], body: body})
					}
					srv := newFakeServer(t, fakeOpts{pipelining: pipelining}, msgs...)
					src := srv.open(t, nil)
					servers[src] = srv
					return src
				},
				Reopen: func(t testing.TB, src mail.Source) mail.Source { return servers[src].open(t, nil) },
				Caps:   mailtest.Caps{Normalize: mailtest.CRLF},
			})
		})
	}
}
