// Package mailtest holds what tests of mailferry endpoints share: the
// conformance suites every Source and Sink passes (TestSource, TestSink), the
// fixture corpus, in-memory endpoints (MemSource, MemSink) for engine tests,
// fault injectors, and helpers for the real Dovecot used by integration tests.
//
// A new rule for endpoints is a new subtest here, and every endpoint inherits
// it.
package mailtest
