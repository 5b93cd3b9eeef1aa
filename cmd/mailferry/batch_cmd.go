package main

import (
	"context"

	"github.com/spf13/cobra"
)

// batchHelp is 'mailferry help batch' (README: "Migrating an
// organisation").
const batchHelp = `Migrate many accounts: one row per account in a CSV file, run by workers
on River's job queue, with a report of every account.

On one machine (nothing to install):

  mailferry batch run accounts.csv --workers 8

creates a SQLite database next to the CSV (accounts.batch.db, or --db),
loads the accounts, runs each one as 'mailferry copy' would, waits, prints a
summary and writes the report (accounts.report.jsonl, or --report): one JSON
line per CSV row, rows that never started included, with id, state (done,
partial, held_back, failed, cancelled, pending), class (auth, connect, tls, quota,
checkpoint, usage, temporary), exit_code, attempts, totals (copied, present,
failed, bytes) and the first failures. It exits 0 when every account is
done, 3 otherwise. Running it again runs only the accounts not done.

The CSV: a header, then one row per account.
  id,src,dst,src_auth,dst_auth            required
  include,exclude,since,map,gmail,wave    optional (';' separates list items)
*_auth holds a reference to the secret, never the secret:
  file:PATH        first line of PATH (relative to the CSV)
  env:NAME         the environment variable NAME
  cmd:ARGV         the first line the command prints; run without a shell,
                   with the row in MAILFERRY_ROW_ID, _SIDE, _SRC, _DST, _WAVE
  oauth2:PROFILE   the src_oauth2 (or dst_oauth2) settings of the config
                   file's job PROFILE
Local endpoints (maildir:, mbox:) take none. A bad file (missing column,
duplicate id, bad URL, a value that looks like a password) exits 2 naming
the line and the column, and loads nothing.

Across machines, with PostgreSQL (the URL in $MAILFERRY_DB, or the variable
--db-env names; never on the command line):
  mailferry batch init
  mailferry batch load staff accounts.csv
  mailferry batch pass staff presync
  mailferry batch worker --workers 8          on every machine; SIGTERM
                                              hands its accounts back
  mailferry batch status staff presync --watch
  mailferry batch pass staff retry --only failed --class auth
  mailferry batch pass staff final --delete-source    a move: delete on the
                                              source what is stored and recorded
  mailferry batch report staff presync --format csv
  mailferry batch pause|resume staff, mailferry batch cancel staff [PASS]
  mailferry batch serve --listen 127.0.0.1:8080   a status page of the
                                              batches (no login: keep it on
                                              loopback), River's UI at /riverui/
A pass queues one job per account; queuing it again queues nothing for an
account whose job is waiting, running or done. Exit codes decide what
River does next: 0 and 3 done; 2, 4, 6 and 9 need a person (not retried);
1 and 5 retried with backoff (5 attempts); 8 (throttled), 7 (the account
runs elsewhere) and a stopped worker put the account back without spending
an attempt. An account runs in slices (--slice, 1m) that resume where the
last one stopped: a worker killed outright has its account taken up by
another within about 2 minutes (--rescue-after, 90s, plus River's 30s
rescue round; longer if the account had failed attempts: River's backoff),
and pause and cancel take effect within a slice. A worker frozen past
that (SIGSTOP, a suspended VM) commits nothing more when it wakes.
Each account's checkpoint is in the batch database, where any worker finds
it (so no slice downloads again what an earlier one copied). A row whose
URLs changed is refused (exit 6) unless its pass is queued with --reset.

--mode sync (batch pass, batch run) syncs each account both ways, as
'mailferry sync' does, with its state in --state-dir/BATCH/ID.sync (batch
run: NAME.state next to the CSV; across machines a directory every worker
mounts, NFSv4). Deletions the guard holds back (exit 10) show as held_back,
not failed: check them, then queue a pass with --mode sync --force. A
worker whose hold on the account lapsed changes neither side and writes no
state from its next step on.

Host groups in the config file cap accounts per provider across workers:
  [batch.groups.gmail]
  match = ["imap.gmail.com"]         host names or *.example.org patterns
  max_accounts = 5                   accounts at once (source or destination)
  connections_per_account = 2
  max_msgs_per_sec = 20              all accounts together (a share per slot)
  download_bytes_per_day = "2G"      per UTC day from these hosts, all workers
  upload_bytes_per_day = "500M"      per UTC day to these hosts
A spent daily budget makes the group's accounts wait for the next UTC day
(copy passes); a run copies with its share of what is left as --max-bytes.
Relative file: and cmd: paths start at the CSV's directory, made absolute
when it is loaded. Workers serve Prometheus metrics with --metrics-listen.
`

// newBatchCommand is 'mailferry batch' and its subcommands.
func newBatchCommand(env *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batch COMMAND ... [flags]",
		Short: "migrate many accounts from a CSV file, on one machine or many (see help batch)",
		Long:  batchHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			printHelp(cmd, env.stderr)
			return &usageError{"want a batch command: run, init, load, pass, worker, status, report, pause, resume, cancel or serve"}
		},
	}
	type sub struct {
		verb, use, short string
		args             cobra.PositionalArgs
		run              func(ctx context.Context, o *batchOptions, args []string) error
	}
	subs := []sub{
		{"run", "run ACCOUNTS.csv [flags]", "load a CSV into a SQLite database next to it, run every account, wait, report", nArgs(1),
			func(ctx context.Context, o *batchOptions, a []string) error { return batchRun(ctx, o, a[0], env) }},
		{"init", "init [flags]", "create or upgrade the batch database's tables", nArgs(0),
			func(ctx context.Context, o *batchOptions, _ []string) error { return batchInit(ctx, o, env) }},
		{"load", "load NAME FILE.csv [flags]", "load or update the accounts of batch NAME", nArgs(2),
			func(ctx context.Context, o *batchOptions, a []string) error {
				return batchLoad(ctx, o, a[0], a[1], env)
			}},
		{"pass", "pass NAME PASS [flags]", "queue one job per account (or per failed account) of batch NAME", nArgs(2),
			func(ctx context.Context, o *batchOptions, a []string) error {
				return batchPass(ctx, o, a[0], a[1], env)
			}},
		{"worker", "worker [flags]", "run queued accounts until SIGTERM (on every machine)", nArgs(0),
			func(ctx context.Context, o *batchOptions, _ []string) error { return batchWorker(ctx, o, env) }},
		{"status", "status NAME [PASS] [--watch] [flags]", "count the accounts of a batch by state and failure class", cobra.RangeArgs(1, 2),
			func(ctx context.Context, o *batchOptions, a []string) error {
				return batchStatus(ctx, o, a[0], optArg(a, 1), env)
			}},
		{"report", "report NAME PASS [flags]", "print one line per account: state, class, exit code, attempts, totals", nArgs(2),
			func(ctx context.Context, o *batchOptions, a []string) error {
				return batchReport(ctx, o, a[0], a[1], env)
			}},
		{"pause", "pause NAME [flags]", "start no more accounts of batch NAME", nArgs(1),
			func(ctx context.Context, o *batchOptions, a []string) error {
				return batchControl(ctx, o, "pause", a[0], "", env)
			}},
		{"resume", "resume NAME [flags]", "start accounts of batch NAME again", nArgs(1),
			func(ctx context.Context, o *batchOptions, a []string) error {
				return batchControl(ctx, o, "resume", a[0], "", env)
			}},
		{"cancel", "cancel NAME [PASS] [flags]", "cancel the accounts of batch NAME (of one pass) not finished", cobra.RangeArgs(1, 2),
			func(ctx context.Context, o *batchOptions, a []string) error {
				return batchControl(ctx, o, "cancel", a[0], optArg(a, 1), env)
			}},
	}
	for _, s := range subs {
		o := &batchOptions{}
		c := &cobra.Command{
			Use:   s.use,
			Short: s.short,
			Args:  s.args,
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := o.Check(); err != nil {
					return err
				}
				return s.run(cmd.Context(), o, args)
			},
		}
		o.addFlags(c.Flags(), s.verb)
		cmd.AddCommand(c)
	}
	cmd.AddCommand(newBatchServeCommand(env))
	return cmd
}

func optArg(a []string, i int) string {
	if len(a) > i {
		return a[i]
	}
	return ""
}
