package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// runOptions are the flags of 'run': every flag of copy, which override the
// job's settings, plus the config file and --all.
type runOptions struct {
	copy   copyOptions
	config string
	all    bool
}

func (r *runOptions) addFlags(fs *flag.FlagSet) {
	r.copy.addFlags(fs)
	fs.StringVar(&r.config, "config", "", "read jobs from `FILE` (default $XDG_CONFIG_HOME/mailferry/config.toml, else ~/.config/mailferry/config.toml)")
	fs.BoolVar(&r.all, "all", false, "run every job of the config file, in file order")
}

const runUsage = "run JOB...|--all [flags]"

// runRun runs jobs of the config file one after the other. A job that fails
// does not stop the next; the exit code is that of the first job that
// failed, and each failure is one line naming its job.
func runRun(ctx context.Context, args []string, env *cliEnv) error {
	var ro runOptions
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	ro.addFlags(fs)
	names, err := parseArgs(fs, args, runUsage, env)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(ro.config, env)
	if err != nil {
		return err
	}
	switch {
	case ro.all && len(names) > 0:
		return &usageError{"give job names or --all, not both"}
	case ro.all:
		names = cfg.order
		if len(names) == 0 {
			return &mail.ConfigError{Msg: fmt.Sprintf("config %s has no jobs", cfg.path), Hint: "see mailferry help config"}
		}
	case len(names) == 0:
		return &usageError{fmt.Sprintf("name a job or pass --all: usage: mailferry %s (jobs in %s: %s)", runUsage, cfg.path, jobList(cfg))}
	}
	for _, n := range names {
		if _, ok := cfg.Jobs[n]; !ok {
			return &usageError{fmt.Sprintf("no job %q in %s (jobs: %s)", n, cfg.path, jobList(cfg))}
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var first error
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		o, err := jobOptions(cfg, name, args, set, env)
		if err == nil {
			j := cfg.Jobs[name]
			err = doCopy(ctx, o, j.Source, j.Destination, name, env)
		}
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

// jobOptions builds a job's options: the flag defaults, then the job's
// settings, then the flags given on the command line, which win. A list
// flag (--include) or a side's credential flag given on the command line
// replaces the job's list or credentials instead of adding to them.
func jobOptions(cfg *fileConfig, name string, args []string, set map[string]bool, env *cliEnv) (*copyOptions, error) {
	var ro runOptions
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	ro.addFlags(fs)
	if err := ro.copy.applyJob(cfg.Jobs[name], set, env); err != nil {
		return nil, err
	}
	hide := cfg.passwordEnvs()
	ro.copy.src.hideEnv, ro.copy.dst.hideEnv = hide, hide
	if cfg.Report != "" && !set["report"] {
		ro.copy.report = cfg.Report
	}
	if _, err := parseArgs(fs, args, runUsage, env); err != nil {
		return nil, err
	}
	return &ro.copy, nil
}

// applyJob sets o from a job of the config file, except what set (the
// flags given on the command line) overrides.
func (o *copyOptions) applyJob(j jobConfig, set map[string]bool, env *cliEnv) error {
	path := func(p string) string {
		if q, err := expandHome(p, env); err == nil {
			return q
		}
		return p
	}
	if !set["include"] {
		o.common.include = j.Include
	}
	if !set["exclude"] {
		o.common.exclude = j.Exclude
	}
	o.maps = j.Map
	o.deleteSource = j.DeleteSource
	if j.Gmail {
		o.gmail = true
	}
	if j.Workers > 0 {
		o.common.workers = j.Workers
	}
	if j.Timeout > 0 {
		o.common.timeout = time.Duration(j.Timeout)
	}
	o.maxSize = sizeFlag(j.MaxSize)
	if !set["max-bytes-per-sec"] {
		o.maxBytesPerSec = sizeFlag(j.MaxBytesPerSec)
	}
	if !set["max-msgs-per-sec"] {
		o.maxMsgsPerSec = j.MaxMsgsPerSec
	}
	if !set["max-bytes"] {
		o.maxBytes = sizeFlag(j.MaxBytes)
	}
	o.since.t, o.before.t = j.Since.Time, j.Before.Time
	o.checkpoint = path(j.Checkpoint)
	o.common.caFile = path(j.CAFile)
	o.common.allowPlaintext = j.AllowPlaintext
	o.common.allowPlaintextAuth = o.common.allowPlaintextAuth || j.AllowPlaintextAuth
	o.common.noStartTLS = o.common.noStartTLS || j.NoStartTLS
	o.common.pinSHA256 = append(o.common.pinSHA256, j.PinSHA256...)
	o.allowUnsafeExpunge = o.allowUnsafeExpunge || j.AllowUnsafeExpunge
	for _, s := range []struct {
		side *sideFlags
		name string
		file string
		cmd  string
		env  string
		pw   string
		oa   oauth2Settings
	}{
		{&o.src, "src", j.SrcPasswordFile, j.SrcPasswordCmd, j.SrcPasswordEnv, j.SrcPassword, j.SrcOAuth2},
		{&o.dst, "dst", j.DstPasswordFile, j.DstPasswordCmd, j.DstPasswordEnv, j.DstPassword, j.DstOAuth2},
	} {
		overridden := false
		for f := range set {
			overridden = overridden || credentialFlag(f, s.name)
		}
		if overridden {
			continue
		}
		s.side.passwordFile, s.side.passwordCmd, s.side.passwordEnv, s.side.inlinePassword = path(s.file), s.cmd, s.env, s.pw
		s.side.oauth2 = s.oa
		s.side.oauth2.ClientSecretFile = path(s.oa.ClientSecretFile)
		s.side.oauth2.RefreshTokenFile = path(s.oa.RefreshTokenFile)
	}
	return nil
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
