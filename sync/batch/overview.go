package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/riverqueue/river/rivertype"
)

// Overview is what the status page shows of one batch, read from the
// database in one listing of its jobs.
type Overview struct {
	Batch  string `json:"batch"`
	Paused bool   `json:"paused"`
	// Summary counts every account by its latest job in any pass, as
	// 'batch status NAME' does; Running of them run right now.
	Summary Summary `json:"summary"`
	Running int     `json:"running"`
	// Passes in the order they were first queued.
	Passes []PassOverview `json:"passes"`
}

// PassOverview counts the accounts queued in one pass (an account not
// queued in it is not counted) and times the pass.
type PassOverview struct {
	Name    string  `json:"name"`
	Summary Summary `json:"summary"`
	Running int     `json:"running"`
	// Started is the pass's first attempt; Ended its last finished job
	// when none will run again, else zero.
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// Finished accounts will not run again in this pass (done, partial,
	// failed, cancelled).
	Finished int `json:"finished"`
	// Failed are the accounts whose job in this pass failed, with their
	// reasons: a later pass queuing them again does not hide why.
	Failed []Line `json:"failed"`
}

// Overview reads one batch for the status page.
func (s *Store) Overview(ctx context.Context, batch string) (*Overview, error) {
	rows, err := s.Rows(ctx, batch)
	if err != nil {
		return nil, err
	}
	paused, err := s.paused(ctx, batch)
	if err != nil {
		return nil, err
	}
	jobs, err := s.jobs(ctx, batch, "")
	if err != nil {
		return nil, err
	}
	o := &Overview{Batch: batch, Paused: paused, Passes: []PassOverview{}}
	latest, running, err := o.addJobs(jobs)
	if err != nil {
		return nil, err
	}
	lines := make([]Line, 0, len(rows))
	for _, r := range rows {
		l, ok := latest[r.ID]
		if !ok {
			l = Line{ID: r.ID, State: StatePending}
		}
		lines = append(lines, l)
		if running[r.ID] {
			o.Running++
		}
	}
	o.Summary = Summarize(lines)
	return o, nil
}

// passAcc gathers one pass's jobs: the latest per account.
type passAcc struct {
	latest  map[string]*rivertype.JobRow
	order   []string
	started time.Time
}

// addJobs fills the passes from the jobs (ascending ids) and returns each
// account's latest line in any pass and whether that job runs now.
func (o *Overview) addJobs(jobs []*rivertype.JobRow) (map[string]Line, map[string]bool, error) {
	latest, running := map[string]Line{}, map[string]bool{}
	passes := map[string]*passAcc{}
	var order []string
	for _, j := range jobs {
		var args accountArgs
		if err := json.Unmarshal(j.EncodedArgs, &args); err != nil {
			return nil, nil, fmt.Errorf("job %d: %w", j.ID, err)
		}
		latest[args.ID] = lineOf(args.ID, j)
		running[args.ID] = j.State == rivertype.JobStateRunning
		p := passes[args.Pass]
		if p == nil {
			p = &passAcc{latest: map[string]*rivertype.JobRow{}}
			passes[args.Pass] = p
			order = append(order, args.Pass)
		}
		if _, seen := p.latest[args.ID]; !seen {
			p.order = append(p.order, args.ID)
		}
		p.latest[args.ID] = j
		if j.AttemptedAt != nil && (p.started.IsZero() || j.AttemptedAt.Before(p.started)) {
			p.started = *j.AttemptedAt
		}
	}
	for _, name := range order {
		o.Passes = append(o.Passes, passes[name].overview(name))
	}
	return latest, running, nil
}

// overview counts a pass's accounts and finds when it ended.
func (p *passAcc) overview(name string) PassOverview {
	po := PassOverview{Name: name, Started: p.started, Failed: []Line{}}
	lines := make([]Line, 0, len(p.order))
	var ended time.Time
	for _, id := range p.order {
		j := p.latest[id]
		l := lineOf(id, j)
		lines = append(lines, l)
		if l.State == StateFailed {
			po.Failed = append(po.Failed, l)
		}
		if j.State == rivertype.JobStateRunning {
			po.Running++
		}
		if j.FinalizedAt == nil {
			continue
		}
		po.Finished++
		if j.FinalizedAt.After(ended) {
			ended = *j.FinalizedAt
		}
	}
	if po.Finished == len(p.order) {
		po.Ended = ended
	}
	po.Summary = Summarize(lines)
	return po
}

// Elapsed is how long the pass has run: from its first attempt to its end,
// or to now while accounts remain.
func (p PassOverview) Elapsed(now time.Time) time.Duration {
	if p.Started.IsZero() {
		return 0
	}
	end := now
	if !p.Ended.IsZero() {
		end = p.Ended
	}
	return max(end.Sub(p.Started), 0)
}

// Rate is the messages and bytes copied per second over Elapsed; zero
// before the pass started.
func (p PassOverview) Rate(now time.Time) (msgs, bytes float64) {
	secs := p.Elapsed(now).Seconds()
	if secs <= 0 {
		return 0, 0
	}
	return float64(p.Summary.Totals.Copied) / secs, float64(p.Summary.Totals.Bytes) / secs
}

// ETA guesses the time left from the accounts finished so far: the
// remaining ones at the pass's pace. ok is false when it cannot say (no
// account finished yet, or the pass is over).
func (p PassOverview) ETA(now time.Time) (left time.Duration, ok bool) {
	remaining := p.Summary.Accounts - p.Finished
	if p.Finished == 0 || remaining <= 0 {
		return 0, false
	}
	per := p.Elapsed(now) / time.Duration(p.Finished)
	return per * time.Duration(remaining), true
}

// RiverClient is the store's River client (*river.Client[pgx.Tx] on
// PostgreSQL, *river.Client[*sql.Tx] on SQLite), for River's own UI.
func (s *Store) RiverClient() any { return s.client }
