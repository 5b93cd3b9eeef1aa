package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	flag "github.com/spf13/pflag"

	"github.com/mailferry/mailferry/sync/mail"
)

// runOptions are the flags of 'run': every flag of copy, which override the
// job's settings (see jobSettings), plus the config file and --all.
type runOptions struct {
	copy   copyOptions
	sync   syncOptions // the flags of sync jobs only (addSyncOnlyFlags)
	config string
	all    bool
	jobs   []string // the job names given
	// given reports whether a flag was given on the command line.
	given func(name string) bool
}

func (r *runOptions) addFlags(fs *flag.FlagSet) {
	r.copy.addFlags(fs)
	r.sync.addSyncOnlyFlags(fs, "sync jobs: ")
	fs.StringVar(&r.config, "config", "", "read jobs from `FILE` (default $XDG_CONFIG_HOME/mailferry/config.toml, else ~/.config/mailferry/config.toml)")
	fs.BoolVar(&r.all, "all", false, "run every job of the config file, in file order")
}

// Check reports a mistake in the command line before the config is read.
// The options of each job are checked once merged (copyOptions.Check).
func (r *runOptions) Check() error {
	if r.all && len(r.jobs) > 0 {
		return &usageError{"give job names or --all, not both"}
	}
	return nil
}

const runUsage = "run JOB...|--all [flags]"

// runRun runs jobs of the config file one after the other. A job that fails
// does not stop the next; the exit code is that of the first job that
// failed, and each failure is one line naming its job.
func runRun(ctx context.Context, ro *runOptions, env *cliEnv) error {
	cfg, err := loadConfig(ro.config, env)
	if err != nil {
		return err
	}
	names, err := ro.jobNames(cfg)
	if err != nil {
		return err
	}
	var first error
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		err := runJob(ctx, cfg, name, ro, env)
		if err == nil {
			continue
		}
		if !errors.Is(err, errReported) {
			fmt.Fprintf(env.stderr, "mailferry run %s: %s\n", name, oneLine(err))
		}
		if first == nil {
			first = err
		}
	}
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if first != nil {
		return reportedError{first}
	}
	return nil
}

// jobNames are the jobs to run: those named, or with --all every job of
// cfg; each must exist.
func (r *runOptions) jobNames(cfg *fileConfig) ([]string, error) {
	names := r.jobs
	switch {
	case r.all:
		names = cfg.order
		if len(names) == 0 {
			return nil, &mail.ConfigError{Msg: fmt.Sprintf("config %s has no jobs", cfg.path), Hint: "see mailferry help config"}
		}
	case len(names) == 0:
		return nil, &usageError{fmt.Sprintf("name a job or pass --all: usage: mailferry %s (jobs in %s: %s)", runUsage, cfg.path, jobList(cfg))}
	}
	for _, n := range names {
		if _, ok := cfg.Jobs[n]; !ok {
			return nil, &usageError{fmt.Sprintf("no job %q in %s (jobs: %s)", n, cfg.path, jobList(cfg))}
		}
	}
	return names, nil
}

// jobOptions builds a job's options: the flags given on the command line
// win, the job's settings fill in the rest (jobSettings), and the flags'
// defaults what neither sets.
func jobOptions(cfg *fileConfig, name string, ro *runOptions, env *cliEnv) *copyOptions {
	o := ro.copy // each job starts from the command line afresh
	j := cfg.Jobs[name]
	path := func(p string) string {
		if q, err := expandHome(p, env); err == nil {
			return q
		}
		return p
	}
	for _, s := range jobSettings() {
		if !slices.ContainsFunc(s.flags, ro.given) {
			s.apply(&o, &j, path)
		}
	}
	hide := cfg.passwordEnvs()
	o.src.hideEnv, o.dst.hideEnv = hide, hide
	if cfg.Report != "" && !ro.given("report") {
		o.report = cfg.Report
	}
	return &o
}

// passwordEnvs lists the variables every job of cfg says hold a password:
// none of them reaches a password or token command of any job.
func (cfg *fileConfig) passwordEnvs() []string {
	var out []string
	for _, j := range cfg.Jobs {
		for _, name := range []string{j.SrcPasswordEnv, j.DstPasswordEnv} {
			if name != "" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// jobList names the jobs of cfg for messages.
func jobList(cfg *fileConfig) string {
	if len(cfg.order) == 0 {
		return "none"
	}
	return strings.Join(cfg.order, ", ")
}

// reportedError is an error whose lines the command already printed; it
// keeps the cause for the exit code.
type reportedError struct{ err error }

func (e reportedError) Error() string   { return e.err.Error() }
func (e reportedError) Unwrap() []error { return []error{errReported, e.err} }
