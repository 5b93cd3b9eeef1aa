package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/batch"
)

// syncAccount syncs one account both ways (a pass with --mode sync), as
// 'mailferry sync SRC DST' does, and tells what happened: copied counts
// the messages copied either way, failed the changes that failed on either
// side. Exit 10 (the guard held deletions back) is the report's
// held_back, not a failure.
//
// Each account's two-way state is a directory under --state-dir, not rows
// in the batch database as a copy's checkpoint is: the two-way state
// (sync/state) is a directory format with per-folder logs, a journal of
// changes applied before they are made, and a lock, whose durability the
// crash model checks file operation by file operation; a second copy of
// it over SQL would be a second journal to keep exactly right. With many
// machines, --state-dir is a directory every worker mounts (NFSv4 or
// another file system whose locks hold across machines): a worker that
// takes the account up finds its state there, and a second worker on the
// same account meets the lock (exit 7: snoozed).
func (r *batchRunner) syncAccount(ctx context.Context, acct *batch.Account) batch.Outcome {
	o, err := r.syncAccountOptions(ctx, acct)
	var sum syncSummary
	if err == nil {
		var stdout bytes.Buffer
		penv := *r.env
		penv.stdout = &stdout
		penv.stderr = &prefixWriter{w: r.env.stderr, prefix: "[" + acct.Row.ID + "] "}
		err = doSync(ctx, o, acct.Row.Src, acct.Row.Dst, "", &penv)
		// The --json summary; none when the run stopped before syncing
		// (a bad URL, a refused login): then there is nothing to count.
		_ = json.Unmarshal(stdout.Bytes(), &sum)
	}
	out := batch.Outcome{ExitCode: exitCode(err),
		Totals: batch.Totals{Copied: int64(sum.A.Copied + sum.B.Copied), Failed: int64(sum.A.Failed + sum.B.Failed)}}
	if err != nil {
		out.Error = oneLine(err)
	}
	if out.ExitCode == exitcode.HeldBack {
		out.Error = fmt.Sprintf("deletions held back: %d on %s, %d on %s (check them, then queue a pass with --mode sync --force)",
			sum.A.HeldBack, sum.A.URL, sum.B.HeldBack, sum.B.URL)
	}
	if out.ExitCode == exitcode.Unreachable && tlsError(err) {
		out.Class = batch.ClassTLS
	}
	return out
}

// syncAccountOptions are the sync options of one account: the batch
// command's connection flags, the row's folders and credentials, and its
// state directory.
func (r *batchRunner) syncAccountOptions(ctx context.Context, acct *batch.Account) (*syncOptions, error) {
	row := &acct.Row
	if len(row.Map) > 0 || row.Since != "" || row.Gmail {
		return nil, &usageError{"--mode sync: the row's map, since and gmail columns are for copy; sync takes include and exclude"}
	}
	if r.stateDir == "" {
		return nil, &usageError{"--mode sync keeps each account's sync state in a directory: start the worker with --state-dir DIR, one directory every worker shares"}
	}
	o := &syncOptions{common: r.base.common, maxDelete: 50, force: acct.Force, fence: acct.Fence}
	o.common.include = append(multiFlag(nil), row.Include...)
	o.common.exclude = append(multiFlag(nil), row.Exclude...)
	o.common.json, o.common.quiet = true, false
	if acct.Connections > 0 {
		o.common.workers = min(o.common.workers, acct.Connections)
	}
	o.checkpoint = filepath.Join(r.stateDir, acct.Batch, row.ID+".sync") // ids hold no '/' (batch.Load)
	if err := o.Check(); err != nil {
		return nil, err
	}
	o.src = sideFlags{side: "src", hideEnv: r.base.src.hideEnv}
	o.dst = sideFlags{side: "dst", hideEnv: r.base.dst.hideEnv}
	if err := r.sideCredentials(ctx, acct, &o.src, &o.dst); err != nil {
		return nil, err
	}
	return o, nil
}
