package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

func fixtures(n int, mailboxes ...string) []mailtest.Fixture {
	var out []mailtest.Fixture
	for i := 0; i < n; i++ {
		mb := mailboxes[i%len(mailboxes)]
		out = append(out, mailtest.Fixture{Name: fmt.Sprint(i), Mailbox: mb, Body: []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody %d %s\r\n", i, i, mb))})
	}
	return out
}

func openCP(t *testing.T, path string) *checkpoint.File {
	t.Helper()
	cp, err := checkpoint.Open(path, "src", "dst", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close() })
	return cp
}

func fastOpts(cp checkpoint.Store) Options {
	return Options{SrcEndpoint: "src", Checkpoint: cp, Backoff: time.Millisecond, BatchSize: 4, BatchDelay: time.Millisecond}
}

// total counts messages across the sink's mailboxes.
func total(s *mailtest.MemSink) int {
	n := 0
	for _, mb := range s.Mailboxes() {
		n += len(s.Messages(mb))
	}
	return n
}

func TestCopyAllThenRerunCopiesNothing(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(50, "INBOX", "Archive/2024", "Übersicht"))
	dst := mailtest.NewMemSink()
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	res, err := Copy(context.Background(), src, dst, fastOpts(cp))
	if err != nil || res.Stats.Copied.Load() != 50 || len(res.Failures) != 0 {
		t.Fatalf("Copy = %v, copied %d, failures %v", err, res.Stats.Copied.Load(), res.Failures)
	}
	if total(dst) != 50 || len(dst.Mailboxes()) != 3 {
		t.Fatalf("sink holds %d messages in %v", total(dst), dst.Mailboxes())
	}
	// H1: a rerun opens nothing and puts nothing.
	opens := src.Opens.Load()
	res, err = Copy(context.Background(), src, dst, fastOpts(cp))
	if err != nil || res.Stats.Copied.Load() != 0 || res.Stats.Skipped.Load() != 50 || src.Opens.Load() != opens {
		t.Fatalf("rerun: err %v copied %d skipped %d opens %d", err, res.Stats.Copied.Load(), res.Stats.Skipped.Load(), src.Opens.Load()-opens)
	}
}

// TestG2FailingMessageIsolated: one message fails permanently, the others
// are copied, and a rerun (the fault gone) copies exactly the missing one.
func TestG2FailingMessageIsolated(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(20, "INBOX"))
	mem := mailtest.NewMemSink()
	bad := errors.New("server said NO")
	dst := &mailtest.FaultSink{Sink: mem, Fail: func(n int, env mail.Envelope) error {
		if env.ID == "7" {
			return bad
		}
		return nil
	}}
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	res, err := Copy(context.Background(), src, dst, fastOpts(cp))
	if err != nil || len(res.Failures) != 1 || res.Failures[0].ID != "7" || total(mem) != 19 {
		t.Fatalf("Copy = %v, failures %v, stored %d", err, res.Failures, total(mem))
	}
	dst.Fail = nil
	res, err = Copy(context.Background(), src, dst, fastOpts(cp))
	if err != nil || res.Stats.Copied.Load() != 1 || total(mem) != 20 {
		t.Fatalf("rerun = %v, copied %d, stored %d", err, res.Stats.Copied.Load(), total(mem))
	}
}

func TestTemporaryErrorsRetried(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(5, "INBOX"))
	mem := mailtest.NewMemSink()
	var fails atomic.Int32
	dst := &mailtest.FaultSink{Sink: mem, Fail: func(n int, env mail.Envelope) error {
		if env.ID == "3" && fails.Add(1) <= 2 {
			return mail.Temp(errors.New("connection reset"))
		}
		return nil
	}}
	res, err := Copy(context.Background(), src, dst, fastOpts(nil))
	if err != nil || len(res.Failures) != 0 || total(mem) != 5 || fails.Load() != 3 {
		t.Fatalf("Copy = %v, failures %v, stored %d, attempts on #3 %d", err, res.Failures, total(mem), fails.Load())
	}
}

// TestD1FatalStopsRun: a full disk stops the run with a fatal error; what
// was committed before is recorded, and a rerun finishes exactly once.
func TestD1FatalStopsRun(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(30, "INBOX"))
	mem := mailtest.NewMemSink()
	dst := &mailtest.FaultSink{Sink: mem, Fail: func(n int, env mail.Envelope) error {
		if n == 10 {
			return fmt.Errorf("write: %w", syscall.ENOSPC)
		}
		return nil
	}}
	path := filepath.Join(t.TempDir(), "cp.jsonl")
	cp := openCP(t, path)
	opt := fastOpts(cp)
	opt.Workers = 1
	_, err := Copy(context.Background(), src, dst, opt)
	if !errors.Is(err, syscall.ENOSPC) || !mail.Fatal(err) {
		t.Fatalf("Copy on a full disk = %v, want fatal ENOSPC", err)
	}
	if cp.Len() != total(mem) {
		t.Fatalf("checkpoint has %d records, sink %d messages", cp.Len(), total(mem))
	}
	dst.Fail = nil
	if _, err := Copy(context.Background(), src, dst, opt); err != nil || total(mem) != 30 {
		t.Fatalf("rerun = %v, stored %d, want 30", err, total(mem))
	}
}

// TestA11InterruptThenResume: cancelling mid-run returns context.Canceled,
// records what was stored, and the rerun completes with no duplicate.
func TestA11InterruptThenResume(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(40, "INBOX", "Sent"))
	mem := mailtest.NewMemSink()
	ctx, cancel := context.WithCancel(context.Background())
	dst := &mailtest.FaultSink{Sink: mem, Fail: func(n int, env mail.Envelope) error {
		if n == 15 {
			cancel()
		}
		return nil
	}}
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	_, err := Copy(ctx, src, dst, fastOpts(cp))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Copy = %v, want context.Canceled", err)
	}
	if cp.Len() != total(mem) || total(mem) >= 40 {
		t.Fatalf("after interrupt: %d recorded, %d stored", cp.Len(), total(mem))
	}
	if _, err := Copy(context.Background(), src, dst, fastOpts(cp)); err != nil {
		t.Fatal(err)
	}
	if total(mem) != 40 || cp.Len() != 40 {
		t.Fatalf("after resume: %d stored, %d recorded, want 40", total(mem), cp.Len())
	}
}

// spyStore records the order of checkpoint flushes relative to deletions.
type spyStore struct {
	checkpoint.Store
	events *[]string
}

func (s spyStore) Flush() error {
	*s.events = append(*s.events, "flush")
	return s.Store.Flush()
}

type spyRemover struct {
	*mailtest.MemSource
	events *[]string
	store  checkpoint.Store
	t      *testing.T
}

func (s spyRemover) Remove(ctx context.Context, envs []mail.Envelope) error {
	for _, e := range envs {
		if !s.store.Has(checkpoint.Key{Mailbox: e.Mailbox, ID: e.ID}) {
			s.t.Errorf("delete of %s before it was recorded", e.ID)
		}
	}
	*s.events = append(*s.events, "remove")
	return s.MemSource.Remove(ctx, envs)
}

// TestI3DeleteOnlyAfterRecorded: delete mode removes messages only after the
// checkpoint flush that records them.
func TestI3DeleteOnlyAfterRecorded(t *testing.T) {
	var events []string
	mem := mailtest.NewMemSource(fixtures(10, "INBOX"))
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	store := spyStore{cp, &events}
	src := spyRemover{mem, &events, cp, t}
	dst := mailtest.NewMemSink()
	opt := fastOpts(store)
	opt.DeleteSource = true
	if _, err := Copy(context.Background(), src, dst, opt); err != nil {
		t.Fatal(err)
	}
	if mem.Len("INBOX") != 0 || total(dst) != 10 {
		t.Fatalf("source left %d, sink %d", mem.Len("INBOX"), total(dst))
	}
	if len(events) == 0 || events[0] != "flush" {
		t.Fatalf("events %v: first must be a flush", events)
	}
}

func TestDryRunTouchesNothing(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(10, "INBOX", "A"))
	dst := mailtest.NewMemSink()
	opt := fastOpts(nil)
	opt.DryRun = true
	res, err := Copy(context.Background(), src, dst, opt)
	if err != nil || res.Stats.Queued.Load() != 10 || total(dst) != 0 || src.Opens.Load() != 0 || len(dst.Mailboxes()) != 0 {
		t.Fatalf("dry run: err %v queued %d stored %d opens %d boxes %v", err, res.Stats.Queued.Load(), total(dst), src.Opens.Load(), dst.Mailboxes())
	}
}

// TestC6RenumberedSourceIsRemapped: the same messages under new IDs (an IMAP
// UIDVALIDITY change) are re-mapped by content, not copied again; a new
// message of the same size is still copied.
func TestC6RenumberedSourceIsRemapped(t *testing.T) {
	fx := fixtures(8, "INBOX")
	first := mailtest.NewMemSource(fx)
	dst := mailtest.NewMemSink()
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	if _, err := Copy(context.Background(), first, dst, fastOpts(cp)); err != nil {
		t.Fatal(err)
	}
	// The rebuilt server numbers the same messages differently: a new source
	// with two extra messages first shifts every ID. One extra has the same
	// size as an old one (C6 and a same-size trap).
	extra := []mailtest.Fixture{
		{Mailbox: "INBOX", Body: []byte("Subject: 0\r\n\r\nbody X INBOX\r\n")}, // same size as message 0
		{Mailbox: "INBOX", Body: fx[3].Body},                                   // a true duplicate in the source
	}
	second := mailtest.NewMemSource(nil)
	second.IDPrefix = "v2."
	for _, f := range append(extra, fx...) {
		second.Add(f)
	}
	res, err := Copy(context.Background(), second, dst, fastOpts(cp))
	if err != nil {
		t.Fatal(err)
	}
	// Re-mapped messages count as remapped, not copied (issue 10; this
	// asserted 10 copied before).
	if res.Stats.Copied.Load()+res.Stats.Remapped.Load() != 10 || res.Stats.Remapped.Load() != 8 || total(dst) != 10 {
		t.Fatalf("after renumbering: %d copied and %d re-mapped this run, sink holds %d, want 2 + 8 and 10", res.Stats.Copied.Load(), res.Stats.Remapped.Load(), total(dst))
	}
	if dst.Puts.Load() != 10 {
		t.Fatalf("sink got %d puts, want 10", dst.Puts.Load())
	}
}

func TestMaxSizeSkipsAndReports(t *testing.T) {
	fx := fixtures(3, "INBOX")
	fx = append(fx, mailtest.Fixture{Mailbox: "INBOX", Body: mailtest.Big(1 << 20)})
	src := mailtest.NewMemSource(fx)
	dst := mailtest.NewMemSink()
	opt := fastOpts(nil)
	opt.MaxSize = 1000
	res, err := Copy(context.Background(), src, dst, opt)
	if err != nil || total(dst) != 3 || len(res.Skipped) != 1 || res.Skipped[0].ID != "4" {
		t.Fatalf("Copy = %v, stored %d, skipped %v", err, total(dst), res.Skipped)
	}
}

func TestMailboxFilter(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(9, "INBOX", "Spam", "Work"))
	dst := mailtest.NewMemSink()
	opt := fastOpts(nil)
	opt.Mailboxes = func(mb string) bool { return mb != "Spam" }
	if _, err := Copy(context.Background(), src, dst, opt); err != nil {
		t.Fatal(err)
	}
	if got := dst.Mailboxes(); len(got) != 2 || total(dst) != 6 {
		t.Fatalf("copied into %v (%d messages)", got, total(dst))
	}
}

func TestMapMailbox(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(6, "INBOX", "Sent Items"))
	dst := mailtest.NewMemSink()
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	opt := fastOpts(cp)
	opt.MapMailbox = func(mb string) string {
		if mb == "Sent Items" {
			return "Sent"
		}
		return mb
	}
	if _, err := Copy(context.Background(), src, dst, opt); err != nil {
		t.Fatal(err)
	}
	if got := dst.Mailboxes(); len(got) != 2 || got[1] != "Sent" || len(dst.Messages("Sent")) != 3 {
		t.Fatalf("mapped copy went to %v", got)
	}
	if len(cp.Records("Sent Items")) != 3 {
		t.Fatal("checkpoint must keep source mailbox names")
	}
	rep, err := Verify(context.Background(), src, dst.Source(), VerifyOptions{MapMailbox: opt.MapMailbox})
	if err != nil || rep.Missing != 0 {
		t.Fatalf("Verify with mapping = %v, missing %d", err, rep.Missing)
	}
}

// TestA4RecordedButNotDeleted: a run killed after recording but before the
// source committed its deletions (POP3 QUIT) leaves recorded messages on the
// source; the rerun deletes them without copying them again.
func TestA4RecordedButNotDeleted(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(6, "INBOX"))
	dst := mailtest.NewMemSink()
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	if _, err := Copy(context.Background(), src, dst, fastOpts(cp)); err != nil { // copied, not deleted
		t.Fatal(err)
	}
	opt := fastOpts(cp)
	opt.DeleteSource = true
	res, err := Copy(context.Background(), src, dst, opt)
	if err != nil || src.Len("INBOX") != 0 || total(dst) != 6 || res.Stats.Copied.Load() != 0 || res.Stats.Deleted.Load() != 6 {
		t.Fatalf("rerun in delete mode: err %v, left %d, stored %d, copied %d, deleted %d", err, src.Len("INBOX"), total(dst), res.Stats.Copied.Load(), res.Stats.Deleted.Load())
	}
}

// refusingSink refuses some mailbox names, as the Maildir sink refuses "../x".
type refusingSink struct{ *mailtest.MemSink }

func (r refusingSink) CreateMailbox(ctx context.Context, name string) error {
	if name == "../x" {
		return &mail.ConfigError{Msg: "maildir: folder name \"../x\" leaves the root"}
	}
	return r.MemSink.CreateMailbox(ctx, name)
}

// TestF7HostileFolderSkippedOthersCopied: a folder the destination cannot
// hold is reported as failed (exit 3) while every other folder is copied.
func TestF7HostileFolderSkippedOthersCopied(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(6, "INBOX", "../x"))
	mem := mailtest.NewMemSink()
	res, err := Copy(context.Background(), src, refusingSink{mem}, fastOpts(nil))
	if err != nil || len(res.Failures) != 1 || res.Failures[0].Mailbox != "../x" || len(mem.Messages("INBOX")) != 3 {
		t.Fatalf("Copy = %v, failures %v, INBOX %d", err, res.Failures, len(mem.Messages("INBOX")))
	}
}

// TestBatchFetchFallsBack: a batching source that drops messages and
// connections mid-batch still yields every message exactly once.
func TestBatchFetchFallsBack(t *testing.T) {
	mem := mailtest.NewMemSource(fixtures(100, "INBOX", "Archive"))
	src := &mailtest.BatchSource{MemSource: mem, Skip: map[mail.ID]bool{"3": true, "17": true}, DropAfter: 9}
	sink := mailtest.NewMemSink()
	dst := &mailtest.FaultSink{Sink: sink, Fail: func(n int, env mail.Envelope) error {
		if n%13 == 0 {
			return mail.Temp(errors.New("flaky"))
		}
		return nil
	}}
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	res, err := Copy(context.Background(), src, dst, fastOpts(cp))
	if err != nil || len(res.Failures) != 0 || total(sink) != 100 || cp.Len() != 100 || src.Batches.Load() == 0 {
		t.Fatalf("Copy = %v, failures %v, stored %d, recorded %d, batches %d", err, res.Failures, total(sink), cp.Len(), src.Batches.Load())
	}
	rep, err := Verify(context.Background(), mem, sink.Source(), VerifyOptions{})
	if err != nil || rep.Missing != 0 {
		t.Fatalf("Verify = %v, missing %d", err, rep.Missing)
	}
}

// batchSink is a Committer whose Put returns provisional IDs that Commit
// resolves, failing the messages refuse names (as an IMAP server refusing
// one message of a MULTIAPPEND).
type batchSink struct {
	*mailtest.MemSink
	mu       stdsync.Mutex
	n        int
	pending  map[mail.ID]mail.ID
	resolved map[mail.ID]mail.ID
	refuse   func(env mail.Envelope) bool
	refused  map[mail.ID]bool
}

func (b *batchSink) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	id, err := b.MemSink.Put(ctx, env, body)
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	prov := mail.ID(fmt.Sprintf("pending.%d", b.n))
	b.pending[prov] = id
	if b.refuse(env) {
		b.refused[prov] = true
	}
	return prov, nil
}

func (b *batchSink) Commit(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	failed := map[mail.ID]error{}
	for prov, id := range b.pending {
		if b.refused[prov] {
			failed[prov] = errors.New("NO refused")
			continue
		}
		b.resolved[prov] = "final." + id
	}
	b.pending = map[mail.ID]mail.ID{}
	if len(failed) > 0 {
		return &mail.CommitError{Failed: failed, Err: errors.New("some refused")}
	}
	return nil
}

func (b *batchSink) FinalID(id mail.ID) (mail.ID, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.resolved[id]
	return f, ok
}

// TestC10CommitRefusesSome: a Commit that stores all but some messages
// records the stored ones with their final IDs, reports the others as
// failed, and the run goes on (exit 3, rerun retries them).
func TestC10CommitRefusesSome(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(20, "INBOX"))
	dst := &batchSink{MemSink: mailtest.NewMemSink(), pending: map[mail.ID]mail.ID{}, resolved: map[mail.ID]mail.ID{}, refused: map[mail.ID]bool{},
		refuse: func(env mail.Envelope) bool { return env.ID == "4" || env.ID == "11" }}
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	res, err := Copy(context.Background(), src, dst, fastOpts(cp))
	if err != nil || len(res.Failures) != 2 || cp.Len() != 18 {
		t.Fatalf("Copy = %v, failures %v, recorded %d", err, res.Failures, cp.Len())
	}
	for _, r := range cp.Records("INBOX") {
		if !strings.HasPrefix(string(r.Dst), "final.") {
			t.Fatalf("record %s has provisional destination ID %q", r.ID, r.Dst)
		}
	}
	dst.refuse = func(mail.Envelope) bool { return false }
	res, err = Copy(context.Background(), src, dst, fastOpts(cp))
	if err != nil || res.Stats.Copied.Load() != 2 || cp.Len() != 20 {
		t.Fatalf("rerun = %v, copied %d, recorded %d", err, res.Stats.Copied.Load(), cp.Len())
	}
}

// TestFlagsFollowOnRerun: a message marked seen or flagged on the source
// after the first run gets the same flags on the destination on the next
// run, and a third run changes nothing.
func TestFlagsFollowOnRerun(t *testing.T) {
	fx := fixtures(6, "INBOX")
	for i := range fx {
		fx[i].Flags = []mail.Flag{}
	}
	src := mailtest.NewMemSource(fx)
	dst := mailtest.NewMemSink()
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	if _, err := Copy(context.Background(), src, dst, fastOpts(cp)); err != nil {
		t.Fatal(err)
	}
	src.Mark("INBOX", "2", mail.FlagSeen)
	src.Mark("INBOX", "5", mail.FlagSeen, mail.FlagFlagged)
	res, err := Copy(context.Background(), src, dst, fastOpts(cp))
	if err != nil || res.Stats.FlagsUpdated.Load() != 2 || res.Stats.Copied.Load() != 0 {
		t.Fatalf("rerun: err %v, flags updated %d, copied %d", err, res.Stats.FlagsUpdated.Load(), res.Stats.Copied.Load())
	}
	for _, m := range dst.Messages("INBOX") {
		body := string(m.Body)
		switch {
		case strings.Contains(body, "body 1 "):
			if len(m.Env.Flags) != 1 {
				t.Errorf("message 2 has flags %v on the destination, want \\Seen", m.Env.Flags)
			}
		case strings.Contains(body, "body 4 "):
			if len(m.Env.Flags) != 2 {
				t.Errorf("message 5 has flags %v on the destination, want \\Seen \\Flagged", m.Env.Flags)
			}
		}
	}
	cp.Flush()
	res, err = Copy(context.Background(), src, dst, fastOpts(cp))
	if err != nil || res.Stats.FlagsUpdated.Load() != 0 {
		t.Fatalf("third run: err %v, flags updated %d, want 0", err, res.Stats.FlagsUpdated.Load())
	}
}

// TestB6RateLimits: --max-msgs-per-sec and --max-bytes-per-sec pace the
// whole run (all workers together); the copy stays complete.
func TestB6RateLimits(t *testing.T) {
	tests := []struct {
		name     string
		msgs     int64
		bytes    int64
		minTotal time.Duration
	}{
		// 30 messages at 20/s: the first second is burst, the rest ~0.5 s.
		{"messages", 20, 0, 400 * time.Millisecond},
		// ~30 x 30 bytes = ~900 bytes at 400 B/s: ~1.25 s after the burst.
		{"bytes", 0, 400, 1 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := mailtest.NewMemSource(fixtures(30, "INBOX"))
			dst := mailtest.NewMemSink()
			opt := fastOpts(nil)
			opt.MaxMsgsPerSec, opt.MaxBytesPerSec = tc.msgs, tc.bytes
			start := time.Now()
			if _, err := Copy(context.Background(), src, dst, opt); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < tc.minTotal || total(dst) != 30 {
				t.Fatalf("copied %d in %v, want 30 in at least %v", total(dst), took, tc.minTotal)
			}
		})
	}
}

func TestRateLimiterCancel(t *testing.T) {
	l := newRateLimiter(1)
	ctx, cancel := context.WithCancel(context.Background())
	l.wait(ctx, 1) // the burst
	cancel()
	if err := l.wait(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait after cancel = %v, want context.Canceled", err)
	}
}

// hintSink is a MemSink that asks for a commit batch through Limits and
// counts the Commits it gets.
type hintSink struct {
	*mailtest.MemSink
	batch   int
	commits atomic.Int64
}

func (s *hintSink) Limits() mail.Limits { return mail.Limits{Batch: s.batch} }

func (s *hintSink) Commit(context.Context) error {
	s.commits.Add(1)
	return nil
}

// TestSinkBatchHint: without Options.BatchSize the engine commits as
// often as the sink's Limits().Batch asks (the IMAP sink asks for fewer,
// larger commits); an explicit BatchSize still wins.
func TestSinkBatchHint(t *testing.T) {
	for _, tc := range []struct {
		name         string
		hint, option int
		want         int64
	}{
		{"engine default", 0, 0, 1},
		{"sink hint", 4, 0, 3},
		{"option wins", 4, 5, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := &hintSink{MemSink: mailtest.NewMemSink(), batch: tc.hint}
			opt := Options{SrcEndpoint: "src", Workers: 1, BatchSize: tc.option, BatchDelay: time.Hour}
			res, err := Copy(context.Background(), mailtest.NewMemSource(fixtures(10, "INBOX")), dst, opt)
			if err != nil || res.Stats.Copied.Load() != 10 {
				t.Fatalf("Copy = %v, copied %d", err, res.Stats.Copied.Load())
			}
			if got := dst.commits.Load(); got != tc.want {
				t.Errorf("%d commits for 10 messages, want %d", got, tc.want)
			}
		})
	}
}
