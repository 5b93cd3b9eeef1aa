// Package mailtest holds what tests of mailferry endpoints share: the
// conformance suites every Source and Sink passes (TestSource, TestSink), the
// fixture corpus, in-memory endpoints (MemSource, MemSink) for engine tests,
// fault injectors, helpers for the real Dovecot used by integration tests,
// and the pieces of fake servers: TLS certificates (LocalCert, PKI), an
// accept loop (Listen, Serve) and go-imap's memory server (NewMemIMAP,
// ServeIMAP).
//
// A new rule for endpoints is a new subtest here, and every endpoint inherits
// it.
package mailtest
