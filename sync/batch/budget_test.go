package batch

import (
	"context"
	stdsync "sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
)

// budgetRunner copies 300 bytes per account over as many runs as its
// byte allowance needs, as copy --max-bytes does: a run that could not
// finish exits 8 (resume later). It counts every byte over all workers.
type budgetRunner struct {
	t         *testing.T
	limit     int64
	mu        stdsync.Mutex
	remaining map[string]int64
	total     int64
}

func (b *budgetRunner) RunAccount(_ context.Context, acct *Account) Outcome {
	b.mu.Lock()
	defer b.mu.Unlock()
	if acct.MaxBytes <= 0 {
		b.t.Errorf("%s ran without a byte budget", acct.Row.ID)
		return Outcome{ExitCode: exitcode.Usage}
	}
	left, ok := b.remaining[acct.Row.ID]
	if !ok {
		left = 300
	}
	took := min(left, acct.MaxBytes)
	b.remaining[acct.Row.ID] = left - took
	b.total += took
	if b.total > b.limit {
		b.t.Errorf("%d bytes copied over all workers today; the group allows %d", b.total, b.limit)
	}
	if left > took {
		return Outcome{ExitCode: exitcode.Temporary, Totals: Totals{Copied: 1, Bytes: took}}
	}
	return Outcome{ExitCode: exitcode.OK, Totals: Totals{Copied: 1, Bytes: took}}
}

func (b *budgetRunner) copied() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// startMachines opens n workers on one database with the groups, runs
// pass "one" of accounts ids on them and returns them running.
func startMachines(ctx context.Context, t *testing.T, dbURL string, n, workers int, r Runner, groups []Group, ids ...string) []*machine {
	t.Helper()
	ms := make([]*machine, n)
	for i := range ms {
		m := &machine{}
		m.s = openTest(t, dbURL, workers, r, 0, func(c *Config) {
			c.Groups, c.SlotWait = groups, 5*time.Millisecond
			c.Now = func() time.Time { return time.Now().Add(time.Duration(m.clock.Load())) }
		})
		ms[i] = m
	}
	if _, err := ms[0].s.Load(ctx, "staff", testRows(t, ids...)); err != nil {
		t.Fatal(err)
	}
	if _, err := ms[0].s.Pass(ctx, "staff", "one", PassOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := m.s.AddQueues(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.s.Stop(context.Background()) })
	}
	return ms
}

// TestGroupByteBudgetAcrossWorkers: 6 accounts of 300 bytes against a
// group's download budget of 1000 bytes a day, on two workers: together
// they copy exactly 1000 bytes (never more), the rest waits for the next
// day, which has a fresh budget.
func TestGroupByteBudgetAcrossWorkers(t *testing.T) {
	dbs(t, func(t *testing.T, dbURL string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r := &budgetRunner{t: t, limit: 1000, remaining: map[string]int64{}}
		groups := []Group{{Name: "old", Match: []string{"old.example"}, DownloadBytesPerDay: 1000},
			{Name: "new", Match: []string{"new.example"}, DownloadBytesPerDay: 10}} // destinations: no download from them
		ms := startMachines(ctx, t, dbURL, 2, 2, r, groups, "a", "b", "c", "d", "e", "f")
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for r.copied() < 1000 {
			select {
			case <-ctx.Done():
				t.Fatalf("the workers copied %d bytes; want the day's 1000", r.copied())
			case <-tick.C:
			}
		}
		for _, m := range ms {
			if err := m.s.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		}
		day := utcDay(time.Now())
		if used, err := ms[0].s.BudgetUsed(ctx, "old", download, day); err != nil || used != 1000 {
			t.Errorf("the budget row says %d used (%v); want 1000", used, err)
		}
		if used, _ := ms[0].s.BudgetUsed(ctx, "new", download, day); used != 0 {
			t.Errorf("group new's download budget was charged %d bytes for uploads to it", used)
		}
		lines, err := ms[0].s.Report(ctx, "staff", "one")
		if err != nil {
			t.Fatal(err)
		}
		// 1000 bytes finish at most 3 accounts of 300; the others wait
		// for tomorrow, none failed.
		if sum := Summarize(lines); sum.States[StateDone] > 3 || sum.States[StateDone]+sum.States[StatePending] != 6 {
			t.Errorf("report %+v; want at most 3 done and the rest waiting for tomorrow", sum.States)
		}
		ms[1].clock.Add(int64(24 * time.Hour))
		h, spent, err := ms[1].s.reserveBudgets(ctx, budgetsOf(groups, &testRows(t, "g")[0]))
		if err != nil || h == nil || h.allowance <= 0 {
			t.Errorf("the next day: reserve = %+v, %q, %v; want a fresh share", h, spent, err)
		}
	})
}

// rateRunner records the msgs/s shares of the accounts running at once;
// the first two wait for each other, so two shares are always held
// together at least once.
type rateRunner struct {
	mu        stdsync.Mutex
	active    int64 // sum of the running accounts' shares
	max       int64
	running   int
	two       chan struct{}
	once      stdsync.Once
	shares    []int64
	remaining int
	done      chan struct{}
}

func (r *rateRunner) RunAccount(ctx context.Context, acct *Account) Outcome {
	r.mu.Lock()
	r.active += acct.MaxMsgsPerSec
	r.max = max(r.max, r.active)
	r.running++
	r.shares = append(r.shares, acct.MaxMsgsPerSec)
	if r.running == 2 {
		r.once.Do(func() { close(r.two) })
	}
	r.mu.Unlock()
	select {
	case <-r.two:
	case <-ctx.Done():
	}
	r.mu.Lock()
	r.active -= acct.MaxMsgsPerSec
	r.running--
	if r.remaining--; r.remaining == 0 {
		close(r.done)
	}
	r.mu.Unlock()
	return Outcome{ExitCode: exitcode.OK}
}

// TestGroupMsgsPerSecAcrossWorkers: a group allowing 10 messages a second
// over at most 2 accounts at once gives each running account 5, so on two
// workers of 3 the shares held at once never add up to more than 10.
func TestGroupMsgsPerSecAcrossWorkers(t *testing.T) {
	dbs(t, func(t *testing.T, dbURL string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ids := []string{"a", "b", "c", "d", "e", "f"}
		r := &rateRunner{two: make(chan struct{}), remaining: len(ids), done: make(chan struct{})}
		groups := []Group{{Name: "old", Match: []string{"old.example"}, MaxAccounts: 2, MaxMsgsPerSec: 10}}
		startMachines(ctx, t, dbURL, 2, 3, r, groups, ids...)
		select {
		case <-r.done:
		case <-ctx.Done():
			t.Fatal("the accounts did not all run")
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.max != 10 {
			t.Errorf("the shares held at once peaked at %d msgs/s; want the group's 10 (two accounts of 5)", r.max)
		}
		for _, s := range r.shares {
			if s != 5 {
				t.Errorf("an account ran with %d msgs/s; want 10 / 2 accounts = 5", s)
			}
		}
	})
}
