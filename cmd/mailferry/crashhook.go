package main

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/mailferry/mailferry/sources/imap"
)

// Test-only hooks for the crash sweeps of RELIABILITY.md (scenarios A2 and
// A7): MAILFERRY_TEST_CRASH_AFTER=n kills the process with SIGKILL right
// after the n-th durable step of a copy (see sync.Options.Step),
// MAILFERRY_TEST_CRASH_IN_REMOVE=n kills it after the n-th UID STORE
// \Deleted of an IMAP source's removal, before that removal's UID EXPUNGE
// (see imap.TestHookAfterStore), and MAILFERRY_TEST_BATCH=k commits every k
// messages so a small run has many steps. None is documented for users.
func crashHook(getenv func(string) string) (step func(string), batch int) {
	batch, _ = strconv.Atoi(getenv("MAILFERRY_TEST_BATCH"))
	if n, err := strconv.ParseInt(getenv("MAILFERRY_TEST_CRASH_IN_REMOVE"), 10, 64); err == nil && n > 0 {
		// Set only when asked: in-process CLI tests share the variable.
		kill := killAt(n)
		hook := func(string) { kill() }
		imap.TestHookAfterStore.Store(&hook)
	}
	n, err := strconv.ParseInt(getenv("MAILFERRY_TEST_CRASH_AFTER"), 10, 64)
	if err != nil || n <= 0 {
		return nil, batch
	}
	kill := killAt(n)
	return func(string) { kill() }, batch
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
