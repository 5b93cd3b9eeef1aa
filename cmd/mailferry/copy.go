package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

type copyOptions struct {
	common       commonFlags
	src, dst     sideFlags
	checkpoint   string
	reset        bool
	dryRun       bool
	deleteSource bool
	progress     string
	maxSize      sizeFlag
}

func (o *copyOptions) addFlags(fs *flag.FlagSet) {
	o.common.add(fs)
	o.src.add(fs, "src")
	o.dst.add(fs, "dst")
	fs.StringVar(&o.checkpoint, "checkpoint", "", "remember copied messages in `FILE` (default: under $XDG_STATE_HOME/mailferry, named after SRC and DST)")
	fs.BoolVar(&o.reset, "reset", false, "start the checkpoint afresh when it was written for other endpoints or is corrupt")
	fs.BoolVar(&o.dryRun, "dry-run", false, "list what would be copied; store and delete nothing")
	fs.BoolVar(&o.deleteSource, "delete-source", false, "delete each message from SRC once it is durably stored and recorded (POP3 DELE, committed at QUIT)")
	fs.StringVar(&o.progress, "progress", "auto", "progress display: auto (bars on a terminal, a log line every 10 s otherwise), always, never")
	fs.Var(&o.maxSize, "max-size", "skip and report messages larger than `SIZE` (e.g. 25M; 0 = no limit)")
}

func runCopy(ctx context.Context, args []string, env *cliEnv) error {
	var o copyOptions
	fs := flag.NewFlagSet("copy", flag.ContinueOnError)
	o.addFlags(fs)
	pos, err := parse(fs, args, 2, "copy SRC DST [flags]", env)
	if err != nil {
		return err
	}
	if o.progress != "auto" && o.progress != "always" && o.progress != "never" {
		return &usageError{fmt.Sprintf("--progress %q: want auto, always or never", o.progress)}
	}
	log, err := o.common.logger(env.stderr)
	if err != nil {
		return err
	}
	filter, err := o.common.mailboxFilter()
	if err != nil {
		return err
	}
	reg := registry()
	srcOpt := o.common.openOptions(&o.src, env, log)
	dstOpt := o.common.openOptions(&o.dst, env, log)
	// Check both URLs before any network or disk I/O (scenario E1).
	srcName, err := canonical(reg, pos[0], srcOpt, true)
	if err != nil {
		return err
	}
	dstName, err := canonical(reg, pos[1], dstOpt, false)
	if err != nil {
		return err
	}

	var store checkpoint.Store
	if !o.dryRun || o.checkpoint != "" {
		cp, err := openCheckpoint(o.checkpoint, o.reset, srcName, dstName, log)
		if err != nil {
			return err
		}
		defer cp.Close()
		store = cp
	}
	dst, err := reg.OpenSink(ctx, pos[1], dstOpt)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	defer dst.Close()
	src, err := reg.OpenSource(ctx, pos[0], srcOpt)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	srcClosed := false
	defer func() {
		if !srcClosed {
			src.Close()
		}
	}()

	step, batch := crashHook(env.getenv)
	stats := &mailferry.Stats{Start: time.Now()}
	stopProgress := startProgress(ctx, stats, env, o.progress, o.common.quiet, log)
	res, err := mailferry.Copy(ctx, src, dst, mailferry.Options{
		SrcEndpoint:  srcName,
		Workers:      o.common.workers,
		Checkpoint:   store,
		Mailboxes:    filter,
		DryRun:       o.dryRun,
		DeleteSource: o.deleteSource,
		MaxSize:      int64(o.maxSize),
		Stats:        stats,
		Logger:       log,
		Step:         step,
		BatchSize:    batch,
	})
	stopProgress()
	// Closing the source commits POP3 deletions (QUIT): its failure matters.
	srcClosed = true
	if cerr := src.Close(); cerr != nil && o.deleteSource && err == nil {
		err = fmt.Errorf("source: close (deletions may not have been committed; the rerun will finish them): %w", cerr)
	}
	if store != nil {
		if cerr := store.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	report(env, &o, res, err)
	if err != nil {
		return err
	}
	if n := len(res.Failures); n > 0 {
		return &partialError{n}
	}
	return nil
}

// canonical checks an endpoint URL and returns its stable name for the
// checkpoint: local paths made absolute, network URLs redacted.
func canonical(reg *mail.Registry, raw string, o *mail.OpenOptions, source bool) (string, error) {
	u, err := mail.ParseEndpoint(raw, o)
	if err != nil {
		return "", err
	}
	if err := reg.Check(u, source); err != nil {
		return "", err
	}
	if u.Opaque != "" || u.Host == "" {
		p, err := mail.LocalPath(u)
		if err != nil {
			return "", err
		}
		return u.Scheme + ":" + p, nil
	}
	c := &url.URL{Scheme: u.Scheme, User: u.User, Host: strings.ToLower(u.Host), Path: u.Path, RawQuery: u.RawQuery}
	return mail.Redact(c), nil
}

func openCheckpoint(path string, reset bool, src, dst string, log *slog.Logger) (*checkpoint.File, error) {
	if path == "" {
		var err error
		if path, err = checkpoint.DefaultPath(src, dst); err != nil {
			return nil, err
		}
	}
	cp, err := checkpoint.Open(path, src, dst, reset)
	if err != nil {
		return nil, err
	}
	if cp.Dropped != "" {
		log.Warn("checkpoint: dropped a torn last line left by an interrupted run", "file", path)
	}
	log.Debug("checkpoint", "file", path, "records", cp.Len())
	return cp, nil
}

// summary is the --json output of copy.
type summary struct {
	Command  string                        `json:"command"`
	OK       bool                          `json:"ok"`
	Error    string                        `json:"error,omitempty"`
	DryRun   bool                          `json:"dry_run,omitempty"`
	Seconds  float64                       `json:"seconds"`
	Totals   mailferry.Snapshot            `json:"totals"`
	Folders  map[string]mailferry.Snapshot `json:"folders"`
	Failures []mailferry.Failure           `json:"failures,omitempty"`
	Skipped  []mailferry.Failure           `json:"skipped,omitempty"`
}

// report prints the end-of-run summary: a table on stderr (unless --quiet
// and all went well) and JSON on stdout with --json.
func report(env *cliEnv, o *copyOptions, res *mailferry.Result, err error) {
	if res == nil || res.Stats == nil {
		return
	}
	st := res.Stats
	s := summary{Command: "copy", OK: err == nil && len(res.Failures) == 0, DryRun: o.dryRun,
		Seconds: time.Since(st.Start).Seconds(), Totals: st.Snapshot(), Folders: map[string]mailferry.Snapshot{},
		Failures: res.Failures, Skipped: res.Skipped}
	if err != nil {
		s.Error = oneLine(err)
	}
	for _, mb := range st.Mailboxes() {
		s.Folders[mb] = st.Box(mb).Snapshot()
	}
	if o.common.json {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(s)
	}
	quietOK := o.common.quiet && s.OK && len(res.Skipped) == 0
	if quietOK || o.common.json {
		return
	}
	w := env.stderr
	for _, f := range res.Failures {
		fmt.Fprintf(w, "failed: %s %s: %s\n", f.Mailbox, f.ID, f.Err)
	}
	for _, f := range res.Skipped {
		fmt.Fprintf(w, "skipped: %s %s: %s\n", f.Mailbox, f.ID, f.Err)
	}
	if o.common.quiet {
		return
	}
	verb := "copied"
	if o.dryRun {
		verb = "to copy"
	}
	fmt.Fprintf(w, "%-32s %8s %8s %8s %8s %10s\n", "folder", "found", "present", verb, "failed", "bytes")
	for _, mb := range st.Mailboxes() {
		b := st.Box(mb).Snapshot()
		n := b.Copied
		if o.dryRun {
			n = b.Queued
		}
		fmt.Fprintf(w, "%-32s %8d %8d %8d %8d %10s\n", trimName(mb, 32), b.Listed, b.Skipped, n, b.Failed, humanBytes(b.Bytes))
	}
	t := s.Totals
	n := t.Copied
	if o.dryRun {
		n = t.Queued
	}
	fmt.Fprintf(w, "%-32s %8d %8d %8d %8d %10s  in %.1fs\n", "total", t.Listed, t.Skipped, n, t.Failed, humanBytes(t.Bytes), s.Seconds)
	if t.Deleted > 0 {
		fmt.Fprintf(w, "%d message(s) deleted from the source after they were stored\n", t.Deleted)
	}
	if t.Vanished > 0 {
		fmt.Fprintf(w, "%d message(s) vanished from the source during the run (deleted by another client)\n", t.Vanished)
	}
	if len(res.Failures) > 0 {
		fmt.Fprintf(w, "%d message(s) failed; run the same command again to retry them\n", len(res.Failures))
	}
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
