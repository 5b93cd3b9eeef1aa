package main

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"syscall"

	"github.com/mailferry/mailferry/internal/exitcode"
	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/twoway"
)

const exitCodeTable = `
Exit codes:
  0    everything copied or already present     5    cannot connect safely: DNS, TCP, TLS
  1    unexpected error                               certificate, STARTTLS refused
  2    usage or config error (flag, URL, config) 6    checkpoint unusable (corrupt, other endpoints)
  3    partial: some messages failed or are      7    another mailferry run holds the checkpoint
       missing; a rerun resumes                  8    temporary: throttled, connection lost,
  4    authentication rejected                        --max-bytes spent; retry later, it resumes
                                                 9    destination full: local disk full or over
                                                      quota (the path is named), or an IMAP
                                                      destination over quota (OVERQUOTA)
                                                 10   sync: deletions held back; rerun with
                                                      --force after checking
                                                 130  interrupted; checkpoint flushed; rerun resumes
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

// laterError means the run finished but some messages failed, every one
// on a temporary error (throttled, connection lost): exit 8, "retry later",
// rather than 3, which asks a human to look.
type laterError struct{ n int }

func (e *laterError) Error() string {
	return "some messages were not copied because of temporary errors (server throttling or connection lost); rerun later to resume"
}

// isPartial reports whether err is a finished run with failed messages.
func isPartial(err error) bool {
	return errors.As(err, new(*partialError)) || errors.As(err, new(*laterError))
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitCode maps an error to the documented exit code. The order matters
// where one error matches two rows: a rejected URL is a usage error even if
// it also names a host; a full disk while writing the checkpoint is "disk
// full", not "checkpoint unusable", because freeing space fixes it.
func exitCode(err error) int {
	var pe *partialError
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitcode.OK
	case errors.Is(err, context.Canceled):
		return exitcode.Interrupted
	case errors.As(err, &ue), errors.Is(err, mail.ErrConfig):
		return exitcode.Usage
	case errors.Is(err, mail.ErrAuth):
		return exitcode.Auth
	case errors.Is(err, mail.ErrUnreachable):
		return exitcode.Unreachable
	case errors.Is(err, checkpoint.ErrLocked):
		return exitcode.Locked
	case destinationFull(err):
		return exitcode.DiskFull
	case errors.Is(err, checkpoint.ErrUnusable):
		return exitcode.Checkpoint
	case errors.As(err, &pe):
		return exitcode.Partial
	case errors.Is(err, twoway.ErrHeldBack):
		return exitcode.HeldBack
	case errors.As(err, new(*laterError)), errors.Is(err, mailferry.ErrResumeLater), mail.Temporary(err):
		return exitcode.Temporary
	}
	return exitcode.Unexpected
}

// diskFull reports whether err is a full disk or an exhausted disk quota
// on this machine (scenario D1).
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// destinationFull reports a full destination: a local disk (diskFull) or a
// server over quota (C10).
func destinationFull(err error) bool {
	return diskFull(err) || errors.Is(err, mail.ErrNoSpace)
}

// diskFullError is a full disk, told with the path that could not be
// written and the remedy (exit 9).
type diskFullError struct{ err error }

func (e *diskFullError) Error() string {
	var pe *fs.PathError
	where := "the destination's or the checkpoint's file system"
	if errors.As(e.err, &pe) {
		where = "the file system holding " + pe.Path
	}
	return e.err.Error() + " (disk full: free space on " + where + ", then rerun to resume; what was stored is recorded)"
}

func (e *diskFullError) Unwrap() error { return e.err }

// runError classifies the error a copy ended with for the summary and the
// exit code: failed messages make a partialError, a full disk gets its
// path and remedy.
func runError(err error, failures []mailferry.Failure) error {
	if err == nil && len(failures) > 0 {
		temporary := true
		for _, f := range failures {
			temporary = temporary && f.Temporary
		}
		if temporary {
			return &laterError{len(failures)}
		}
		return &partialError{len(failures)}
	}
	if diskFull(err) && !errors.As(err, new(*diskFullError)) {
		return &diskFullError{err}
	}
	return err
}

// oneLine flattens an error for the single line on stderr.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// runCounts are the run's numbers under the names monitoring asks for
// (scenario H3), every key always present.
type runCounts struct {
	Fetched  int64 `json:"fetched"`  // read whole from the source and handed to the destination
	Stored   int64 `json:"stored"`   // durable in the destination and recorded
	Deleted  int64 `json:"deleted"`  // deleted from the source after they were stored
	Vanished int64 `json:"vanished"` // listed, but gone from the source when fetched
	Failed   int64 `json:"failed"`   // given up (see failures; temporary ones: failed_temporary)
	// FailedTemporary of them failed on temporary errors: a rerun later
	// will likely copy them.
	FailedTemporary int64 `json:"failed_temporary"`
	// Skipped by reason: "present" (already in the destination: recorded
	// by an earlier run, or found there by the sink), "too_large" (over
	// --max-size), "outside_dates" (--since/--before).
	Skipped map[string]int64 `json:"skipped"`
	// Remapped: renumbered on the source (UIDVALIDITY, UIDLs) and
	// recorded under their new ids without a copy; never in stored.
	Remapped int64 `json:"remapped"`
	// Events counts the folder events (see events) by kind: "remapped",
	// "replaced", "halted", "reset-suspected".
	Events map[string]int64 `json:"events,omitempty"`
}

// temporaryFailures counts the failures a rerun may well get through.
func temporaryFailures(fs []mailferry.Failure) int {
	n := 0
	for _, f := range fs {
		if f.Temporary {
			n++
		}
	}
	return n
}

func countsOf(t mailferry.Snapshot, res *mailferry.Result, f *filterSummary) runCounts {
	c := runCounts{Fetched: t.Fetched, Stored: t.Copied, Deleted: t.Deleted, Vanished: t.Vanished, Failed: t.Failed,
		Skipped: map[string]int64{"present": t.Skipped + t.Present, "too_large": 0, "outside_dates": 0}, Remapped: t.Remapped}
	for _, e := range res.Events {
		if c.Events == nil {
			c.Events = map[string]int64{}
		}
		c.Events[e.Kind]++
	}
	c.FailedTemporary = int64(temporaryFailures(res.Failures))
	for _, sk := range res.Skipped {
		if strings.Contains(sk.Err, mail.ErrTooLarge.Error()) {
			c.Skipped["too_large"]++
			c.Skipped["present"]--
		}
	}
	if f != nil {
		c.Skipped["outside_dates"] = f.OutsideDates
	}
	return c
}
