//go:build unix && !linux

package mbox

import "syscall"

// fOFDSetLk falls back to the process-wide F_SETLK where OFD locks are
// missing: two sinks in one process then do not exclude each other, but the
// dotlock still does.
const fOFDSetLk = syscall.F_SETLK
