package imap

import (
	"bytes"
	"testing"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestConformance runs the source suite against go-imap's in-memory server,
// seeded directly (not over IMAP) with the fixtures. Bodies are stored with
// CRLF line endings, as a real server stores them: the memory server serves
// bare LF as CRLF but reports RFC822.SIZE of the stored bytes, which a real
// server (Dovecot) does not do. It also re-serialises the header, adding
// the blank separator line to a headers-only message: memNormalize applies
// the same to both sides of the comparison.
func TestConformance(t *testing.T) {
	servers := map[mail.Source]*memServer{} // for Reopen
	mailtest.TestSource(t, mailtest.SourceHarness{
		New: func(t testing.TB, fixtures []mailtest.Fixture) mail.Source {
			m := startMem(t, nil)
			for _, f := range fixtures {
				box := f.Mailbox
				if box == "" {
					box = "INBOX"
				}
				var flags []imap.Flag
				for _, fl := range f.Flags {
					flags = append(flags, imap.Flag(fl))
				}
				m.add(t, box, string(memNormalize(f.Body)), flags, f.Date)
			}
			src := m.source(t, m.opts(testPass))
			servers[src] = m
			return src
		},
		Reopen: func(t testing.TB, src mail.Source) mail.Source {
			m := servers[src]
			return m.source(t, m.opts(testPass))
		},
		Caps: mailtest.Caps{Flags: true, Date: true, Mailboxes: true, Normalize: memNormalize},
	})
}

// memNormalize is what the in-memory server does to a stored message: CRLF
// line endings and a header ended by a blank line.
func memNormalize(b []byte) []byte {
	b = mailtest.CRLF(b)
	if !bytes.Contains(b, []byte("\r\n\r\n")) && len(b) > 0 {
		b = append(b, '\r', '\n')
	}
	return b
}
