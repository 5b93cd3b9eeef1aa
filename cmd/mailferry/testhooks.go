package main

import "time"

// testHooksTag is the build tag under which the binary reads the fault
// hooks of the CLI tests from the environment (testhooks_on.go). The tests
// that run the binary build it with -tags testHooksTag; a release build
// (make build) reads no such variable and holds none of their names.
const testHooksTag = "mailferry_testhooks"

// testHooks are the fault hooks of the CLI tests. The zero value, all a
// release build ever has, changes nothing.
type testHooks struct {
	// backoff is the engine's first retry wait (scenario B6 tests need not
	// wait seconds); 0 keeps the engine's default.
	backoff time.Duration
	// batch commits every batch messages, so a small run has many steps;
	// 0 keeps the engine's default.
	batch int
	// arm adds the hooks that kill or panic the process to one run's hooks
	// (testhooks_on.go); nil in a release build, which has none.
	arm func(*runHooks)
	// rescueEvery, when set, is batch.Config.RescueEvery: a worker hands
	// a dead worker's accounts back at once instead of at River's next
	// 30 s tick, so the scenario tests need not wait for it.
	rescueEvery time.Duration
	// now, when set, is the engine's clock (sync.Options.Now), so tests
	// of --delete-after move time without waiting; nil: the real clock.
	now func() time.Time
	// noShare makes each endpoint of a sync side connect on its own, as
	// before they shared connections (mail.Share): the negative control
	// of the login counts in sync_logins_test.go.
	noShare bool
}

// forRun builds one copy run's hooks, counting from zero.
func (h testHooks) forRun() runHooks {
	var r runHooks
	if h.arm != nil {
		h.arm(&r)
	}
	return r
}

// runHooks are one copy run's hooks, built by testHooks.forRun: each run
// counts its steps from zero.
type runHooks struct {
	step             func(step string)    // for sync.Options.Step; nil: none
	afterRemoveStore func(mailbox string) // for mail.OpenOptions.AfterRemoveStore; nil: none
}
