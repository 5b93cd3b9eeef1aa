package batch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

const cpSrc, cpDst = "pop3s://alice@old.example", "maildir:/srv/mail/alice"

// machine is one worker's view of the batch database: its own Store (its
// own connections), and a clock that may run ahead of the others', as
// time does for a worker that takes over after another's lease ended.
type machine struct {
	s     *Store
	clock atomic.Int64 // offset from time.Now, ns
}

func newMachine(t *testing.T, dbURL string) *machine {
	t.Helper()
	m := &machine{}
	m.s = openTest(t, dbURL, 0, nil, 0, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(m.clock.Load())) }
	})
	return m
}

// later moves the machine's clock past every lease taken so far (the
// checkpoints' lease is 30 s with the default slice and rescue).
func (m *machine) later() { m.clock.Add(int64(2 * time.Minute)) }

func (m *machine) open(t *testing.T, account string) *Checkpoint {
	t.Helper()
	c, err := m.s.OpenCheckpoint(context.Background(), "staff", account, cpSrc, cpDst, false)
	if err != nil {
		t.Fatalf("OpenCheckpoint(%s) = %v", account, err)
	}
	return c
}

// dbs runs a test on SQLite and, when configured, PostgreSQL.
func dbs(t *testing.T, test func(t *testing.T, dbURL string)) {
	t.Run("sqlite", func(t *testing.T) { test(t, filepath.Join(t.TempDir(), "b.db")) })
	t.Run("postgres", func(t *testing.T) { test(t, postgresURL(t)) })
}

// TestCheckpointSurvivesAnotherMachine: what one worker recorded, a worker
// on another machine finds; records of other accounts and batches stay
// apart.
func TestCheckpointSurvivesAnotherMachine(t *testing.T) {
	dbs(t, func(t *testing.T, dbURL string) {
		a, b := newMachine(t, dbURL), newMachine(t, dbURL)
		c := a.open(t, "alice")
		for _, id := range []mail.ID{"7.1", "7.2", "7.3"} {
			if err := c.Add(checkpoint.Record{Mailbox: "INBOX", ID: id, Dst: "d" + id, Size: 10, SHA256: "ab"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Add(checkpoint.Record{Mailbox: "Sent", ID: "9.1"}); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c = b.open(t, "alice")
		defer c.Close()
		if c.Len() != 4 || !c.Has(checkpoint.Key{Mailbox: "INBOX", ID: "7.2"}) || c.Has(checkpoint.Key{Mailbox: "Sent", ID: "7.2"}) {
			t.Fatalf("reopened elsewhere: len %d, has INBOX/7.2 %v, has Sent/7.2 %v", c.Len(),
				c.Has(checkpoint.Key{Mailbox: "INBOX", ID: "7.2"}), c.Has(checkpoint.Key{Mailbox: "Sent", ID: "7.2"}))
		}
		got := map[mail.ID]string{}
		for _, r := range c.Records("INBOX") {
			got[r.ID] = string(r.Dst)
		}
		if len(got) != 3 || got["7.2"] != "d7.2" {
			t.Fatalf("Records(INBOX) = %v", got)
		}
		other := b.open(t, "bob")
		defer other.Close()
		if other.Len() != 0 {
			t.Errorf("account bob sees %d records of alice's", other.Len())
		}
		oc, err := b.s.OpenCheckpoint(context.Background(), "faculty", "alice", cpSrc, cpDst, false)
		if err != nil || oc.Len() != 0 {
			t.Fatalf("batch faculty's alice: %v, %d records; want her own, empty", err, oc.Len())
		}
		oc.Close()
	})
}

// TestCheckpointRefusesOtherEndpoints: the state of an account whose row
// now names other endpoints is refused (exit 6) and left alone; reset
// starts it afresh.
func TestCheckpointRefusesOtherEndpoints(t *testing.T) {
	dbs(t, func(t *testing.T, dbURL string) {
		ctx := context.Background()
		m := newMachine(t, dbURL)
		c := m.open(t, "alice")
		if err := c.Add(checkpoint.Record{Mailbox: "INBOX", ID: "1"}); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		for _, ends := range [][2]string{{"pop3s://bob@old.example", cpDst}, {cpSrc, "maildir:/srv/mail/bob"}} {
			if _, err := m.s.OpenCheckpoint(ctx, "staff", "alice", ends[0], ends[1], false); !errors.Is(err, checkpoint.ErrUnusable) {
				t.Fatalf("OpenCheckpoint(%s -> %s) = %v, want ErrUnusable", ends[0], ends[1], err)
			}
		}
		c = m.open(t, "alice") // refused, not changed: the right endpoints still find their record
		if c.Len() != 1 {
			t.Fatalf("after refusals: %d records, want 1", c.Len())
		}
		c.Close()
		// Reset is asked on every slice of a pass: it keeps a state
		// written for the same endpoints.
		c, err := m.s.OpenCheckpoint(ctx, "staff", "alice", cpSrc, cpDst, true)
		if err != nil || c.Len() != 1 {
			t.Fatalf("OpenCheckpoint with reset, same endpoints = %v, %d records; want the record kept", err, c.Len())
		}
		c.Close()
		c, err = m.s.OpenCheckpoint(ctx, "staff", "alice", "pop3s://bob@old.example", cpDst, true)
		if err != nil || c.Len() != 0 {
			t.Fatalf("OpenCheckpoint with reset = %v, %d records; want a fresh state", err, c.Len())
		}
		c.Close()
		if _, err := m.s.OpenCheckpoint(ctx, "staff", "alice", cpSrc, cpDst, false); !errors.Is(err, checkpoint.ErrUnusable) {
			t.Fatalf("after the reset to bob's source, alice's = %v; want ErrUnusable", err)
		}
	})
}

// TestCheckpointLease: a second worker is kept out while the first holds
// the account (exit 7); after Close at once, after a kill once the lease
// expired; the replaced worker can then record nothing, and what it had
// not flushed is not in the database.
func TestCheckpointLease(t *testing.T) {
	dbs(t, func(t *testing.T, dbURL string) {
		ctx := context.Background()
		a, b := newMachine(t, dbURL), newMachine(t, dbURL)
		c := a.open(t, "alice")
		if _, err := b.s.OpenCheckpoint(ctx, "staff", "alice", cpSrc, cpDst, false); !errors.Is(err, checkpoint.ErrLocked) {
			t.Fatalf("second OpenCheckpoint = %v, want ErrLocked", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c = b.open(t, "alice") // closed: free at once
		if err := c.Add(checkpoint.Record{Mailbox: "INBOX", ID: "1"}); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := c.Add(checkpoint.Record{Mailbox: "INBOX", ID: "2"}); err != nil { // never flushed: b is killed
			t.Fatal(err)
		}
		a.later()
		c2 := a.open(t, "alice")
		defer c2.Close()
		if !c2.Has(checkpoint.Key{Mailbox: "INBOX", ID: "1"}) || c2.Has(checkpoint.Key{Mailbox: "INBOX", ID: "2"}) {
			t.Fatalf("after the kill: has 1 %v, has 2 %v; want the flushed record only", c2.Has(checkpoint.Key{Mailbox: "INBOX", ID: "1"}), c2.Has(checkpoint.Key{Mailbox: "INBOX", ID: "2"}))
		}
		// The first worker comes back (SIGCONT): it may not record.
		if err := c.Flush(); !errors.Is(err, checkpoint.ErrLocked) || !mail.Fatal(err) {
			t.Fatalf("the replaced worker's Flush = %v, want a fatal ErrLocked", err)
		}
		c.Close()
		c2.Close()
		c3 := b.open(t, "alice")
		defer c3.Close()
		if c3.Has(checkpoint.Key{Mailbox: "INBOX", ID: "2"}) {
			t.Fatal("the replaced worker's record reached the database")
		}
	})
}

// TestCheckpointConcurrentOpenOneWins: workers racing on a new account's
// state never both get it.
func TestCheckpointConcurrentOpenOneWins(t *testing.T) {
	dbs(t, func(t *testing.T, dbURL string) {
		const n = 4
		ms := make([]*machine, n)
		for i := range ms {
			ms[i] = newMachine(t, dbURL)
		}
		for trial := range 5 {
			account := fmt.Sprint("acct", trial)
			got := make(chan *Checkpoint, n)
			start := make(chan struct{})
			for _, m := range ms {
				go func() {
					<-start
					c, err := m.s.OpenCheckpoint(context.Background(), "staff", account, cpSrc, cpDst, false)
					if err != nil && !errors.Is(err, checkpoint.ErrLocked) {
						t.Errorf("OpenCheckpoint = %v", err)
					}
					got <- c
				}()
			}
			close(start)
			winners := 0
			for range n {
				if c := <-got; c != nil {
					winners++
					defer c.Close()
				}
			}
			if winners != 1 {
				t.Fatalf("trial %d: %d workers hold the checkpoint, want 1", trial, winners)
			}
		}
	})
}

// TestCheckpointConcurrentUse: the engine's workers and committer call a
// checkpoint at once (-race); every record flushed is found again.
func TestCheckpointConcurrentUse(t *testing.T) {
	dbs(t, func(t *testing.T, dbURL string) {
		m := newMachine(t, dbURL)
		c := m.open(t, "alice")
		var wg stdsync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					id := mail.ID(fmt.Sprintf("%d.%d", g, i))
					if err := c.Add(checkpoint.Record{Mailbox: fmt.Sprint("box", g%2), ID: id}); err != nil {
						t.Error(err)
						return
					}
					if !c.Has(checkpoint.Key{Mailbox: fmt.Sprint("box", g%2), ID: id}) {
						t.Errorf("Has(%s) after Add = false", id)
					}
					_ = c.Records("box0")
					if i%10 == 9 {
						if err := c.Flush(); err != nil {
							t.Error(err)
						}
					}
				}
			}()
		}
		wg.Wait()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c = m.open(t, "alice")
		defer c.Close()
		if c.Len() != 200 {
			t.Fatalf("reopened: %d records, want 200", c.Len())
		}
	})
}

// TestCheckpointStampStored: records without a store time get one, once,
// and keep it in the database.
func TestCheckpointStampStored(t *testing.T) {
	m := newMachine(t, filepath.Join(t.TempDir(), "b.db"))
	c := m.open(t, "alice")
	for _, r := range []checkpoint.Record{{Mailbox: "INBOX", ID: "1"}, {Mailbox: "INBOX", ID: "2"}, {Mailbox: "Sent", ID: "3", Stored: 500}} {
		if err := c.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		at   int64
		want int
	}{{1000, 2}, {2000, 0}} {
		if n, err := c.StampStored(tc.at); err != nil || n != tc.want {
			t.Fatalf("StampStored(%d) = %d, %v; want %d", tc.at, n, err, tc.want)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = m.open(t, "alice")
	defer c.Close()
	want := map[mail.ID]int64{"1": 1000, "2": 1000, "3": 500}
	for _, mb := range []string{"INBOX", "Sent"} {
		for _, r := range c.Records(mb) {
			if r.Stored != want[r.ID] {
				t.Errorf("%s/%s: Stored %d, want %d", mb, r.ID, r.Stored, want[r.ID])
			}
		}
	}
}

// crashStore is a checkpoint in a process that dies at a step: from then
// on nothing it does reaches the database (kill -9 loses the buffer).
type crashStore struct {
	*Checkpoint
	dead *atomic.Bool
}

func (c crashStore) Add(r checkpoint.Record) error {
	if c.dead.Load() {
		return nil
	}
	return c.Checkpoint.Add(r)
}

func (c crashStore) Flush() error {
	if c.dead.Load() {
		return nil
	}
	return c.Checkpoint.Flush()
}

func (c crashStore) Close() error {
	if c.dead.Load() {
		return nil
	}
	return c.Checkpoint.Close()
}

// crashSource deletes nothing once the process is dead.
type crashSource struct {
	*mailtest.MemSource
	dead *atomic.Bool
}

func (s crashSource) Remove(ctx context.Context, envs []mail.Envelope) error {
	if s.dead.Load() {
		return nil
	}
	return s.MemSource.Remove(ctx, envs)
}

// TestCheckpointCrashWindows: a move (--delete-source) whose worker dies
// after the sink made a batch durable but before it was recorded (store
// -> record), after it was recorded but before the source deleted it
// (record -> delete), or after the delete; another worker, on another
// machine, takes the account up once the lease expired. In every case the
// destination ends with each message exactly once and the source empty,
// and a further run does nothing (docs/failure-model.md A4, A8, I3).
func TestCheckpointCrashWindows(t *testing.T) {
	for _, tc := range []struct {
		step string
		n    int // dies at the n-th such step
	}{
		{"put", 6}, // the memory sink's Put is durable: its second batch is stored, not recorded
		{"record", 2},
		{"remove", 2},
	} {
		t.Run(tc.step, func(t *testing.T) {
			dbs(t, func(t *testing.T, dbURL string) { crashAt(t, dbURL, tc.step, tc.n) })
		})
	}
}

func crashAt(t *testing.T, dbURL, step string, n int) {
	var fx []mailtest.Fixture
	for i := range 24 {
		mb := []string{"INBOX", "Archive"}[i%2]
		fx = append(fx, mailtest.Fixture{Mailbox: mb, Body: fmt.Appendf(nil, "Subject: %d\r\n\r\nbody %d\r\n", i, i)})
	}
	mem := mailtest.NewMemSource(fx)
	sink := mailtest.NewMemSink()
	a, b := newMachine(t, dbURL), newMachine(t, dbURL)
	dead := &atomic.Bool{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := a.open(t, "alice")
	var seen int
	var mu stdsync.Mutex
	opt := mailferry.Options{SrcEndpoint: cpSrc, Checkpoint: crashStore{first, dead}, DeleteSource: true, Workers: 2,
		BatchSize: 4, BatchDelay: time.Millisecond, Backoff: time.Millisecond,
		Step: func(name string) {
			mu.Lock()
			defer mu.Unlock()
			if name == step {
				if seen++; seen == n {
					dead.Store(true)
					cancel()
				}
			}
		}}
	if _, err := mailferry.Copy(ctx, crashSource{mem, dead}, sink, opt); err == nil || !dead.Load() {
		t.Fatalf("first run = %v, died %v; want it killed at %s", err, dead.Load(), step)
	}
	b.later()
	second := b.open(t, "alice")
	opt.Checkpoint, opt.Step = second, nil
	if _, err := mailferry.Copy(context.Background(), mem, sink, opt); err != nil {
		t.Fatalf("the other worker's run = %v", err)
	}
	bodies := map[string]int{}
	for _, mb := range sink.Mailboxes() {
		for _, m := range sink.Messages(mb) {
			bodies[string(m.Body)]++
		}
	}
	for _, f := range fx {
		if bodies[string(f.Body)] != 1 {
			t.Errorf("%q is in the destination %d times, want once", f.Body, bodies[string(f.Body)])
		}
	}
	if left := mem.Len("INBOX") + mem.Len("Archive"); left != 0 || second.Len() != len(fx) {
		t.Errorf("after the takeover: %d left on the source, %d recorded; want 0 and %d", left, second.Len(), len(fx))
	}
	puts := sink.Puts.Load()
	if res, err := mailferry.Copy(context.Background(), mem, sink, opt); err != nil || res.Stats.Copied.Load() != 0 || sink.Puts.Load() != puts {
		t.Errorf("a further run = %v, copied %d, puts %d; want nothing done", err, res.Stats.Copied.Load(), sink.Puts.Load()-puts)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	// The dead worker's lease is gone: it cannot record anything more.
	dead.Store(false)
	if err := first.Add(checkpoint.Record{Mailbox: "INBOX", ID: "late"}); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); !errors.Is(err, checkpoint.ErrLocked) {
		t.Errorf("the dead worker's Close = %v, want ErrLocked", err)
	}
}

// BenchmarkCheckpointFlush measures what the engine pays per batch of 100
// messages for recording them in the batch database (one durable
// transaction), on SQLite and, when configured, PostgreSQL.
func BenchmarkCheckpointFlush(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			dbURL := "sqlite:" + filepath.Join(b.TempDir(), "b.db")
			if kind == "postgres" {
				if os.Getenv(mailtest.EnvPostgres) == "" {
					b.Skip("no PostgreSQL")
				}
				dbURL = postgresURL(b)
			}
			s, err := Open(context.Background(), Config{URL: dbURL})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			c, err := s.OpenCheckpoint(context.Background(), "staff", "alice", cpSrc, cpDst, false)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.ResetTimer()
			for i := range b.N {
				for j := range 100 {
					if err := c.Add(checkpoint.Record{Mailbox: "INBOX", ID: mail.ID(fmt.Sprintf("%d.%d", i, j)), Size: 3000, SHA256: "ab"}); err != nil {
						b.Fatal(err)
					}
				}
				if err := c.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
