package main

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

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
		{mail.MakeFatal(fmt.Errorf("write: %w", syscall.ENOSPC)), 1},
	}
	for _, tc := range tests {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
