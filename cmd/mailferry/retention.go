package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	mailferry "github.com/mailferry/mailferry/sync"
)

// retentionFlag is --delete-after DAYS: "30d", "4w", or a number of days.
// Unset, mail is only deleted with --delete-source.
type retentionFlag struct {
	d   time.Duration
	set bool
}

// parseRetention reads "Nd", "Nw" or "N" (days).
func parseRetention(v string) (time.Duration, error) {
	num, unit := v, 24*time.Hour
	switch {
	case strings.HasSuffix(v, "d"):
		num = strings.TrimSuffix(v, "d")
	case strings.HasSuffix(v, "w"):
		num, unit = strings.TrimSuffix(v, "w"), 7*24*time.Hour
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q: want days such as 30d or weeks such as 4w", v)
	}
	return time.Duration(n) * unit, nil
}

func (f *retentionFlag) Set(v string) error {
	d, err := parseRetention(v)
	if err != nil {
		return err
	}
	f.d, f.set = d, true
	return nil
}

func (f *retentionFlag) String() string {
	if !f.set {
		return ""
	}
	if f.d%(7*24*time.Hour) == 0 && f.d > 0 {
		return fmt.Sprintf("%dw", f.d/(7*24*time.Hour))
	}
	return fmt.Sprintf("%dd", f.d/(24*time.Hour))
}

func (*retentionFlag) Type() string { return "days" }

// duration is the engine's Options.DeleteAfter: nil when unset.
func (f *retentionFlag) duration() *time.Duration {
	if !f.set {
		return nil
	}
	d := f.d
	return &d
}

// printExpired lists, in a dry run, what --delete-after would delete.
func printExpired(w io.Writer, exp []mailferry.Expired) {
	for _, e := range exp {
		fmt.Fprintf(w, "would delete: %s %s (stored %s)\n", e.Mailbox, e.ID, e.Stored.Format(time.RFC3339))
	}
	if len(exp) > 0 {
		fmt.Fprintf(w, "dry run: %d message(s) would be deleted from the source (--delete-after)\n", len(exp))
	}
}

// configRetention is delete_after in a job: "30d", "4w".
type configRetention struct{ retentionFlag }

// UnmarshalTOML implements toml.Unmarshaler.
func (c *configRetention) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return errors.New(`want days such as "30d" or weeks such as "4w"`)
	}
	return c.Set(s)
}
