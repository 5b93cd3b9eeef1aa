package main

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// Test-only hooks for the crash sweeps of RELIABILITY.md (scenario A2):
// MAILFERRY_TEST_CRASH_AFTER=n kills the process with SIGKILL right after the
// n-th durable step of a copy (see sync.Options.Step), and
// MAILFERRY_TEST_BATCH=k commits every k messages so a small run has many
// steps. Neither is documented for users.
func crashHook(getenv func(string) string) (step func(string), batch int) {
	batch, _ = strconv.Atoi(getenv("MAILFERRY_TEST_BATCH"))
	n, err := strconv.ParseInt(getenv("MAILFERRY_TEST_CRASH_AFTER"), 10, 64)
	if err != nil || n <= 0 {
		return nil, batch
	}
	var count atomic.Int64
	return func(string) {
		if count.Add(1) == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}, batch
}
