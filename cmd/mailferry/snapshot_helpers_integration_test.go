package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// Helpers shared by the H1, H2, G1 and G3 tests: snapshots of a local tree
// and of a Dovecot account precise enough to show any write, and a reader
// for the commands a --trace run sent.

// fsEntry is what a write changes about a path: a file's bytes, size, mode,
// modification time or inode (a rewrite by rename); a directory's mtime
// (an entry created or removed, even a temporary file removed again).
type fsEntry struct {
	mode  fs.FileMode
	size  int64
	mtime int64
	ino   uint64
	sum   [32]byte
}

// treeState snapshots every path under root ("" -> nothing when root does
// not exist).
func treeState(t *testing.T, root string) map[string]fsEntry {
	t.Helper()
	out := map[string]fsEntry{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if os.IsNotExist(err) && p == root {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := fsEntry{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.ino = st.Ino
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.sum = sha256.Sum256(b)
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeDiff lists what changed between two snapshots. A directory in
// lockDirs may change its mtime: a run creates and removes its lock file
// there (the Maildir sink's run lock in the root's tmp/, which Maildir
// readers ignore by definition).
func treeDiff(before, after map[string]fsEntry, lockDirs ...string) []string {
	var d []string
	for p, a := range before {
		b, ok := after[p]
		if ok && a.mode.IsDir() && slices.Contains(lockDirs, p) {
			b.mtime = a.mtime
		}
		switch {
		case !ok:
			d = append(d, "removed "+p)
		case a != b:
			d = append(d, fmt.Sprintf("changed %s: %+v -> %+v", p, a, b))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			d = append(d, "created "+p)
		}
	}
	sort.Strings(d)
	return d
}

// accountState describes a Dovecot account completely enough that any
// APPEND, STORE, EXPUNGE, CREATE or \Seen side effect changes it: per
// mailbox UIDVALIDITY, UIDNEXT and message count, and per message UID,
// flags, internal date and body hash.
func accountState(t *testing.T, d *mailtest.Dovecot, user, pw string) string {
	t.Helper()
	msgs := d.Fetch(t, user, pw)
	c := d.Dial(t, user, pw)
	var names []string
	for mb := range msgs {
		names = append(names, mb)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, mb := range names {
		st, err := c.Status(mb, &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true}).Wait()
		if err != nil {
			t.Fatalf("status %q: %v", mb, err)
		}
		fmt.Fprintf(&b, "%s uidvalidity=%d uidnext=%d messages=%d\n", mb, st.UIDValidity, st.UIDNext, *st.NumMessages)
		for _, m := range msgs[mb] {
			fmt.Fprintf(&b, "  %d %v %s %x\n", m.UID, sortedFlags(m.Flags), m.Date.UTC().Format(time.RFC3339), sha256.Sum256(m.Body))
		}
	}
	return b.String()
}

func sortedFlags(f []imap.Flag) []string {
	s := make([]string, len(f))
	for i, x := range f {
		s[i] = strings.ToLower(string(x))
	}
	sort.Strings(s)
	return s
}

// traced is one command line a --trace run sent.
type traced struct {
	side string // src or dst
	verb string // IMAP command (UID FETCH, APPEND, ...) or POP3 command
	line string
}

// tracedCommands extracts the client commands from --trace output.
func tracedCommands(stderr string) []traced {
	var out []traced
	for _, l := range strings.Split(stderr, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[0] != "trace" || f[2] != "C:" || strings.HasPrefix(f[3], "<") {
			continue // not a command, or a literal's bytes
		}
		c := traced{side: f[1], line: strings.Join(f[3:], " ")}
		switch {
		case len(f) >= 6 && strings.EqualFold(f[4], "UID"):
			c.verb = "UID " + strings.ToUpper(f[5])
		case len(f) >= 5 && !isPOP3Verb(f[3]):
			c.verb = strings.ToUpper(f[4]) // after the IMAP tag
		default:
			c.verb = strings.ToUpper(f[3])
		}
		out = append(out, c)
	}
	return out
}

func isPOP3Verb(s string) bool {
	switch strings.ToUpper(s) {
	case "USER", "PASS", "APOP", "AUTH", "CAPA", "STLS", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "NOOP", "RSET", "QUIT":
		return true
	}
	return false
}

// bodyFetch matches an IMAP fetch of a message body (not RFC822.SIZE, not
// BODY.PEEK[HEADER.FIELDS (Message-ID)], which listings use).
var bodyFetch = regexp.MustCompile(`(?i)BODY(\.PEEK)?\[(TEXT)?\]|BINARY(\.PEEK)?\[|RFC822(\.TEXT)?[ )]`)

// writesAndBodies returns the traced commands that fetch a body or change
// anything on a server.
func writesAndBodies(cmds []traced) []string {
	var bad []string
	for _, c := range cmds {
		switch strings.TrimPrefix(c.verb, "UID ") {
		case "APPEND", "STORE", "EXPUNGE", "COPY", "MOVE", "DELETE", "RENAME", "RETR", "TOP", "DELE":
			bad = append(bad, c.side+": "+c.line)
		case "FETCH":
			if bodyFetch.MatchString(c.line) {
				bad = append(bad, c.side+": "+c.line)
			}
		}
	}
	return bad
}

// checkpointUnchanged fails if a file of the checkpoint's state (treeState
// of its directory) changed its bytes, was rewritten (a new inode:
// compaction by rename), touched (mtime), added or removed: its record
// logs always, its summary and pass counters (summary.json, passes) too
// when withSummary (a dry run writes nothing; a real run that lists nothing
// new still records its passes, in passes). The lock, whose pid every run
// writes, is left out.
func checkpointUnchanged(t *testing.T, before, after map[string]fsEntry, withSummary bool) {
	t.Helper()
	if len(before) == 0 {
		t.Fatal("checkpointUnchanged: no checkpoint state before the run: the comparison tests nothing")
	}
	skip := func(p string) bool {
		return p == "." || p == "lock" || !withSummary && (p == "summary.json" || p == "passes")
	}
	for p, a := range before {
		if skip(p) {
			continue
		}
		if b, ok := after[p]; !ok || a.sum != b.sum || a.size != b.size || a.ino != b.ino || a.mtime != b.mtime {
			t.Errorf("the checkpoint's %s was touched although nothing changed: %+v -> %+v", p, a, b)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok && !skip(p) {
			t.Errorf("the checkpoint gained %s although nothing changed", p)
		}
	}
}

// parseJSONSummary reads the --json summary of copy.
func parseJSONSummary(t *testing.T, r binRun) summary {
	t.Helper()
	var s summary
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("--json output: %v\n%s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return s
}

// h1Corpus is n small distinct messages tagged tag.
func h1Corpus(n int, tag string) []mailtest.SeedMessage {
	msgs := uidMessages(n, tag)
	date := time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)
	for i := range msgs {
		msgs[i].Date = date.Add(time.Duration(i) * time.Minute)
		if i%3 == 0 {
			msgs[i].Flags = []imap.Flag{imap.FlagSeen}
		}
	}
	return msgs
}

// TestH1SecondRunTouchesNothing (docs/failure-model.md H1, invariant I4): after
// a complete copy of 300 messages, a second run with no source change
// exits 0 having stored, fetched and changed nothing: no body fetch and no
// APPEND/STORE/EXPUNGE/RETR/DELE in its protocol trace (both sides), a
// command count that does not grow with the number of messages, the
// destination tree (every file's bytes, inode and mtime, every directory's
// mtime) and the checkpoint file untouched, and both Dovecot accounts
// (UIDNEXT included, which any APPEND moves) unchanged. The wall time is
// logged and bounded only loosely (a loaded CI box); the command count is
// the real budget.
func TestH1SecondRunTouchesNothing(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	imapUser, imapPW := d.NewUser(t)
	boxes := map[string][]mailtest.SeedMessage{"INBOX": h1Corpus(150, "in"), "Archiv/Übersicht": h1Corpus(100, "ar"), "Work": h1Corpus(50, "wo")}
	for mb, msgs := range boxes {
		d.Seed(t, imapUser, imapPW, mb, msgs)
	}
	popUser, popPW := d.NewUser(t)
	d.Seed(t, popUser, popPW, "INBOX", h1Corpus(300, "pop"))
	dstUser, dstPW := d.NewUser(t)

	tests := []struct {
		name, src, pw, dst string
		folders            int
	}{
		{"IMAPToMaildir", "imaps://" + imapUser + "@" + d.IMAPS, imapPW, "maildir", 3},
		{"IMAPToMbox", "imaps://" + imapUser + "@" + d.IMAPS, imapPW, "mbox", 3},
		{"IMAPToIMAP", "imaps://" + imapUser + "@" + d.IMAPS, imapPW, "imaps", 3},
		{"POP3ToMaildir", "pop3s://" + popUser + "@" + d.POP3S, popPW, "maildir", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			dst := tc.dst + ":" + out
			if tc.dst == "imaps" {
				dst = "imaps://" + dstUser + "@" + d.IMAPS
			}
			cp := filepath.Join(dir, "cp.jsonl")
			env := []string{"MAILFERRY_SRC_PASSWORD=" + tc.pw, "MAILFERRY_DST_PASSWORD=" + dstPW}
			args := []string{"copy", tc.src, dst, "--checkpoint", cp, "--ca-file", d.CAFile, "--json", "--progress", "never", "--workers", "4"}
			first := runBinLimit(t, runLimit, env, append(args, "--trace")...)
			if s := parseJSONSummary(t, first); first.code != 0 || s.Counts.Stored != 300 {
				t.Fatalf("first run: exit %d, stored %d; want 0, 300: %s", first.code, s.Counts.Stored, first.stderr)
			}
			// The detector sees the first run's fetches (and APPENDs): it
			// can fail. At least one per folder: how the lister cuts its
			// batches is not what this test is about (CI once saw 8 body
			// FETCHes where runs here show 11).
			if n := len(writesAndBodies(tracedCommands(first.stderr))); n < tc.folders {
				t.Fatalf("first run: %d body fetch or write commands found in its trace, want at least %d: the trace reader is broken", n, tc.folders)
			}
			tree, cpState := treeState(t, out), treeState(t, statePath(cp))
			var srcState, dstState string
			if strings.HasPrefix(tc.src, "imaps") {
				srcState = accountState(t, d, imapUser, imapPW)
			}
			if tc.dst == "imaps" {
				dstState = accountState(t, d, dstUser, dstPW)
			}

			second := runBinLimit(t, runLimit, env, append(args, "--trace")...)
			s := parseJSONSummary(t, second)
			if second.code != 0 || s.Counts.Fetched != 0 || s.Counts.Stored != 0 || s.Totals.FlagsUpdated != 0 || s.Totals.Listed != 300 || s.Counts.Skipped["present"] != 300 {
				t.Errorf("second run: exit %d, counts %+v, listed %d, flags updated %d; want 0, nothing fetched or stored, 300 listed and present",
					second.code, s.Counts, s.Totals.Listed, s.Totals.FlagsUpdated)
			}
			cmds := tracedCommands(second.stderr)
			if len(cmds) == 0 {
				t.Fatalf("second run: no commands in the --trace output: %s", second.stderr)
			}
			if bad := writesAndBodies(cmds); len(bad) > 0 {
				t.Errorf("second run sent %d body fetch or write command(s), want 0: %q", len(bad), bad)
			}
			// Login, capabilities, LIST, one EXAMINE and listing FETCH per
			// folder, logout, per connection: a few dozen, against 300
			// messages. Anything per message would blow this budget.
			if budget := 30 + 10*tc.folders; len(cmds) > budget {
				verbs := map[string]int{}
				for _, c := range cmds {
					verbs[c.side+" "+c.verb]++
				}
				t.Errorf("second run sent %d commands for 300 messages in %d folder(s), want at most %d: %v", len(cmds), tc.folders, budget, verbs)
			}
			if diff := treeDiff(tree, treeState(t, out), "tmp"); len(diff) > 0 {
				t.Errorf("second run wrote to the destination tree:\n%s", strings.Join(diff, "\n"))
			}
			checkpointUnchanged(t, cpState, treeState(t, statePath(cp)), false)
			if srcState != "" && accountState(t, d, imapUser, imapPW) != srcState {
				t.Error("second run changed the source account")
			}
			if dstState != "" && accountState(t, d, dstUser, dstPW) != dstState {
				t.Error("second run changed the destination account")
			}
			// A hang or a per-message round trip shows long before this; the
			// bound only has to survive a loaded 2-core CI box.
			if second.elapsed > 20*time.Second {
				t.Errorf("second run took %v, want well under 20s", second.elapsed)
			}
			t.Logf("first run %v; second run %v, %d commands", first.elapsed.Round(time.Millisecond), second.elapsed.Round(time.Millisecond), len(cmds))
		})
	}
}
