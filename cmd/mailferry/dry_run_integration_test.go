package main

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestH2DryRunWritesNothingAndPlansTheRealRun (docs/failure-model.md H2): a
// --dry-run, first into nothing and then after a real run with new mail
// on the source, writes nothing locally (the whole work directory, the
// destination tree and the checkpoint compared entry by entry: bytes,
// inodes, mtimes) and nothing on either server (every mailbox's UIDNEXT,
// UIDs, flags and bodies), and what it plans per folder (queued, queued
// bytes, listed, already present) is what the real run that follows then
// does (copied, bytes, listed, present).
//
// The comparison is per folder (counts and bytes) and per message: the
// dry run's --json "planned" list must equal the records the real run adds
// to the checkpoint.
func TestH2DryRunWritesNothingAndPlansTheRealRun(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	tests := []struct {
		name, src, dst string
	}{
		{"IMAPToMaildir", "imaps", "maildir"},
		{"IMAPToMbox", "imaps", "mbox"},
		{"IMAPToIMAP", "imaps", "imaps"},
		{"POP3ToMaildir", "pop3s", "maildir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user, pw := d.NewUser(t)
			var dstUser, dstPW string
			dir := t.TempDir()
			work := filepath.Join(dir, "work") // holds the checkpoint and, locally, the destination
			if err := os.Mkdir(work, 0o700); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(work, "out")
			dst := tc.dst + ":" + out
			if tc.dst == "imaps" {
				dstUser, dstPW = d.NewUser(t)
				dst = "imaps://" + dstUser + "@" + d.IMAPS
			}
			src := "imaps://" + user + "@" + d.IMAPS
			if tc.src == "pop3s" {
				src = "pop3s://" + user + "@" + d.POP3S
			}
			cp := filepath.Join(work, "cp.jsonl")
			env := []string{"MAILFERRY_SRC_PASSWORD=" + pw, "MAILFERRY_DST_PASSWORD=" + dstPW}
			args := []string{"copy", src, dst, "--checkpoint", cp, "--ca-file", d.CAFile, "--json", "--progress", "never", "--workers", "4"}
			seed := func(phase string, boxes map[string]int) {
				for mb, n := range boxes {
					if tc.src == "pop3s" {
						mb = "INBOX"
					}
					d.Seed(t, user, pw, mb, h1Corpus(n, phase+"-"+strings.ReplaceAll(mb, "/", "-")))
				}
			}
			phase := func(name string) {
				tree, cpBefore := treeState(t, work), treeState(t, statePath(cp))
				srcState := ""
				if tc.src == "imaps" {
					srcState = accountState(t, d, user, pw)
				}
				dstState := ""
				if dstUser != "" {
					dstState = accountState(t, d, dstUser, dstPW)
				}
				dry := runBinLimit(t, runLimit, env, append(args, "--dry-run")...)
				plan := parseJSONSummary(t, dry)
				if dry.code != 0 || !plan.DryRun {
					t.Fatalf("%s: dry run: exit %d, dry_run %v; want 0, true: %s", name, dry.code, plan.DryRun, dry.stderr)
				}
				// The run lock (cp.jsonl.lock, taken when a checkpoint
				// exists) and the state's lock are written by design: they
				// hold the owner's pid. The checkpoint's files are held to
				// bytes and inode (see checkpointUnchanged); everything
				// else to everything.
				after := treeState(t, work)
				for _, p := range []string{"cp.jsonl.lock", filepath.Join("cp.jsonl.state", "lock")} {
					if _, ok := tree[p]; ok {
						delete(tree, p)
						delete(after, p)
						tree["."], after["."] = fsEntry{}, fsEntry{}
					}
				}
				if diff := treeDiff(tree, after, filepath.Join("out", "tmp")); len(diff) > 0 {
					t.Errorf("%s: the dry run wrote locally:\n%s", name, strings.Join(diff, "\n"))
				}
				if len(cpBefore) > 0 {
					checkpointUnchanged(t, cpBefore, treeState(t, statePath(cp)), true)
				}
				if srcState != "" && accountState(t, d, user, pw) != srcState {
					t.Errorf("%s: the dry run changed the source account", name)
				}
				if dstState != "" && accountState(t, d, dstUser, dstPW) != dstState {
					t.Errorf("%s: the dry run changed the destination account", name)
				}
				if plan.Counts.Fetched != 0 || plan.Counts.Stored != 0 {
					t.Errorf("%s: the dry run fetched %d and stored %d, want 0, 0", name, plan.Counts.Fetched, plan.Counts.Stored)
				}

				recordedBefore := recordKeys(t, cp)
				realRun := runBinLimit(t, runLimit, env, args...)
				did := parseJSONSummary(t, realRun)
				if realRun.code != 0 {
					t.Fatalf("%s: real run: exit %d: %s", name, realRun.code, realRun.stderr)
				}
				if plan.Totals.Queued == 0 {
					t.Fatalf("%s: the dry run planned nothing: the comparison tests nothing", name)
				}
				compare := func(folder string, p, r mailferry.Snapshot) {
					if p.Queued != r.Copied || p.Listed != r.Listed || p.Skipped != r.Skipped || (tc.src == "imaps" && p.QueuedBytes != r.Bytes) {
						t.Errorf("%s: %s: the dry run planned %d to copy (%d bytes) of %d listed, %d present; the real run copied %d (%d bytes) of %d listed, %d present",
							name, folder, p.Queued, p.QueuedBytes, p.Listed, p.Skipped, r.Copied, r.Bytes, r.Listed, r.Skipped)
					}
				}
				compare("total", plan.Totals, did.Totals)
				for mb, p := range plan.Folders {
					compare(mb, p, did.Folders[mb])
				}
				for mb := range did.Folders {
					if _, ok := plan.Folders[mb]; !ok {
						t.Errorf("%s: the real run copied folder %q the dry run did not list", name, mb)
					}
				}
				// Message by message: the plan is exactly what the real run
				// then recorded in the checkpoint.
				planned := map[string]bool{}
				for _, p := range plan.Planned {
					planned[p.Mailbox+"\x00"+string(p.ID)] = true
				}
				recorded := map[string]bool{}
				for k := range recordKeys(t, cp) {
					if !recordedBefore[k] {
						recorded[k] = true
					}
				}
				if len(planned) != len(plan.Planned) || !maps.Equal(planned, recorded) {
					t.Errorf("%s: the dry run planned %d message(s), the real run recorded %d new; they differ", name, len(plan.Planned), len(recorded))
				}
				t.Logf("%s: planned and copied %d message(s) in %d folder(s)", name, did.Totals.Copied, len(did.Folders))
			}
			seed("old", map[string]int{"INBOX": 12, "Work": 5})
			phase("first run")
			seed("new", map[string]int{"INBOX": 4, "Work": 3, "Neu/Ordner": 6})
			phase("incremental run")
		})
	}
}

// recordKeys returns "mailbox\x00id" of every record in the checkpoint
// file at path (none when it does not exist).
func recordKeys(t *testing.T, path string) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	for _, r := range checkpointRecords(t, path) {
		keys[r.Mailbox+"\x00"+string(r.ID)] = true
	}
	return keys
}
