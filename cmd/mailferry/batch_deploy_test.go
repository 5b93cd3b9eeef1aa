package main

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

// TestDeployManifestArgs: the worker command line of the Kubernetes
// manifest under deploy/ (and the flags its comments say to add for
// --mode sync passes) is one the CLI accepts: a renamed or removed flag
// fails here, not in someone's cluster. An unknown flag is the negative
// control.
func TestDeployManifestArgs(t *testing.T) {
	manifest, err := os.ReadFile("../../deploy/batch-worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*args: (\[.*\])$`).FindSubmatch(manifest)
	extra := regexp.MustCompile(`(?m)^\s*# With --mode sync passes, add: (.*)$`).FindSubmatch(manifest)
	if m == nil || extra == nil {
		t.Fatal("deploy/batch-worker.yaml: no worker args line, or no --mode sync comment")
	}
	var args, more []string
	if err := json.Unmarshal(m[1], &args); err != nil {
		t.Fatalf("args %s: %v", m[1], err)
	}
	if err := json.Unmarshal(append(append([]byte("["), extra[1]...), ']'), &more); err != nil {
		t.Fatalf("comment %s: %v", extra[1], err)
	}
	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"manifest", args, true},
		{"manifest with --mode sync", append(append([]string{}, args...), more...), true},
		{"unknown flag", append(append([]string{}, args...), "--no-such-flag"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, append(tc.args, "--help")...)
			if (code == 0) != tc.ok {
				t.Errorf("mailferry %q --help = %d, %q, %q; want accepted: %v", tc.args, code, stdout, stderr, tc.ok)
			}
		})
	}
}
