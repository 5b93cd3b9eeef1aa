package batch

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	stdsync "sync"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// The accounts' checkpoints live in the batch database, not in files on
// the worker that started them: a worker on another machine that takes an
// account up (after a kill, a slice, a retry) finds what was copied. One
// row per account names its endpoints and holds a lease (the worker using
// it); one row per recorded message holds the record as the file
// checkpoint writes it (JSON). The same SQL runs on SQLite and PostgreSQL.
var checkpointTables = []string{
	`CREATE TABLE IF NOT EXISTS mailferry_batch_state (batch TEXT NOT NULL, account TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL,
		holder TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (batch, account))`,
	`CREATE TABLE IF NOT EXISTS mailferry_batch_record (batch TEXT NOT NULL, account TEXT NOT NULL, mailbox TEXT NOT NULL, id TEXT NOT NULL,
		data TEXT NOT NULL, PRIMARY KEY (batch, account, mailbox, id))`,
}

// recordsPerStatement bounds one multi-row upsert: 5 parameters a row
// stays far below SQLite's limit of 32766.
const recordsPerStatement = 200

// flushTimeout bounds a flush: the engine flushes after its context ended
// (an interrupt, the end of a slice), so a flush has its own deadline.
const flushTimeout = 30 * time.Second

// Checkpoint is an account's checkpoint in the batch database: the
// engine's checkpoint.Store, with the file checkpoint's promises. Records
// are buffered by Add and written by Flush in one transaction (the engine
// records only what the sink made durable and deletes on the source only
// after the flush: store, record, delete). A Checkpoint holds a lease on
// its account, renewed while it is open: a second Open gets
// checkpoint.ErrLocked until the lease ends (Close, or a dead worker's
// lease expiring), and a holder whose lease was taken over can flush
// nothing more. Methods are safe for concurrent use.
type Checkpoint struct {
	s              *Store
	batch, account string
	holder         string
	mu             stdsync.Mutex
	recs           map[checkpoint.Key]checkpoint.Record
	byBox          map[string][]checkpoint.Key
	pending        map[checkpoint.Key]checkpoint.Record
	closed, lost   bool
	stopRenew      func()
	renewing       stdsync.WaitGroup
}

var _ checkpoint.Store = (*Checkpoint)(nil)

// OpenCheckpoint opens the checkpoint of one account of a batch for the
// endpoints src and dst (canonical names), creating it when there is none.
// A checkpoint written for other endpoints (the row's URLs changed) is
// refused with checkpoint.ErrUnusable, unless reset, which then starts it
// afresh (one for these endpoints is kept: reset may be asked on every
// slice of a pass); one another worker holds gets checkpoint.ErrLocked.
func (s *Store) OpenCheckpoint(ctx context.Context, batch, account, src, dst string, reset bool) (*Checkpoint, error) {
	c := &Checkpoint{s: s, batch: batch, account: account, holder: newHolder(),
		recs: map[checkpoint.Key]checkpoint.Record{}, byBox: map[string][]checkpoint.Key{}, pending: map[checkpoint.Key]checkpoint.Record{}}
	if err := c.lock(ctx, src, dst); err != nil {
		return nil, err
	}
	if err := c.checkEndpoints(ctx, src, dst, reset); err != nil {
		c.unlock()
		return nil, err
	}
	if err := c.load(ctx); err != nil {
		c.unlock()
		return nil, err
	}
	c.startRenewing()
	return c, nil
}

func (c *Checkpoint) where() string { return fmt.Sprintf("batch %s account %s", c.batch, c.account) }

// lock creates the account's state row holding the lease, or takes the
// lease of an existing row whose lease ended: one statement, so of two
// workers racing exactly one wins.
func (c *Checkpoint) lock(ctx context.Context, src, dst string) error {
	now := c.s.now()
	res, err := c.s.db.ExecContext(ctx, `INSERT INTO mailferry_batch_state (batch, account, src, dst, holder, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (batch, account) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE mailferry_batch_state.expires_at < $7`,
		c.batch, c.account, src, dst, c.holder, now.Add(c.s.checkpointLease()).UnixMilli(), now.UnixMilli())
	if err != nil {
		return fmt.Errorf("checkpoint of %s: %w", c.where(), err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("%w: %s is being copied by another worker (its lease ends within %s of its last renewal)", checkpoint.ErrLocked, c.where(), c.s.checkpointLease())
	}
	return nil
}

// checkEndpoints refuses a state written for other endpoints, or, with
// reset, starts it afresh for these.
func (c *Checkpoint) checkEndpoints(ctx context.Context, src, dst string, reset bool) error {
	var gotSrc, gotDst string
	err := c.s.db.QueryRowContext(ctx, `SELECT src, dst FROM mailferry_batch_state WHERE batch = $1 AND account = $2`, c.batch, c.account).Scan(&gotSrc, &gotDst)
	if err != nil {
		return fmt.Errorf("checkpoint of %s: %w", c.where(), err)
	}
	if gotSrc == src && gotDst == dst {
		return nil
	}
	if !reset {
		return fmt.Errorf("%w: the checkpoint of %s was written for %s -> %s, not %s -> %s (the row's URLs changed: pass --reset to start it afresh)",
			checkpoint.ErrUnusable, c.where(), gotSrc, gotDst, src, dst)
	}
	tx, err := c.s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("checkpoint of %s: reset: %w", c.where(), err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op once committed
	if _, err := tx.ExecContext(ctx, `DELETE FROM mailferry_batch_record WHERE batch = $1 AND account = $2`, c.batch, c.account); err != nil {
		return fmt.Errorf("checkpoint of %s: reset: %w", c.where(), err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE mailferry_batch_state SET src = $1, dst = $2 WHERE batch = $3 AND account = $4 AND holder = $5`,
		src, dst, c.batch, c.account, c.holder); err != nil {
		return fmt.Errorf("checkpoint of %s: reset: %w", c.where(), err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("checkpoint of %s: reset: %w", c.where(), err)
	}
	return nil
}

// load reads every record of the account, as the file checkpoint does.
func (c *Checkpoint) load(ctx context.Context) error {
	rs, err := c.s.db.QueryContext(ctx, `SELECT data FROM mailferry_batch_record WHERE batch = $1 AND account = $2`, c.batch, c.account)
	if err != nil {
		return fmt.Errorf("checkpoint of %s: %w", c.where(), err)
	}
	defer func() { _ = rs.Close() }()
	for rs.Next() {
		var data string
		if err := rs.Scan(&data); err != nil {
			return fmt.Errorf("checkpoint of %s: %w", c.where(), err)
		}
		var r checkpoint.Record
		if err := json.Unmarshal([]byte(data), &r); err != nil || r.ID == "" {
			return fmt.Errorf("%w: the checkpoint of %s holds a corrupt record (pass --reset to start it afresh)", checkpoint.ErrUnusable, c.where())
		}
		c.put(r)
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("checkpoint of %s: %w", c.where(), err)
	}
	return nil
}

// startRenewing renews the lease every third of it until Close. A renewal
// that finds the lease taken over marks the checkpoint lost: its next
// Flush fails, so nothing is recorded (or deleted on the source) by a
// worker that another has replaced, for instance one stopped (SIGSTOP)
// past its lease and resumed.
func (c *Checkpoint) startRenewing() {
	stop := make(chan struct{})
	c.stopRenew = func() { close(stop) }
	c.renewing.Add(1)
	go func() {
		defer c.renewing.Done()
		t := time.NewTicker(c.s.checkpointLease() / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), c.s.checkpointLease()/3)
				held, err := c.renew(ctx, c.s.db)
				cancel()
				if err == nil && !held {
					c.mu.Lock()
					c.lost = true
					c.mu.Unlock()
					return
				}
			}
		}
	}()
}

// checkpointLease is how long a checkpoint stays locked after its last
// renewal: the time between the end of a job's slice and River's rescue
// of it. A worker killed mid-slice has its lease expire by the time
// River gives the account to another worker, which then opens the
// checkpoint at once; one stopped (SIGSTOP) past it has lost the account
// to that worker and can record nothing more.
func (s *Store) checkpointLease() time.Duration { return s.cfg.RescueAfter - s.cfg.Slice }

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// renew extends the lease; false when another holder has it now.
func (c *Checkpoint) renew(ctx context.Context, db execer) (bool, error) {
	res, err := db.ExecContext(ctx, `UPDATE mailferry_batch_state SET expires_at = $1 WHERE batch = $2 AND account = $3 AND holder = $4`,
		c.s.now().Add(c.s.checkpointLease()).UnixMilli(), c.batch, c.account, c.holder)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// unlock ends the lease at once, so the next worker need not wait for it.
func (c *Checkpoint) unlock() {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	_, _ = c.s.db.ExecContext(ctx, `UPDATE mailferry_batch_state SET expires_at = 0 WHERE batch = $1 AND account = $2 AND holder = $3`,
		c.batch, c.account, c.holder)
}

func (c *Checkpoint) put(r checkpoint.Record) {
	k := checkpoint.Key{Mailbox: r.Mailbox, ID: r.ID}
	if _, dup := c.recs[k]; !dup {
		c.byBox[r.Mailbox] = append(c.byBox[r.Mailbox], k)
	}
	c.recs[k] = r
}

// Len returns the number of records.
func (c *Checkpoint) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

// Has reports whether k was recorded.
func (c *Checkpoint) Has(k checkpoint.Key) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.recs[k]
	return ok
}

// Records returns the records of mailbox.
func (c *Checkpoint) Records(mailbox string) []checkpoint.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]checkpoint.Record, 0, len(c.byBox[mailbox]))
	for _, k := range c.byBox[mailbox] {
		out = append(out, c.recs[k])
	}
	return out
}

// Add records r; it reaches the database with the next Flush.
func (c *Checkpoint) Add(r checkpoint.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("checkpoint: add: %w", mail.ErrClosed)
	}
	c.put(r)
	c.pending[checkpoint.Key{Mailbox: r.Mailbox, ID: r.ID}] = r
	return nil
}

// StampStored gives every record without a store time the time at; they
// reach the database with the next Flush. It returns how many it stamped.
func (c *Checkpoint) StampStored(at int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, fmt.Errorf("checkpoint: stamp: %w", mail.ErrClosed)
	}
	n := 0
	for k, r := range c.recs {
		if r.Stored != 0 {
			continue
		}
		r.Stored = at
		c.recs[k] = r
		c.pending[k] = r
		n++
	}
	return n, nil
}

// Flush writes the buffered records in one transaction that also checks
// and renews the lease. A failure is fatal for the run, as the file
// checkpoint's: the records stay buffered and nothing may be deleted on
// the source.
func (c *Checkpoint) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flush()
}

func (c *Checkpoint) flush() error {
	if len(c.pending) == 0 || c.closed {
		return nil
	}
	if c.lost {
		return mail.MakeFatal(c.lostError())
	}
	recs := make([]checkpoint.Record, 0, len(c.pending))
	for _, r := range c.pending {
		recs = append(recs, r)
	}
	// One order for every writer: concurrent transactions on PostgreSQL
	// then take row locks in the same order.
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Mailbox != recs[j].Mailbox {
			return recs[i].Mailbox < recs[j].Mailbox
		}
		return recs[i].ID < recs[j].ID
	})
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	err := c.s.durably(ctx, func(tx *sql.Tx) error {
		held, err := c.renew(ctx, tx)
		if err != nil {
			return err
		}
		if !held {
			c.lost = true
			return c.lostError()
		}
		return c.write(ctx, tx, recs)
	})
	if err != nil {
		if errors.Is(err, checkpoint.ErrLocked) {
			return mail.MakeFatal(err)
		}
		return mail.MakeFatal(fmt.Errorf("checkpoint of %s: write: %w", c.where(), err))
	}
	clear(c.pending)
	return nil
}

func (c *Checkpoint) lostError() error {
	return fmt.Errorf("%w: %s: this worker's lease on the checkpoint was taken over by another worker (it stopped too long); nothing more is recorded here",
		checkpoint.ErrLocked, c.where())
}

// write upserts recs, many rows per statement.
func (c *Checkpoint) write(ctx context.Context, tx *sql.Tx, recs []checkpoint.Record) error {
	for len(recs) > 0 {
		n := min(len(recs), recordsPerStatement)
		var q strings.Builder
		q.WriteString(`INSERT INTO mailferry_batch_record (batch, account, mailbox, id, data) VALUES `)
		args := make([]any, 0, 5*n)
		for i, r := range recs[:n] {
			data, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if i > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d)", 5*i+1, 5*i+2, 5*i+3, 5*i+4, 5*i+5)
			args = append(args, c.batch, c.account, r.Mailbox, string(r.ID), string(data))
		}
		q.WriteString(` ON CONFLICT (batch, account, mailbox, id) DO UPDATE SET data = excluded.data`)
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

// Close flushes, stops renewing and ends the lease. It is idempotent.
func (c *Checkpoint) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	err := c.flush()
	c.closed = true
	lost := c.lost
	c.mu.Unlock()
	c.stopRenew()
	c.renewing.Wait()
	if !lost {
		c.unlock()
	}
	return err
}

// durably runs fn in a transaction that survives a power loss once
// committed. PostgreSQL commits durably by default. The SQLite file runs
// with synchronous=NORMAL (River's bookkeeping needs no fsync per
// statement), so a checkpoint commit switches its connection to FULL
// first: in WAL mode that fsyncs the log at commit, which makes this
// transaction and every one before it durable before a deletion on the
// source may follow.
func (s *Store) durably(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if s.kind != "sqlite" {
		return inTx(ctx, s.db, fn)
	}
	conn, err := s.db.Conn(ctx) // the only connection: nobody else's statement runs in between
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
		return err
	}
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = NORMAL`) }()
	return inTx(ctx, conn, fn)
}

// txBeginner is a *sql.DB or a *sql.Conn.
type txBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

func inTx(ctx context.Context, db txBeginner, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
