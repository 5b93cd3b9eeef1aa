package mailtest

import "testing"

// TestSink runs the sink conformance suite.
func TestSink(t *testing.T, h SinkHarness) { t.Skip("suite being written") }

// TestSource runs the source conformance suite.
func TestSource(t *testing.T, h SourceHarness) { t.Skip("suite being written") }
