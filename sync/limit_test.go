package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// sized returns n fixtures in INBOX whose bodies are size bytes each.
func sized(n, size int) []mailtest.Fixture {
	var out []mailtest.Fixture
	for i := range n {
		head := fmt.Sprintf("Subject: %d\r\n\r\n", i)
		out = append(out, mailtest.Fixture{Mailbox: "INBOX", Body: []byte(head + strings.Repeat("x", size-len(head)))})
	}
	return out
}

// TestB5ByteBudget: a run with a byte budget stores whole messages while
// they fit, then stops with ErrResumeLater (fatal, not a per-message
// failure); each rerun continues from the checkpoint and every message ends
// up stored exactly once. A budget below one message still progresses.
func TestB5ByteBudget(t *testing.T) {
	for _, tc := range []struct {
		name           string
		budget         int64
		workers        int
		perRun, reruns int
	}{
		{"three per run", 3500, 1, 3, 4},
		{"smaller than a message", 10, 1, 1, 10},
		{"parallel", 3500, 4, 3, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := mailtest.NewMemSource(sized(10, 1000))
			var mu stdsync.Mutex
			puts := map[mail.ID]int{}
			dst := &mailtest.FaultSink{Sink: mailtest.NewMemSink(), Fail: func(_ int, env mail.Envelope) error {
				mu.Lock()
				puts[env.ID]++
				mu.Unlock()
				return nil
			}}
			cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
			runs := 0
			for ; runs < 20; runs++ {
				opt := fastOpts(cp)
				opt.MaxBytes, opt.Workers = tc.budget, tc.workers
				res, err := Copy(context.Background(), src, dst, opt)
				copied := res.Stats.Copied.Load()
				if err == nil {
					break
				}
				if !errors.Is(err, ErrResumeLater) || !mail.Fatal(err) || len(res.Failures) != 0 {
					t.Fatalf("run %d = %v, failures %v; want ErrResumeLater, fatal, no failures", runs+1, err, res.Failures)
				}
				if copied == 0 || copied > int64(tc.perRun) || res.Stats.Bytes.Load() > max(tc.budget, 1000) {
					t.Fatalf("run %d copied %d (%d bytes), want 1..%d within the budget %d", runs+1, copied, res.Stats.Bytes.Load(), tc.perRun, tc.budget)
				}
			}
			if runs+1 != tc.reruns {
				t.Errorf("took %d runs, want %d", runs+1, tc.reruns)
			}
			for id, n := range puts {
				if n != 1 {
					t.Errorf("message %s was Put %d times, want once", id, n)
				}
			}
			if len(puts) != 10 || cp.Len() != 10 {
				t.Errorf("stored %d, recorded %d; want 10 and 10", len(puts), cp.Len())
			}
		})
	}
}

// TestB6FiveThrottlesStop: a server that answers every attempt with a
// throttle makes the run stop after five in a row (one message given up
// after its retries, one more attempt), instead of spending four attempts
// on every remaining message. What was stored before is recorded; the
// rerun stores the rest exactly once.
func TestB6FiveThrottlesStop(t *testing.T) {
	src := mailtest.NewMemSource(sized(20, 200))
	var mu stdsync.Mutex
	throttle, attempts := false, 0
	stored := map[mail.ID]int{}
	dst := &mailtest.FaultSink{Sink: mailtest.NewMemSink(), Fail: func(_ int, env mail.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		if throttle {
			attempts++
			return mail.Temp(errors.New("fake: BAD Request is throttled. Suggested Backoff Time: 1 milliseconds"))
		}
		stored[env.ID]++
		if len(stored) == 3 {
			throttle = true // from the fourth message on
		}
		return nil
	}}
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	opt := fastOpts(cp)
	opt.Workers = 1
	res, err := Copy(context.Background(), src, dst, opt)
	if !errors.Is(err, ErrResumeLater) || !strings.Contains(err.Error(), "5 temporary failures in a row") || !strings.Contains(err.Error(), "throttled") {
		t.Fatalf("Copy = %v, want ErrResumeLater naming the streak and the last error", err)
	}
	if attempts != maxTempStreak {
		t.Errorf("%d throttled attempts, want %d: the run must stop, not go on", attempts, maxTempStreak)
	}
	if len(res.Failures) != 1 || !res.Failures[0].Temporary {
		t.Errorf("failures = %+v, want the one message given up, marked temporary", res.Failures)
	}
	if cp.Len() != 3 {
		t.Errorf("recorded %d, want the 3 stored before the throttling", cp.Len())
	}
	mu.Lock()
	throttle = false
	mu.Unlock()
	if _, err := Copy(context.Background(), src, dst, opt); err != nil {
		t.Fatalf("rerun = %v", err)
	}
	for id, n := range stored {
		if n != 1 {
			t.Errorf("message %s stored %d times", id, n)
		}
	}
	if len(stored) != 20 || cp.Len() != 20 {
		t.Errorf("stored %d, recorded %d; want 20", len(stored), cp.Len())
	}
}

// TestTempStreak: only an unbroken run of temporary failures stops; a
// success or a definite answer in between resets it.
func TestTempStreak(t *testing.T) {
	ctx := context.Background()
	temp := mail.Temp(errors.New("throttled"))
	for _, tc := range []struct {
		name string
		seq  []error
		stop int // index of the outcome that stops, -1 none
	}{
		{"five in a row", []error{temp, temp, temp, temp, temp}, 4},
		{"success between", []error{temp, temp, temp, temp, nil, temp, temp, temp, temp}, -1},
		{"permanent between", []error{temp, temp, temp, errors.New("too big"), temp, temp, temp, temp}, -1},
		{"fatal is no throttle", []error{mail.MakeFatal(temp), mail.MakeFatal(temp), mail.MakeFatal(temp), mail.MakeFatal(temp), mail.MakeFatal(temp)}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &tempStreak{}
			stopped := -1
			for i, err := range tc.seq {
				if s.note(ctx, err) != nil && stopped < 0 {
					stopped = i
				}
			}
			if stopped != tc.stop {
				t.Errorf("stopped at %d, want %d", stopped, tc.stop)
			}
		})
	}
	var nilStreak *tempStreak
	for range 10 {
		if err := nilStreak.note(ctx, temp); err != nil {
			t.Fatalf("nil streak stopped: %v", err)
		}
	}
}

// cutSink reads the first part of every body, then fails the first tries
// of each message as a dropped connection would; it counts every byte read.
type cutSink struct {
	mail.Sink
	mu    stdsync.Mutex
	tries map[mail.ID]int
	read  int64
}

func (s *cutSink) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	n, _ := io.CopyN(io.Discard, body, 600)
	s.mu.Lock()
	s.read += n
	s.tries[env.ID]++
	try := s.tries[env.ID]
	s.mu.Unlock()
	if try <= 2 {
		return "", mail.Temp(errors.New("connection cut mid-body"))
	}
	rest, _ := io.Copy(io.Discard, body)
	s.mu.Lock()
	s.read += rest
	s.mu.Unlock()
	return s.Sink.Put(ctx, env, strings.NewReader(strings.Repeat("x", int(n+rest))))
}

// TestB5BudgetCountsFailedTransfers: bytes read for a message whose
// transfer was cut count against --max-bytes too (a provider's daily quota
// counts every byte it sent), so the retries of cut messages cannot read
// past the budget.
func TestB5BudgetCountsFailedTransfers(t *testing.T) {
	src := mailtest.NewMemSource(sized(10, 1000))
	dst := &cutSink{Sink: mailtest.NewMemSink(), tries: map[mail.ID]int{}}
	opt := fastOpts(openCP(t, filepath.Join(t.TempDir(), "cp.jsonl")))
	opt.MaxBytes, opt.Workers, opt.Retries = 3000, 1, 5
	_, err := Copy(context.Background(), src, dst, opt)
	if !errors.Is(err, ErrResumeLater) {
		t.Fatalf("Copy = %v, want ErrResumeLater", err)
	}
	// The budget is checked before each message starts: at most one
	// message's worth past it.
	if dst.read > 3000+1000 {
		t.Errorf("the run read %d bytes from the source with a budget of 3000", dst.read)
	}
}
