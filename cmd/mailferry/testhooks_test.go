package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// inProcessHooks are the hooks of an in-process CLI test: the test binary
// is built without the testhooks tag, so it reads the variables the tagged
// binary would (only those that make sense in-process) from the test's
// environment map itself.
func inProcessHooks(env map[string]string) testHooks {
	var h testHooks
	h.backoff, _ = time.ParseDuration(env["MAILFERRY_TEST_BACKOFF"])
	h.batch, _ = strconv.Atoi(env["MAILFERRY_TEST_BATCH"])
	h.rescueEvery, _ = time.ParseDuration(env["MAILFERRY_TEST_RESCUE_EVERY"])
	return h
}

// TestReleaseBinaryHasNoTestHooks: the binary make build produces (no
// build tags) holds no MAILFERRY_TEST_ variable name, so no test hook (a
// self-SIGKILL, a panic, a changed backoff) can be switched on in it; and
// the tagged build the tests run does hold them, so the check can fail.
func TestReleaseBinaryHasNoTestHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		flags []string
		want  bool
	}{
		{"release", nil, false},
		{"tagged", []string{"-tags", testHooksTag}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(dir, tc.name)
			// The flags of the Makefile's build target, plus the tag under test.
			args := append(append([]string{"build"}, tc.flags...), "-ldflags", "-X main.version=test", "-o", bin, ".")
			if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
				t.Fatalf("go %v: %v\n%s", args, err, out)
			}
			b, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.Contains(b, []byte("MAILFERRY_TEST_")); got != tc.want {
				t.Errorf("%s binary contains MAILFERRY_TEST_: %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}
