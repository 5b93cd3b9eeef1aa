// Package mail holds the contracts every mailferry endpoint implements: the
// Envelope that describes one message, the Source and Sink interfaces, the
// Registry that maps URL schemes to endpoint factories, the sentinel errors
// and their classification, and small streaming helpers.
//
// Bodies always travel as io.Reader: no interface here passes a message as
// []byte, so memory per worker stays bounded whatever the message size.
//
// Endpoints import this package and never the engine (package sync), so a
// source or sink can be tested alone with the conformance suites in
// sync/mail/mailtest.
package mail
