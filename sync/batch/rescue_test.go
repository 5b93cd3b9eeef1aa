package batch

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
)

// stuckJobs queues one job per id and makes each look like a job its
// worker died in: running since attempted, at attempt of maxAttempts.
type stuckJob struct {
	id                   string
	attempt, maxAttempts int
	attempted            time.Time
	cancelled            bool // a person cancelled it while it ran
}

func makeStuck(t *testing.T, s *Store, jobs []stuckJob) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.id)
	}
	if _, err := s.Load(ctx, "staff", testRows(t, ids...)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pass(ctx, "staff", "presync", PassOptions{}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.jobs(ctx, "staff", "")
	if err != nil || len(rows) != len(jobs) {
		t.Fatalf("%d jobs (%v); want %d", len(rows), err, len(jobs))
	}
	byID := map[string]int64{}
	for _, row := range rows {
		var a accountArgs
		if err := json.Unmarshal(row.EncodedArgs, &a); err != nil {
			t.Fatal(err)
		}
		byID[a.ID] = row.ID
	}
	for _, j := range jobs {
		md := []byte(`{}`)
		if j.cancelled {
			md = []byte(`{"cancel_attempted_at":"` + j.attempted.UTC().Format(time.RFC3339Nano) + `"}`)
		}
		attempted := j.attempted
		if _, err := s.exec.JobUpdateFull(ctx, &riverdriver.JobUpdateFullParams{ID: byID[j.id],
			StateDoUpdate: true, State: rivertype.JobStateRunning,
			AttemptDoUpdate: true, Attempt: j.attempt, MaxAttemptsDoUpdate: true, MaxAttempts: j.maxAttempts,
			AttemptedAtDoUpdate: true, AttemptedAt: &attempted, AttemptedByDoUpdate: true, AttemptedBy: []string{"dead-worker"},
			MetadataDoUpdate: true, Metadata: md}); err != nil {
			t.Fatal(err)
		}
	}
	return byID
}

// TestRescueDecisions: the worker's rescue step treats a dead worker's
// jobs as River's rescuer does: retried while attempts remain, discarded
// after the last, cancelled when a person cancelled it, and left alone
// while it may still be running (before the horizon).
func TestRescueDecisions(t *testing.T) {
	now := time.Now()
	s := openTest(t, filepath.Join(t.TempDir(), "b.db"), 0, nil, time.Second, func(c *Config) { c.RescueAfter = 3 * time.Second })
	tests := []struct {
		job  stuckJob
		want rivertype.JobState
	}{
		{stuckJob{id: "retry", attempt: 1, maxAttempts: 5, attempted: now.Add(-time.Minute)}, rivertype.JobStateRetryable},
		{stuckJob{id: "last", attempt: 5, maxAttempts: 5, attempted: now.Add(-time.Minute)}, rivertype.JobStateDiscarded},
		{stuckJob{id: "cancelled", attempt: 1, maxAttempts: 5, attempted: now.Add(-time.Minute), cancelled: true}, rivertype.JobStateCancelled},
		{stuckJob{id: "young", attempt: 1, maxAttempts: 5, attempted: now.Add(-2 * time.Second)}, rivertype.JobStateRunning},
	}
	var jobs []stuckJob
	for _, tc := range tests {
		jobs = append(jobs, tc.job)
	}
	ids := makeStuck(t, s, jobs)
	r := &rescuer{exec: s.exec, cfg: &s.cfg, policy: fixedRetry(time.Millisecond)}
	n, err := r.once(context.Background(), now)
	if err != nil || n != 3 {
		t.Fatalf("once = %d, %v; want 3 jobs rescued", n, err)
	}
	for _, tc := range tests {
		row, err := s.exec.JobGetByID(context.Background(), &riverdriver.JobGetByIDParams{ID: ids[tc.job.id]})
		if err != nil {
			t.Fatal(err)
		}
		if row.State != tc.want {
			t.Errorf("%s: state %s; want %s", tc.job.id, row.State, tc.want)
		}
		if rescued := len(row.Errors) > 0; rescued != (tc.want != rivertype.JobStateRunning) {
			t.Errorf("%s: errors %+v; want a rescue error only when rescued", tc.job.id, row.Errors)
		}
	}
}

// TestRescueEvery: with Config.RescueEvery a running worker hands back a
// dead worker's job as soon as it passes the horizon, where River's
// rescuer, having looked at start, looks again only 30 s later. The job
// becomes stuck 4 s after the worker starts; the rescue error says whose
// rescue it was (River's says "JobRescuer").
func TestRescueEvery(t *testing.T) {
	ran := make(chan struct{}, 1)
	run := RunnerFunc(func(ctx context.Context, acct *Account) Outcome {
		select {
		case ran <- struct{}{}:
		default:
		}
		return Outcome{}
	})
	s := openTest(t, filepath.Join(t.TempDir(), "b.db"), 1, run, time.Second, func(c *Config) {
		c.RescueAfter = 6 * time.Second
		c.RescueEvery = 50 * time.Millisecond
	})
	ids := makeStuck(t, s, []stuckJob{{id: "a", attempt: 1, maxAttempts: 5, attempted: time.Now().Add(-2 * time.Second)}})
	if err := s.AddQueues(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		row, err := s.exec.JobGetByID(context.Background(), &riverdriver.JobGetByIDParams{ID: ids["a"]})
		if err != nil {
			t.Fatal(err)
		}
		if row.State != rivertype.JobStateRunning || len(row.Errors) > 0 {
			if len(row.Errors) == 0 || !strings.Contains(row.Errors[0].Error, "batch worker") {
				t.Fatalf("job %s with errors %+v; want rescued by the batch worker", row.State, row.Errors)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead worker's job is still running after 20 s")
		}
	}
	select {
	case <-ran:
	case <-time.After(20 * time.Second): // River's scheduler moves it within 5 s
		t.Fatal("the rescued account did not run")
	}
}

// TestGhostWaitsForTheRun: a job fetched again while this process runs
// it (ghost.go) does not run the account: it waits for the run and ends
// as it did; once the run ended, the next fetch runs again. A ghost
// whose slice ends first goes back to the queue.
func TestGhostWaitsForTheRun(t *testing.T) {
	var x executions
	run, ghost := x.begin(7)
	if ghost {
		t.Fatal("begin(7) on an idle process: ghost")
	}
	g, ghost := x.begin(7)
	if !ghost || g != run {
		t.Fatalf("begin(7) while 7 runs = %v, %v; want the run, ghost", g, ghost)
	}
	if _, ghost := x.begin(8); ghost {
		t.Fatal("begin(8) while 7 runs: ghost")
	}
	ended := make(chan error, 1)
	go func() { ended <- g.wait(context.Background()) }()
	want := river.JobSnooze(time.Minute)
	x.end(7, run, want)
	if err := <-ended; err != want {
		t.Errorf("ghost ended with %v; want the run's %v", err, want)
	}
	if _, ghost := x.begin(7); ghost {
		t.Error("begin(7) after its run ended: ghost")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g, _ = x.begin(7)
	var snooze *river.JobSnoozeError
	if err := g.wait(ctx); !errors.As(err, &snooze) {
		t.Errorf("ghost whose slice ended = %v; want a snooze", err)
	}
}
