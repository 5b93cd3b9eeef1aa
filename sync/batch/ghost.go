package batch

import (
	"context"
	"sync"

	"github.com/riverqueue/river"
)

// River's completer writes a job's end (done, snoozed, retried) "if the
// job is still running", without looking at which attempt ran; when the
// database is down it retries the write for a while. A job rescued and
// fetched again meanwhile (its worker looked dead) is running again, so a
// late write of the earlier end applies to the new run, makes the job
// available while it runs, and River fetches it a second time: two runs
// of one account at once (docs/library-notes.md §12). Across machines the
// account's checkpoint lease keeps the second from committing; in one
// process, executions makes it wait for the first and end as it did (its
// error and its recorded output: River's completer, which keeps one end
// per job, may write the second's in place of the first's), so the
// account neither runs twice nor meets its own run lock (exit 7, snoozed
// for a minute), and its report keeps the run's totals.

// executions are the jobs this process is running, by River job ID.
type executions struct {
	mu sync.Mutex
	m  map[int64]*execution
}

// execution is one run of a job in this process.
type execution struct {
	done chan struct{}
	err  error    // what Work returned; set before done is closed
	out  *Outcome // the output it recorded, if any; likewise
}

// begin registers a run of job id. When the job is already running here,
// it returns that run and ghost true: this one must not run the account.
func (x *executions) begin(id int64) (e *execution, ghost bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e := x.m[id]; e != nil {
		return e, true
	}
	if x.m == nil {
		x.m = map[int64]*execution{}
	}
	e = &execution{done: make(chan struct{})}
	x.m[id] = e
	return e, false
}

// end records how the run of job id ended and wakes its ghosts.
func (x *executions) end(id int64, e *execution, err error) {
	x.mu.Lock()
	delete(x.m, id)
	x.mu.Unlock()
	e.err = err
	close(e.done)
}

// wait is a ghost's run: it ends as the real run did, with its output
// (River's completer may write the ghost's end in place of the run's), or,
// should its own slice end first, goes back to the queue without spending
// an attempt.
func (e *execution) wait(ctx context.Context) error {
	select {
	case <-e.done:
		if e.out != nil {
			_ = river.RecordOutput(ctx, e.out)
		}
		return e.err
	case <-ctx.Done():
		return river.JobSnooze(0)
	}
}
