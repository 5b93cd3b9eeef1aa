package sync

import (
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// dateFilter keeps the messages whose internal date is on or after since
// and before before (either may be zero: open), for Options.Since and
// Before. It counts per mailbox from the mailbox's last listing, as a
// listing may be retried. Only the lister uses it while the run goes on.
type dateFilter struct {
	since, before time.Time
	outside       map[string]int64
	undated       map[string]int64
}

// newDateFilter returns nil (keep everything) when both dates are zero.
func newDateFilter(since, before time.Time) *dateFilter {
	if since.IsZero() && before.IsZero() {
		return nil
	}
	return &dateFilter{since: since, before: before, outside: map[string]int64{}, undated: map[string]int64{}}
}

// dateCount counts one listing of one mailbox.
type dateCount struct {
	f                *dateFilter
	mb               string
	outside, undated int64
}

// start begins a listing of mb.
func (f *dateFilter) start(mb string) *dateCount { return &dateCount{f: f, mb: mb} }

// keep reports whether env is in the range. A message without a date
// (POP3 has none) is kept: dropping what cannot be judged would lose mail
// silently. A recorded message outside the dates is kept too: the run then
// counts it as present (and, in delete mode, finishes its deletion)
// instead of taking its record for an orphan to re-match by hash.
func (c *dateCount) keep(env mail.Envelope, recorded bool) bool {
	if c.f == nil {
		return true
	}
	f := c.f
	switch {
	case env.Date.IsZero():
		c.undated++
	case (!f.since.IsZero() && env.Date.Before(f.since)) || (!f.before.IsZero() && !env.Date.Before(f.before)):
		if !recorded {
			c.outside++
			return false
		}
	}
	return true
}

// done stores the listing's counts as the mailbox's.
func (c *dateCount) done() {
	if c.f == nil {
		return
	}
	c.f.outside[c.mb], c.f.undated[c.mb] = c.outside, c.undated
}

// counts returns how many messages were left out for their date, and how
// many had no date and so were kept.
func (f *dateFilter) counts() (outside, undated int64) {
	if f == nil {
		return 0, 0
	}
	for _, n := range f.outside {
		outside += n
	}
	for _, n := range f.undated {
		undated += n
	}
	return outside, undated
}
