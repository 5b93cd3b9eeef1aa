package main

import (
	"context"
	"errors"
	stdsync "sync"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// dateFlag is a day given as YYYY-MM-DD, meaning midnight local time.
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

// dateFilter keeps the messages whose internal date is on or after since
// and before before (either may be zero: open). The engine has no date
// option, so the CLI filters what the source lists.
type dateFilter struct {
	since, before time.Time
	// recorded reports whether the checkpoint holds a message. A recorded
	// message outside the dates still passes: the engine then counts it as
	// present (and, in delete mode, finishes its deletion) instead of
	// taking its record for an orphan to re-match by hash.
	recorded func(mailbox string, id mail.ID) bool

	mu      stdsync.Mutex
	outside map[string]int64 // per mailbox, from its last List (List may be retried)
	undated map[string]int64
}

func newDateFilter(since, before time.Time, store checkpoint.Store) *dateFilter {
	f := &dateFilter{since: since, before: before, outside: map[string]int64{}, undated: map[string]int64{}}
	f.recorded = func(string, mail.ID) bool { return false }
	if store != nil {
		f.recorded = func(mb string, id mail.ID) bool { return store.Has(checkpoint.Key{Mailbox: mb, ID: id}) }
	}
	return f
}

// counts returns how many messages were left out for their date, and how
// many had no date and so were kept.
func (f *dateFilter) counts() (outside, undated int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.outside {
		outside += n
	}
	for _, n := range f.undated {
		undated += n
	}
	return outside, undated
}

// dateSource wraps a source so that List passes only the messages in range.
type dateSource struct {
	mail.Source
	f *dateFilter
}

// filterSource wraps src, keeping the optional interfaces the engine looks
// for (mail.Remover, mail.BatchOpener): they act on envelopes the filtered
// List gave, so they pass through unchanged.
func filterSource(src mail.Source, f *dateFilter) mail.Source {
	base := &dateSource{Source: src, f: f}
	r, isR := src.(mail.Remover)
	b, isB := src.(mail.BatchOpener)
	switch {
	case isR && isB:
		return struct {
			*dateSource
			mail.Remover
			mail.BatchOpener
		}{base, r, b}
	case isR:
		return struct {
			*dateSource
			mail.Remover
		}{base, r}
	case isB:
		return struct {
			*dateSource
			mail.BatchOpener
		}{base, b}
	}
	return base
}

// DeleteAfterCopy and Unstored pass the optional mail.DeleteAware and
// mail.UnstoredReporter through; both are harmless no-ops for a source
// without them, so the wrapper can always offer them.
func (s *dateSource) DeleteAfterCopy() {
	if d, ok := s.Source.(mail.DeleteAware); ok {
		d.DeleteAfterCopy()
	}
}

func (s *dateSource) Unstored(stored func(mail.Envelope) bool) []mail.Envelope {
	if u, ok := s.Source.(mail.UnstoredReporter); ok {
		return u.Unstored(stored)
	}
	return nil
}

// List lists the messages of mailbox dated within the range. A message
// without a date (POP3 has none) is kept: dropping what cannot be judged
// would lose mail silently.
func (s *dateSource) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	var outside, undated int64
	err := s.Source.List(ctx, mailbox, func(e mail.Envelope) error {
		switch {
		case e.Date.IsZero():
			undated++
		case (!s.f.since.IsZero() && e.Date.Before(s.f.since)) || (!s.f.before.IsZero() && !e.Date.Before(s.f.before)):
			if !s.f.recorded(mailbox, e.ID) {
				outside++
				return nil
			}
		}
		return fn(e)
	})
	s.f.mu.Lock()
	s.f.outside[mailbox], s.f.undated[mailbox] = outside, undated
	s.f.mu.Unlock()
	return err
}
