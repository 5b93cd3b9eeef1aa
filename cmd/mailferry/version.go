package main

import (
	"fmt"
	"runtime"
)

func runVersion(env *cliEnv) error {
	fmt.Fprintf(env.stdout, "mailferry %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
