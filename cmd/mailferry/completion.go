package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	flag "github.com/spf13/pflag"
)

// completionShells are the shells 'completion' writes a script for.
func completionShells() []string { return []string{"bash", "zsh", "fish", "powershell"} }

// newCompletionCommand is 'mailferry completion SHELL': cobra generates the
// script from the command tree, so commands and flags follow the code. The
// script asks the binary itself (its hidden __complete command) for
// candidates, so job names follow the config file.
func newCompletionCommand(c *commandSet) *cobra.Command {
	return &cobra.Command{
		Use:       "completion SHELL",
		Short:     "print a completion script for bash, zsh, fish or powershell (commands, flags, job names)",
		Args:      nArgs(1),
		ValidArgs: completionShells(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCompletion(c.root, args[0], cmd.OutOrStdout())
		},
	}
}

// runCompletion writes root's completion script for shell to w.
func runCompletion(root *cobra.Command, shell string, w io.Writer) error {
	switch shell {
	case "bash":
		return root.GenBashCompletionV2(w, true)
	case "zsh":
		return root.GenZshCompletion(w)
	case "fish":
		return root.GenFishCompletion(w, true)
	case "powershell":
		return root.GenPowerShellCompletionWithDesc(w)
	}
	shells := completionShells()
	return &usageError{fmt.Sprintf("completion %q: want %s or %s", shell, strings.Join(shells[:len(shells)-1], ", "), shells[len(shells)-1])}
}

// flagValues are the values some flags take, for completion.
func flagValues() map[string][]string {
	return map[string][]string{
		"progress":   {"auto", "always", "never"},
		"log-level":  {"debug", "info", "warn", "error"},
		"log-format": {"text", "json"},
	}
}

// completeFlagValues registers cmd's flag completions: fixed values, and
// files for the flags that name one.
func completeFlagValues(cmd *cobra.Command) {
	values := flagValues()
	cmd.Flags().VisitAll(func(f *flag.Flag) {
		if values, ok := values[f.Name]; ok {
			_ = cmd.RegisterFlagCompletionFunc(f.Name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
		if fileFlag(f.Name) {
			_ = cmd.MarkFlagFilename(f.Name)
		}
	})
}

// fileFlag reports whether a flag's value is a file.
func fileFlag(name string) bool {
	return strings.HasSuffix(name, "-file") || name == "config" || name == "checkpoint" || name == "report" || name == "dir"
}

// completeEndpoints completes the first n arguments with the endpoint URL
// prefixes.
func completeEndpoints(n int) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return []string{"imaps://", "imap://", "pop3s://", "pop3://", "maildir:", "mbox:"}, cobra.ShellCompDirectiveNoSpace
	}
}

// completeJobs completes the job names of the config file (--config's, if
// given), leaving out the ones already named.
func completeJobs(env *cliEnv) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		file, _ := cmd.Flags().GetString("config")
		cfg, err := loadConfig(file, env)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, name := range cfg.order {
			if !strings.Contains(" "+strings.Join(args, " ")+" ", " "+name+" ") {
				out = append(out, name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
