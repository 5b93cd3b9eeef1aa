package main

import (
	"errors"
	"time"
)

// dateFlag is a day given as YYYY-MM-DD, meaning midnight local time
// (--since, --before). The filtering itself is the engine's
// (Options.Since and Before).
type dateFlag struct{ t time.Time }

func (d *dateFlag) String() string {
	if d.t.IsZero() {
		return ""
	}
	return d.t.Format(time.DateOnly)
}

func (d *dateFlag) Set(v string) error {
	t, err := time.ParseInLocation(time.DateOnly, v, time.Local)
	if err != nil {
		return errors.New("want a date such as 2024-01-31 (YYYY-MM-DD)")
	}
	d.t = t
	return nil
}
