package sync

import (
	"context"
	"errors"
	"path/filepath"
	stdsync "sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// holdingSink is a MemSink that answers mail.Holder by ID; lost names
// copies a test pretends a mail client deleted from the destination.
type holdingSink struct {
	*mailtest.MemSink
	mu   stdsync.Mutex
	lost map[mail.ID]bool
}

func (s *holdingSink) Holds(ctx context.Context, mailbox string, stored []mail.Stored) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	have := map[mail.ID]bool{}
	for _, m := range s.Messages(mailbox) {
		have[m.Env.ID] = !s.lost[m.Env.ID]
	}
	out := make([]bool, len(stored))
	for i, st := range stored {
		out[i] = have[st.ID]
	}
	return out, nil
}

// clock is a test clock the runs read through Options.Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func days(n int) *time.Duration { d := time.Duration(n) * 24 * time.Hour; return &d }

// retentionRig is one source and destination copied by several runs with
// a clock the test moves.
type retentionRig struct {
	t   *testing.T
	src *mailtest.MemSource
	dst *holdingSink
	cp  string
	clk *clock
}

func newRetentionRig(t *testing.T, n int) *retentionRig {
	return &retentionRig{t: t, src: mailtest.NewMemSource(fixtures(n, "INBOX", "Archive")),
		dst: &holdingSink{MemSink: mailtest.NewMemSink(), lost: map[mail.ID]bool{}},
		cp:  filepath.Join(t.TempDir(), "cp.jsonl"), clk: &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}}
}

// run copies once with DeleteAfter after (nil: off) at the rig's time.
func (g *retentionRig) run(after *time.Duration, dry bool) *Result {
	g.t.Helper()
	cp, err := checkpoint.Open(g.cp, "src", "dst", false)
	if err != nil {
		g.t.Fatal(err)
	}
	defer cp.Close()
	opt := fastOpts(cp)
	opt.DeleteAfter, opt.Now, opt.DryRun = after, g.clk.now, dry
	res, err := Copy(context.Background(), g.src, g.dst, opt)
	if err != nil {
		g.t.Fatalf("Copy = %v", err)
	}
	return res
}

func (g *retentionRig) left() int { return g.src.Len("INBOX") + g.src.Len("Archive") }

// TestDeleteAfter: deletion by the recorded store time, never by a message
// this run stored, only while the destination holds the copy; a dry run
// lists what a real run would delete.
func TestDeleteAfter(t *testing.T) {
	g := newRetentionRig(t, 6)
	g.run(days(30), false) // day 0: stores 6, deletes nothing
	if g.left() != 6 {
		t.Fatalf("day 0: %d left on the source, want 6", g.left())
	}
	g.clk.t = g.clk.t.Add(10 * 24 * time.Hour) // day 10: two new messages arrive
	g.src.Add(mailtest.Fixture{Name: "n1", Mailbox: "INBOX", Body: []byte("Subject: n1\r\n\r\nn1\r\n")})
	g.src.Add(mailtest.Fixture{Name: "n2", Mailbox: "Archive", Body: []byte("Subject: n2\r\n\r\nn2\r\n")})
	for _, tc := range []struct {
		name        string
		at          int // day
		after       *time.Duration
		dry         bool
		lose        int // copies lost from the destination before the run
		wantDeleted int64
		wantListed  int
		wantNotHeld int
		wantLeft    int
	}{
		{"day 10, 30d: nothing old enough", 10, days(30), false, 0, 0, 0, 0, 8},
		{"day 29, 30d: one second short", 29, days(30), false, 0, 0, 0, 0, 8},
		{"day 30, 30d, dry run: lists the 6", 30, days(30), true, 0, 0, 6, 0, 8},
		{"day 30, 30d, one copy lost: 5 deleted, 1 reported", 30, days(30), false, 1, 5, 5, 1, 3},
		{"day 30, 0d: the two of day 10, not the lost one", 30, days(0), false, 0, 2, 2, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.clk.t = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(tc.at) * 24 * time.Hour)
			if tc.at == 29 {
				g.clk.t = g.clk.t.Add(24*time.Hour - time.Second)
			}
			for range tc.lose {
				g.dst.mu.Lock()
				g.dst.lost[g.dst.Messages("INBOX")[0].Env.ID] = true
				g.dst.mu.Unlock()
			}
			res := g.run(tc.after, tc.dry)
			if got := res.Stats.Deleted.Load(); got != tc.wantDeleted || len(res.Expired) != tc.wantListed || len(res.NotHeld) != tc.wantNotHeld || g.left() != tc.wantLeft {
				t.Fatalf("deleted %d (want %d), listed %d (want %d), not held %v (want %d), left %d (want %d)",
					got, tc.wantDeleted, len(res.Expired), tc.wantListed, res.NotHeld, tc.wantNotHeld, g.left(), tc.wantLeft)
			}
		})
	}
}

// TestDeleteAfterZeroSparesThisRun: 0d deletes everything earlier runs
// stored and nothing this run stores, even with an unmoving clock.
func TestDeleteAfterZeroSparesThisRun(t *testing.T) {
	g := newRetentionRig(t, 4)
	if res := g.run(days(0), false); res.Stats.Copied.Load() != 4 || res.Stats.Deleted.Load() != 0 || g.left() != 4 {
		t.Fatalf("first run: copied %d, deleted %d, left %d; want 4, 0, 4", res.Stats.Copied.Load(), res.Stats.Deleted.Load(), g.left())
	}
	if res := g.run(days(0), false); res.Stats.Deleted.Load() != 4 || g.left() != 0 {
		t.Fatalf("second run: deleted %d, left %d; want 4, 0", res.Stats.Deleted.Load(), g.left())
	}
}

// TestDeleteAfterLegacyRecords: records written before store times were
// kept are never old: the first run that knows them stamps them with its
// time, and they age from there.
func TestDeleteAfterLegacyRecords(t *testing.T) {
	g := newRetentionRig(t, 4)
	g.run(nil, false)
	// Make the records look like an older mailferry's: no store time.
	cp, err := checkpoint.Open(g.cp, "src", "dst", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range cp.Mailboxes() {
		for _, rec := range cp.Records(mb) {
			rec.Stored = 0
			cp.Add(rec)
		}
	}
	cp.Close()
	g.clk.t = g.clk.t.Add(400 * 24 * time.Hour)
	for i, want := range []int64{0, 0, 4} { // day 400 (stamps), day 429, day 430
		if i == 1 {
			g.clk.t = g.clk.t.Add(29 * 24 * time.Hour)
		}
		if i == 2 {
			g.clk.t = g.clk.t.Add(24 * time.Hour)
		}
		if res := g.run(days(30), false); res.Stats.Deleted.Load() != want {
			t.Fatalf("run %d: deleted %d, want %d", i, res.Stats.Deleted.Load(), want)
		}
	}
}

// TestDeleteAfterRefused: the combinations that cannot work are refused
// before anything is read.
func TestDeleteAfterRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  func(*Options)
		dst  mail.Sink
	}{
		{"with delete-source", func(o *Options) { o.DeleteSource = true }, &holdingSink{MemSink: mailtest.NewMemSink()}},
		{"without checkpoint", func(o *Options) { o.Checkpoint = nil }, &holdingSink{MemSink: mailtest.NewMemSink()}},
		{"destination cannot confirm", func(o *Options) {}, mailtest.NewMemSink()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
			opt := fastOpts(cp)
			opt.DeleteAfter = days(1)
			tc.opt(&opt)
			src := mailtest.NewMemSource(fixtures(2, "INBOX"))
			_, err := Copy(context.Background(), src, tc.dst, opt)
			if !errors.Is(err, mail.ErrConfig) || src.Len("INBOX") != 2 {
				t.Fatalf("Copy = %v (want a config error), %d left", err, src.Len("INBOX"))
			}
		})
	}
}
