package twoway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// deltaStore is a memStore with the statuses and change listings of an
// IMAP server with CONDSTORE and QRESYNC (or, with noModSeq, of one
// without: every known message's flags are reported, expunges are found by
// comparing with the known ids). A status read snapshots the folder when
// it changed since the last snapshot and gives it the next mod-sequence;
// a change listing diffs the snapshot of its mark with the folder now. The
// ids "<prefix><n>" give UIDs n, which only grow. As sources/imap, it
// reports a known message that arrived after the mark as ChangeFlags, or
// as vanished when gone.
type deltaStore struct {
	*memStore
	noModSeq bool
	// hideVanished drops the expunges from change listings, as a server bug
	// might: only a full listing sees them.
	hideVanished bool

	// mailboxIDs, when not nil, are the folders' MAILBOXIDs (RFC 8474),
	// which RenameMailbox moves along.
	mailboxIDs map[string]string

	dmu      sync.Mutex
	modseq   uint64
	snaps    map[string][]deltaSnap
	statuses int // FolderStatuses calls
	changes  int // ListChanges calls
}

type deltaSnap struct {
	modseq  uint64
	uidnext uint32
	flags   map[mail.ID]string
}

var (
	_ mail.FolderStatuser = (*deltaStore)(nil)
	_ mail.ChangeLister   = (*deltaStore)(nil)
)

func newDeltaStore(m *memStore) *deltaStore {
	return &deltaStore{memStore: m, snaps: map[string][]deltaSnap{}}
}

func (d *deltaStore) uid(id mail.ID) (uint32, bool) {
	n, err := strconv.ParseUint(strings.TrimPrefix(string(id), d.prefix), 10, 32)
	return uint32(n), err == nil && strings.HasPrefix(string(id), d.prefix)
}

// snap returns folder's current snapshot, taking a new one when it changed;
// false when the folder does not exist. Called with dmu held.
func (d *deltaStore) snap(folder string) (deltaSnap, bool) {
	d.mu.Lock()
	msgs, ok := d.folders[folder]
	now := map[mail.ID]string{}
	for id, m := range msgs {
		now[id] = setOf(m.flags).String()
	}
	next := uint32(d.next + 1)
	d.mu.Unlock()
	if !ok {
		return deltaSnap{}, false
	}
	hist := d.snaps[folder]
	if len(hist) > 0 && reflect.DeepEqual(hist[len(hist)-1].flags, now) {
		return hist[len(hist)-1], true
	}
	d.modseq++
	s := deltaSnap{modseq: d.modseq, uidnext: next, flags: now}
	d.snaps[folder] = append(hist, s)
	return s, true
}

func (d *deltaStore) status(s deltaSnap) mail.FolderStatus {
	st := mail.FolderStatus{UIDValidity: 1, UIDNext: s.uidnext, Messages: uint32(len(s.flags)), HighestModSeq: s.modseq}
	if d.noModSeq {
		st.HighestModSeq = 0
	}
	return st
}

func (d *deltaStore) FolderStatuses(ctx context.Context, mailboxes []string) (map[string]mail.FolderStatus, error) {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	d.statuses++
	out := map[string]mail.FolderStatus{}
	for _, mb := range mailboxes {
		if s, ok := d.snap(mb); ok {
			out[mb] = d.status(s)
			if d.mailboxIDs != nil {
				st := out[mb]
				st.MailboxID = d.mailboxIDs[mb]
				out[mb] = st
			}
		}
	}
	return out, nil
}

func (d *deltaStore) ListChanges(ctx context.Context, mailbox string, since mail.FolderStatus, known iter.Seq[mail.ID], fn func(mail.Change) error) (mail.ChangeSummary, error) {
	d.dmu.Lock()
	d.changes++
	now, ok := d.snap(mailbox)
	var base *deltaSnap
	changed := map[mail.ID]bool{} // flags changed in a snapshot after base's
	for i, s := range d.snaps[mailbox] {
		if base != nil {
			prev := d.snaps[mailbox][i-1]
			for id, fl := range s.flags {
				if old, ok := prev.flags[id]; ok && old != fl {
					changed[id] = true
				}
			}
		}
		if s.modseq == since.HighestModSeq {
			base = &d.snaps[mailbox][i]
		}
	}
	d.dmu.Unlock()
	sum := mail.ChangeSummary{Status: d.status(now)}
	switch {
	case !ok:
		return sum, mail.ErrMailboxNotFound
	case since.UIDValidity != 1:
		sum.Full, sum.Reason = true, "UIDVALIDITY changed"
		return sum, nil
	case base == nil && !d.noModSeq:
		sum.Full, sum.Reason = true, "no such mod-sequence"
		return sum, nil
	}
	var changes []mail.Change
	knownSet := map[mail.ID]bool{}
	for id := range known {
		knownSet[id] = true
	}
	envs := map[mail.ID]mail.Envelope{}
	if err := d.List(ctx, mailbox, func(env mail.Envelope) error { envs[env.ID] = env; return nil }); err != nil {
		return sum, err
	}
	for id, env := range envs {
		uid, ok := d.uid(id)
		switch {
		case !ok:
			sum.Full, sum.Reason = true, "UIDVALIDITY changed"
			return sum, nil
		case uid >= since.UIDNext && !knownSet[id]:
			changes = append(changes, mail.Change{Kind: mail.ChangeNew, Envelope: env})
		case uid >= since.UIDNext || d.noModSeq || changed[id]:
			changes = append(changes, mail.Change{Kind: mail.ChangeFlags, Envelope: mail.Envelope{Mailbox: mailbox, ID: id, Size: -1, Flags: env.Flags}})
		}
	}
	for id := range knownSet {
		_, there := now.flags[id]
		if _, ok := d.uid(id); ok && !there && !d.hideVanished {
			changes = append(changes, mail.Change{Kind: mail.ChangeVanished, Envelope: mail.Envelope{Mailbox: mailbox, ID: id, Size: -1}})
		}
	}
	for _, c := range changes {
		if err := fn(c); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// The sync's own writes are snapshotted as they are made, so that a later
// change back by another client still shows, as a mod-sequence would.
func (d *deltaStore) SetFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	err := d.memStore.SetFlags(ctx, mailbox, id, flags)
	d.dmu.Lock()
	d.snap(mailbox)
	d.dmu.Unlock()
	return err
}

func (d *deltaStore) calls() (statuses, changes int) {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	return d.statuses, d.changes
}

func deltaStores(a, b *deltaStore) [2]*Store {
	return [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, {Source: b, Sink: b, Identity: "mem:b"}}
}

// syncDelta runs one sync of a and b with the state in dir.
func syncDelta(t *testing.T, a, b *deltaStore, dir string, opt RunOptions) (*Result, error) {
	t.Helper()
	st := openState(t, dir, opt.DryRun)
	defer st.Close()
	return Run(context.Background(), deltaStores(a, b), st, opt)
}

func mustSyncDelta(t *testing.T, a, b *deltaStore, dir string, opt RunOptions) *Result {
	t.Helper()
	res, err := syncDelta(t, a, b, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestRunModelIncremental is the randomized test of Run on stores that
// list by changes, with and without mod-sequences, and with a full
// listing every third pass: after every sync both sides hold what the
// changes imply, a second sync does nothing, and a third skips every
// folder pair (unless its full listing is due).
func TestRunModelIncremental(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noModSeq  bool
		fullEvery int
	}{
		{"condstore", false, 0},
		{"condstore full every 3", false, 3},
		{"no modseq", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &runModel{t: t, rng: newRand(11), truth: map[int]*truthMsg{}, folders: true}
			m.st[A], m.st[B] = newMemStore("a", "INBOX", "Archive"), newMemStore("b", "INBOX")
			da, db := newDeltaStore(m.st[A]), newDeltaStore(m.st[B])
			da.noModSeq, db.noModSeq = tc.noModSeq, tc.noModSeq
			syncFn := func(dir string, opt RunOptions) (*Result, error) {
				opt.FullEvery = tc.fullEvery
				return syncDelta(t, da, db, dir, opt)
			}
			incremental := 0
			m.rounds(soakRounds(120, 200), syncFn, func(round int, third *Result) {
				for name, how := range third.Listing {
					if how == ListingIncremental {
						incremental++
					}
					if !tc.noModSeq && how == ListingIncremental { // skipped, or in full when due
						t.Fatalf("round %d: a third sync listed %q by its changes, want it skipped", round, name)
					}
				}
			})
			if _, changes := da.calls(); changes == 0 {
				t.Errorf("no change listing was asked")
			}
			if tc.noModSeq && incremental == 0 {
				t.Errorf("without mod-sequences no folder was listed by its changes")
			}
		})
	}
}

// TestRunSkippedFolderReadsNoRecord: a folder pair that did not move is
// skipped without reading its log: a log garbled on disk goes unnoticed
// while the folder is skipped, and is refused (ErrUnusable) as soon as a
// change makes the run read it.
func TestRunSkippedFolderReadsNoRecord(t *testing.T) {
	a, b := firstSyncStores()
	da, db := newDeltaStore(a), newDeltaStore(b)
	dir := filepath.Join(t.TempDir(), "state")
	mustSyncDelta(t, da, db, dir, RunOptions{})
	mustSyncDelta(t, da, db, dir, RunOptions{}) // lists what the first sync wrote
	sumPath := filepath.Join(dir, "summary.json")
	before, err := os.Stat(sumPath)
	if err != nil {
		t.Fatal(err)
	}
	res := mustSyncDelta(t, da, db, dir, RunOptions{})
	want := map[string]string{"INBOX": ListingSkipped, "Archive": ListingSkipped}
	if !reflect.DeepEqual(res.Listing, want) {
		t.Fatalf("a sync with nothing changed listed %v, want %v", res.Listing, want)
	}
	// It counted its passes without a durable write (state.SkipPasses).
	if after, err := os.Stat(sumPath); err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("a sync with nothing changed rewrote summary.json (%v)", err)
	}
	garbleLog(t, dir, "Archive")
	res = mustSyncDelta(t, da, db, dir, RunOptions{})
	if !reflect.DeepEqual(res.Listing, want) || res.Side != [2]Counts{} {
		t.Fatalf("with Archive's log garbled: listed %v, did %+v; want %v and nothing", res.Listing, res.Side, want)
	}
	a.add("Archive", 20)
	if _, err := syncDelta(t, da, db, dir, RunOptions{}); !errors.Is(err, state.ErrUnusable) {
		t.Fatalf("a sync that must read the garbled log: %v, want ErrUnusable", err)
	}
}

// garbleLog breaks a line in the middle of folder's log (corruption, not a
// torn tail).
func garbleLog(t *testing.T, dir, folder string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Folders map[string]struct {
			Gen uint64 `json:"g"`
		} `json:"folders"`
	}
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%d.log", sum.Folders[folder].Gen))
	log, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(log, []byte("\n")) < 2 {
		t.Fatalf("%s holds no record", path)
	}
	log[0] ^= 0x55 // the header line's CRC
	if err := os.WriteFile(path, log, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRunIncrementalPicksUpChanges: changes made by other clients between
// syncs (new mail, flags, an expunge, a move) are listed by their changes
// and applied, as a full listing would.
func TestRunIncrementalPicksUpChanges(t *testing.T) {
	a, b := firstSyncStores()
	da, db := newDeltaStore(a), newDeltaStore(b)
	dir := filepath.Join(t.TempDir(), "state")
	mustSyncDelta(t, da, db, dir, RunOptions{})
	mustSyncDelta(t, da, db, dir, RunOptions{})
	changeBothSides(a, b)
	_, before := da.calls()
	res := mustSyncDelta(t, da, db, dir, RunOptions{})
	checkStores(t, "after the changes", a, b, afterChanges)
	for name, how := range res.Listing {
		if how != ListingIncremental {
			t.Errorf("folder %q listed %s, want incremental", name, how)
		}
	}
	if _, after := da.calls(); after == before {
		t.Errorf("side A's changes were not listed by ListChanges")
	}
}

// TestRunIncrementalRightAfterFirstSync: other clients change both sides
// right after the first sync, whose status predates its own copies: a copy
// deleted on its side is found gone (not a missing record), as the full
// listing of the applier's tests finds it.
func TestRunIncrementalRightAfterFirstSync(t *testing.T) {
	a, b := firstSyncStores()
	da, db := newDeltaStore(a), newDeltaStore(b)
	dir := filepath.Join(t.TempDir(), "state")
	mustSyncDelta(t, da, db, dir, RunOptions{})
	changeBothSides(a, b)
	res := mustSyncDelta(t, da, db, dir, RunOptions{})
	checkStores(t, "after the changes", a, b, afterChanges)
	if res.Listing["INBOX"] != ListingIncremental {
		t.Errorf("INBOX listed %s, want incremental", res.Listing["INBOX"])
	}
}

// TestRunFullEvery: with nothing changed, a folder pair is listed in full
// every FullEvery passes (skipped passes count: passes 1, 4, 7), and
// skipped in between.
func TestRunFullEvery(t *testing.T) {
	a, b := firstSyncStores()
	da, db := newDeltaStore(a), newDeltaStore(b)
	dir := filepath.Join(t.TempDir(), "state")
	var got []string
	for range 7 {
		res := mustSyncDelta(t, da, db, dir, RunOptions{FullEvery: 3})
		got = append(got, res.Listing["INBOX"])
	}
	// The first sync writes to both sides: the second lists that.
	want := []string{ListingFull, ListingIncremental, ListingSkipped, ListingFull, ListingSkipped, ListingSkipped, ListingFull}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("INBOX listed %q, want %q", got, want)
	}
}

// TestRunHiddenExpungeWaitsForFullListing: a change listing that misses an
// expunge (a server bug) deletes nothing on the other side (absence from
// it is not a deletion); the full listing every Nth pass finds it.
func TestRunHiddenExpungeWaitsForFullListing(t *testing.T) {
	a, b := firstSyncStores()
	da, db := newDeltaStore(a), newDeltaStore(b)
	da.hideVanished = true
	dir := filepath.Join(t.TempDir(), "state")
	opt := RunOptions{FullEvery: 4}
	mustSyncDelta(t, da, db, dir, opt)
	mustSyncDelta(t, da, db, dir, opt)
	a.removeTok("INBOX", 2)
	var deleted []int
	var how []string
	for range 3 {
		res := mustSyncDelta(t, da, db, dir, opt)
		deleted, how = append(deleted, res.Side[B].Deleted), append(how, res.Listing["INBOX"])
	}
	if !reflect.DeepEqual(deleted, []int{0, 0, 1}) || how[2] != ListingFull {
		t.Fatalf("deletions on B per sync %v, INBOX listed %q; want [0 0 1], the last in full", deleted, how)
	}
}

// TestRunMaildirSkipped: a Maildir side whose directories did not change
// (older than maildirStable) is skipped; a mail client's flag change is
// found on the next sync.
func TestRunMaildirSkipped(t *testing.T) {
	root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	a := newMemStore("a", "INBOX", "Archive")
	a.add("INBOX", 1)
	a.add("INBOX", 2)
	a.add("Archive", 3)
	da := newDeltaStore(a)
	syncMaildirStore(t, da, root, dir)
	ageMaildir(t, root, ".Archive")
	// The second sync lists the Maildir (its directories changed since the
	// first recorded nothing: too recent), the third skips both folders.
	for i, want := range []string{ListingFull, ListingSkipped} {
		if res := syncMaildirStore(t, da, root, dir); res.Listing["INBOX"] != want || res.Listing["Archive"] != want {
			t.Fatalf("sync %d listed %v, want both %s", i+2, res.Listing, want)
		}
	}
	p := maildirFile(t, root, 2)
	base, _, _ := strings.Cut(filepath.Base(p), ":")
	if err := os.Rename(p, filepath.Join(root, "cur", base+":2,F")); err != nil {
		t.Fatal(err)
	}
	res := syncMaildirStore(t, da, root, dir)
	if res.Listing["Archive"] != ListingSkipped || res.Listing["INBOX"] != ListingFull || res.Side[A].Flagged != 1 {
		t.Fatalf("after a flag change in the Maildir: listed %v, did %+v", res.Listing, res.Side)
	}
	if got := a.describe()["INBOX"]; got != `1:,2:\Flagged` {
		t.Fatalf("A's INBOX holds %s", got)
	}
}

// syncMaildirStore syncs a with the Maildir at root.
func syncMaildirStore(t *testing.T, a *deltaStore, root, dir string) *Result {
	t.Helper()
	b, done := maildirSide(t, root, filepath.Join(dir, "quarantine"))
	defer done()
	st := openState(t, filepath.Join(dir, "state"), false)
	defer st.Close()
	res, err := Run(context.Background(), [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, b}, st, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// ageMaildir dates the cur/ and new/ directories of the Maildir at root
// and of its folder directories subs an hour back, as if the last change
// were long ago (older than maildirStable).
func ageMaildir(t *testing.T, root string, subs ...string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	for _, sub := range append(subs, "") {
		for _, d := range []string{"cur", "new"} {
			if err := os.Chtimes(filepath.Join(root, sub, d), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRunOmittedRecordsCountForTheGuard: with both sides listed by their
// changes, records neither side changed are left out of the plan, but
// still count as the folder's known messages: 21 deletions of 50 (42 %)
// are not held back (counting only the 21 records planned, they would be
// 100 %). Archive's 100 keep the side's share under 25 %.
func TestRunOmittedRecordsCountForTheGuard(t *testing.T) {
	a, b := newMemStore("a", "INBOX", "Archive"), newMemStore("b", "INBOX")
	for tok := 1; tok <= 150; tok++ {
		folder := "INBOX"
		if tok > 50 {
			folder = "Archive"
		}
		a.add(folder, tok)
	}
	da, db := newDeltaStore(a), newDeltaStore(b)
	dir := filepath.Join(t.TempDir(), "state")
	mustSyncDelta(t, da, db, dir, RunOptions{})
	mustSyncDelta(t, da, db, dir, RunOptions{})
	for tok := 1; tok <= 21; tok++ {
		a.removeTok("INBOX", tok)
	}
	res, err := syncDelta(t, da, db, dir, RunOptions{})
	if err != nil || res.HeldBack || res.Side[B].Deleted != 21 || res.Listing["INBOX"] != ListingIncremental {
		t.Fatalf("21 deletions of 50: %v, held back %v, deleted on B %d, listed %s", err, res.HeldBack, res.Side[B].Deleted, res.Listing["INBOX"])
	}
	if n := len(res.Plan.Folders); n != 1 || len(res.Plan.Folders[0].Deletes) != 21 || res.Plan.Folders[0].Name != "INBOX" {
		t.Fatalf("plan %+v", res.Plan.Folders)
	}
	if got := b.describe()["INBOX"]; strings.Count(got, ",")+1 != 29 {
		t.Fatalf("B's INBOX holds %s, want 29 messages", got)
	}
}

// TestRunMaildirRacyEvidence: evidence stamped within maildirStable of a
// change (here a time in the future, racy however slow the machine) is
// kept with a hash of the folder's names, so the next sync skips the
// folder when nothing changed, instead of listing it in full twice more.
// A flag change in the same clock tick (the rename, then cur/'s times put
// back as they were) leaves every stamp the same: the hash finds it, and
// the folder is listed (the negative control of the skip).
func TestRunMaildirRacyEvidence(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sameTick bool
		want     string
	}{
		{"unchanged", false, ListingSkipped},
		{"renamed in the same tick", true, ListingFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
			a := newMemStore("a", "INBOX")
			a.add("INBOX", 1)
			a.add("INBOX", 2)
			da := newDeltaStore(a)
			syncMaildirStore(t, da, root, dir)
			tick := time.Now().Add(time.Hour)
			for _, d := range []string{"cur", "new"} {
				if err := os.Chtimes(filepath.Join(root, d), tick, tick); err != nil {
					t.Fatal(err)
				}
			}
			if res := syncMaildirStore(t, da, root, dir); res.Listing["INBOX"] != ListingFull {
				t.Fatalf("second sync listed INBOX %q, want full (the first recorded no evidence)", res.Listing["INBOX"])
			}
			if tc.sameTick {
				p := maildirFile(t, root, 2)
				base, _, _ := strings.Cut(filepath.Base(p), ":")
				if err := os.Rename(p, filepath.Join(root, "cur", base+":2,F")); err != nil {
					t.Fatal(err)
				}
				for _, d := range []string{"cur", "new"} { // the file moved from new/ to cur/
					if err := os.Chtimes(filepath.Join(root, d), tick, tick); err != nil {
						t.Fatal(err)
					}
				}
			}
			res := syncMaildirStore(t, da, root, dir)
			if res.Listing["INBOX"] != tc.want {
				t.Fatalf("third sync listed INBOX %q, want %s", res.Listing["INBOX"], tc.want)
			}
			want := `1:,2:`
			if tc.sameTick {
				want = `1:,2:\Flagged`
			}
			if got := a.describe()["INBOX"]; got != want {
				t.Fatalf("A's INBOX holds %s, want %s", got, want)
			}
		})
	}
}

// TestHashNamesFormat: hashNames is the SHA-256 of the sorted names, each
// ended by a NUL, then the keyword bytes, as recorded evidence holds it
// (a hash of another form would list every racy folder once more), also
// for names past its write buffer.
func TestHashNamesFormat(t *testing.T) {
	long := strings.Repeat("x", 9<<10)
	for _, names := range [][]string{nil, {"b:2,S", "a"}, {long, "c", long + "y"}} {
		kw := []byte("0 $Junk\n")
		sorted := slices.Clone(names)
		slices.Sort(sorted)
		h := sha256.New()
		for _, n := range sorted {
			h.Write([]byte(n + "\x00"))
		}
		h.Write(kw)
		want := "n" + hex.EncodeToString(h.Sum(nil)[:16])
		if got := hashNames(slices.Clone(names), kw); got != want {
			t.Errorf("hashNames(%d names) = %s, want %s", len(names), got, want)
		}
	}
}
