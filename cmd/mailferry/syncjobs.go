package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	flag "github.com/spf13/pflag"

	"github.com/mailferry/mailferry/sync/mail"
)

// The job keys that belong to one mode: a copy job's keys in a sync job
// (and the reverse) would be silently ignored, so the config is refused.
var (
	copyOnlyKeys = []string{"map", "delete_source", "delete_after", "gmail", "max_size", "max_bytes_per_sec",
		"max_msgs_per_sec", "max_bytes", "full_every", "since", "before", "allow_unsafe_expunge"}
	syncOnlyKeys = []string{"no_delete", "max_delete", "remove_folders"}
)

// configPercent is a percentage in the config: 30 or 30.5.
type configPercent float64

// UnmarshalTOML implements toml.Unmarshaler: TOML tells 30 from 30.0, a
// user does not.
func (c *configPercent) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*c = configPercent(v)
	case float64:
		*c = configPercent(v)
	default:
		return errors.New("want a percentage such as 30")
	}
	return nil
}

// checkJobMode checks mode and that the job gives no key of the other
// mode.
func checkJobMode(at func(key ...string) string, name string, j *jobConfig) error {
	var wrong []string
	switch j.Mode {
	case "", "copy":
		wrong = setKeys(j, syncOnlyKeys)
	case "sync":
		wrong = setKeys(j, copyOnlyKeys)
		if j.MaxDelete < 0 || j.MaxDelete > 100 {
			return &mail.ConfigError{Msg: fmt.Sprintf("%s: %g: want a percentage above 0 and at most 100", at("jobs", name, "max_delete"), float64(j.MaxDelete))}
		}
	default:
		return &mail.ConfigError{Msg: fmt.Sprintf("%s: %q: want \"copy\" or \"sync\"", at("jobs", name, "mode"), j.Mode),
			Hint: `mode = "sync" keeps source and destination in step both ways (mailferry help sync)`}
	}
	if len(wrong) > 0 {
		mode := j.Mode
		if mode == "" {
			mode = "copy"
		}
		return &mail.ConfigError{Msg: fmt.Sprintf("%s: a %s job does not take %s", at("jobs", name, wrong[0]), mode, strings.Join(wrong, ", ")),
			Hint: "remove them, or change mode (copy or sync)"}
	}
	return nil
}

// setKeys returns those of keys (TOML names of jobConfig) the job sets.
func setKeys(j *jobConfig, keys []string) []string {
	var out []string
	v := reflect.ValueOf(j).Elem()
	for i := range v.NumField() {
		tag := v.Type().Field(i).Tag.Get("toml")
		if slices.Contains(keys, tag) && !v.Field(i).IsZero() {
			out = append(out, tag)
		}
	}
	return out
}

// runJob runs one job of the config file: a copy, or with mode = "sync" a
// two-way sync of its source (A) and destination (B).
func runJob(ctx context.Context, cfg *fileConfig, name string, ro *runOptions, env *cliEnv) error {
	o := jobOptions(cfg, name, ro, env)
	j := cfg.Jobs[name]
	if j.Mode != "sync" {
		warnFlags(env, ro, name, "copy", syncOnlyFlags())
		if err := o.Check(); err != nil {
			return err
		}
		return doCopy(ctx, o, j.Source, j.Destination, name, env)
	}
	warnFlags(env, ro, name, "sync", copyOnlyFlags())
	so := syncJobOptions(o, &j, ro)
	if err := so.Check(); err != nil {
		return err
	}
	return doSync(ctx, so, j.Source, j.Destination, name, env)
}

// syncJobOptions are a sync job's options: what the job and the command
// line merged into o (credentials, TLS, folders, state, report, dry run,
// by the rules of copy jobs), then the sync keys, which a flag given to
// 'run' overrides. --force is a flag only: a config file that always
// forces would disarm the guard.
func syncJobOptions(o *copyOptions, j *jobConfig, ro *runOptions) *syncOptions {
	so := &syncOptions{common: o.common, src: o.src, dst: o.dst, checkpoint: o.checkpoint, dryRun: o.dryRun, report: o.report, fullEvery: o.fullEvery,
		force: ro.sync.force, noDelete: ro.sync.noDelete, maxDelete: ro.sync.maxDelete, removeFolders: ro.sync.removeFolders}
	if !ro.given("no-delete") {
		so.noDelete = j.NoDelete
	}
	if !ro.given("max-delete") && j.MaxDelete > 0 {
		so.maxDelete = float64(j.MaxDelete)
	}
	if !ro.given("remove-folders") {
		so.removeFolders = j.RemoveFolders
	}
	return so
}

// warnFlags warns about flags given to 'run' that a job of this mode does
// not use (a run of several jobs may mix modes, so it is no error).
func warnFlags(env *cliEnv, ro *runOptions, job, mode string, flags []string) {
	for _, f := range flags {
		if ro.given(f) {
			fmt.Fprintf(env.stderr, "warning: job %s is a %s job: --%s does not apply to it\n", job, mode, f)
		}
	}
}

// copyOnlyFlags are the flags of copy that sync lacks; syncOnlyFlags the
// reverse.
func copyOnlyFlags() []string { return flagDiff(copyFlagSet(), syncFlagSet()) }
func syncOnlyFlags() []string { return flagDiff(syncFlagSet(), copyFlagSet()) }

func copyFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("copy", flag.ContinueOnError)
	new(copyOptions).addFlags(fs)
	return fs
}

func syncFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	new(syncOptions).addFlags(fs)
	return fs
}

// flagDiff names the flags of a that b lacks.
func flagDiff(a, b *flag.FlagSet) []string {
	var out []string
	a.VisitAll(func(f *flag.Flag) {
		if b.Lookup(f.Name) == nil {
			out = append(out, f.Name)
		}
	})
	return out
}
