package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
)

// Group is a host group: at most MaxAccounts accounts whose source or
// destination is on one of its hosts run at once, across all workers.
// River's free edition has no global concurrency limit, so the slots are
// leases in the batch database: a row per slot, held by one running
// account until it expires, renewed while the account runs.
type Group struct {
	Name  string
	Match []string // host names or path.Match patterns (*.example.org)
	// MaxAccounts caps the accounts running at once; 0: no cap.
	MaxAccounts int
	// ConnectionsPerAccount, when > 0, caps each account's connections
	// (copy's --workers).
	ConnectionsPerAccount int
	// MaxMsgsPerSec, when > 0 with MaxAccounts, caps the messages per
	// second copied from or to the group's hosts by all its accounts
	// together: each of the MaxAccounts slots carries an equal share
	// (copy's --max-msgs-per-sec), so however the slots are spread over
	// workers their sum stays within it. Averaged over seconds: each
	// account's pace allows one second of burst.
	MaxMsgsPerSec int64
	// DownloadBytesPerDay and UploadBytesPerDay, when > 0, cap the bytes
	// copied per UTC day from the group's hosts (accounts whose source is
	// in it) and to them (whose destination is), over all workers: see
	// budgetTable. They apply to copy passes.
	DownloadBytesPerDay, UploadBytesPerDay int64
}

// Defaults of the slot leases.
const (
	DefaultLease    = 60 * time.Second // renewed every third of it
	DefaultSlotWait = 5 * time.Second  // snooze of an account without a free slot
)

// matches reports whether an endpoint URL's host is in the group.
func (g *Group) matches(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Hostname())
	for _, m := range g.Match {
		if ok, _ := path.Match(strings.ToLower(m), host); ok {
			return true
		}
	}
	return false
}

// groupsOf are the capped groups of an account's two ends, each once.
func groupsOf(groups []Group, row *Row) []*Group {
	var out []*Group
	for i := range groups {
		g := &groups[i]
		if g.MaxAccounts > 0 && (g.matches(row.Src) || g.matches(row.Dst)) {
			out = append(out, g)
		}
	}
	return out
}

// msgsPerSec is the smallest share of MaxMsgsPerSec a slot of groups
// carries, 0 for no limit.
func msgsPerSec(groups []*Group) int64 {
	var n int64
	for _, g := range groups {
		if g.MaxMsgsPerSec <= 0 || g.MaxAccounts <= 0 {
			continue
		}
		if share := max(g.MaxMsgsPerSec/int64(g.MaxAccounts), 1); n == 0 || share < n {
			n = share
		}
	}
	return n
}

// connections is the smallest ConnectionsPerAccount of groups, 0 for none.
func connections(groups []*Group) int {
	n := 0
	for _, g := range groups {
		if c := g.ConnectionsPerAccount; c > 0 && (n == 0 || c < n) {
			n = c
		}
	}
	return n
}

// slotTable holds the leases; valid SQL for SQLite and PostgreSQL.
const slotTable = `CREATE TABLE IF NOT EXISTS mailferry_batch_slot (grp TEXT NOT NULL, slot INTEGER NOT NULL, holder TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (grp, slot))`

// lease is the slots one running account holds.
type lease struct {
	holder string
	slots  []heldSlot
}

type heldSlot struct {
	grp  string
	slot int
}

func newHolder() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// acquire takes a free (or expired) slot in every group, or none: it
// returns the group that had no free slot.
func (s *Store) acquire(ctx context.Context, groups []*Group) (*lease, string, error) {
	l := &lease{holder: newHolder()}
	for _, g := range groups {
		ok, err := s.takeSlot(ctx, l, g)
		if err != nil || !ok {
			s.release(context.WithoutCancel(ctx), l)
			return nil, g.Name, err
		}
	}
	return l, "", nil
}

// takeSlot takes the first slot of g that nobody holds or whose lease
// expired: an insert, or an update of an expired row, in one statement.
func (s *Store) takeSlot(ctx context.Context, l *lease, g *Group) (bool, error) {
	now := time.Now()
	exp := now.Add(s.cfg.Lease).UnixMilli()
	for slot := range g.MaxAccounts {
		res, err := s.db.ExecContext(ctx, `INSERT INTO mailferry_batch_slot (grp, slot, holder, expires_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (grp, slot) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE mailferry_batch_slot.expires_at < $5`, g.Name, slot, l.holder, exp, now.UnixMilli())
		if err != nil {
			return false, fmt.Errorf("group %s: take a slot: %w", g.Name, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			l.slots = append(l.slots, heldSlot{g.Name, slot})
			return true, nil
		}
	}
	return false, nil
}

// renew extends the lease; false when a slot was lost (expired and taken
// by another account, or the database unreachable).
func (s *Store) renew(ctx context.Context, l *lease) bool {
	exp := time.Now().Add(s.cfg.Lease).UnixMilli()
	for _, h := range l.slots {
		res, err := s.db.ExecContext(ctx, `UPDATE mailferry_batch_slot SET expires_at = $1 WHERE grp = $2 AND slot = $3 AND holder = $4`,
			exp, h.grp, h.slot, l.holder)
		if err != nil {
			return false
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return false
		}
	}
	return true
}

// release frees the lease's slots.
func (s *Store) release(ctx context.Context, l *lease) {
	if l == nil {
		return
	}
	for _, h := range l.slots {
		_, _ = s.db.ExecContext(ctx, `DELETE FROM mailferry_batch_slot WHERE grp = $1 AND slot = $2 AND holder = $3`, h.grp, h.slot, l.holder)
	}
}

// holdWhile keeps the lease renewed until the returned stop is called. If
// a renewal fails, it cancels ctx's child it returns: the account stops
// its I/O, since another may hold its slot by then.
func (s *Store) holdWhile(ctx context.Context, l *lease) (context.Context, func()) {
	runCtx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(s.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-runCtx.Done():
				return
			case <-t.C:
				if !s.renew(runCtx, l) {
					cancel(errLeaseLost)
					return
				}
			}
		}
	}()
	return runCtx, func() {
		close(done)
		cancel(nil)
		s.release(context.WithoutCancel(ctx), l)
	}
}

var errLeaseLost = fmt.Errorf("the host group slot's lease was lost")
