package batch

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// A host group's daily byte limits (download_bytes_per_day for accounts
// whose source is in the group, upload_bytes_per_day for those whose
// destination is) are budget rows in the batch database, one per group,
// UTC day and direction, shared by every worker. Before an account runs,
// its worker reserves a share of what is left today (a compare-and-set on
// the row, the same SQL on SQLite and PostgreSQL) and runs the copy with
// that share as its byte budget (copy --max-bytes); afterwards it gives
// back what the run did not use. A worker killed mid-run gives nothing
// back: its share counts as used, so the limit is never exceeded by a
// crash, only underused until the next day. The engine lets the first
// message of a run through even when it is larger than the budget, so a
// day's total can go over by at most one message per run that meets its
// share's end.
const budgetTable = `CREATE TABLE IF NOT EXISTS mailferry_batch_budget (grp TEXT NOT NULL, day TEXT NOT NULL, direction TEXT NOT NULL,
	used BIGINT NOT NULL, PRIMARY KEY (grp, day, direction))`

// Budget directions.
const (
	download = "download"
	upload   = "upload"
)

// budgetUse is one daily limit an account draws from.
type budgetUse struct {
	g     *Group
	dir   string
	limit int64
}

// budgetsOf are the daily limits of an account's two ends.
func budgetsOf(groups []Group, row *Row) []budgetUse {
	var out []budgetUse
	for i := range groups {
		g := &groups[i]
		if g.DownloadBytesPerDay > 0 && g.matches(row.Src) {
			out = append(out, budgetUse{g, download, g.DownloadBytesPerDay})
		}
		if g.UploadBytesPerDay > 0 && g.matches(row.Dst) {
			out = append(out, budgetUse{g, upload, g.UploadBytesPerDay})
		}
	}
	return out
}

// reservation is a share of one budget row held by a running account.
type reservation struct {
	grp, day, dir string
	amount        int64
}

// budgetHold is what an account reserved: it may copy Allowance bytes.
type budgetHold struct {
	res       []reservation
	allowance int64
}

// errBudgetSpent says a group's budget for today is spent.
var errBudgetSpent = errors.New("the group's byte budget for today is spent")

// utcDay is the budget row's day.
func utcDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// untilTomorrow is how long until the next UTC day, when budgets refill.
func untilTomorrow(now time.Time) time.Duration {
	d := now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Sub(now)
	return d + time.Second // past midnight, not on it
}

// reserveBudgets reserves a share of every budget of uses; nil when there
// are none. A spent budget gives back what was reserved and returns
// errBudgetSpent naming the group.
func (s *Store) reserveBudgets(ctx context.Context, uses []budgetUse) (*budgetHold, string, error) {
	if len(uses) == 0 {
		return nil, "", nil
	}
	h := &budgetHold{allowance: -1}
	day := utcDay(s.now())
	for _, u := range uses {
		got, err := s.reserve(ctx, u, day)
		if err == nil && got == 0 {
			err = errBudgetSpent
		}
		if err != nil {
			s.settleBudgets(context.WithoutCancel(ctx), h, 0)
			return nil, u.g.Name, err
		}
		h.res = append(h.res, reservation{u.g.Name, day, u.dir, got})
		if h.allowance < 0 || got < h.allowance {
			h.allowance = got
		}
	}
	return h, "", nil
}

// budgetShare is how many parts a day's budget is reserved in: one per
// account the group may run at once, else one per account this worker
// runs at once. Reserving only a share leaves the rest to accounts
// starting meanwhile on other workers.
func (s *Store) budgetShare(g *Group) int64 {
	if g.MaxAccounts > 0 {
		return int64(g.MaxAccounts)
	}
	return int64(max(s.cfg.Workers, 1))
}

// reserve takes up to one share of what is left of u's budget today, by
// compare-and-set: of two workers reading the same row, one wins and the
// other reads again.
func (s *Store) reserve(ctx context.Context, u budgetUse, day string) (int64, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO mailferry_batch_budget (grp, day, direction, used) VALUES ($1, $2, $3, 0) ON CONFLICT (grp, day, direction) DO NOTHING`,
		u.g.Name, day, u.dir); err != nil {
		return 0, fmt.Errorf("group %s: %s budget: %w", u.g.Name, u.dir, err)
	}
	share := max((u.limit+s.budgetShare(u.g)-1)/s.budgetShare(u.g), 1)
	for range 100 {
		var used int64
		if err := s.db.QueryRowContext(ctx, `SELECT used FROM mailferry_batch_budget WHERE grp = $1 AND day = $2 AND direction = $3`,
			u.g.Name, day, u.dir).Scan(&used); err != nil {
			return 0, fmt.Errorf("group %s: %s budget: %w", u.g.Name, u.dir, err)
		}
		take := min(share, u.limit-used)
		if take <= 0 {
			return 0, nil
		}
		res, err := s.db.ExecContext(ctx, `UPDATE mailferry_batch_budget SET used = $1 WHERE grp = $2 AND day = $3 AND direction = $4 AND used = $5`,
			used+take, u.g.Name, day, u.dir, used)
		if err != nil {
			return 0, fmt.Errorf("group %s: %s budget: %w", u.g.Name, u.dir, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			return take, nil
		}
	}
	return 0, fmt.Errorf("group %s: %s budget: too many workers at once, try later", u.g.Name, u.dir)
}

// settleBudgets charges what the run copied against its reservations:
// the unused rest goes back, a first message larger than the share is
// charged in full.
func (s *Store) settleBudgets(ctx context.Context, h *budgetHold, used int64) {
	if h == nil {
		return
	}
	for _, r := range h.res {
		if delta := used - r.amount; delta != 0 {
			_, _ = s.db.ExecContext(ctx, `UPDATE mailferry_batch_budget SET used = used + $1 WHERE grp = $2 AND day = $3 AND direction = $4`,
				delta, r.grp, r.day, r.dir)
		}
	}
}

// BudgetUsed is how many bytes of a group's budget (direction "download"
// or "upload") are used or reserved on day (UTC, YYYY-MM-DD).
func (s *Store) BudgetUsed(ctx context.Context, group, direction, day string) (int64, error) {
	var used int64
	err := s.db.QueryRowContext(ctx, `SELECT used FROM mailferry_batch_budget WHERE grp = $1 AND day = $2 AND direction = $3`, group, day, direction).Scan(&used)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	return used, nil
}
