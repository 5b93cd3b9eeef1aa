package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errHelp, 0},
		{&usageError{"bad flag"}, 2},
		{&mail.ConfigError{Msg: "bad url"}, 2},
		{fmt.Errorf("source: %w", &mail.ConfigError{Msg: "x"}), 2},
		{&partialError{3}, 3},
		{fmt.Errorf("login alice@host: %w", mail.ErrAuth), 4},
		{mail.DialError("host:993", syscall.ECONNREFUSED), 5},
		{fmt.Errorf("%w: other endpoints", checkpoint.ErrUnusable), 6},
		{fmt.Errorf("%w: /x", checkpoint.ErrLocked), 7},
		{fmt.Errorf("copy: %w", context.Canceled), 130},
		{errors.New("boom"), 1},
		{&partialError{2}, 3},
		{&laterError{2}, 8},
		{runError(nil, []mailferry.Failure{{ID: "1", Temporary: true}, {ID: "2", Temporary: true}}), 8},
		{runError(nil, []mailferry.Failure{{ID: "1", Temporary: true}, {ID: "2"}}), 3},
		{mail.Temp(errors.New("imap: connect: server refused the session: too many connections")), 8},
		{fmt.Errorf("source: %w", io.ErrUnexpectedEOF), 8},
		{fmt.Errorf("list mailboxes: %w", syscall.ECONNRESET), 8},
		{mail.MakeFatal(fmt.Errorf("INBOX 7: %w: budget", mailferry.ErrResumeLater)), 8},
		{mail.DialError("host:993", x509.UnknownAuthorityError{}), 5},
		{mail.MakeFatal(fmt.Errorf("write: %w", syscall.ENOSPC)), 9},
		{mail.MakeFatal(&os.PathError{Op: "write", Path: "/m/tmp/1", Err: syscall.EDQUOT}), 9},
		{fmt.Errorf("checkpoint: %w: %w", checkpoint.ErrUnusable, syscall.ENOSPC), 9},
		{mail.MakeFatal(fmt.Errorf("write: %w", syscall.EROFS)), 1},
		{mail.MakeFatal(fmt.Errorf("imapsink: append: over quota: %w", mail.ErrNoSpace)), 9},
	}
	for _, tc := range tests {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestH3ExitCodesDistinct: each documented exit code is a different number,
// appears once in --help's table, and in the README's.
func TestH3ExitCodesDistinct(t *testing.T) {
	codes := []int{exitcode.OK, exitcode.Unexpected, exitcode.Usage, exitcode.Partial, exitcode.Auth, exitcode.Unreachable, exitcode.Checkpoint, exitcode.Locked, exitcode.Temporary, exitcode.DiskFull, exitcode.Interrupted}
	seen := map[int]bool{}
	text := readme(t)
	for _, c := range codes {
		if seen[c] {
			t.Errorf("exit code %d used twice", c)
		}
		seen[c] = true
		if !regexp.MustCompile(fmt.Sprintf(`(?m)(^|\s)%d\s{2,}\S`, c)).MatchString(exitCodeTable) {
			t.Errorf("exitCodeTable lacks %d", c)
		}
		if !strings.Contains(text, fmt.Sprintf("| %d | ", c)) {
			t.Errorf("README's exit code table lacks %d", c)
		}
	}
}

// TestD1DiskFullMessage: the one-line error of a full disk names the path
// that could not be written and the remedy.
func TestD1DiskFullMessage(t *testing.T) {
	err := runError(fmt.Errorf("INBOX 3: put: %w", mail.MakeFatal(&os.PathError{Op: "write", Path: "/srv/mail/tmp/17.x", Err: syscall.ENOSPC})), nil)
	if got := exitCode(err); got != exitcode.DiskFull {
		t.Errorf("exitCode = %d, want %d", got, exitcode.DiskFull)
	}
	if msg := oneLine(err); !strings.Contains(msg, "free space on the file system holding /srv/mail/tmp/17.x") || !strings.Contains(msg, "no space left on device") {
		t.Errorf("message %q lacks the path and the remedy", msg)
	}
}
