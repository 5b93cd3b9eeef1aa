package mailtest

import (
	"bytes"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// Caps says which optional behaviour an endpoint has; suite cases for missing
// capabilities skip by name.
type Caps struct {
	// Flags: flags survive a round trip.
	Flags bool
	// Date: the internal date survives a round trip (to the second).
	Date bool
	// Mailboxes: more than one mailbox, nested with '/', Unicode and spaces.
	Mailboxes bool
	// Normalize, if set, is applied to expected and actual bodies before they
	// are compared: for endpoints that document a line-ending change (POP3
	// serves CRLF; an LF-only store). Nil means byte for byte.
	Normalize func([]byte) []byte
	// NoBig skips the generated 32 MiB message (for slow fakes only).
	NoBig bool
}

// Fixture is one test message. Test code may hold bodies as []byte;
// production code never does.
type Fixture struct {
	Name    string // file or case name, for messages
	Mailbox string
	Body    []byte
	Flags   []mail.Flag
	Date    time.Time
}

// SinkHarness plugs a sink into TestSink.
type SinkHarness struct {
	// New returns a fresh, empty sink; the harness registers cleanup.
	New func(t testing.TB) mail.Sink
	// Reopen returns a source reading what s stored (after s was closed),
	// or nil when the sink cannot be read back.
	Reopen func(t testing.TB, s mail.Sink) mail.Source
	Caps   Caps
}

// SourceHarness plugs a source into TestSource.
type SourceHarness struct {
	// New returns a source holding exactly fixtures (mailboxes with no
	// fixture may or may not exist).
	New func(t testing.TB, fixtures []Fixture) mail.Source
	// Reopen, when set, returns a new source over what src (closed) read
	// from, so that the Remover subtest can check what Remove deleted.
	Reopen func(t testing.TB, src mail.Source) mail.Source
	Caps   Caps
}

// CRLF normalises every line ending (CRLF, bare LF) to CRLF and makes sure
// the message ends with one, as POP3 and IMAP servers serve stored mail.
func CRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	if len(b) > 0 && !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b, '\r', '\n')
	}
	return b
}
