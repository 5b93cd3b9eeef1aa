package batch

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

// Defaults of Config. River rescues a job whose worker died only once it
// has been running for RescueStuckJobsAfter (an hour by default), which
// must exceed the job timeout. An account can take hours, so a job is one
// slice of its copy: the job's context ends after Slice (River's
// JobTimeout), the copy stops between messages with its checkpoint
// flushed, and the job snoozes (no attempt spent) to resume in the next
// slice. With a 60 s slice, rescue after 90 s and River's rescuer looking
// every 30 s, another worker takes up a killed worker's account within 2
// minutes.
const (
	DefaultSlice       = 60 * time.Second
	DefaultRescueAfter = 90 * time.Second
	DefaultMaxAttempts = 5
	DefaultThrottle    = time.Minute // snooze after exit 8 (throttled, --max-bytes)
)

// Config opens a Store.
type Config struct {
	// URL is the database: sqlite:PATH (or a plain path) on one machine,
	// postgres://... across machines. It comes from the environment, never
	// argv (it may hold a password).
	URL string
	// Workers is how many accounts this process runs at once; 0 opens the
	// store only to load, list and report.
	Workers int
	// Runner copies one account; needed when Workers > 0.
	Runner Runner
	// Resolver turns the rows' references into secrets for the Runner.
	Resolver *Resolver
	// Slice, RescueAfter, MaxAttempts and Throttle: see the defaults.
	Slice       time.Duration
	RescueAfter time.Duration
	MaxAttempts int
	Throttle    time.Duration
	// RescueEvery, when set, makes this worker rescue dead workers' jobs
	// at this period besides River's rescuer, which looks every 30 s
	// (rescue.go); for tests. 0: River's alone, the documented bound.
	RescueEvery time.Duration
	// PausePoll is how long a job of a paused batch waits before it looks
	// again (default 30s).
	PausePoll time.Duration
	// RetryDelay, when set, replaces River's backoff (attempt^4 seconds)
	// by a fixed delay; for tests.
	RetryDelay time.Duration
	Logger     *slog.Logger
	// Metrics, when set, count this worker's runs (NewMetrics).
	Metrics *Metrics
	// Groups cap the accounts running at once per host group; Lease and
	// SlotWait: see DefaultLease and DefaultSlotWait.
	Groups   []Group
	Lease    time.Duration
	SlotWait time.Duration
	// Now is the clock of the checkpoints' leases (default time.Now);
	// tests move it past a lease.
	Now func() time.Time
}

// riverClient is what the store uses of a River client; *river.Client of
// either driver has it, so the rest of the package is the same for
// SQLite and PostgreSQL.
type riverClient interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	JobCancel(ctx context.Context, jobID int64) (*rivertype.JobRow, error)
	QueuePause(ctx context.Context, name string, opts *river.QueuePauseOpts) error
	QueueResume(ctx context.Context, name string, opts *river.QueuePauseOpts) error
	Queues() *river.QueueBundle
}

// Store is a batch database: the accounts of each batch in our tables, the
// jobs in River's.
type Store struct {
	db     *sql.DB
	kind   string // "sqlite" or "postgres"
	client riverClient
	exec   riverdriver.Executor // River's queries, for the rescuer
	rescue *rescuer             // nil unless Config.RescueEvery
	cfg    Config
	close  []func()
	queues map[string]bool // queues this worker works
	// running holds a token per account running in this process: River
	// caps each queue (batch) at Workers, this caps the process.
	running chan struct{}
	waiting atomic.Int64 // jobs waiting for a place
	execs   executions   // the jobs running here (ghost.go)
}

var nameRe = lazyRegexp(`^[a-z0-9]+(?:[_-]?[a-z0-9]+)*$`)

// CheckName checks a batch or pass name: lower-case letters and digits,
// single - or _ between them, up to 40 characters (a River queue name is
// built from it).
func CheckName(what, name string) error {
	if len(name) > 40 || !nameRe().MatchString(name) {
		return fmt.Errorf("%s name %q: want up to 40 lower-case letters and digits, with single - or _ between them", what, name)
	}
	return nil
}

func queueName(batch string) string { return "mf_" + batch }

// Open connects to the database, creates or upgrades River's tables and
// ours, and, with Workers > 0, makes a client that works the queues of
// the batches known now (AddQueues for later ones).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.defaults()
	s := &Store{cfg: cfg, queues: map[string]bool{}, running: make(chan struct{}, max(cfg.Workers, 1))}
	kind, dsn, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	s.kind = kind
	if kind == "postgres" {
		err = s.openPostgres(ctx, dsn)
	} else {
		err = s.openSQLite(ctx, dsn)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (c *Config) defaults() {
	if c.Slice <= 0 {
		c.Slice = DefaultSlice
	}
	if c.RescueAfter <= 0 {
		c.RescueAfter = DefaultRescueAfter
	}
	// River refuses a rescue sooner than the job timeout; leave the slice
	// time to stop and flush its checkpoint too.
	c.RescueAfter = max(c.RescueAfter, c.Slice+c.Slice/2)
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Throttle <= 0 {
		c.Throttle = DefaultThrottle
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.SlotWait <= 0 {
		c.SlotWait = DefaultSlotWait
	}
	if c.PausePoll <= 0 {
		c.PausePoll = defaultPausePoll
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Resolver == nil {
		c.Resolver = &Resolver{}
	}
}

// parseURL tells the database kind and the driver's connection string.
// A URL with a password is fine here: it came from the environment.
func parseURL(raw string) (kind, dsn string, err error) {
	switch {
	case raw == "":
		return "", "", errors.New("no database URL")
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		return "postgres", raw, nil
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		if path == "" {
			return "", "", errors.New("sqlite: URL names no file")
		}
		return "sqlite", path, nil
	case strings.Contains(raw, "://"):
		u, _ := url.Parse(raw)
		scheme := ""
		if u != nil {
			scheme = u.Scheme
		}
		return "", "", fmt.Errorf("database URL scheme %q: want sqlite:PATH or postgres://", scheme)
	}
	return "sqlite", raw, nil
}

// sqliteDSN asks modernc.org/sqlite for WAL (readers do not block the
// writer) and to wait for a lock rather than fail at once, since several
// processes may share the file.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(20000)&_pragma=synchronous(NORMAL)&_txlock=immediate"
}

func (s *Store) openSQLite(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	// SQLite runs one statement at a time; River's own tests keep one
	// connection for the same reason (or meet SQLITE_BUSY).
	db.SetMaxOpenConns(1)
	s.db = db
	s.close = append(s.close, func() { _ = db.Close() })
	return startRiver(ctx, s, riversqlite.New(db))
}

func (s *Store) openPostgres(ctx context.Context, dsn string) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.close = append(s.close, pool.Close)
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.db = stdlib.OpenDBFromPool(pool)
	s.close = append([]func(){func() { _ = s.db.Close() }}, s.close...)
	return startRiver(ctx, s, riverpgxv5.New(pool))
}

// startRiver finishes opening s on either database: River's migrations,
// then our tables, then the River client (generic over the driver's
// transaction type, which is all that differs between the two).
func startRiver[TTx any](ctx context.Context, s *Store, driver riverdriver.Driver[TTx]) error {
	s.exec = driver.GetExecutor()
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	if err := s.createTables(ctx); err != nil {
		return err
	}
	client, err := river.NewClient(driver, s.riverConfig(ctx))
	if err != nil {
		return fmt.Errorf("river client: %w", err)
	}
	s.client = client
	return nil
}

// schema is our part of the database, valid SQL for SQLite and
// PostgreSQL: the batches and their accounts (references, no secret).
var schema = []string{
	`CREATE TABLE IF NOT EXISTS mailferry_batch (name TEXT PRIMARY KEY, created_at TEXT NOT NULL, paused INTEGER NOT NULL DEFAULT 0)`,
	`CREATE TABLE IF NOT EXISTS mailferry_batch_row (batch TEXT NOT NULL, id TEXT NOT NULL, line INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (batch, id))`,
	slotTable,
	budgetTable,
	checkpointTables[0],
	checkpointTables[1],
}

func (s *Store) now() time.Time { return s.cfg.Now() }

func (s *Store) createTables(ctx context.Context) error {
	for _, q := range schema {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	return nil
}

// riverConfig is the River client's configuration: an insert-only client
// without workers, or one working the queues of the known batches.
func (s *Store) riverConfig(ctx context.Context) *river.Config {
	workers := river.NewWorkers()
	river.AddWorker(workers, &accountWorker{store: s})
	rc := &river.Config{
		Workers:    workers,
		JobTimeout: s.cfg.Slice,
		// A finished account frees a place; River fetches the next job at
		// most once per cooldown (100 ms by default), and SQLite has no
		// LISTEN/NOTIFY to wake it sooner: each place then idled 50 ms on
		// average between accounts (testdata/bench/batch.sh). The rate of
		// fetches stays bounded by the rate accounts finish.
		FetchCooldown:        fetchCooldown,
		RescueStuckJobsAfter: s.cfg.RescueAfter,
		MaxAttempts:          s.cfg.MaxAttempts,
		Logger:               s.cfg.Logger,
	}
	if s.cfg.RetryDelay > 0 {
		rc.RetryPolicy = fixedRetry(s.cfg.RetryDelay)
	}
	if s.cfg.Workers > 0 {
		rc.Queues = map[string]river.QueueConfig{}
		names, _ := s.Batches(ctx)
		for _, b := range names {
			rc.Queues[queueName(b)] = river.QueueConfig{MaxWorkers: s.cfg.Workers}
			s.queues[b] = true
		}
		if len(rc.Queues) == 0 {
			// River wants a queue to start; ours never receives a job.
			rc.Queues["mf_idle"] = river.QueueConfig{MaxWorkers: 1}
		}
	}
	return rc
}

// fetchCooldown is the River client's FetchCooldown (see riverConfig).
const fetchCooldown = 10 * time.Millisecond

// fixedRetry retries after a fixed delay.
type fixedRetry time.Duration

func (d fixedRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(time.Duration(d)) }

// Close stops nothing (see Stop) and closes the database.
func (s *Store) Close() {
	s.stopRescuer()
	for _, f := range s.close {
		f()
	}
	s.close = nil
}

// Load stores a batch's accounts, replacing rows with the same id (a fixed
// reference takes effect at the next attempt) and adding new ones, in one
// transaction. It returns how many rows were new.
func (s *Store) Load(ctx context.Context, batch string, rows []Row) (added int, err error) {
	if err := CheckName("batch", batch); err != nil {
		return 0, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }() // a no-op once Commit succeeded
	now := time.Now().UTC().Format(time.RFC3339)
	if _, err := tx.ExecContext(ctx, `INSERT INTO mailferry_batch (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, batch, now); err != nil {
		return 0, fmt.Errorf("load: %w", err)
	}
	before, err := countRows(ctx, tx, batch)
	if err != nil {
		return 0, err
	}
	for i := range rows {
		data, err := json.Marshal(&rows[i])
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO mailferry_batch_row (batch, id, line, data) VALUES ($1, $2, $3, $4)
			ON CONFLICT (batch, id) DO UPDATE SET line = excluded.line, data = excluded.data`, batch, rows[i].ID, rows[i].Line, string(data)); err != nil {
			return 0, fmt.Errorf("load row %s: %w", rows[i].ID, err)
		}
	}
	after, err := countRows(ctx, tx, batch)
	if err != nil {
		return 0, err
	}
	return after - before, tx.Commit()
}

func countRows(ctx context.Context, tx *sql.Tx, batch string) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM mailferry_batch_row WHERE batch = $1`, batch).Scan(&n)
	return n, err
}

// Rows returns a batch's accounts in file order.
func (s *Store) Rows(ctx context.Context, batch string) ([]Row, error) {
	rs, err := s.db.QueryContext(ctx, `SELECT data FROM mailferry_batch_row WHERE batch = $1 ORDER BY line, id`, batch)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rs.Close() }()
	var rows []Row
	for rs.Next() {
		var data string
		if err := rs.Scan(&data); err != nil {
			return nil, err
		}
		var r Row
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			return nil, fmt.Errorf("batch %s: stored row: %w", batch, err)
		}
		rows = append(rows, r)
	}
	return rows, rs.Err()
}

// row returns one account, or nil when the batch has no such id.
func (s *Store) row(ctx context.Context, batch, id string) (*Row, error) {
	var data string
	err := s.db.QueryRowContext(ctx, `SELECT data FROM mailferry_batch_row WHERE batch = $1 AND id = $2`, batch, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Row
	return &r, json.Unmarshal([]byte(data), &r)
}

// Batches lists the batch names.
func (s *Store) Batches(ctx context.Context) ([]string, error) {
	rs, err := s.db.QueryContext(ctx, `SELECT name FROM mailferry_batch ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rs.Close() }()
	var names []string
	for rs.Next() {
		var n string
		if err := rs.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rs.Err()
}

// paused reports whether a person paused the batch.
func (s *Store) paused(ctx context.Context, batch string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT paused FROM mailferry_batch WHERE name = $1`, batch).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return n != 0, err
}

func (s *Store) setPaused(ctx context.Context, batch string, on bool) error {
	n := 0
	if on {
		n = 1
	}
	res, err := s.db.ExecContext(ctx, `UPDATE mailferry_batch SET paused = $1 WHERE name = $2`, n, batch)
	if err != nil {
		return err
	}
	if k, err := res.RowsAffected(); err == nil && k == 0 {
		return fmt.Errorf("no batch %s", batch)
	}
	return nil
}

// HasBatch reports whether a batch was loaded.
func (s *Store) HasBatch(ctx context.Context, batch string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM mailferry_batch WHERE name = $1`, batch).Scan(&n)
	return n > 0, err
}
