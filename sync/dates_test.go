package sync

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestDateFilter: Options.Since and Before keep the messages dated within
// the range; a message without a date is kept and counted as undated; a
// message outside the range that the checkpoint already records is
// listed as present (not an orphan to re-match), and what was left out is
// not listed at all (as when the CLI filtered the source's listing).
func TestDateFilter(t *testing.T) {
	day := func(m, d int) time.Time { return time.Date(2024, time.Month(m), d, 12, 0, 0, 0, time.UTC) }
	fx := []mailtest.Fixture{
		{Mailbox: "INBOX", Body: []byte("Subject: a\r\n\r\nold\r\n"), Date: day(1, 1)},
		{Mailbox: "INBOX", Body: []byte("Subject: b\r\n\r\nin\r\n"), Date: day(3, 1)},
		{Mailbox: "INBOX", Body: []byte("Subject: c\r\n\r\nin too\r\n"), Date: day(5, 1)},
		{Mailbox: "INBOX", Body: []byte("Subject: d\r\n\r\nlate\r\n"), Date: day(8, 1)},
		{Mailbox: "INBOX", Body: []byte("Subject: e\r\n\r\nno date\r\n")},
	}
	for _, tc := range []struct {
		name                             string
		since, before                    time.Time
		copied, listed, outside, undated int64
	}{
		{name: "None", copied: 5, listed: 5},
		{name: "Since", since: day(2, 1), copied: 4, listed: 4, outside: 1, undated: 1},
		{name: "Before", before: day(6, 1), copied: 4, listed: 4, outside: 1, undated: 1},
		{name: "Both", since: day(2, 1), before: day(6, 1), copied: 3, listed: 3, outside: 2, undated: 1},
		{name: "BeforeIsExclusive", since: day(3, 1), before: day(5, 1), copied: 2, listed: 2, outside: 3, undated: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
			opt := fastOpts(cp)
			opt.Since, opt.Before = tc.since, tc.before
			res, err := Copy(context.Background(), mailtest.NewMemSource(fx), mailtest.NewMemSink(), opt)
			if err != nil || res.Stats.Copied.Load() != tc.copied || res.Stats.Listed.Load() != tc.listed ||
				res.OutsideDates != tc.outside || res.Undated != tc.undated {
				t.Fatalf("Copy = %v: copied %d, listed %d, outside %d, undated %d; want %d, %d, %d, %d", err,
					res.Stats.Copied.Load(), res.Stats.Listed.Load(), res.OutsideDates, res.Undated, tc.copied, tc.listed, tc.outside, tc.undated)
			}
		})
	}

	// Recorded by a run without dates, then filtered: recorded messages
	// outside the range pass as present; nothing is copied again.
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	src, sink := mailtest.NewMemSource(fx), mailtest.NewMemSink()
	if _, err := Copy(context.Background(), src, sink, fastOpts(cp)); err != nil {
		t.Fatal(err)
	}
	opt := fastOpts(cp)
	opt.Since = day(2, 1)
	res, err := Copy(context.Background(), src, sink, opt)
	if err != nil || res.Stats.Skipped.Load() != 5 || res.Stats.Copied.Load() != 0 || res.OutsideDates != 0 || len(res.Events) != 0 {
		t.Fatalf("rerun with --since: err %v, present %d, copied %d, outside %d, events %v; want 5 present, nothing else",
			err, res.Stats.Skipped.Load(), res.Stats.Copied.Load(), res.OutsideDates, res.Events)
	}
}

// deleteAwareSource records what the engine tells and asks it.
type deleteAwareSource struct {
	*mailtest.MemSource
	told   bool
	asked  bool
	unread []mail.Envelope
}

func (s *deleteAwareSource) DeleteAfterCopy() { s.told = true }

func (s *deleteAwareSource) Unstored(stored func(mail.Envelope) bool) []mail.Envelope {
	s.asked = true
	return s.unread
}

// TestDateFilterKeepsCapabilities: the date filter used to be a source
// wrapper in the CLI that had to pass through what a POP3 source without
// UIDL (C1) or a Gmail POP3 source (C5) needs from the engine. In the
// engine it hides nothing: with --since the source is still told about
// delete mode and asked what it read but the run did not store.
func TestDateFilterKeepsCapabilities(t *testing.T) {
	inner := &deleteAwareSource{MemSource: mailtest.NewMemSource(nil), unread: []mail.Envelope{{Mailbox: "INBOX", ID: "7"}}}
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	opt := fastOpts(cp)
	opt.Since = time.Now().AddDate(-1, 0, 0)
	opt.DeleteSource = true
	res, err := Copy(context.Background(), inner, mailtest.NewMemSink(), opt)
	if err != nil || !inner.told || !inner.asked || len(res.Failures) != 1 || res.Failures[0].ID != "7" {
		t.Errorf("Copy = %v: told %v, asked %v, failures %+v; want the source told, asked, and 7 failed", err, inner.told, inner.asked, res.Failures)
	}
}

// TestDateFilterKeepsBatchAndRemove: with a date range, a source that
// fetches in batches (mail.BatchOpener) still does, and delete mode still
// deletes (mail.Remover): what the CLI's wrapper had to pass through by
// hand (TestDateSourceKeepsOptionalInterfaces, before the filter moved
// into the engine).
func TestDateFilterKeepsBatchAndRemove(t *testing.T) {
	day := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var fx []mailtest.Fixture
	for i := range 4 {
		fx = append(fx, mailtest.Fixture{Mailbox: "INBOX", Body: []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i)), Date: day.AddDate(0, i, 0)})
	}
	src := &mailtest.BatchSource{MemSource: mailtest.NewMemSource(fx)}
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	opt := fastOpts(cp)
	opt.Since, opt.DeleteSource = day.AddDate(0, 1, 0), true
	res, err := Copy(context.Background(), src, mailtest.NewMemSink(), opt)
	if err != nil || res.Stats.Copied.Load() != 3 || res.Stats.Deleted.Load() != 3 || src.Batches.Load() == 0 || src.Len("INBOX") != 1 {
		t.Errorf("Copy = %v: copied %d, deleted %d, batches %d, left %d; want 3, 3, some, 1", err,
			res.Stats.Copied.Load(), res.Stats.Deleted.Load(), src.Batches.Load(), src.Len("INBOX"))
	}
}
