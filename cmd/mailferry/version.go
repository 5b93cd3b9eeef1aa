package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
)

func runVersion(ctx context.Context, args []string, env *cliEnv) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if _, err := parse(fs, args, 0, "version", env); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "mailferry %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
