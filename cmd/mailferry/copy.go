package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	flag "github.com/spf13/pflag"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

type copyOptions struct {
	common       commonFlags
	src, dst     sideFlags
	checkpoint   string
	reset        bool
	rebuildState bool // rebuild the checkpoint from the destination (A9)
	// accountState, when set, opens the checkpoint instead of a file
	// (batch: in the batch database; a nil store keeps none).
	accountState       accountStateFunc
	dryRun             bool
	deleteSource       bool
	deleteAfter        retentionFlag // --delete-after: retention (sync/retention.go)
	allowUnsafeExpunge bool          // IMAP without UIDPLUS: plain EXPUNGE (C9)
	progress           string
	progressInterval   time.Duration
	maxSize            sizeFlag
	maxBytesPerSec     sizeFlag
	maxMsgsPerSec      int64
	maxBytes           sizeFlag
	since, before      dateFlag
	maps               multiFlag // --map rules (folder renames)
	report             string
	remap              bool // re-map folders whose identifiers were reset (C3)
	gmail              bool // the Gmail preset: each message once (help gmail)
	fullEvery          int  // list unchanged folders in full every Nth run
	// fence, set by a batch worker, may forbid the next commit (the
	// engine's Options.Fence); never a flag.
	fence func() error
}

func (o *copyOptions) addFlags(fs *flag.FlagSet) {
	o.common.add(fs)
	o.src.add(fs, "src")
	o.dst.add(fs, "dst")
	fs.StringVar(&o.checkpoint, "checkpoint", "", "remember copied messages under `FILE` (default: under $XDG_STATE_HOME/mailferry, named after SRC and DST): the records in the directory FILE.state (a FILE written by an older mailferry is migrated into it once, then never read again); FILE.lock keeps a second run out")
	fs.BoolVar(&o.reset, "reset", false, "start the checkpoint afresh (forget what was copied; also for a checkpoint written for other endpoints, or corrupt); a destination that already holds messages mailferry wrote does not get them twice")
	fs.BoolVar(&o.rebuildState, "rebuild-state", false, "rebuild the checkpoint (lost, or refused as corrupt) from what the destination holds: messages it stored before are recorded without downloading them again (maildir: destinations)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "list what would be copied; store and delete nothing")
	fs.BoolVar(&o.deleteSource, "delete-source", false, "delete each message from SRC once it is durably stored and recorded (POP3: DELE, committed at QUIT; IMAP: \\Deleted then UID EXPUNGE of exactly those messages)")
	fs.Var(&o.deleteAfter, "delete-after", "leave mail on SRC and delete there the messages mailferry stored at least `DAYS` ago (30d, 4w; by when it stored them, not the message date), while the destination still holds them; 0d deletes what earlier runs stored")
	fs.BoolVar(&o.allowUnsafeExpunge, "allow-unsafe-expunge", false, "with --delete-source from an IMAP server without UIDPLUS: send a plain EXPUNGE, which also removes messages other clients flagged \\Deleted (without it, copied messages stay flagged \\Deleted there)")
	fs.StringVar(&o.progress, "progress", "auto", "progress display: auto (bars on a terminal, a log line every --progress-interval otherwise), always, never")
	fs.DurationVar(&o.progressInterval, "progress-interval", 10*time.Second, "without a terminal, log progress every `DURATION`")
	fs.Var(&o.maxSize, "max-size", "skip and report messages larger than `SIZE` (e.g. 25M; 0 = no limit)")
	fs.Var(&o.maxBytesPerSec, "max-bytes-per-sec", "copy at most `SIZE` bytes per second over all workers (e.g. 2M), for providers that throttle")
	fs.Int64Var(&o.maxMsgsPerSec, "max-msgs-per-sec", 0, "copy at most `N` messages per second over all workers (0 = no limit)")
	fs.Var(&o.maxBytes, "max-bytes", "copy at most about `SIZE` bytes in this run (e.g. 2G, under a provider's daily limit), then stop with exit 8; the next run resumes")
	fs.Var(&o.since, "since", "copy only messages received on or after `DATE` (YYYY-MM-DD, local time; by the internal date)")
	fs.Var(&o.before, "before", "copy only messages received before `DATE` (YYYY-MM-DD, local time)")
	fs.Var(&o.maps, "map", "put source folders matching `SRC_RE=DST` into DST ($1 for groups; repeatable; e.g. 'Sent Items=Sent'); special-use folders (Sent, Trash...) already follow their role")
	fs.BoolVar(&o.remap, "remap", false, "when a folder's message ids were all reset (IMAP UIDVALIDITY change, regenerated POP3 UIDLs), compare every message by content at once instead of a sample first; a folder whose messages are confirmed as the ones copied before is re-mapped with or without it (matched by Message-ID, size and date where unique, else by content), one that matches only in part stops with exit 6")
	fs.StringVar(&o.report, "report", "", "append one JSON line per run (time, job, summary, exit code) to `FILE`, for monitoring")
	fs.IntVar(&o.fullEvery, "full-every", 7, "list every folder in full every `N`th run, although its status says nothing changed (a rerun otherwise skips unchanged IMAP folders and lists only what changed in the others)")
	fs.BoolVar(&o.gmail, "gmail", false, "Gmail source: copy each message once, into its first label folder (INBOX, labels, Sent, Drafts, then All Mail as Archive), not once per label; see mailferry help gmail")
}

// doCopy runs one copy from srcURL to dstURL: for 'copy', and for each job
// of 'run' (job is then its name). It prints the summary and appends the
// --report line, and returns the run's error for the exit code.
func doCopy(ctx context.Context, o *copyOptions, srcURL, dstURL, job string, env *cliEnv) error {
	start := time.Now()
	r, err := copyRun(ctx, o, srcURL, dstURL, env)
	if r == nil {
		r = &copyResult{}
	}
	if r.res != nil {
		err = runError(err, r.res.Failures)
	} else {
		err = runError(err, nil)
	}
	s := makeSummary(o, r, err, start)
	if job != "" {
		s.Job, s.Command = job, "run"
	}
	s.ExitCode = exitCode(err)
	printed := report(env, o, r, &s)
	if o.report != "" {
		if rerr := appendReport(o.report, env, &s); rerr != nil {
			if err == nil {
				return rerr
			}
			fmt.Fprintf(env.stderr, "mailferry: %s\n", oneLine(rerr))
		}
	}
	if printed && isPartial(err) {
		// The summary named every failed message: no need for one more line.
		return reportedError{err}
	}
	return err
}

// copyResult is what copyRun learnt, for the summary.
type copyResult struct {
	res      *mailferry.Result
	src, dst string // canonical endpoint names
}

// copyRun checks the endpoints (the flags were checked by copyOptions.Check),
// locks the run, opens both ends and copies.
func copyRun(ctx context.Context, o *copyOptions, srcURL, dstURL string, env *cliEnv) (*copyResult, error) {
	if err := checkGmail(o, env.registry(), srcURL); err != nil {
		return nil, err
	}
	folderMap, err := mailferry.ParseMap(o.maps)
	if err != nil {
		return nil, err
	}
	penv, log, err := copyLogging(o, env)
	if err != nil {
		return nil, err
	}
	filter, err := o.common.mailboxFilter()
	if err != nil {
		return nil, err
	}
	reg := env.registry()
	srcOpt := o.common.openOptions(&o.src, env, log)
	srcOpt.AllowUnsafeExpunge = o.allowUnsafeExpunge
	hooks := env.hooks.forRun()
	srcOpt.AfterRemoveStore = hooks.afterRemoveStore
	dstOpt := o.common.openOptions(&o.dst, env, log)
	r := &copyResult{}
	// Parse both URLs once, before any network or disk I/O (scenario E1).
	srcEnd, err := reg.Parse(srcURL, srcOpt, mail.AsSource)
	if err != nil {
		return r, err
	}
	dstEnd, err := reg.Parse(dstURL, dstOpt, mail.AsSink)
	if err != nil {
		return r, err
	}
	r.src, r.dst = srcEnd.Canonical, dstEnd.Canonical
	if o.rebuildState && !dstEnd.Factory.KeepsKeys {
		// Checked before the checkpoint is started afresh.
		return r, &usageError{"--rebuild-state needs a destination that lists what it stored (maildir:); use --reset to start the checkpoint afresh"}
	}
	store, fresh, closeStore, cpPath, err := openCopyState(ctx, o, srcEnd, dstEnd, r, log)
	if err != nil {
		return r, err
	}
	defer closeStore()
	// The records and the folders' pass state are one state: started
	// afresh together, so a pass never outlives its records. A dry run
	// lists every folder and writes no state (docs/failure-model.md H2).
	var passes *state.State
	if s, ok := store.(*state.Store); ok && !o.dryRun {
		passes = s.State()
	}
	// A dry run into a local destination that does not exist yet must not
	// create it (docs/failure-model.md H2): everything is to be copied, and a dry
	// run asks the sink for nothing.
	var dst mail.Sink = dryRunSink{}
	if !o.dryRun || !dstEnd.Missing() {
		if dst, err = dstEnd.OpenSink(ctx, dstOpt); err != nil {
			return r, fmt.Errorf("destination: %w", err)
		}
	}
	// A rerun from recorded state asks the statuses and lists changes: an
	// IMAP source then logs in once, on the session the change listing needs.
	srcOpt.Incremental = !fresh && passes != nil
	src, err := srcEnd.OpenSource(ctx, srcOpt)
	if err != nil {
		_ = dst.Close()
		return r, fmt.Errorf("source: %w", err)
	}
	// From here the engine's Run closes both ends and the checkpoint, in
	// order; until then, whatever fails closes them here.
	handed := false
	defer func() {
		if !handed {
			_ = src.Close()
			_ = dst.Close()
		}
	}()
	// Folders with a special-use role go to the destination's folder of
	// that role; --map rules come first. --gmail wraps the source.
	engineSrc, roleMap, err := gmailPreset(ctx, o, src, dst, store, filter, log)
	if err != nil {
		return r, err
	}
	src = engineSrc // closed by Run: the Gmail wrapper closes its own connection too
	rebuild := rebuildFor(fresh && dstEnd.Factory.KeepsKeys, cpPath, o.rebuildState)
	stats := &mailferry.Stats{Start: time.Now()}
	stopProgress := startProgress(ctx, stats, &penv, o.progress, o.progressInterval, o.common.quiet, log)
	handed = true
	r.res, err = mailferry.Run(ctx, engineSrc, dst, mailferry.Options{
		SrcEndpoint:    r.src,
		Workers:        o.common.workers,
		Checkpoint:     store,
		Mailboxes:      filter,
		MapMailbox:     folderMap.Then(roleMap),
		Since:          o.since.t,
		Before:         o.before.t,
		DryRun:         o.dryRun,
		DeleteSource:   o.deleteSource,
		DeleteAfter:    o.deleteAfter.duration(),
		Now:            env.hooks.now,
		MaxSize:        int64(o.maxSize),
		MaxBytesPerSec: int64(o.maxBytesPerSec),
		MaxMsgsPerSec:  o.maxMsgsPerSec,
		MaxBytes:       int64(o.maxBytes),
		Backoff:        env.hooks.backoff,
		Stats:          stats,
		Logger:         log,
		Step:           hooks.step,
		Fence:          o.fence,
		Remap:          o.remap,
		BatchSize:      env.hooks.batch,
		Rebuild:        rebuild,
		State:          passes,
		FullEvery:      o.fullEvery,
	})
	stopProgress()
	return r, err
}

// copyLogging builds the logger of a copy run and the environment its
// progress bars draw into. With bars on the terminal, log records go through
// the same renderer, above the bar, and only from warnings up unless asked:
// the bar shows the progress that info records would tell.
func copyLogging(o *copyOptions, env *cliEnv) (cliEnv, *slog.Logger, error) {
	penv := *env
	logOut := env.stderr
	if showBars(o.progress, o.common.quiet, env) {
		if o.common.logLevel == "" {
			o.common.logLevel = "warn"
		}
		ts := &termShare{w: env.stderr}
		penv.stderr, logOut = barSide{ts}, logSide{ts}
	}
	log, err := o.common.logger(logOut)
	return penv, log, err
}

// openCopyState opens the run's checkpoint: the file (--checkpoint, else
// the default path of the pair), or for a batch account what
// o.accountState opens. cpPath names it in messages.
func openCopyState(ctx context.Context, o *copyOptions, srcEnd, dstEnd *mail.Endpoint, r *copyResult, log *slog.Logger) (store checkpoint.Store, fresh bool, closeStore func(), cpPath string, err error) {
	if o.accountState != nil { // batch: the account's state is in the batch database
		return o.accountState(ctx, srcEnd, dstEnd)
	}
	if cpPath = o.checkpoint; cpPath == "" {
		if cpPath, err = checkpoint.DefaultPath(r.src, r.dst); err != nil {
			return nil, false, nil, "", err
		}
	}
	store, fresh, closeStore, err = lockCheckpoint(o, cpPath, r, log)
	return store, fresh, closeStore, cpPath, err
}

// lockCheckpoint locks the run and opens its checkpoint at cpPath
// (store.go: the state at cpPath.state, the old file migrated into it). A
// dry run uses the checkpoint when there is one, so that it lists what the
// next run would copy, but creates, migrates and writes nothing: store is
// nil when there is none (or with --reset: everything would be copied).
// fresh says the checkpoint holds no record (lost, reset, or a first run),
// known without reading any record. closeStore closes the checkpoint, then
// releases the lock; it is never nil.
func lockCheckpoint(o *copyOptions, cpPath string, r *copyResult, log *slog.Logger) (store checkpoint.Store, fresh bool, closeStore func(), err error) {
	closeStore = func() {}
	if o.dryRun && (!checkpointExists(cpPath) || o.reset || o.rebuildState) {
		return nil, false, closeStore, nil
	}
	release, err := lockRun(cpPath)
	if err != nil {
		return nil, false, closeStore, err
	}
	if o.dryRun {
		store, err = openReadOnlyStore(cpPath, r.src, r.dst, log)
	} else {
		store, fresh, err = openStore(cpPath, o.reset || o.rebuildState, r.src, r.dst, log)
	}
	if err != nil {
		release()
		return nil, false, closeStore, err
	}
	closeStore = func() {
		if store != nil {
			_ = store.Close() // Run closed it already on the normal path; this one only undoes an early exit
		}
		release()
	}
	return store, fresh, closeStore, nil
}

// dryRunSink stands in for a destination a dry run must not create. The
// engine neither creates mailboxes nor stores in a dry run. It lists no
// message, as the missing destination, so a checkpoint that records copies
// there is refused just as the real run would refuse it.
type dryRunSink struct{}

func (dryRunSink) Index(context.Context, string, func(mail.Envelope) error) error { return nil }

func (dryRunSink) CreateMailbox(context.Context, string) error { return nil }
func (dryRunSink) Put(context.Context, mail.Envelope, io.Reader) (mail.ID, error) {
	return "", fmt.Errorf("dry run: nothing is stored: %w", mail.ErrUnsupported)
}
func (dryRunSink) Limits() mail.Limits { return mail.Limits{} }
func (dryRunSink) Close() error        { return nil }

// summary is the --json output of copy and run, and the line --report
// appends.
type summary struct {
	Time     string                        `json:"time,omitempty"`
	Job      string                        `json:"job,omitempty"`
	Command  string                        `json:"command"`
	Src      string                        `json:"src,omitempty"`
	Dst      string                        `json:"dst,omitempty"`
	OK       bool                          `json:"ok"`
	ExitCode int                           `json:"exit_code"`
	Error    string                        `json:"error,omitempty"`
	DryRun   bool                          `json:"dry_run,omitempty"`
	Seconds  float64                       `json:"seconds"`
	Filters  *filterSummary                `json:"filters,omitempty"`
	Counts   runCounts                     `json:"counts"`
	Totals   mailferry.Snapshot            `json:"totals"`
	Folders  map[string]mailferry.Snapshot `json:"folders"`
	Failures []mailferry.Failure           `json:"failures,omitempty"`
	Skipped  []mailferry.Failure           `json:"skipped,omitempty"`
	Events   []mailferry.Event             `json:"events,omitempty"`
	Planned  []mailferry.Planned           `json:"planned,omitempty"` // --dry-run: what a real run would copy
	// Expired: deleted from the source by --delete-after (with --dry-run:
	// would be); NotHeld: old enough, but kept there because the
	// destination no longer holds the stored copy.
	Expired []mailferry.Expired `json:"expired,omitempty"`
	NotHeld []mailferry.Failure `json:"not_held,omitempty"`
	// AlteredOnAppend: copies the destination server changed when it stored
	// them (8-bit header bytes, a final line break), recognised all the same.
	AlteredOnAppend int64 `json:"altered_on_append,omitempty"`
}

// filterSummary says what a run left out on purpose.
type filterSummary struct {
	Since        string   `json:"since,omitempty"`
	Before       string   `json:"before,omitempty"`
	MaxSize      int64    `json:"max_size,omitempty"`
	Include      []string `json:"include,omitempty"`
	Exclude      []string `json:"exclude,omitempty"`
	OutsideDates int64    `json:"outside_dates,omitempty"` // messages left out by --since/--before
	Undated      int64    `json:"undated,omitempty"`       // messages without a date, kept
}

func makeSummary(o *copyOptions, r *copyResult, err error, start time.Time) summary {
	s := summary{Command: "copy", Src: r.src, Dst: r.dst, OK: err == nil, DryRun: o.dryRun,
		Time: start.UTC().Format(time.RFC3339), Seconds: time.Since(start).Seconds(), Folders: map[string]mailferry.Snapshot{}}
	if err != nil {
		s.Error = oneLine(err)
	}
	if f := (filterSummary{Since: o.since.String(), Before: o.before.String(), MaxSize: int64(o.maxSize), Include: o.common.include, Exclude: o.common.exclude}); !reflect.DeepEqual(f, filterSummary{}) {
		if r.res != nil {
			f.OutsideDates, f.Undated = r.res.OutsideDates, r.res.Undated
		}
		s.Filters = &f
	}
	if r.res == nil || r.res.Stats == nil {
		return s
	}
	st := r.res.Stats
	s.Seconds = time.Since(st.Start).Seconds()
	s.Totals = st.Snapshot()
	s.Failures, s.Skipped = r.res.Failures, r.res.Skipped
	s.Events = r.res.Events
	s.Planned = r.res.Planned
	s.Expired, s.NotHeld = r.res.Expired, r.res.NotHeld
	s.AlteredOnAppend = r.res.AlteredOnAppend
	s.Counts = countsOf(s.Totals, r.res, s.Filters)
	for _, mb := range st.Mailboxes() {
		s.Folders[mb] = st.Box(mb).Snapshot()
	}
	return s
}

// report prints the end-of-run summary: a table on stderr (with --quiet,
// only the failed messages) and JSON on stdout with --json. It reports
// whether it printed the failures.
func report(env *cliEnv, o *copyOptions, r *copyResult, s *summary) bool {
	if r.res == nil || r.res.Stats == nil {
		return false
	}
	res, st := r.res, r.res.Stats
	if o.common.json {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s) // a terminal write, like fmt.Fprintf (see .golangci.yml)
		return false
	}
	w := env.stderr
	for _, f := range res.Failures {
		if f.ID == "" { // a whole folder
			fmt.Fprintf(w, "failed: %s: %s\n", f.Mailbox, f.Err)
			continue
		}
		fmt.Fprintf(w, "failed: %s %s: %s\n", f.Mailbox, f.ID, f.Err)
	}
	for _, f := range res.NotHeld { // the destination lost a copy: news even for cron
		fmt.Fprintf(w, "not deleted: %s %s: %s\n", f.Mailbox, f.ID, f.Err)
	}
	for _, e := range res.Events {
		// Folder-level events (identifiers changed, a folder replaced) are
		// news even for cron: they happen once. A halted folder is the
		// run's error, printed last.
		if e.Kind != "halted" {
			fmt.Fprintf(w, "%s: %s\n", e.Kind, e.Text)
		}
	}
	if o.common.quiet {
		// Cron mail: only problems. Messages skipped on purpose (over
		// --max-size) would repeat every night; they are in --report.
		return true
	}
	for _, f := range res.Skipped {
		fmt.Fprintf(w, "skipped: %s %s: %s\n", f.Mailbox, f.ID, f.Err)
	}
	if f := s.Filters; f != nil {
		fmt.Fprintf(w, "filters: %s\n", describeFilters(f))
	}
	verb := "copied"
	if o.dryRun {
		verb = "to copy"
	}
	// "present" is every message already in the destination: recorded by
	// an earlier run, or found there by the sink (mail.PresentError).
	fmt.Fprintf(w, "%-32s %8s %8s %8s %8s %10s%s\n", "folder", "found", "present", verb, "failed", "bytes", listingHeader(s))
	for _, mb := range st.Mailboxes() {
		b := st.Box(mb).Snapshot()
		n := b.Copied
		if o.dryRun {
			n = b.Queued
		}
		fmt.Fprintf(w, "%-32s %8d %8d %8d %8d %10s%s\n", trimName(mb, 32), b.Listed, b.Skipped+b.Present, n, b.Failed, humanBytes(b.Bytes), listingCell(b))
	}
	t := s.Totals
	n := t.Copied
	if o.dryRun {
		n = t.Queued
	}
	fmt.Fprintf(w, "%-32s %8d %8d %8d %8d %10s  in %.1fs\n", "total", t.Listed, t.Skipped+t.Present, n, t.Failed, humanBytes(t.Bytes), s.Seconds)
	if o.dryRun {
		printExpired(w, res.Expired)
		fmt.Fprintf(w, "dry run: %d message(s), %s, would be copied; nothing was stored or deleted\n", t.Queued, humanBytes(t.QueuedBytes))
	}
	printNotes(w, s)
	if n := len(res.Failures); n > 0 {
		temp := temporaryFailures(res.Failures)
		// Only a temporary failure is worth a rerun: a message refused as
		// too large or invalid fails the same way every time.
		switch temp {
		case n:
			fmt.Fprintf(w, "%d message(s) failed; run the same command again to retry them\n", n)
		case 0:
			fmt.Fprintf(w, "%d message(s) failed and would fail again as they are (the errors above say why)\n", n)
		default:
			fmt.Fprintf(w, "%d message(s) failed: %d may go through if you run the same command again, %d would fail again as they are (the errors above say why)\n", n, temp, n-temp)
		}
	}
	return true
}

// printNotes prints the summary's lines about messages that were neither
// copied nor failed: present, re-mapped, left out, deleted, vanished.
func printNotes(w io.Writer, s *summary) {
	t := s.Totals
	if t.Present > 0 {
		fmt.Fprintf(w, "%d message(s) were already in the destination (put there before, not recorded): recorded now, not copied again\n", t.Present)
	}
	if t.Remapped > 0 {
		fmt.Fprintf(w, "%d message(s) renumbered on the source were re-mapped to their copies: recorded under their new ids, not copied again\n", t.Remapped)
	}
	if s.AlteredOnAppend > 0 {
		fmt.Fprintf(w, "%d message(s) in the destination were changed by its server when stored (8-bit header bytes rewritten or a final line break added); recognised as copies, not stored again\n", s.AlteredOnAppend)
	}
	if f := s.Filters; f != nil && f.OutsideDates > 0 {
		fmt.Fprintf(w, "%d message(s) outside the dates were left out\n", f.OutsideDates)
	}
	if f := s.Filters; f != nil && f.Undated > 0 {
		fmt.Fprintf(w, "%d message(s) have no date (the source keeps none) and were not filtered by date\n", f.Undated)
	}
	if t.FlagsUpdated > 0 {
		fmt.Fprintf(w, "%d message(s) copied earlier got their new flags from the source\n", t.FlagsUpdated)
	}
	if t.Deleted > 0 {
		fmt.Fprintf(w, "%d message(s) deleted from the source after they were stored\n", t.Deleted)
	}
	if t.Vanished > 0 {
		fmt.Fprintf(w, "%d message(s) vanished from the source during the run (deleted by another client)\n", t.Vanished)
	}
}

// describeFilters is the filters line of the summary.
func describeFilters(f *filterSummary) string {
	var parts []string
	if f.Since != "" {
		parts = append(parts, "since "+f.Since)
	}
	if f.Before != "" {
		parts = append(parts, "before "+f.Before)
	}
	if f.MaxSize > 0 {
		parts = append(parts, "max size "+humanBytes(f.MaxSize))
	}
	if len(f.Include) > 0 {
		parts = append(parts, "include "+strings.Join(f.Include, " "))
	}
	if len(f.Exclude) > 0 {
		parts = append(parts, "exclude "+strings.Join(f.Exclude, " "))
	}
	return strings.Join(parts, ", ")
}

// appendReport appends s (a copy's or a sync's summary) as one JSON line
// to path (--report), in a single write so that concurrent runs of other
// jobs do not interleave lines.
func appendReport(path string, env *cliEnv, s any) error {
	path, err := expandHome(path, env)
	if err != nil {
		return err
	}
	line, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func trimName(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// sizeFlag parses sizes like 25M, 1G, 512k or plain bytes.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeFlag) Set(v string) error {
	mult := int64(1)
	t := strings.ToUpper(strings.TrimSpace(v))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return errors.New("want a size such as 25M, 1G or 4096")
	}
	*s = sizeFlag(n * mult)
	return nil
}

// rebuildFor asks the engine to rebuild the checkpoint when it holds no
// record next to a destination that keeps delivery keys (a Maildir):
// lost, or --rebuild-state. The engine then rebuilds it from the keys in
// the file names, so nothing is downloaded again and delete mode deletes
// only what the destination holds (A9). On a first run the destination
// folders are empty and this costs one directory listing each.
func rebuildFor(emptyNextToKeys bool, cpPath string, asked bool) *mailferry.Rebuild {
	if !emptyNextToKeys {
		return nil
	}
	return &mailferry.Rebuild{File: cpPath, Asked: asked}
}
