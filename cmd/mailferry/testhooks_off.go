//go:build !mailferry_testhooks

package main

// newTestHooks reads nothing in a release build: no test hook can be
// switched on in the user's binary (see testhooks_on.go).
func newTestHooks(func(string) string) testHooks { return testHooks{} }

// atStart does nothing in a release build.
func atStart() {}

// atExit does nothing in a release build.
func atExit() {}
