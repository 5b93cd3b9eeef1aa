package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	flag "github.com/spf13/pflag"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
	"github.com/mailferry/mailferry/sync/twoway"
)

// syncOptions are the flags of 'mailferry sync A B'.
type syncOptions struct {
	common     commonFlags
	src, dst   sideFlags // A takes the src credentials, B the dst ones
	checkpoint string
	dryRun     bool
	noDelete   bool
	force      bool
	maxDelete  float64 // percent
	fullEvery  int     // list unchanged folders in full every Nth run
	// removeFolders deletes a folder deleted on the other side when this
	// side's copy is unchanged since the last sync.
	removeFolders bool
	report        string
	// fence, set by a batch worker, may forbid the next change or state
	// write (twoway.RunOptions.Fence); never a flag.
	fence func() error
}

func newSyncCommand(env *cliEnv) *cobra.Command {
	var o syncOptions
	cmd := &cobra.Command{
		Use:   "sync A B [flags]",
		Short: "keep A and B in step both ways: new mail, flags, moves, deletions (imap, imaps, maildir)",
		Long: "Keep A and B in step both ways: new mail, flag changes (merged flag by flag), moves between folders and\n" +
			"deletions on either side reach the other. A takes the --src-* credentials, B the --dst-* ones; in the config\n" +
			"file, a job with mode = \"sync\" (source = A, destination = B) runs it: mailferry run JOB.\n\n" +
			"Folders: one new on a side is created on the other; one renamed on a side (90 % of its messages now in a\n" +
			"new folder there) is renamed on the other, nothing copied or deleted; one deleted on a side is kept on the\n" +
			"other with a warning, or with --remove-folders deleted there when unchanged since the last sync (changed:\n" +
			"recreated on the side that deleted it, a conflict).\n\n" +
			"A conflict is a change one side's change overrode: a message deleted on one side while its flags changed\n" +
			"on the other is deleted; a folder deleted while it got new mail is recreated. Nothing is lost.\n\n" +
			"The guard: deletions that look like an accident (more than --max-delete of a folder and 20 messages, more\n" +
			"than a quarter of a side, a folder that is suddenly empty, more than half of the folders gone from a side)\n" +
			"are held back, everything else is synced, and the run exits 10: check that side, then rerun with --force if\n" +
			"the deletions are wanted. A lost state is merged as a first sync: no duplicates, no deletions.\n" +
			"--dry-run prints the plan per folder; --json and --report FILE count per side.",
		Args: nArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Check(); err != nil {
				return err
			}
			return doSync(cmd.Context(), &o, args[0], args[1], "", env)
		},
		ValidArgsFunction: completeEndpoints(2),
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *syncOptions) addFlags(fs *flag.FlagSet) {
	o.common.add(fs)
	o.src.add(fs, "src")
	o.dst.add(fs, "dst")
	fs.StringVar(&o.checkpoint, "checkpoint", "", "keep the sync state in directory `DIR` (default: under $XDG_STATE_HOME/mailferry, named after A and B in either order)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the plan per folder (copies each way, flag changes, moves, deletions, folders) and change nothing")
	fs.IntVar(&o.fullEvery, "full-every", 7, "list every folder in full every `N`th run, although its statuses say nothing changed (a rerun otherwise skips folders unchanged on both sides and lists only what changed in the others)")
	fs.StringVar(&o.report, "report", "", "append one JSON line per run (time, job, counts per side, exit code) to `FILE`, for monitoring")
	o.addSyncOnlyFlags(fs, "")
}

// addSyncOnlyFlags adds the flags 'sync' has and 'copy' has not; 'run'
// takes them too, for its sync jobs.
func (o *syncOptions) addSyncOnlyFlags(fs *flag.FlagSet, prefix string) {
	fs.BoolVar(&o.noDelete, "no-delete", false, prefix+"never delete: a message deleted on one side stays on the other (and is not copied back)")
	fs.BoolVar(&o.force, "force", false, prefix+"apply deletions the mass-delete guard holds back (after checking why: see exit 10)")
	fs.Float64Var(&o.maxDelete, "max-delete", 50, prefix+"hold back a side's deletions in a folder beyond `PERCENT` of its known messages (and more than 20)")
	fs.BoolVar(&o.removeFolders, "remove-folders", false, prefix+"delete a folder deleted on the other side when this side's copy is unchanged since the last sync (changed: recreated instead)")
}

// Check refuses bad flags before anything is contacted.
func (o *syncOptions) Check() error {
	if err := o.common.Check(); err != nil {
		return err
	}
	if o.maxDelete <= 0 || o.maxDelete > 100 {
		return &usageError{fmt.Sprintf("--max-delete %g: want a percentage above 0 and at most 100", o.maxDelete)}
	}
	return nil
}

// syncRefused says why a scheme cannot take part in a two-way sync.
var syncRefused = map[string]string{
	"mbox":  "an mbox file has no stable message ids and no place for flags, so changes on it cannot be told from new mail",
	"pop3":  "POP3 has no folders, no flags and cannot store mail, so there is nothing to sync back to it",
	"pop3s": "POP3 has no folders, no flags and cannot store mail, so there is nothing to sync back to it",
}

// syncEnd is one side of the command line, parsed as a source and as a sink.
type syncEnd struct {
	raw       string
	src, sink *mail.Endpoint
	opt       *mail.OpenOptions
	store     *twoway.Store
	keeper    mail.Sink // a dry run's sink, asked only what each folder keeps of flags
}

func parseSyncEnd(reg *mail.Registry, raw string, opt *mail.OpenOptions, share bool) (*syncEnd, error) {
	u, err := mail.ParseEndpoint(raw, opt)
	if err != nil {
		return nil, err
	}
	if why, ok := syncRefused[u.Scheme]; ok {
		return nil, &usageError{fmt.Sprintf("%s: cannot sync %s: %s (sync takes imap://, imaps:// and maildir:; copy can read it)", mail.Redact(u), u.Scheme, why)}
	}
	// One IMAP login serves the side's source and sink, and every step
	// of the run (mail.Share): the same account is read and written.
	own := *opt
	if share {
		own.Share = mail.NewShare()
	}
	e := &syncEnd{raw: raw, opt: &own}
	if e.src, err = reg.Resolve(u, mail.AsSource); err != nil {
		return nil, err
	}
	if e.sink, err = reg.Resolve(u, mail.AsSink); err != nil {
		return nil, err
	}
	return e, nil
}

// open opens the side as a twoway.Store; a local one is a Maildir whose
// deletions go to the quarantine beside the state. A dry run, which writes
// nothing, gives the store no sink; a server's sink is still opened, only
// to ask what each folder keeps of flags (PERMANENTFLAGS), so that the
// dry run plans what a real run would do.
func (e *syncEnd) open(ctx context.Context, stateDir string, dryRun bool) error {
	st := &twoway.Store{Identity: e.src.Canonical}
	if e.src.Local() {
		st.StableIDs = true
		st.Maildir = &twoway.MaildirFiles{Root: e.src.Path, Quarantine: filepath.Join(stateDir, "quarantine")}
	}
	if dryRun && e.src.Missing() {
		st.Source = emptySource{}
		e.store = st
		return nil
	}
	if !dryRun || !e.src.Local() {
		// The source below logs in to the same account, so the sink need
		// not: it connects when the run first writes or asks what a folder
		// keeps of flags (a sync with nothing to do never does).
		// Nor need it read a folder before its first put to recognise a
		// copy already there: the run pairs messages from its state.
		lazy := *e.opt
		lazy.Lazy, lazy.NoDedupe = true, true
		sink, err := e.sink.OpenSink(ctx, &lazy)
		if err != nil {
			return err
		}
		if dryRun {
			e.keeper, st.KeptFlags = sink, mail.FeaturesOf(sink).FlagKeeper
		} else {
			st.Sink = sink
		}
	}
	src, err := e.src.OpenSource(ctx, e.opt)
	if err != nil {
		if st.Sink != nil {
			_ = st.Sink.Close()
		}
		if e.keeper != nil {
			_ = e.keeper.Close()
		}
		return err
	}
	st.Source = src
	e.store = st
	return e.identify(dryRun)
}

// openEnds opens both sides at once: each logs in to its own server, so a
// sync waits for the slower login, not for both. The caller closes both
// ends (close skips one that did not open), also after an error.
func openEnds(ctx context.Context, ends [2]*syncEnd, dir string, dryRun bool) error {
	var errs [2]error
	var wg stdsync.WaitGroup
	for i, e := range ends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.open(ctx, dir, dryRun); err != nil {
				errs[i] = fmt.Errorf("%s: %w", mail.Redact(e.src.URL), err)
			}
		}()
	}
	wg.Wait()
	if errs[0] != nil {
		return errs[0] // the first on the command line, as when opened in turn
	}
	return errs[1]
}

// identify sets a Maildir's identity from its marker file, writing one on
// the first sync (not in a dry run).
func (e *syncEnd) identify(dryRun bool) error {
	if e.store.Maildir == nil {
		return nil
	}
	id, err := twoway.MaildirIdentity(e.src.Path)
	if err == nil && id == "" && !dryRun {
		id, err = twoway.WriteMaildirMarker(e.src.Path)
	}
	e.store.Identity = id
	return err
}

func (e *syncEnd) close() {
	if e.opt.Share != nil {
		// After the endpoints: they give back what they hold, which the
		// Share then closes.
		defer func() { _ = e.opt.Share.Close() }()
	}
	if e.store == nil {
		return
	}
	if e.store.Source != nil {
		_ = e.store.Source.Close()
	}
	if e.store.Sink != nil {
		_ = e.store.Sink.Close()
	}
	if e.keeper != nil {
		_ = e.keeper.Close()
	}
}

// emptySource stands in, in a dry run, for a Maildir that does not exist
// yet (a dry run must not create it).
type emptySource struct{}

func (emptySource) Mailboxes(context.Context) ([]string, error) { return nil, nil }
func (emptySource) List(context.Context, string, func(mail.Envelope) error) error {
	return mail.ErrMailboxNotFound
}
func (emptySource) Open(context.Context, mail.Envelope) (io.ReadCloser, error) {
	return nil, mail.ErrNotFound
}
func (emptySource) Limits() mail.Limits { return mail.Limits{} }
func (emptySource) Close() error        { return nil }

// doSync syncs A and B, for 'sync' and for each sync job of 'run' (job is
// then its name), then prints the summary and appends the --report line
// (also for a run that failed before it synced anything, so monitoring
// sees every run).
func doSync(ctx context.Context, o *syncOptions, aURL, bURL, job string, env *cliEnv) error {
	start := time.Now()
	r := &syncRunResult{urls: [2]string{aURL, bURL}, ord: [2]int{0, 1}}
	err := syncRun(ctx, o, r, env)
	if r.res == nil {
		r.res = &twoway.Result{}
	} else {
		err = syncError(err, r.res)
	}
	s := makeSyncSummary(o, r, err, start)
	if job != "" {
		s.Job, s.Command = job, "run"
	}
	if r.ran {
		printSync(env, o, &s)
	}
	if o.report != "" {
		if rerr := appendReport(o.report, env, &s); rerr != nil {
			if err == nil {
				return rerr
			}
			fmt.Fprintf(env.stderr, "mailferry: %s\n", oneLine(rerr))
		}
	}
	return err
}

// syncRunResult is what syncRun learnt, for the summary: the two ends as
// the command line names them (nil when not parsed), ord[0] the one the
// state calls A, and the run's result once it ran.
type syncRunResult struct {
	urls [2]string
	ends [2]*syncEnd
	ord  [2]int
	res  *twoway.Result
	ran  bool
}

// syncRun parses both URLs (refusing mbox and POP3) before any I/O, opens
// the state of the pair (the same for 'sync B A'), opens both sides and
// runs the two-way sync.
func syncRun(ctx context.Context, o *syncOptions, r *syncRunResult, env *cliEnv) error {
	log, err := o.common.logger(env.stderr)
	if err != nil {
		return err
	}
	filter, err := o.common.mailboxFilter()
	if err != nil {
		return err
	}
	reg := env.registry()
	sides := [2]*sideFlags{&o.src, &o.dst}
	for i := range r.ends {
		opt := o.common.openOptions(sides[i], env, log)
		// Every sync but a pair's first starts from its state: an IMAP side
		// logs in once, on the session its change listing needs.
		opt.Incremental = true
		if r.ends[i], err = parseSyncEnd(reg, r.urls[i], opt, !env.hooks.noShare); err != nil {
			return err
		}
	}
	// The state names the pair in one order whatever the command line's.
	if r.ends[0].src.Canonical > r.ends[1].src.Canonical {
		r.ord = [2]int{1, 0}
	}
	first, second := r.ends[r.ord[0]], r.ends[r.ord[1]]
	dir, err := syncStateDir(o.checkpoint, first.src.Canonical, second.src.Canonical)
	if err != nil {
		return err
	}
	st, err := state.Open(dir, first.src.Canonical, second.src.Canonical, state.Options{ReadOnly: o.dryRun, Logger: log})
	if err != nil {
		return err
	}
	fence, fenced := fenceOnce(o.fence)
	defer func() {
		if fenced.Load() {
			_ = st.Abandon() // what the run recorded must not be written
			return
		}
		_ = st.Close()
	}()
	for _, e := range r.ends {
		defer e.close()
	}
	if err := openEnds(ctx, r.ends, dir, o.dryRun); err != nil {
		return err
	}
	r.res, err = twoway.Run(ctx, [2]*twoway.Store{first.store, second.store}, st, twoway.RunOptions{
		Plan:      twoway.Options{MaxDelete: o.maxDelete / 100, NoDelete: o.noDelete, Force: o.force, RemoveFolders: o.removeFolders},
		DryRun:    o.dryRun,
		FullEvery: o.fullEvery,
		Folders:   filter,
		Log:       log,
		Fence:     fence,
	})
	r.ran = r.res != nil
	return err
}

// fenceOnce wraps a batch worker's fence (nil: none) so the caller
// learns whether it ever said no (the run may ask from several
// goroutines).
func fenceOnce(f func() error) (fence func() error, fenced *atomic.Bool) {
	fenced = new(atomic.Bool)
	if f == nil {
		return nil, fenced
	}
	return func() error {
		err := f()
		if err != nil {
			fenced.Store(true)
		}
		return err
	}, fenced
}

// syncStateDir is --checkpoint, or the default state directory of the
// pair, the same for either order of the two names (a < b).
func syncStateDir(flagged, a, b string) (string, error) {
	if flagged != "" {
		return flagged, nil
	}
	p, err := checkpoint.DefaultPath(a, b)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(p, ".jsonl") + ".sync", nil
}

// syncError adds the failed changes to the run's error: exit 3 when some
// failed, unless the run already has a reason to stop.
func syncError(err error, res *twoway.Result) error {
	failed := res.Side[0].Failed + res.Side[1].Failed
	if failed > 0 && (err == nil || errors.Is(err, twoway.ErrHeldBack)) {
		return &partialError{failed}
	}
	return err
}

// syncSide is one side's counts in the summary, --json and --report: the
// changes made on that side. Deleted counts the messages of deleted folders
// too; Conflicts are the changes of this side the other side's overrode.
type syncSide struct {
	URL       string           `json:"url"`
	Copied    int              `json:"copied"`
	Flagged   int              `json:"flags_changed"`
	Moved     int              `json:"moved"`
	Deleted   int              `json:"deleted"`
	HeldBack  int              `json:"held_back"`
	Failed    int              `json:"failed"`
	Conflicts int              `json:"conflicts"`
	Folders   syncFolderCounts `json:"folders"`
}

// syncFolderCounts are the folder actions on one side.
type syncFolderCounts struct {
	Created  int `json:"created"`
	Renamed  int `json:"renamed"`
	Deleted  int `json:"deleted"`
	HeldBack int `json:"held_back"`
}

// syncSummary is the --json output of sync and the line --report appends.
type syncSummary struct {
	Time     string   `json:"time,omitempty"`
	Job      string   `json:"job,omitempty"`
	Command  string   `json:"command"`
	OK       bool     `json:"ok"`
	ExitCode int      `json:"exit_code"`
	Error    string   `json:"error,omitempty"`
	DryRun   bool     `json:"dry_run,omitempty"`
	Seconds  float64  `json:"seconds"`
	A        syncSide `json:"a"`
	B        syncSide `json:"b"`
	Warnings []string `json:"warnings,omitempty"`
	// ConflictDetails says what each conflict was.
	ConflictDetails []string            `json:"conflict_details,omitempty"`
	Plan            map[string][]string `json:"plan,omitempty"` // --dry-run: per folder, what a real run would do
	// Listings counts the folder pairs by how they were listed: skipped
	// (unchanged on both sides), incremental (by their changes) or full.
	Listings map[string]int `json:"listings,omitempty"`
}

// makeSyncSummary is the summary of a run, sides as the command line
// names them (A first).
func makeSyncSummary(o *syncOptions, r *syncRunResult, err error, start time.Time) syncSummary {
	res := r.res
	s := syncSummary{Time: start.UTC().Format(time.RFC3339), Command: "sync", OK: err == nil, ExitCode: exitCode(err), DryRun: o.dryRun,
		Seconds: time.Since(start).Seconds(), Warnings: res.Warnings}
	if err != nil {
		s.Error = oneLine(err)
	}
	url := func(i int) string {
		if r.ends[i] == nil { // not parsed: never print what might hold a secret
			if u, err := url.Parse(r.urls[i]); err == nil {
				return mail.Redact(u)
			}
			return ""
		}
		return r.ends[i].src.Canonical
	}
	var sides [2]syncSide
	for i := range sides {
		st := indexOf(r.ord, i)
		c := res.Side[st]
		sides[i] = syncSide{URL: url(i), Copied: c.Copied, Flagged: c.Flagged, Moved: c.Moved, Deleted: c.Deleted, HeldBack: c.Held,
			Failed: c.Failed, Conflicts: res.SideConflicts[st],
			Folders: syncFolderCounts{Created: c.FoldersCreated, Renamed: c.FoldersRenamed, Deleted: c.FoldersRemoved, HeldBack: c.FoldersHeld}}
	}
	s.A, s.B = sides[0], sides[1]
	for _, how := range res.Listing {
		if s.Listings == nil {
			s.Listings = map[string]int{}
		}
		s.Listings[how]++
	}
	// The planner names sides in the state's order, which need not be the
	// command line's: say which URL each is.
	named := strings.NewReplacer("side A", "side A ("+url(r.ord[0])+")", "side B", "side B ("+url(r.ord[1])+")")
	for i, w := range s.Warnings {
		s.Warnings[i] = named.Replace(w)
	}
	if res.Plan != nil {
		for _, fp := range res.Plan.Folders {
			for _, c := range fp.Conflicts {
				s.ConflictDetails = append(s.ConflictDetails, named.Replace(c))
			}
		}
	}
	if o.dryRun && res.Plan != nil {
		s.Plan = describeSyncPlan(res.Plan, r.ends, r.ord)
	}
	return s
}

func printSync(env *cliEnv, o *syncOptions, s *syncSummary) {
	if o.common.json {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s) // a terminal write, like fmt.Fprintf (see .golangci.yml)
		return
	}
	if o.common.quiet && s.OK {
		return
	}
	printSyncText(env, s)
}

// indexOf returns the state side of command-line side i.
func indexOf(ord [2]int, i int) int {
	if ord[0] == i {
		return 0
	}
	return 1
}

func printSyncText(env *cliEnv, s *syncSummary) {
	w := env.stdout
	for _, folder := range sortedKeys(s.Plan) {
		fmt.Fprintf(w, "%s:\n", folder)
		for _, line := range s.Plan[folder] {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	verb := "made"
	if s.DryRun {
		verb = "a real run would make (dry run)"
	}
	for _, sd := range []syncSide{s.A, s.B} {
		fmt.Fprintf(w, "changes %s on %s: %d copied in, %d flag changes, %d moved, %d deleted, %d held back, %d failed",
			verb, sd.URL, sd.Copied, sd.Flagged, sd.Moved, sd.Deleted, sd.HeldBack, sd.Failed)
		if f := sd.Folders; f != (syncFolderCounts{}) {
			fmt.Fprintf(w, "; folders: %d created, %d renamed, %d deleted, %d deletions held back", f.Created, f.Renamed, f.Deleted, f.HeldBack)
		}
		fmt.Fprintln(w)
	}
	if n := s.A.Conflicts + s.B.Conflicts; n > 0 {
		fmt.Fprintf(w, "conflicts: %d (%d lost on %s, %d on %s): a message deleted on one side while its flags changed on the other is deleted; "+
			"a folder deleted on one side while it changed on the other is recreated\n", n, s.A.Conflicts, s.A.URL, s.B.Conflicts, s.B.URL)
	}
	for _, c := range s.ConflictDetails {
		fmt.Fprintf(w, "conflict: %s\n", c)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(env.stderr, "warning: %s\n", warn)
	}
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// describeSyncPlan is the dry run's plan: per folder, one line per kind of
// change and side, sides named by their URL.
func describeSyncPlan(p *twoway.Plan, ends [2]*syncEnd, ord [2]int) map[string][]string {
	name := func(s twoway.Side) string { return ends[ord[s]].src.Canonical }
	out := map[string][]string{}
	for _, fp := range p.Folders {
		var lines []string
		add := func(n int, format string, args ...any) {
			if n > 0 {
				lines = append(lines, fmt.Sprintf(format, args...))
			}
		}
		if r := fp.Rename; r != nil {
			add(1, "rename folder %q to %q on %s (renamed so on %s)", r.From, fp.Name, name(r.On), name(r.On.Other()))
		}
		for _, s := range []twoway.Side{twoway.A, twoway.B} {
			add(boolInt(fp.Recreate[s]), "recreate the folder on %s, which deleted it while %s changed it (a conflict)", name(s), name(s.Other()))
			add(boolInt(fp.Create[s] && !fp.Recreate[s]), "create the folder on %s", name(s))
			add(boolInt(fp.Remove[s]), "delete the folder and its %d messages on %s (deleted on %s, unchanged here since the last sync)", fp.RemoveMsgs, name(s), name(s.Other()))
			n := fp.Actions(s)
			add(n.CopiesFrom, "copy %d new messages from %s to %s", n.CopiesFrom, name(s), name(s.Other()))
			add(n.Flags, "change the flags of %d messages on %s", n.Flags, name(s))
			add(n.Moves, "move %d messages into this folder on %s", n.Moves, name(s))
			add(n.Deletes, "delete %d messages on %s", n.Deletes, name(s))
			add(n.Held, "hold back %d deletions on %s", n.Held, name(s))
		}
		add(len(fp.Pairs), "pair %d messages found on both sides", len(fp.Pairs))
		add(boolInt(fp.Forget), "forget the folder (gone from both sides)")
		add(boolInt(fp.Skip != "" && !fp.Removes()), "leave alone: %s", fp.Skip)
		if len(lines) > 0 {
			out[fp.Name] = lines
		}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
