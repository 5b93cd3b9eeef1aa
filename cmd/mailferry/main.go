// Command mailferry copies mail between POP3, IMAP, Maildir and mbox,
// resumably, byte for byte, without ever losing or doubling a message.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mailferry/mailferry/sync/mail"
)

// version is set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

// memoryLimit is the Go heap's soft limit unless GOMEMLIMIT says otherwise.
// Bodies stream, so the live heap is small; without a limit the collector
// lets garbage grow to twice it (GOGC=100), which put an IMAP -> IMAP run at
// 62-78 MiB RSS. With it, 47 MiB and no measurable slowdown (BENCHMARKS.md).
const memoryLimit = 40 << 20

func main() {
	atStart()
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process at once
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	atExit()
	os.Exit(code)
}

// cliEnv is what a subcommand gets besides its arguments; tests build their
// own to drive the CLI in-process.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	isTerminal     bool           // stderr is a terminal
	reg            *mail.Registry // nil: every endpoint (tests add fakes)
	hooks          testHooks      // the tests' fault hooks; zero in a release build
}

// registry returns the endpoints copy and run may use.
func (e *cliEnv) registry() *mail.Registry {
	if e.reg != nil {
		return e.reg
	}
	return registry()
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := &cliEnv{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, isTerminal: isTerminal(stderr),
		hooks: newTestHooks(os.Getenv)}
	return runEnv(ctx, args, env)
}

// usage prints the overview of 'mailferry help': cmds in their order.
func usage(w io.Writer, cmds []*cobra.Command) {
	fmt.Fprint(w, `mailferry moves mail between POP3, IMAP, Maildir and mbox: byte for byte,
resumable after any crash, never twice.

Usage:
  mailferry <command> [arguments] [flags]

Commands:
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-26s %s\n", c.Use, c.Short)
	}
	fmt.Fprint(w, `
Endpoints:
  imaps://USER@HOST[:PORT]    IMAP over TLS (993)
  imap://USER@HOST[:PORT]     IMAP with STARTTLS required (143)
  pop3s://USER@HOST[:PORT]    POP3 over TLS (995)
  pop3://USER@HOST[:PORT]     POP3 with STLS required (110)
  maildir:PATH                Maildir++ folder tree (Dovecot layout)
  mbox:DIR                    one mboxrd file per folder: DIR/<folder>.mbox

Passwords never go in URLs or flags: use --src-password-file FILE,
--src-password-cmd CMD or MAILFERRY_SRC_PASSWORD (and the same for dst).

Examples:
  mailferry copy imaps://alice@imap.example.org maildir:~/Mail/alice --src-password-file ~/.alice-pw
  mailferry copy pop3s://alice@pop.example.org mbox:~/backup --delete-source --src-password-cmd 'pass show mail'
  mailferry verify imaps://alice@imap.example.org maildir:~/Mail/alice --src-password-file ~/.alice-pw

Nightly runs: put jobs in ~/.config/mailferry/config.toml and run
  mailferry run --all --quiet
from cron or a systemd timer. Topics: mailferry help config|cron|filters|oauth2|exit-codes

Run 'mailferry help <command>' for a command's flags.
`)
	fmt.Fprint(w, exitCodeTable)
}
