package batch

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkEngineOverhead is the engine's time per account with a Runner
// that copies nothing: b.N accounts (-benchtime 5000x) through 4 places on
// SQLite, with the Wait loop of 'batch run' polling every second, from the
// pass's enqueue to the last account's end. The metric place-ms/account
// (4 x wall / accounts) is then all engine: waiting to be fetched, River's
// fetch and completion, the row read, the outcome, and what the poll costs
// the one SQLite connection. testdata/bench/batch.sh measures the same
// with real copies (target < 20 ms there).
//
//	go test -run '^$' -bench EngineOverhead -benchtime 5000x ./sync/batch
func BenchmarkEngineOverhead(b *testing.B) {
	const workers = 4
	ctx := context.Background()
	run := RunnerFunc(func(context.Context, *Account) Outcome { return Outcome{} })
	s := openTest(b, filepath.Join(b.TempDir(), "b.db"), workers, run, time.Minute)
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%07d", i)
	}
	if _, err := s.Load(ctx, "staff", testRows(b, ids...)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	if _, err := s.Pass(ctx, "staff", "one", PassOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := s.AddQueues(ctx); err != nil {
		b.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Stop(context.Background())
	if err := s.Wait(ctx, "staff", "one", time.Second); err != nil {
		b.Fatal(err)
	}
	wall := time.Since(start)
	b.StopTimer()
	b.ReportMetric(workers*float64(wall.Microseconds())/1000/float64(b.N), "place-ms/account")
}
