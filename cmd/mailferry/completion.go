package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// runCompletion prints a completion script for bash, zsh or fish. The
// commands and flags are written into the script; job names are asked of
// 'mailferry jobs --names' each time, so they follow the config file.
func runCompletion(ctx context.Context, args []string, env *cliEnv) error {
	fs := flag.NewFlagSet("completion", flag.ContinueOnError)
	pos, err := parse(fs, args, 1, "completion bash|zsh|fish", env)
	if err != nil {
		return err
	}
	cmds := completionCommands(ctx, env)
	switch pos[0] {
	case "bash":
		writeBash(env.stdout, cmds)
	case "zsh":
		writeZsh(env.stdout, cmds)
	case "fish":
		writeFish(env.stdout, cmds)
	default:
		return &usageError{fmt.Sprintf("completion %q: want bash, zsh or fish", pos[0])}
	}
	return nil
}

// compFlag is one flag of a command; arg says it takes a value.
type compFlag struct {
	name, help string
	arg        bool
}

type compCommand struct {
	name, short string
	flags       []compFlag
}

// flagLine matches a flag in PrintDefaults output: "  -name VALUE".
var flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)( \S+)?$`)

// completionCommands reads every command's flags from its --help, so that a
// new flag is completed without touching this file.
func completionCommands(ctx context.Context, env *cliEnv) []compCommand {
	var out []compCommand
	for _, c := range commands() {
		if c.name == "completion" {
			out = append(out, compCommand{name: c.name, short: c.short})
			continue
		}
		var help bytes.Buffer
		henv := *env
		henv.stdout, henv.stderr = &help, io.Discard
		c.run(ctx, []string{"--help"}, &henv)
		cc := compCommand{name: c.name, short: c.short}
		lines := strings.Split(help.String(), "\n")
		for i, l := range lines {
			m := flagLine.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			f := compFlag{name: m[1], arg: m[2] != ""}
			if i+1 < len(lines) {
				f.help = strings.TrimSpace(lines[i+1])
			}
			cc.flags = append(cc.flags, f)
		}
		sort.Slice(cc.flags, func(i, j int) bool { return cc.flags[i].name < cc.flags[j].name })
		out = append(out, cc)
	}
	return out
}

// fileFlag reports whether a flag's value is a file.
func fileFlag(name string) bool {
	return strings.HasSuffix(name, "-file") || name == "config" || name == "checkpoint" || name == "report" || name == "dir"
}

func names[T any](list []T, name func(T) string) string {
	var s []string
	for _, x := range list {
		s = append(s, name(x))
	}
	return strings.Join(s, " ")
}

func writeBash(w io.Writer, cmds []compCommand) {
	fmt.Fprintf(w, `# bash completion for mailferry. Load it with
#   source <(mailferry completion bash)
# or save it as ~/.local/share/bash-completion/completions/mailferry
_mailferry() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local cmds="%s"
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$cmds help" -- "$cur"))
        return
    fi
    local cmd=${COMP_WORDS[1]} flags="" argflags="" i cfg=()
    case $cmd in
`, names(cmds, func(c compCommand) string { return c.name }))
	for _, c := range cmds {
		var all, withArg []string
		for _, f := range c.flags {
			all = append(all, "--"+f.name)
			if f.arg {
				withArg = append(withArg, "--"+f.name)
			}
		}
		fmt.Fprintf(w, "    %s) flags=%q argflags=%q ;;\n", c.name, strings.Join(all, " "), strings.Join(withArg, " "))
	}
	fmt.Fprintf(w, `    esac
    if [[ " $argflags " == *" $prev "* ]]; then
        case $prev in
            --config|--checkpoint|--report|--dir|--*-file) COMPREPLY=($(compgen -f -- "$cur")) ;;
            --progress) COMPREPLY=($(compgen -W "auto always never" -- "$cur")) ;;
            --log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")) ;;
            --log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")) ;;
        esac
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
        return
    fi
    case $cmd in
        run)
            for ((i = 2; i < COMP_CWORD; i++)); do
                [[ ${COMP_WORDS[i]} == --config || ${COMP_WORDS[i]} == -config ]] && cfg=(--config "${COMP_WORDS[i+1]}")
            done
            COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" jobs --names "${cfg[@]}" 2>/dev/null)" -- "$cur")) ;;
        help) COMPREPLY=($(compgen -W "$cmds %s" -- "$cur")) ;;
        completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
        copy|verify|ls) COMPREPLY=($(compgen -W "imaps:// imap:// pop3s:// pop3:// maildir: mbox:" -- "$cur")) ;;
    esac
}
complete -o default -F _mailferry mailferry
`, strings.Join(helpTopicNames(), " "))
}

func writeZsh(w io.Writer, cmds []compCommand) {
	fmt.Fprint(w, `#compdef mailferry
# zsh completion for mailferry. Save it as _mailferry in a directory of
# $fpath, or load it with: source <(mailferry completion zsh)
_mailferry() {
  local -a cmds flags
  cmds=(
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "    %s\n", zshQuote(c.name+":"+c.short))
	}
	fmt.Fprint(w, `  )
  if (( CURRENT == 2 )); then
    _describe -t commands 'mailferry command' cmds
    return
  fi
  case $words[CURRENT-1] in
    --config|--checkpoint|--report|--dir|--*-file) _files; return ;;
  esac
  case $words[2] in
`)
	for _, c := range cmds {
		var fl []string
		for _, f := range c.flags {
			fl = append(fl, zshQuote("--"+f.name+"["+strings.ReplaceAll(strings.ReplaceAll(f.help, "[", "("), "]", ")")+"]"))
		}
		fmt.Fprintf(w, "    %s) flags=(%s) ;;\n", c.name, strings.Join(fl, " "))
	}
	fmt.Fprintf(w, `  esac
  if [[ $PREFIX == -* ]]; then
    _values -w 'flag' $flags
    return
  fi
  case $words[2] in
    run)
      local -a cfg jobs
      local i=${words[(i)--config]}
      (( i < CURRENT )) && cfg=(--config ${words[i+1]})
      jobs=(${(f)"$(${words[1]} jobs --names $cfg 2>/dev/null)"})
      compadd -a jobs ;;
    help) compadd -- %s ${cmds%%%%:*} ;;
    completion) compadd bash zsh fish ;;
    *) _files ;;
  esac
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _mailferry "$@"
else
  compdef _mailferry mailferry
fi
`, strings.Join(helpTopicNames(), " "))
}

func zshQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writeFish(w io.Writer, cmds []compCommand) {
	fmt.Fprint(w, `# fish completion for mailferry. Load it with
#   mailferry completion fish | source
# or save it as ~/.config/fish/completions/mailferry.fish
complete -c mailferry -f
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "complete -c mailferry -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.short))
	}
	fmt.Fprintf(w, "complete -c mailferry -n __fish_use_subcommand -a help -d 'help on a command or topic'\n")
	for _, c := range cmds {
		for _, f := range c.flags {
			line := fmt.Sprintf("complete -c mailferry -n '__fish_seen_subcommand_from %s' -l %s", c.name, f.name)
			if f.arg {
				line += " -r"
				if fileFlag(f.name) {
					line += " -F"
				}
			}
			fmt.Fprintf(w, "%s -d %s\n", line, fishQuote(f.help))
		}
	}
	fmt.Fprintf(w, `complete -c mailferry -n '__fish_seen_subcommand_from run' -a '(mailferry jobs --names (string match -r -- "^--config=.*" (commandline -opc)) 2>/dev/null)'
complete -c mailferry -n '__fish_seen_subcommand_from help' -a '%s %s'
complete -c mailferry -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'
`, names(cmds, func(c compCommand) string { return c.name }), strings.Join(helpTopicNames(), " "))
}

func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}
