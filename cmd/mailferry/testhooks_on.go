//go:build mailferry_testhooks

package main

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// newTestHooks reads the hooks of the crash and fault tests
// (docs/failure-model.md A2, A7, B6, G2, F6) from the environment. This
// file is built only with -tags mailferry_testhooks, which the tests that
// run the binary set; none of these variables is documented for users.
func newTestHooks(getenv func(string) string) testHooks {
	var h testHooks
	h.backoff, _ = time.ParseDuration(getenv("MAILFERRY_TEST_BACKOFF"))
	h.batch, _ = strconv.Atoi(getenv("MAILFERRY_TEST_BATCH"))
	h.crashAfter, _ = strconv.ParseInt(getenv("MAILFERRY_TEST_CRASH_AFTER"), 10, 64)
	h.crashInRemove, _ = strconv.ParseInt(getenv("MAILFERRY_TEST_CRASH_IN_REMOVE"), 10, 64)
	h.panicText = getenv("MAILFERRY_TEST_PANIC")
	if at, err := time.Parse(time.RFC3339, getenv("MAILFERRY_TEST_NOW")); err == nil {
		h.now = func() time.Time { return at }
	}
	return h
}

// forRun builds one copy run's hooks, counting from zero.
func (h testHooks) forRun() runHooks {
	var r runHooks
	if h.crashInRemove > 0 {
		kill := killAt(h.crashInRemove)
		r.afterRemoveStore = func(string) { kill() }
	}
	if h.crashAfter > 0 {
		kill := killAt(h.crashAfter)
		r.step = func(string) { kill() }
	}
	r.step = panicStep(h.panicText, r.step)
	return r
}

// killAt returns a function that kills the process with SIGKILL on its
// n-th call: no deferred function, flush or close runs, as in a crash.
func killAt(n int64) func() {
	var count atomic.Int64
	return func() {
		if count.Add(1) == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

// panicStep makes the first message stored panic with text as the panic
// value, right after the "put" step; the engine must recover it into that
// message's failure without printing the value. next is the step hook to
// chain. An empty text returns next.
func panicStep(text string, next func(string)) func(string) {
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
