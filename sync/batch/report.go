package batch

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/riverqueue/river/rivertype"

	"github.com/mailferry/mailferry/internal/exitcode"
)

// States of an account in a report.
const (
	StateDone      = "done"
	StatePartial   = "partial"
	StateFailed    = "failed"
	StateCancelled = "cancelled" // only when a person cancelled
	StatePending   = "pending"   // not run yet, running, or waiting to run again
	// StateHeldBack: a sync held deletions back (exit 10) that look like
	// an accident; everything else was synced. Not a failure: a person
	// checks, then queues a pass with --force.
	StateHeldBack = "held_back"
)

// Line is one account in a report: exactly one per CSV row, also for rows
// that never started.
type Line struct {
	ID       string   `json:"id"`
	Pass     string   `json:"pass,omitempty"` // the pass whose job this line tells; "" when none ran
	State    string   `json:"state"`
	Class    string   `json:"class,omitempty"`
	ExitCode *int     `json:"exit_code"` // mailferry's; null before a run ended
	Attempts int      `json:"attempts"`
	Totals   Totals   `json:"totals"`
	Error    string   `json:"error,omitempty"`
	Failures []string `json:"failures,omitempty"`
}

// lineOf tells one job's account.
func lineOf(id string, j *rivertype.JobRow) Line {
	l := Line{ID: id, State: StatePending}
	var args accountArgs
	if json.Unmarshal(j.EncodedArgs, &args) == nil {
		l.Pass = args.Pass
	}
	l.Attempts = j.Attempt
	out := jobOutput(j)
	if out != nil {
		code := out.ExitCode
		l.ExitCode = &code
		l.Class, l.Totals, l.Error, l.Failures = out.Class, out.Totals, out.Error, out.Failures
	}
	switch j.State {
	case rivertype.JobStateCompleted:
		l.State = StateDone
		if out != nil && out.ExitCode == exitcode.Partial {
			l.State = StatePartial
		}
		if out != nil && out.ExitCode == exitcode.HeldBack {
			l.State = StateHeldBack
		}
	case rivertype.JobStateCancelled:
		l.State = StateFailed
		if out == nil || cancelledByPerson(j) {
			l.State, l.Class = StateCancelled, ""
		}
	case rivertype.JobStateDiscarded:
		l.State = StateFailed
	}
	if l.State == StateFailed && l.Class == "" {
		l.Class = ClassTemporary
	}
	return l
}

// latest is each account's latest job (highest id) of a pass, or of any
// pass when pass is "".
func (s *Store) latest(ctx context.Context, batch, pass string) (map[string]Line, error) {
	jobs, err := s.jobs(ctx, batch, pass)
	if err != nil {
		return nil, err
	}
	out := map[string]Line{}
	for _, j := range jobs { // ascending ids: later jobs overwrite
		var args accountArgs
		if err := json.Unmarshal(j.EncodedArgs, &args); err != nil {
			return nil, fmt.Errorf("job %d: %w", j.ID, err)
		}
		out[args.ID] = lineOf(args.ID, j)
	}
	return out, nil
}

// Report has one line per account of the batch, in file order: its job
// in pass, or else its latest job in any pass (a pass of only the failed
// accounts reports the others as they ended before), or else pending.
func (s *Store) Report(ctx context.Context, batch, pass string) ([]Line, error) {
	rows, err := s.Rows(ctx, batch)
	if err != nil {
		return nil, err
	}
	inPass, err := s.latest(ctx, batch, pass)
	if err != nil {
		return nil, err
	}
	anyPass := inPass
	if pass != "" {
		if anyPass, err = s.latest(ctx, batch, ""); err != nil {
			return nil, err
		}
	}
	lines := make([]Line, 0, len(rows))
	for _, r := range rows {
		l, ok := inPass[r.ID]
		if !ok {
			l, ok = anyPass[r.ID]
		}
		if !ok {
			l = Line{ID: r.ID, State: StatePending}
		}
		lines = append(lines, l)
	}
	return lines, nil
}

// Summary counts a report's lines.
type Summary struct {
	Accounts int            `json:"accounts"`
	States   map[string]int `json:"states"`
	Classes  map[string]int `json:"classes,omitempty"` // of failed accounts
	Totals   Totals         `json:"totals"`
}

// Summarize counts lines by state and failure class.
func Summarize(lines []Line) Summary {
	s := Summary{Accounts: len(lines), States: map[string]int{}, Classes: map[string]int{}}
	for _, l := range lines {
		s.States[l.State]++
		if l.State == StateFailed {
			s.Classes[l.Class]++
		}
		s.Totals.Copied += l.Totals.Copied
		s.Totals.Present += l.Totals.Present
		s.Totals.Failed += l.Totals.Failed
		s.Totals.Bytes += l.Totals.Bytes
	}
	return s
}

// AllDone reports whether every account is done.
func (s Summary) AllDone() bool { return s.States[StateDone] == s.Accounts }

// String is the summary for people.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d accounts:", s.Accounts)
	for _, st := range []string{StateDone, StatePartial, StateHeldBack, StateFailed, StateCancelled, StatePending} {
		if n := s.States[st]; n > 0 {
			fmt.Fprintf(&b, " %d %s", n, st)
		}
	}
	if len(s.Classes) > 0 {
		b.WriteString(" (failed:")
		for _, c := range classes {
			if n := s.Classes[c]; n > 0 {
				fmt.Fprintf(&b, " %d %s", n, c)
			}
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, "; messages: %d copied, %d already present, %d failed; %d bytes copied", s.Totals.Copied, s.Totals.Present, s.Totals.Failed, s.Totals.Bytes)
	return b.String()
}

// WriteJSONL writes one JSON object per line.
func WriteJSONL(w io.Writer, lines []Line) error {
	enc := json.NewEncoder(w)
	for i := range lines {
		if err := enc.Encode(&lines[i]); err != nil {
			return err
		}
	}
	return nil
}

// csvHeader are the columns of WriteCSV.
var csvHeader = []string{"id", "pass", "state", "class", "exit_code", "attempts", "copied", "present", "failed", "bytes", "error", "first_failure"}

// WriteCSV writes the report as CSV, one row per account.
func WriteCSV(w io.Writer, lines []Line) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, l := range lines {
		code, first := "", ""
		if l.ExitCode != nil {
			code = strconv.Itoa(*l.ExitCode)
		}
		if len(l.Failures) > 0 {
			first = l.Failures[0]
		}
		t := l.Totals
		rec := []string{l.ID, l.Pass, l.State, l.Class, code, strconv.Itoa(l.Attempts),
			i64(t.Copied), i64(t.Present), i64(t.Failed), i64(t.Bytes), l.Error, first}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }
