//go:build mailferry_testhooks

package main

import (
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
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
	h.rescueEvery, _ = time.ParseDuration(getenv("MAILFERRY_TEST_RESCUE_EVERY"))
	var c crashHooks
	c.crashAfter, _ = strconv.ParseInt(getenv("MAILFERRY_TEST_CRASH_AFTER"), 10, 64)
	c.crashInRemove, _ = strconv.ParseInt(getenv("MAILFERRY_TEST_CRASH_IN_REMOVE"), 10, 64)
	c.panicText = getenv("MAILFERRY_TEST_PANIC")
	h.arm = c.arm
	if at, err := time.Parse(time.RFC3339, getenv("MAILFERRY_TEST_NOW")); err == nil {
		h.now = func() time.Time { return at }
	}
	return h
}

// crashHooks kill or panic the process at a chosen point of a copy run.
type crashHooks struct {
	// crashAfter kills the process with SIGKILL right after the n-th
	// durable step of a copy (see sync.Options.Step); 0: never.
	crashAfter int64
	// crashInRemove kills it after the n-th UID STORE \Deleted of an IMAP
	// source's removal, before that removal's UID EXPUNGE (A7); 0: never.
	crashInRemove int64
	// panicText, when set, makes the worker storing the first message
	// panic with it as the panic value (G2, F6: a test puts the password in
	// it, which must not be printed).
	panicText string
}

// arm adds the hooks to r, counting from zero.
func (h crashHooks) arm(r *runHooks) {
	if h.crashInRemove > 0 {
		kill := killAt(h.crashInRemove)
		r.afterRemoveStore = func(string) { kill() }
	}
	if h.crashAfter > 0 {
		kill := killAt(h.crashAfter)
		r.step = func(string) { kill() }
	}
	r.step = panicStep(h.panicText, r.step)
}

// killAt returns a function that kills the process with SIGKILL on its
// n-th call: no deferred function, flush or close runs, as in a crash.
func killAt(n int64) func() {
	var count atomic.Int64
	return func() {
		if count.Add(1) == n {
			// Signalling oneself cannot fail; the signal is on its way.
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
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

// atExit writes the process's peak resident set (VmHWM, in bytes) to the
// file MAILFERRY_TEST_RSS_FILE names. The tests cannot take it from the
// child's rusage: Go starts a child with vfork (CLONE_VM), and Linux folds
// the parent's memory high-water mark into the child's ru_maxrss at exec,
// so a test process that grew (the in-process batch tests) made a small
// child look large. VmHWM belongs to the memory the exec created.
func atExit() {
	stopProfiles()
	path := os.Getenv("MAILFERRY_TEST_RSS_FILE")
	if path == "" {
		return
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				_ = os.WriteFile(path, []byte(strconv.FormatInt(kib<<10, 10)), 0o600) // best effort: the test says when it is missing
			}
			return
		}
	}
}

// stopProfiles ends what atStart began.
var stopProfiles = func() {}

// atStart starts a CPU profile (MAILFERRY_TEST_CPUPROFILE=FILE) and an
// execution trace (MAILFERRY_TEST_TRACE=FILE) of the whole process, for
// finding where a benchmark's time goes (docs/performance.md); atExit ends
// them. Best effort: a file that cannot be created is no profile.
func atStart() {
	var stops []func()
	if f, err := os.Create(os.Getenv("MAILFERRY_TEST_CPUPROFILE")); err == nil && pprof.StartCPUProfile(f) == nil {
		stops = append(stops, func() { pprof.StopCPUProfile(); _ = f.Close() })
	}
	if f, err := os.Create(os.Getenv("MAILFERRY_TEST_TRACE")); err == nil && trace.Start(f) == nil {
		stops = append(stops, func() { trace.Stop(); _ = f.Close() })
	}
	stopProfiles = func() {
		for _, stop := range stops {
			stop()
		}
	}
}
