package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	flag "github.com/spf13/pflag"

	"github.com/mailferry/mailferry/internal/exitcode"
)

// The commands are thin: each parses its flags into an options value,
// calls its Check, then calls one run function (runCopy's doCopy, runRun,
// runLs...), which holds the work.

// runEnv runs one command line and returns the exit code. Errors are
// printed here, one line each, unless the command printed them already.
func runEnv(ctx context.Context, args []string, env *cliEnv) int {
	if len(args) == 0 {
		usage(env.stderr, newCommands(env).list)
		return exitcode.Usage
	}
	name, err := execute(ctx, args, env)
	if err != nil && !errors.Is(err, errHelp) && !errors.Is(err, errReported) {
		fmt.Fprintf(env.stderr, "mailferry %s: %s\n", name, oneLine(err))
	}
	return exitCode(err)
}

// execute runs one command line through the command tree and returns the
// name of the command that ran and its error.
func execute(ctx context.Context, args []string, env *cliEnv) (string, error) {
	switch args[0] {
	case "-h", "--help", "-help":
		args = append([]string{"help"}, args[1:]...)
	case "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
	}
	c := newCommands(env)
	args = c.longFlags(args)
	c.root.SetArgs(args)
	ran, err := c.root.ExecuteContextC(ctx)
	name := args[0]
	if ran != nil && ran != c.root {
		name = ran.Name()
	}
	return name, err
}

// commandSet is the command tree and its commands in the order 'mailferry
// help' lists them.
type commandSet struct {
	root *cobra.Command
	list []*cobra.Command
}

func newCommands(env *cliEnv) *commandSet {
	root := &cobra.Command{
		Use:   "mailferry",
		Short: "copy mail between POP3, IMAP, Maildir and mbox",
		// An unknown command (or flag) reaches RunE as it was typed.
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		SilenceErrors:      true,
		SilenceUsage:       true,
		// Our own 'completion' command; cobra adds the hidden __complete.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(env.stdout)
	root.SetErr(env.stderr)
	root.SetIn(env.stdin)
	c := &commandSet{root: root}
	c.list = []*cobra.Command{
		newCopyCommand(env), newSyncCommand(env), newRunCommand(env), newJobsCommand(env), newLsCommand(env),
		newVerifyCommand(env), newBatchCommand(env), newDemoCommand(env), newCompletionCommand(c), newVersionCommand(env),
	}
	root.RunE = func(_ *cobra.Command, args []string) error {
		fmt.Fprintf(env.stderr, "mailferry: unknown command %q (run mailferry help)\n", args[0])
		return reportedError{&usageError{"unknown command " + args[0]}}
	}
	root.SetHelpCommand(newHelpCommand(c, env))
	root.SetFlagErrorFunc(flagError)
	for _, sub := range c.list {
		sub.SetHelpFunc(func(cmd *cobra.Command, _ []string) { printHelp(cmd, cmd.OutOrStdout()) })
		sub.InitDefaultHelpFlag() // so that longFlags knows -help
		root.AddCommand(sub)
		completeFlagValues(sub)
	}
	return c
}

func newCopyCommand(env *cliEnv) *cobra.Command {
	var o copyOptions
	cmd := &cobra.Command{
		Use:   "copy SRC DST [flags]",
		Short: "copy every message of SRC that DST lacks (resumable, idempotent)",
		Args:  nArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Check(); err != nil {
				return err
			}
			return doCopy(cmd.Context(), &o, args[0], args[1], "", env)
		},
		ValidArgsFunction: completeEndpoints(2),
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func newRunCommand(env *cliEnv) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   runUsage,
		Short: "run jobs of the config file (for cron: add --quiet)",
		Long: "Run jobs of the config file (for cron: add --quiet).\n\n" + jobMergeRule + "\n\n" +
			"A job with mode = \"sync\" runs 'mailferry sync SOURCE DESTINATION'\n" +
			"(help sync). --force, --no-delete, --max-delete and --remove-folders\n" +
			"apply to sync jobs only; a flag a job's mode does not use is ignored\n" +
			"for that job, with a warning.",
		RunE: func(cmd *cobra.Command, args []string) error {
			o.jobs, o.given = args, cmd.Flags().Changed
			if err := o.Check(); err != nil {
				return err
			}
			return runRun(cmd.Context(), &o, env)
		},
		ValidArgsFunction: completeJobs(env),
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func newJobsCommand(env *cliEnv) *cobra.Command {
	var o jobsOptions
	cmd := &cobra.Command{
		Use:   "jobs [flags]",
		Short: "list the jobs of the config file",
		Args:  nArgs(0),
		RunE:  func(*cobra.Command, []string) error { return runJobs(&o, env) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.config, "config", "", "read jobs from `FILE` (default $XDG_CONFIG_HOME/mailferry/config.toml, else ~/.config/mailferry/config.toml)")
	fs.BoolVar(&o.names, "names", false, "print only the job names, one a line (for shell completion)")
	fs.BoolVar(&o.json, "json", false, "print the jobs as JSON")
	return cmd
}

func newLsCommand(env *cliEnv) *cobra.Command {
	var o lsOptions
	cmd := &cobra.Command{
		Use:   "ls SRC [flags]",
		Short: "list the mailboxes of SRC with message counts and sizes",
		Args:  nArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Check(); err != nil {
				return err
			}
			return runLs(cmd.Context(), &o, args[0], env)
		},
		ValidArgsFunction: completeEndpoints(1),
	}
	o.common.add(cmd.Flags())
	o.src.add(cmd.Flags(), "src")
	return cmd
}

func newVerifyCommand(env *cliEnv) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify SRC DST [flags]",
		Short: "check by content that every message of SRC is in DST",
		Args:  nArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Check(); err != nil {
				return err
			}
			return runVerify(cmd.Context(), &o, args[0], args[1], env)
		},
		ValidArgsFunction: completeEndpoints(2),
	}
	fs := cmd.Flags()
	o.common.add(fs)
	o.src.add(fs, "src")
	o.dst.add(fs, "dst")
	fs.Var(&o.maps, "map", "expect source folders matching `SRC_RE=DST` in DST, as copy --map put them (repeatable); special-use folders follow their role as in copy")
	fs.BoolVar(&o.gmail, "gmail", false, "check a copy made with copy --gmail: each Gmail message is expected once, in the folder copy --gmail put it (INBOX, a label, Sent, Drafts, else Archive), not in every label folder; give the copy's --include, --exclude and --map; see mailferry help gmail")
	fs.StringVar(&o.checkpoint, "checkpoint", "", "with --gmail: the copy's checkpoint `FILE` (default: the copy's default one, when it exists), so a message labelled after it was copied is expected in the folder it was copied to")
	return cmd
}

func newDemoCommand(env *cliEnv) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo [flags]",
		Short: "copy sample mail from a built-in IMAP server to ./demo-maildir",
		Args:  nArgs(0),
		RunE:  func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), &o, env) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.dir, "dir", "demo-maildir", "copy into Maildir `DIR`")
	fs.IntVar(&o.messages, "messages", 400, "how many sample messages the built-in server holds")
	fs.StringVar(&o.progress, "progress", "auto", "progress display: auto, always, never")
	return cmd
}

func newVersionCommand(env *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  nArgs(0),
		RunE:  func(*cobra.Command, []string) error { return runVersion(env) },
	}
}

// Check reports a mistake in copy's flags before anything runs.
func (o *copyOptions) Check() error {
	switch {
	case o.progress != "auto" && o.progress != "always" && o.progress != "never":
		return &usageError{fmt.Sprintf("--progress %q: want auto, always or never", o.progress)}
	case o.progressInterval <= 0:
		return &usageError{"--progress-interval: want a positive duration such as 10s"}
	case !o.since.t.IsZero() && !o.before.t.IsZero() && !o.since.t.Before(o.before.t):
		return &usageError{fmt.Sprintf("--since %s is not before --before %s: nothing would be copied", &o.since, &o.before)}
	case o.common.workers < 1:
		return &usageError{fmt.Sprintf("--workers %d: want 1 or more (messages copied at once)", o.common.workers)}
	case o.dryRun && o.reset:
		return &usageError{"--reset with --dry-run: a dry run changes nothing, not even the checkpoint; drop one of them"}
	case o.deleteSource && o.deleteAfter.set:
		return &usageError{"--delete-after and --delete-source cannot be combined: --delete-source deletes each message as soon as it is stored, --delete-after keeps it DAYS first"}
	case o.dryRun && o.rebuildState:
		return &usageError{"--rebuild-state with --dry-run: a dry run changes nothing, not even the checkpoint; drop one of them"}
	}
	return o.common.Check()
}

// Check reports a mistake in ls's flags before anything runs.
func (o *lsOptions) Check() error { return o.common.Check() }

// Check reports a mistake in verify's flags before anything runs.
func (o *verifyOptions) Check() error {
	if !o.gmail && o.checkpoint != "" {
		return &usageError{"--checkpoint without --gmail: verify reads the copy's checkpoint only to place Gmail messages; drop it or add --gmail"}
	}
	return o.common.Check()
}

// nArgs wants exactly n positional arguments (flags may come before,
// between or after them).
func nArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{fmt.Sprintf("want %d argument(s), got %d: usage: %s", n, len(args), usageLine(cmd))}
		}
		return nil
	}
}

// flagError makes a flag mistake a usage error (exit 2) that says where
// to look, in the words of Go's flag package the CLI was first built on.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		msg = "flag provided but not defined: -" + rest
	}
	return &usageError{msg + " (see mailferry help " + cmd.Name() + ")"}
}

// longFlags applies longFlags to the arguments of the command args name,
// also when the shell completion asks about them (__complete CMD ...).
func (c *commandSet) longFlags(args []string) []string {
	lead := 0
	if args[0] == cobra.ShellCompRequestCmd {
		lead = 1
	}
	if sub, _, err := c.root.Find(args[lead:]); err == nil && sub != c.root {
		return append(args[:lead:lead], longFlags(sub, args[lead:])...)
	}
	return args
}

// longFlags lets a long flag start with one dash (-config FILE), as Go's
// flag package allowed: such an argument naming a flag of cmd gets a second
// dash. No command has one-letter flags but -h, so nothing else is meant.
// A flag's value and what follows "--" are left alone.
func longFlags(cmd *cobra.Command, args []string) []string {
	out := make([]string, 0, len(args))
	value := false // the previous argument is a flag waiting for its value
	for i, a := range args {
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case value, !strings.HasPrefix(a, "-"):
			out, value = append(out, a), false
			continue
		}
		name, _, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := cmd.Flags().Lookup(name)
		if f != nil && len(name) > 1 && !strings.HasPrefix(a, "--") {
			a = "-" + a
		}
		value = f != nil && !inline && f.NoOptDefVal == ""
		out = append(out, a)
	}
	return out
}

// usageLine is "mailferry copy SRC DST [flags]": the command's path and
// its Use (nested commands included).
func usageLine(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return cmd.Use
	}
	return cmd.Parent().CommandPath() + " " + cmd.Use
}

// printHelp prints a command's help: usage, what it does, flags and the
// exit codes.
func printHelp(cmd *cobra.Command, w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n", usageLine(cmd))
	text := cmd.Long
	if text == "" {
		text = strings.ToUpper(cmd.Short[:1]) + cmd.Short[1:] + "."
	}
	fmt.Fprintf(w, "%s\n\nFlags:\n", text)
	fs := flag.NewFlagSet(cmd.Name(), flag.ContinueOnError)
	cmd.LocalNonPersistentFlags().VisitAll(func(f *flag.Flag) {
		if f.Name != "help" {
			fs.AddFlag(f)
		}
	})
	fmt.Fprint(w, fs.FlagUsages())
	fmt.Fprint(w, exitCodeTable)
}

// newHelpCommand is 'mailferry help [COMMAND|TOPIC]': the overview on
// stderr, a command's help or a topic on stdout.
func newHelpCommand(c *commandSet, env *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command|topic]",
		Short: "help on a command or topic",
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				usage(env.stderr, c.list)
				return nil
			}
			if sub, rest, err := c.root.Find(args); err == nil && sub != c.root && len(rest) == 0 {
				printHelp(sub, env.stdout)
				return nil
			}
			if text, ok := helpTopics()[args[0]]; ok {
				fmt.Fprint(env.stdout, text)
				return nil
			}
			fmt.Fprintf(env.stderr, "mailferry help: no command or topic %q (topics: %s)\n", args[0], strings.Join(helpTopicNames(), ", "))
			return reportedError{&usageError{"no command or topic " + args[0]}}
		},
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, sub := range c.list {
				names = append(names, sub.Name())
			}
			return append(names, helpTopicNames()...), cobra.ShellCompDirectiveNoFileComp
		},
	}
}
