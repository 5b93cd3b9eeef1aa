package main

import "sync/atomic"

// panicHook is a test-only hook for docs/failure-model.md G2 and F6: with
// MAILFERRY_TEST_PANIC set, the first message stored makes its worker
// panic with that variable's text as the panic value (a test puts the
// password in it), right after the "put" step. The engine must recover it
// into that message's failure without printing the value. next is the step
// hook to chain (crashHook's). Not documented for users.
func panicHook(getenv func(string) string, next func(string)) func(string) {
	text := getenv("MAILFERRY_TEST_PANIC")
	if text == "" {
		return next
	}
	var fired atomic.Bool
	return func(step string) {
		if next != nil {
			next(step)
		}
		// Only "put" runs on a worker; the other steps are the committer's,
		// where a panic stops the run (tested in package sync).
		if step == "put" && fired.CompareAndSwap(false, true) {
			panic(text)
		}
	}
}
