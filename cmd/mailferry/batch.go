package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	flag "github.com/spf13/pflag"

	"github.com/mailferry/mailferry/sync/batch"
)

// batchOptions are the flags of the batch commands; each command uses
// the ones it names in its help.
type batchOptions struct {
	copy       copyOptions // copy's flags, for every account (workers: messages at once per account)
	accounts   int         // --workers: accounts at once in this process
	dbEnv      string      // the variable holding the database URL
	db         string      // batch run: the SQLite file
	report     string      // batch run: the JSON lines report
	name, pass string      // batch run: the batch and pass names
	mode       string
	delete     bool   // --delete-source: the pass moves
	force      bool   // --force: the sync pass applies held-back deletions
	reset      bool   // --reset: checkpoints written for other endpoints start afresh
	stateDir   string // --state-dir: where --mode sync keeps each account's state
	only       string // "failed"
	class      string
	format     string // batch report: jsonl or csv
	configFlag string
	slice      time.Duration
	rescue     time.Duration
	throttle   time.Duration // --throttle-wait: the snooze of a throttled account (exit 8)
	json       bool
	// poll is how often status --watch looks at the jobs and a worker
	// looks for batches loaded since it started.
	poll  time.Duration
	verb  string // the batch command these options are for
	watch bool   // batch status --watch
	// metricsListen serves Prometheus metrics at http://ADDR/metrics;
	// metrics are then counted there.
	metricsListen string
	metrics       *batch.Metrics
}

// Check refuses flag values no batch command takes.
func (o *batchOptions) Check() error {
	switch {
	case o.accounts < 1:
		return &usageError{fmt.Sprintf("--workers %d: want 1 or more (accounts at once)", o.accounts)}
	case o.only != "" && o.only != "failed":
		return &usageError{fmt.Sprintf("--only %q: want failed", o.only)}
	case o.class != "" && o.only == "":
		return &usageError{"--class goes with --only failed"}
	case o.format != "jsonl" && o.format != "csv":
		return &usageError{fmt.Sprintf("--format %q: want jsonl or csv", o.format)}
	case o.dbEnv == "" || !envVarName.MatchString(o.dbEnv):
		return &usageError{fmt.Sprintf("--db-env %q: want the name of an environment variable", o.dbEnv)}
	case o.poll <= 0:
		return &usageError{"--interval: want a positive duration"}
	case o.slice < 0 || o.rescue < 0 || o.throttle < 0:
		return &usageError{"--slice, --rescue-after and --throttle-wait: want positive durations"}
	}
	if o.verb != "run" && o.verb != "worker" {
		return nil // no copy flags
	}
	return o.copy.common.Check()
}

var envVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// dbURL is the database URL from the variable --db-env names: never from
// argv, where other users of the machine could read its password.
func (o *batchOptions) dbURL(env *cliEnv) (string, error) {
	u := env.getenv(o.dbEnv)
	if u == "" {
		return "", &usageError{fmt.Sprintf("no database: set %s to its URL (sqlite:/path/batch.db on one machine, postgres://user@host/db across machines; the password in ~/.pgpass or PGPASSWORD)", o.dbEnv)}
	}
	return u, nil
}

// openStore opens the batch database; with workers > 0, to run accounts.
func (o *batchOptions) openStore(ctx context.Context, url string, workers int, baseDir string, env *cliEnv) (*batch.Store, error) {
	return o.openStoreIn(ctx, url, workers, baseDir, "", env)
}

// openStoreIn is openStore with the state of accounts synced two ways
// under stateDir.
func (o *batchOptions) openStoreIn(ctx context.Context, url string, workers int, baseDir, stateDir string, env *cliEnv) (*batch.Store, error) {
	cfg := batch.Config{URL: url, Workers: workers, Slice: o.slice, RescueAfter: o.rescue, RescueEvery: env.hooks.rescueEvery, Throttle: o.throttle, Logger: batchLogger(env.stderr),
		Resolver: &batch.Resolver{Getenv: env.getenv, BaseDir: baseDir, Hide: []string{o.dbEnv}}}
	if workers > 0 {
		base := o.copy
		if base.common.logLevel == "" {
			// Accounts run side by side: their info lines would drown the
			// summary; the report tells each account's outcome.
			base.common.logLevel = "warn"
		}
		base.src.hideEnv = append(base.src.hideEnv, o.dbEnv)
		base.dst.hideEnv = base.src.hideEnv
		fc, err := o.batchConfig(env)
		if err != nil {
			return nil, err
		}
		if cfg.Groups, err = fc.groups(); err != nil {
			return nil, err
		}
		cfg.Runner = &batchRunner{base: base, env: env, profiles: fc, stateDir: stateDir}
		cfg.Metrics = o.metrics
	}
	s, err := batch.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("batch database: %w", err)
	}
	return s, nil
}

// loadCSV reads an accounts file; any mistake is a usage error (exit 2)
// naming the file, the line and the column, and nothing is loaded.
func loadCSV(path string) ([]batch.Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	defer func() { _ = f.Close() }()
	rows, err := batch.Load(f)
	if err != nil {
		return nil, &usageError{fmt.Sprintf("%s: %v", path, err)}
	}
	// Relative file: and cmd: paths start at the CSV, wherever the
	// worker runs.
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	for i := range rows {
		rows[i].Dir = dir
	}
	return rows, nil
}

// batchNameOf makes a batch name from a CSV file name (staff.csv: staff).
func batchNameOf(csvPath string) string {
	base := strings.ToLower(strings.TrimSuffix(filepath.Base(csvPath), filepath.Ext(csvPath)))
	name := regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(base, "-")
	name = strings.Trim(name, "-")
	if len(name) > 40 {
		name = strings.Trim(name[:40], "-")
	}
	if name == "" {
		name = "accounts"
	}
	return name
}

// batchRun is 'batch run': one machine, nothing to install. The database
// is a SQLite file next to the CSV (or --db), the report next to it too
// (or --report).
func batchRun(ctx context.Context, o *batchOptions, csvPath string, env *cliEnv) error {
	rows, err := loadCSV(csvPath)
	if err != nil {
		return err
	}
	name := o.name
	if name == "" {
		name = batchNameOf(csvPath)
	}
	if err := batch.CheckName("batch", name); err != nil {
		return &usageError{err.Error()}
	}
	if err := batch.CheckName("pass", o.pass); err != nil {
		return &usageError{err.Error()}
	}
	stopMetrics, err := o.startMetrics(env)
	if err != nil {
		return err
	}
	defer stopMetrics()
	stem := strings.TrimSuffix(csvPath, filepath.Ext(csvPath))
	dbPath, reportPath := o.db, o.report
	if dbPath == "" {
		dbPath = stem + ".batch.db"
	}
	if reportPath == "" {
		reportPath = stem + ".report.jsonl"
	}
	stateDir := o.stateDir
	if stateDir == "" {
		stateDir = stem + ".state"
	}
	s, err := o.openStoreIn(ctx, "sqlite:"+dbPath, o.accounts, filepath.Dir(csvPath), stateDir, env)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Load(ctx, name, rows); err != nil {
		return err
	}
	if err := s.AddQueues(ctx); err != nil {
		return err
	}
	if _, err := s.Pass(ctx, name, o.pass, batch.PassOptions{Mode: o.mode, DeleteSource: o.delete, Force: o.force, Reset: o.reset, OnlyFailed: o.only == "failed", Class: o.class}); err != nil {
		return &usageError{err.Error()}
	}
	return runPass(ctx, s, o, name, reportPath, env)
}

// passPoll is how often batch run looks whether its pass is over: a look
// reads one row (Store.Wait), and each one saved from a poll of a second
// is half a second off a small batch's run.
const passPoll = 100 * time.Millisecond

// runPass works the pass until no job of it will run again (or a signal),
// then writes the report and prints the summary.
func runPass(ctx context.Context, s *batch.Store, o *batchOptions, name, reportPath string, env *cliEnv) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	werr := s.Wait(ctx, name, o.pass, passPoll)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil && werr == nil {
		werr = err
	}
	lines, err := s.Report(context.WithoutCancel(ctx), name, o.pass)
	if err != nil {
		return err
	}
	if err := writeReportFile(reportPath, lines); err != nil {
		return err
	}
	sum := batch.Summarize(lines)
	if err := printSummary(env.stdout, o.json, sum, lines); err != nil {
		return err
	}
	if !o.json {
		fmt.Fprintf(env.stdout, "report: %s\n", reportPath)
	}
	if werr != nil {
		return werr
	}
	if !sum.AllDone() {
		return reportedError{&partialError{sum.Accounts - sum.States[batch.StateDone]}}
	}
	return nil
}

// writeReportFile writes the report to a temporary file renamed into
// place, so a reader never sees half of it.
func writeReportFile(path string, lines []batch.Line) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := batch.WriteJSONL(f, lines); err != nil {
		_ = f.Close()
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return os.Rename(tmp, path)
}

// printSummary prints the counts, then each account that is not done.
func printSummary(w io.Writer, asJSON bool, sum batch.Summary, lines []batch.Line) error {
	if asJSON {
		return json.NewEncoder(w).Encode(sum)
	}
	fmt.Fprintln(w, sum)
	for _, l := range lines {
		if l.State == batch.StateDone {
			continue
		}
		fmt.Fprintf(w, "  %s: %s", l.ID, l.State)
		if l.Class != "" {
			fmt.Fprintf(w, " (%s)", l.Class)
		}
		if l.Error != "" {
			fmt.Fprintf(w, ": %s", l.Error)
		}
		fmt.Fprintln(w)
	}
	return nil
}

// batchInit is 'batch init': create or upgrade the tables.
func batchInit(ctx context.Context, o *batchOptions, env *cliEnv) error {
	url, err := o.dbURL(env)
	if err != nil {
		return err
	}
	s, err := o.openStore(ctx, url, 0, "", env)
	if err != nil {
		return err
	}
	s.Close()
	fmt.Fprintln(env.stdout, "batch database ready")
	return nil
}

// withStore opens the database of --db-env for a command that does not
// run accounts.
func withStore(ctx context.Context, o *batchOptions, env *cliEnv, f func(*batch.Store) error) error {
	url, err := o.dbURL(env)
	if err != nil {
		return err
	}
	s, err := o.openStore(ctx, url, 0, "", env)
	if err != nil {
		return err
	}
	defer s.Close()
	return f(s)
}

// batchLoad is 'batch load NAME FILE.csv'.
func batchLoad(ctx context.Context, o *batchOptions, name, csvPath string, env *cliEnv) error {
	if err := batch.CheckName("batch", name); err != nil {
		return &usageError{err.Error()}
	}
	rows, err := loadCSV(csvPath)
	if err != nil {
		return err
	}
	return withStore(ctx, o, env, func(s *batch.Store) error {
		added, err := s.Load(ctx, name, rows)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "batch %s: %d accounts (%d new)\n", name, len(rows), added)
		return nil
	})
}

// batchPass is 'batch pass NAME PASS'.
func batchPass(ctx context.Context, o *batchOptions, name, pass string, env *cliEnv) error {
	return withStore(ctx, o, env, func(s *batch.Store) error {
		res, err := s.Pass(ctx, name, pass, batch.PassOptions{Mode: o.mode, DeleteSource: o.delete, Force: o.force, Reset: o.reset, OnlyFailed: o.only == "failed", Class: o.class})
		if err != nil {
			return &usageError{err.Error()}
		}
		fmt.Fprintf(env.stdout, "batch %s pass %s: %d accounts queued, %d queued before\n", name, pass, res.Queued, res.Skipped)
		return nil
	})
}

// batchWorker is 'batch worker': run accounts of every batch until
// SIGTERM or SIGINT; then the running accounts stop between messages,
// their checkpoints flushed, and go back to the queue without spending an
// attempt, for this or another worker to resume.
func batchWorker(ctx context.Context, o *batchOptions, env *cliEnv) error {
	url, err := o.dbURL(env)
	if err != nil {
		return err
	}
	stopMetrics, err := o.startMetrics(env)
	if err != nil {
		return err
	}
	defer stopMetrics()
	s, err := o.openStoreIn(ctx, url, o.accounts, "", o.stateDir, env)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Start(ctx); err != nil {
		return err
	}
	log := batchLogger(env.stderr)
	fmt.Fprintf(env.stderr, "mailferry batch worker: running up to %d accounts at once; SIGTERM hands them back to the queue\n", o.accounts)
	t := time.NewTicker(o.poll)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			// Batches loaded after the start get workers too.
			if err := s.AddQueues(ctx); err != nil && ctx.Err() == nil {
				log.Warn("batch worker: list batches", "error", err)
			}
		}
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	return s.Stop(stopCtx)
}

// batchStatus is 'batch status NAME [PASS]'; with --watch, the counts
// again every --interval until no account is pending (or a signal).
func batchStatus(ctx context.Context, o *batchOptions, name, pass string, env *cliEnv) error {
	return withStore(ctx, o, env, func(s *batch.Store) error {
		t := time.NewTicker(o.poll)
		defer t.Stop()
		for {
			lines, err := s.Report(ctx, name, pass)
			if err != nil {
				return err
			}
			if len(lines) == 0 {
				return &usageError{fmt.Sprintf("no batch %s (batch load %s FILE.csv)", name, name)}
			}
			sum := batch.Summarize(lines)
			if !o.watch || sum.States[batch.StatePending] == 0 {
				return printSummary(env.stdout, o.json, sum, lines)
			}
			if o.json {
				err = json.NewEncoder(env.stdout).Encode(sum)
			} else {
				_, err = fmt.Fprintf(env.stdout, "%s %s\n", time.Now().Format(time.TimeOnly), sum)
			}
			if err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
	})
}

// batchReport is 'batch report NAME PASS': one line per account.
func batchReport(ctx context.Context, o *batchOptions, name, pass string, env *cliEnv) error {
	return withStore(ctx, o, env, func(s *batch.Store) error {
		lines, err := s.Report(ctx, name, pass)
		if err != nil {
			return err
		}
		if o.format == "csv" {
			return batch.WriteCSV(env.stdout, lines)
		}
		return batch.WriteJSONL(env.stdout, lines)
	})
}

// batchControl is 'batch pause|resume|cancel NAME [PASS]'.
func batchControl(ctx context.Context, o *batchOptions, verb, name, pass string, env *cliEnv) error {
	return withStore(ctx, o, env, func(s *batch.Store) error {
		var err error
		switch verb {
		case "pause":
			err = s.Pause(ctx, name)
		case "resume":
			err = s.Resume(ctx, name)
		case "cancel":
			var n int
			if n, err = s.Cancel(ctx, name, pass); err == nil {
				fmt.Fprintf(env.stdout, "batch %s: %d accounts cancelled\n", name, n)
			}
		default:
			err = errors.New("unknown verb " + verb)
		}
		return err
	})
}

// batchLogger is the River client's logger: warnings and up.
func batchLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// addFlags adds the flags of 'batch VERB'.
func (o *batchOptions) addFlags(fs *flag.FlagSet, verb string) {
	o.format, o.poll, o.accounts, o.pass, o.verb = "jsonl", time.Second, 4, "run", verb
	o.dbEnv = "MAILFERRY_DB"
	if verb != "run" {
		fs.StringVar(&o.dbEnv, "db-env", "MAILFERRY_DB", "read the database URL from the environment variable `NAME` (sqlite:/path/batch.db, or postgres://user@host/db across machines); never from the command line")
	}
	switch verb {
	case "run", "worker":
		o.addRunFlags(fs, verb)
	case "pass":
		o.addPassFlags(fs)
		o.addOnlyFlags(fs)
	case "report":
		fs.StringVar(&o.format, "format", "jsonl", "report `FORMAT`: jsonl (one JSON object per account) or csv")
	case "status":
		fs.BoolVar(&o.json, "json", false, "print the counts as JSON")
		fs.BoolVar(&o.watch, "watch", false, "print the counts again every --interval until no account is pending")
		fs.DurationVar(&o.poll, "interval", 5*time.Second, "with --watch: print every `DURATION`")
	}
}

// addRunFlags are the flags of the commands that run accounts: copy's
// connection flags, applied to every account, and the job settings.
func (o *batchOptions) addRunFlags(fs *flag.FlagSet, verb string) {
	// copy's --workers (messages at once) is --connections here: --workers
	// counts accounts, as GNU parallel's -j does.
	tmp := flag.NewFlagSet("copy", flag.ContinueOnError)
	o.copy.common.add(tmp)
	tmp.VisitAll(func(f *flag.Flag) {
		if f.Name != "workers" && f.Name != "json" && f.Name != "quiet" {
			fs.AddFlag(f)
		}
	})
	o.copy.common.workers, o.copy.progressInterval = 4, 10*time.Second
	fs.IntVar(&o.copy.common.workers, "connections", 4, "copy up to `N` messages of each account at once")
	fs.Var(&o.copy.maxSize, "max-size", "skip and report messages larger than `SIZE` (e.g. 25M)")
	fs.IntVar(&o.accounts, "workers", 4, "run up to `N` accounts at once in this process")
	fs.StringVar(&o.configFlag, "config", "", "read host groups ([batch.groups.NAME]) and oauth2:PROFILE settings (the jobs' src_oauth2, dst_oauth2) from `FILE` (default: the usual config file, if there is one)")
	fs.DurationVar(&o.slice, "slice", batch.DefaultSlice, "run an account for at most `DURATION` at a time, then put it back in the queue to resume (bounds how late pause and cancel take effect)")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9464): accounts running, runs by outcome and class, messages, bytes")
	fs.StringVar(&o.stateDir, "state-dir", "", "keep the two-way state of each account of a --mode sync pass under `DIR` (BATCH/ID.sync); with many machines, a directory every worker shares (batch run: next to the CSV, NAME.state)")
	fs.DurationVar(&o.throttle, "throttle-wait", batch.DefaultThrottle, "put a throttled account (a server's NO [LIMIT], a BYE at connect: exit 8) back in the queue for `DURATION`, without spending an attempt")
	fs.DurationVar(&o.rescue, "rescue-after", batch.DefaultRescueAfter, "hand the account of a worker that died to another after `DURATION` (at least 1.5 slices)")
	if verb == "run" {
		fs.StringVar(&o.db, "db", "", "keep the batch in SQLite `FILE` (default: next to the CSV, NAME.batch.db)")
		fs.StringVar(&o.report, "report", "", "write the report, one JSON line per account, to `FILE` (default: next to the CSV, NAME.report.jsonl)")
		fs.StringVar(&o.name, "name", "", "call the batch `NAME` (default: from the CSV file name)")
		fs.StringVar(&o.pass, "pass", "run", "call the pass `NAME`; running the same pass again runs only the accounts not done")
		fs.BoolVar(&o.json, "json", false, "print the summary as JSON")
		o.addPassFlags(fs)
		o.addOnlyFlags(fs)
	}
}

// addPassFlags say what the jobs of a pass do; they are fixed when the
// pass is queued, whichever worker runs it.
func (o *batchOptions) addPassFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.mode, "mode", "copy", "what each account's job does: copy (one way, as mailferry copy) or sync (both ways, as mailferry sync)")
	fs.BoolVar(&o.delete, "delete-source", false, "with --mode copy: delete each message from the source once it is stored and recorded (a final pass; as copy --delete-source)")
	fs.BoolVar(&o.force, "force", false, "with --mode sync: apply the deletions the guard held back (exit 10, state held_back) after checking them; as sync --force")
	fs.BoolVar(&o.reset, "reset", false, "with --mode copy: start afresh the checkpoint of an account whose row now names other endpoints (refused otherwise: exit 6)")
}

func (o *batchOptions) addOnlyFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.only, "only", "", "queue only the accounts whose latest run `failed` (in any pass)")
	fs.StringVar(&o.class, "class", "", "with --only failed: only the failures of `CLASS` (auth, connect, tls, quota, checkpoint, usage, temporary)")
}

// startMetrics serves the worker's metrics on --metrics-listen, if set,
// and returns the function that stops serving.
func (o *batchOptions) startMetrics(env *cliEnv) (func(), error) {
	if o.metricsListen == "" {
		return func() {}, nil
	}
	reg := prometheus.NewRegistry()
	m, err := batch.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.metricsListen)
	if err != nil {
		return nil, &usageError{fmt.Sprintf("--metrics-listen %s: %v", o.metricsListen, err)}
	}
	o.metrics = m
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(env.stderr, "mailferry batch: metrics: %v\n", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
}
