package main

import (
	"context"
	"errors"
	"strings"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// Exit codes; the table below is printed by --help and copied in README.md.
const (
	exitOK          = 0
	exitUnexpected  = 1
	exitUsage       = 2
	exitPartial     = 3
	exitAuth        = 4
	exitUnreachable = 5
	exitCheckpoint  = 6
	exitLocked      = 7
	exitInterrupted = 130
)

const exitCodeTable = `
Exit codes:
  0    everything copied or already present     4    authentication rejected
  1    unexpected error                          5    endpoint unreachable (DNS, TCP, TLS)
  2    usage or config error (flag, URL, config) 6    checkpoint unusable (corrupt, other endpoints)
  3    partial: some messages failed or are      7    another mailferry run holds the checkpoint
       missing; a rerun resumes                  130  interrupted; checkpoint flushed; rerun resumes
`

// errHelp is returned when a command printed its help on request.
var errHelp = errors.New("help requested")

// errReported wraps an error the command already printed (e.g. a partial
// run whose failures are in the summary).
var errReported = errors.New("reported")

// partialError means the run finished but some messages failed or are
// missing.
type partialError struct{ n int }

func (e *partialError) Error() string { return "some messages were not copied" }

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitCode maps an error to the documented exit code.
func exitCode(err error) int {
	var pe *partialError
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ue), errors.Is(err, mail.ErrConfig):
		return exitUsage
	case errors.Is(err, mail.ErrAuth):
		return exitAuth
	case errors.Is(err, mail.ErrUnreachable):
		return exitUnreachable
	case errors.Is(err, checkpoint.ErrLocked):
		return exitLocked
	case errors.Is(err, checkpoint.ErrUnusable):
		return exitCheckpoint
	case errors.As(err, &pe):
		return exitPartial
	}
	return exitUnexpected
}

// oneLine flattens an error for the single line on stderr.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
