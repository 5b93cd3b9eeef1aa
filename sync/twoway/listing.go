package twoway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// This file is the incremental listing of a sync, on issue 11's machinery.
// Before listing, the run asks each side the status of every folder (IMAP:
// one LIST-STATUS or pipelined STATUS, mail.FolderStatuser; a Maildir: its
// directories' change evidence) and compares it with what the state
// recorded at the end of the folder pair's last complete pass:
//
//   - both sides unchanged: the pair is skipped and its records are not
//     even read (state.SkipPasses counts the pass without the log);
//   - one side unchanged: its listing is rebuilt from the records (the
//     flags both sides agreed on), without asking the server;
//   - an IMAP side that moved: only its changes are listed
//     (mail.ChangeLister: new UIDs, CHANGEDSINCE or every message's FLAGS,
//     VANISHED (EARLIER) or UID SEARCH) and the listing is rebuilt from the
//     records plus those changes;
//   - a Maildir side that moved: read by names, stat'ing only the files a
//     judgement needs (mdlisting.go);
//   - otherwise, and every Nth pass (RunOptions.FullEvery), in full.
//
// A rebuilt listing leaves a record's message out only on explicit
// evidence that it is gone (VANISHED, a UID SEARCH without it): a record
// the changes do not mention is there with its flags unchanged. What it
// cannot place (a flag change of a message no record names, a record
// without base flags) sends that side to a full listing.
//
// The status recorded is the one read before listing, so a change another
// client makes while the run works is listed next time, never lost; the
// run's own changes show up next time as changes of known messages.

// The ways a folder pair is listed, as Result.Listing reports them: full
// when a side's folder was read (a Maildir's by names counts, although not
// every file is stat'ed: mdlisting.go), incremental when each side was
// listed by its changes or rebuilt from the records.
const (
	ListingFull        = "full"
	ListingIncremental = "incremental"
	ListingSkipped     = "skipped"
)

// folderPass is what a run records for a folder pair it listed, once every
// change of the run is applied.
type folderPass struct {
	status [2]state.SideStatus // each side's status read before listing
	full   bool                // a side was listed in full
	// noPass, when not "", says why the pass is not recorded: the next
	// run lists the folder again from the previous pass.
	noPass string
}

// fullEvery is RunOptions.FullEvery or the state's default.
func (r *run) fullEvery() int {
	if r.opt.FullEvery > 0 {
		return r.opt.FullEvery
	}
	return state.DefaultFullEvery
}

// askStatuses reads each side's status of its folders among names, before
// anything is listed. A side that cannot tell (no FolderStatuser, a failed
// request, a Maildir directory changed too recently) has no status for
// them, and they are listed in full.
func (r *run) askStatuses(names []string, exists [2]map[string]bool) {
	for s, st := range r.stores {
		r.sts[s] = map[string]state.SideStatus{}
		var here []string
		for _, n := range names {
			if exists[s][n] {
				here = append(here, n)
			}
		}
		if len(here) == 0 {
			continue
		}
		if st.Maildir != nil {
			now := time.Now()
			for _, n := range here {
				ev, settled := maildirEvidence(st.Maildir.Root, n, now, r.recordedEvidence(Side(s), n))
				if ev != "" {
					r.sts[s][n] = state.SideStatus{Evidence: ev}
				}
				if settled != "" {
					if r.settled[s] == nil {
						r.settled[s] = map[string]string{}
					}
					r.settled[s][n] = settled
				}
			}
			continue
		}
		fst := mail.FeaturesOf(st.Source).FolderStatuser
		if fst == nil {
			continue
		}
		// The statuses read with the identity (run.status) serve the
		// folders they cover: one request for those, the rest asked now.
		var missing []string
		for _, n := range here {
			if fs, ok := r.status[s][n]; ok {
				r.sts[s][n] = sideStatus(fs)
			} else {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			continue
		}
		got, err := fst.FolderStatuses(r.ctx, missing)
		if err != nil {
			r.log.Warn("sync: folder statuses unknown: listing those folders in full", "side", Side(s).String(), "err", err)
			continue
		}
		for n, fs := range got {
			r.sts[s][n] = sideStatus(fs)
		}
	}
	// Each side is its own server: both start their listings at once.
	var wg gosync.WaitGroup
	for s := range r.stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.prefetchChanges(Side(s), names, exists[s])
		}()
	}
	wg.Wait()
}

// prefetchChanges tells side s's change lister (mail.ChangePrefetcher)
// every folder among names whose changes listSideAs is about to list
// (changeSide: a complete pass, an identity not in doubt, a status that
// moved), so that it can start all those listings at once (IMAP: one
// round trip for every folder's EXAMINE instead of one per folder).
// ListChanges then answers from what was fetched where it can.
func (r *run) prefetchChanges(s Side, names []string, exists map[string]bool) {
	cp := mail.FeaturesOf(r.stores[s].Source).ChangePrefetcher
	if cp == nil || r.stores[s].Maildir != nil || r.opt.Plan.Sides[s].Untrusted != "" {
		return
	}
	var marks []mail.ChangeMark
	for _, n := range names {
		sum, ok := r.passed(n)
		if !ok || !exists[n] {
			continue
		}
		rec := sum.A
		if s == B {
			rec = sum.B
		}
		now, known := r.sts[s][n]
		if !known || sameStatus(rec, now) || rec.UIDValidity == 0 || rec.UIDNext == 0 {
			continue
		}
		marks = append(marks, mail.ChangeMark{Mailbox: n, Since: folderStatus(rec), Now: folderStatus(now)})
	}
	cp.PrefetchChanges(r.ctx, marks) // also with none: what an earlier run left is dropped
}

// recordedEvidence is the Maildir evidence side s's folder name had at
// its last pass, "" when none.
func (r *run) recordedEvidence(s Side, name string) string {
	sum, ok := r.st.Summary(name)
	if !ok {
		return ""
	}
	if s == B {
		return sum.B.Evidence
	}
	return sum.A.Evidence
}

// sideStatus is what the state keeps of a status. NOMODSEQ keeps no
// mod-sequence, so the folder is never taken as unchanged.
func sideStatus(fs mail.FolderStatus) state.SideStatus {
	st := state.SideStatus{UIDValidity: fs.UIDValidity, UIDNext: fs.UIDNext, Messages: fs.Messages, HighestModSeq: fs.HighestModSeq,
		MailboxID: fs.MailboxID}
	if fs.NoModSeq {
		st.HighestModSeq = 0
	}
	return st
}

func folderStatus(st state.SideStatus) mail.FolderStatus {
	return mail.FolderStatus{UIDValidity: st.UIDValidity, UIDNext: st.UIDNext, Messages: st.Messages, HighestModSeq: st.HighestModSeq}
}

// maildirStable is how old a Maildir directory's mtime must be before it
// counts as change evidence by itself: a change within the same tick of
// the file system's clock (a few ms on ext4, 1 s on many others, 2 s on
// FAT) leaves the mtime as it was, so a directory changed that recently
// could change again unseen.
const maildirStable = 2 * time.Second

// maildirEvidence is a Maildir folder's change evidence: the mtime, size,
// device and inode of its cur/ and new/ directories (a delivery, a flag
// change, a move or a deletion renames a file in or out of one of them)
// and of its dovecot-keywords file (which names the keyword letters). The
// inode catches a directory replaced by a restore that kept its mtime. ""
// when it cannot be read. A file rewritten in place, under the same name,
// changes no directory: the full listing every Nth pass finds it, and so
// does the check before its deletion (statDoomed).
//
// A stamp within maildirStable of now (or in the future) is racy: a
// change in the same clock tick leaves it as it was. Racy evidence is not
// dropped (the folder would be listed in full on the next run, and again
// on the one after, as the empty Drafts and Junk a run had just stamped
// were) but kept with a hash of the names those directories hold
// (nameHash), taken after the stamps: a change in the same tick changes a
// name, so the hash, and is listed. recorded is the evidence the last pass kept:
// when it had a hash and the stamps are the same, the hash is taken again,
// however old the stamps are now, so the two compare (the git index's
// "racy git" rule: content decides what the clock cannot). When that hash
// is the recorded one and the stamps are no longer racy, settled is the
// stamps alone: the folder holds what it held when they were racy, and a
// change from now on moves them, so the run can keep them instead
// (settleEvidence), and later runs read no names.
func maildirEvidence(root, mailbox string, now time.Time, recorded string) (ev, settled string) {
	dir, err := maildirfmt.FolderDir(root, mailbox)
	if err != nil {
		return "", ""
	}
	ev, racy, err := dirStamps(dir, now)
	if err != nil {
		return "", ""
	}
	at, ok := hashedAt(recorded, ev)
	if !racy && !ok {
		return ev, ""
	}
	if !ok {
		// Racy and new: the folder is listed (its evidence is not the
		// recorded one), and the listing, which reads every name anyway,
		// fills the hash in (listSideAs); hashing here would read them
		// twice. Evidence still pending at the end is not kept.
		return fmt.Sprintf("%s#%d#", ev, now.UnixNano()), ""
	}
	h, err := nameHash(context.Background(), dir)
	if err != nil {
		return "", ""
	}
	hashed := fmt.Sprintf("%s#%d#%s", ev, at.UnixNano(), h)
	if !racy && hashed == recorded {
		settled = ev
	}
	return hashed, settled
}

// dirStamps is the stamps part of a Maildir folder dir's evidence
// (maildirEvidence), and whether it is racy at now.
func dirStamps(dir string, now time.Time) (ev string, racy bool, err error) {
	var b strings.Builder
	b.WriteString("maildir")
	for _, name := range []string{"cur", "new", maildirfmt.KeywordsFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			b.WriteString(":-")
			continue
		}
		if err != nil {
			return "", false, err
		}
		racy = racy || now.Sub(fi.ModTime()) < maildirStable
		fmt.Fprintf(&b, ":%d.%d", fi.ModTime().UnixNano(), fi.Size())
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(&b, ".%d.%d", st.Dev, st.Ino)
		}
	}
	return b.String(), racy, nil
}

// pendingHash returns the time of evidence ev whose hash the listing is to
// fill in, false when ev has none pending.
func pendingHash(ev string) (time.Time, bool) {
	if !strings.HasSuffix(ev, "#") {
		return time.Time{}, false
	}
	stamps, _, _ := strings.Cut(ev, "#")
	return hashedAt(ev, stamps)
}

// hashedAt returns the time a hash of recorded evidence was taken at, when
// recorded has a hash and the stamps ev.
func hashedAt(recorded, ev string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(recorded, ev+"#")
	if !ok {
		return time.Time{}, false
	}
	ns, _, _ := strings.Cut(rest, "#")
	v, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, v), true
}

// hashNames is the evidence hash of a folder's message file names (in any
// order: an ID and its flag letters) and its dovecot-keywords bytes kw
// (what the letters mean). Names alone, like the directories' stamps they
// stand in for: what moves a directory's stamps (a delivery, a flag
// change, a move, a deletion) changes a name, and an edit in place moves
// neither (rule 4 finds it before any deletion and in every full
// listing: evidence.go). So taking it costs a readdir, no stat per file.
func hashNames(names []string, kw []byte) string {
	slices.Sort(names)
	h := sha256.New()
	// The names, each ended by a NUL, go to the hash a few KiB at a time:
	// a write per name and per NUL was most of the hash's cost.
	buf := make([]byte, 0, 8<<10)
	for _, n := range names {
		if len(buf)+len(n)+1 > cap(buf) {
			_, _ = h.Write(buf)
			buf = buf[:0]
		}
		buf = append(append(buf, n...), 0)
	}
	_, _ = h.Write(buf)
	_, _ = h.Write(kw)
	return "n" + hex.EncodeToString(h.Sum(nil)[:16]) // "n": not the older hash of names, sizes and mtimes
}

// readKeywordBytes reads the dovecot-keywords file of folder dir; nil when
// there is none.
func readKeywordBytes(dir string) ([]byte, error) {
	kw, err := os.ReadFile(filepath.Join(dir, maildirfmt.KeywordsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return kw, err
}

// nameHash is the evidence hash of the Maildir folder dir as a listing
// sees it (the regular files in cur/ and new/ not hidden), from its
// directory entries alone. A file the listing would not pass (a name in
// both new/ and cur/, which the listing reads once) makes the hashes
// differ: the folder is listed, never skipped.
func nameHash(ctx context.Context, dir string) (string, error) {
	var names []string
	if err := maildirfmt.RegularNames(ctx, dir, func(_, n string) { names = append(names, n) }); err != nil {
		return "", err
	}
	kw, err := readKeywordBytes(dir)
	if err != nil {
		return "", err
	}
	return hashNames(names, kw), nil
}

// sameStatus reports a side whose folder did not move since rec: the same
// Maildir evidence, or the same IMAP status with mod-sequences (without
// them a status cannot show a flag change).
func sameStatus(rec, now state.SideStatus) bool {
	if rec.Evidence != "" || now.Evidence != "" {
		return now.Evidence != "" && rec.Evidence == now.Evidence
	}
	return rec.UIDValidity != 0 && rec.UIDValidity == now.UIDValidity && rec.UIDNext == now.UIDNext &&
		rec.Messages == now.Messages && now.HighestModSeq > 0 && rec.HighestModSeq == now.HighestModSeq
}

// learnKeepsOnce is learnKeeps, unless the last pass recorded what side s
// keeps in folder name at the UIDVALIDITY it has now and this pass is
// incremental: a server's PERMANENTFLAGS cost a SELECT of the folder (on
// Dovecot 4 ms for a 3,000-message INBOX) in every folder a sync after a
// few changes lists. A full pass (every RunOptions.FullEvery-th) asks
// again.
func (r *run) learnKeepsOnce(s Side, name string) error {
	if k, ok := r.cachedKeeps(s, name); ok {
		if r.keeps[s] == nil {
			r.keeps[s] = map[string]Keeps{}
		}
		r.keeps[s][name] = k
		return nil
	}
	return r.learnKeeps(s, name)
}

// cachedKeeps is what the last pass recorded side s keeps in folder name,
// when that still holds (see learnKeepsOnce).
func (r *run) cachedKeeps(s Side, name string) (Keeps, bool) {
	if st := r.stores[s]; st.Keeps != nil || st.Maildir != nil {
		return nil, false // not asked per folder
	}
	sum, ok := r.passed(name)
	if !ok {
		return nil, false
	}
	rec := sum.A
	if s == B {
		rec = sum.B
	}
	if rec.Keeps == "" || rec.UIDValidity == 0 || rec.UIDValidity != r.sts[s][name].UIDValidity {
		return nil, false
	}
	if rec.Keeps == "*" {
		return nil, true
	}
	k := Keeps{}
	for _, f := range strings.Fields(rec.Keeps) {
		k[mail.Flag(f)] = true
	}
	return k, true
}

// keepsNote is what the pass records of the flags side s keeps in folder
// name (state.SideStatus.Keeps), listed at st: "" where they are not
// asked per folder or the folder has no UIDVALIDITY to tie them to.
func (r *run) keepsNote(s Side, name string, st state.SideStatus) string {
	k, learnt := r.keeps[s][name]
	if !learnt || st.UIDValidity == 0 || r.stores[s].Keeps != nil || r.stores[s].Maildir != nil {
		return ""
	}
	if k == nil {
		return "*"
	}
	flags := make([]string, 0, len(k))
	for f := range k {
		flags = append(flags, string(f))
	}
	sort.Strings(flags)
	return strings.Join(flags, " ")
}

// passed returns the summary of folder name's last complete pass, false
// when there is none or a full listing is due.
func (r *run) passed(name string) (state.Summary, bool) {
	sum, ok := r.st.Summary(name)
	if !ok || sum.Complete == 0 || sum.FullDue(r.fullEvery()) {
		return sum, false
	}
	return sum, true
}

// unchanged reports whether folder pair name is skipped: its last pass
// was complete, no full listing is due, it is on both sides, neither
// side's identity is in doubt, and each side's status is the recorded one.
func (r *run) unchanged(name string, exists [2]map[string]bool) (state.Summary, bool) {
	sum, ok := r.passed(name)
	if !ok {
		return sum, false
	}
	rec := [2]state.SideStatus{sum.A, sum.B}
	for s := range r.stores {
		now, known := r.sts[s][name]
		if !exists[s][name] || !known || r.opt.Plan.Sides[s].Untrusted != "" || !sameStatus(rec[s], now) {
			return sum, false
		}
	}
	return sum, true
}

// skip leaves folder pair name out of the plan: it is counted for the
// guard (Options.Unlisted) and its pass counted when the run ends.
func (r *run) skip(name string, sum state.Summary) {
	r.res.Listing[name] = ListingSkipped
	r.skipped = append(r.skipped, name)
	r.opt.Plan.Unlisted++
	r.opt.Plan.UnlistedKnown += sum.Len
}

// listSideAs lists side s of folder name in full, or, when the last pass
// allows, by its changes (ch, for rebuild once both sides are known); it
// returns the status to record and whether the listing was full. A side
// whose identity is in doubt is listed in full.
func (r *run) listSideAs(s Side, name string, f *Folder, recorded map[mail.ID]bool) (l Listing, ch *changes, st state.SideStatus, full bool, err error) {
	if sum, ok := r.passed(name); ok && f.Known && r.opt.Plan.Sides[s].Untrusted == "" {
		rec := sum.A
		if s == B {
			rec = sum.B
		}
		ch, now, ok, err := r.changeSide(s, name, rec, f.Base, recorded)
		if err != nil || ok {
			return Listing{}, ch, now, false, err
		}
		if r.stores[s].Maildir != nil && isDir(r.stores[s].Maildir.Root) {
			l, err = r.listNarrow(s, name, f.Base, recorded)
			return l, nil, r.withHash(s, name, l), false, err
		}
	}
	l, err = r.listSide(s, name, recorded)
	return l, nil, r.withHash(s, name, l), true, err
}

// withHash is the status side s's folder name is to record after listing
// l: its evidence completed with the listing's hash when it waited for one.
func (r *run) withHash(s Side, name string, l Listing) state.SideStatus {
	st := r.sts[s][name]
	if _, pending := pendingHash(st.Evidence); pending {
		st.Evidence += l.evidenceHash // "" (still pending, not kept) when the listing could not hash
	}
	return st
}

// touches reports whether the changes name side s's message of record m.
func (c *changes) touches(m state.Message, s Side) bool {
	id := sideID(m, s)
	_, fresh := c.fresh[id]
	_, flags := c.flags[id]
	return fresh || flags || c.gone[id]
}

// omitQuiet leaves out of f the records whose message is quiet on both
// sides: a side listed by its changes does not name it, a side listed in
// full holds it with flags whose merge against the base changes nothing.
// Nothing can happen to such a message this run, so it is neither planned
// nor held as a listing: a rerun's memory follows what changed.
// Folder.Omitted counts them for the guard and the empty-folder check.
// The caller keeps them all where a side is in doubt or changes were
// journaled (settle reads them).
func omitQuiet(f *Folder, ch [2]*changes, keeps [2]Keeps) {
	var byID [2]map[mail.ID]*Msg
	for s := range ch {
		if ch[s] == nil {
			byID[s] = indexMsgs(f.Side[s].Msgs)
		}
	}
	// A new array, not f.Base[:0:0]: an empty slice of the old one would
	// keep all its records (and the log lines their strings point into)
	// alive: 58 MiB for 200,000 records omitted.
	var kept []state.Message
	omitted := [2]map[mail.ID]bool{{}, {}}
	memo := [2]quietMemo{{}, {}}
	for _, m := range f.Base {
		if m.Src == "" || m.Dst == "" || !m.FlagsKnown || !quietOn(m, A, ch[A], byID[A], keeps[A], memo[A]) || !quietOn(m, B, ch[B], byID[B], keeps[B], memo[B]) {
			kept = append(kept, m)
			continue
		}
		omitted[A][m.Src], omitted[B][m.Dst] = true, true
	}
	if len(kept) == len(f.Base) {
		return
	}
	f.Omitted, f.Base = len(f.Base)-len(kept), kept
	for s := range ch {
		if ch[s] == nil { // a rebuilt side is made from the kept records
			msgs := make([]Msg, 0, len(f.Side[s].Msgs)-len(omitted[s]))
			for _, m := range f.Side[s].Msgs {
				if !omitted[s][m.ID] {
					msgs = append(msgs, m)
				}
			}
			f.Side[s].Msgs = msgs
		}
	}
}

// quietOn reports whether record m's message on side s needs nothing:
// not named by the side's changes c, or (listed in full, byID) there
// with no flag added or, among those the side keeps, removed since the
// base, and no other size than the record's.
func quietOn(m state.Message, s Side, c *changes, byID map[mail.ID]*Msg, keeps Keeps, memo quietMemo) bool {
	if c != nil {
		return !c.touches(m, s)
	}
	msg := byID[sideID(m, s)]
	if msg == nil || msg.OutOfScope {
		return false
	}
	if edited, stale := fileEdited(m, s, msg); edited || stale { // an edited Maildir file is copied again
		return false
	}
	return memo.flagsQuiet(m.Flags, msg.Flags, keeps)
}

// quietMemo remembers flagsQuiet's answers for one side of a folder: a
// folder's records have few distinct base flags and its listed messages
// share a few flag slices (flagInterner), so most records ask a question
// answered already, without building two sets for each.
type quietMemo map[quietKey]bool

// quietKey is a base and a listed flag slice, known by its array and
// length: a listing's flag slices are never changed in place.
type quietKey struct {
	base string
	cur  *mail.Flag
	n    int
}

// flagsQuiet reports whether a message listed with flags cur adds no flag
// to base and removes none of those the side keeps.
func (qm quietMemo) flagsQuiet(base string, cur []mail.Flag, keeps Keeps) bool {
	k := quietKey{base: base, n: len(cur)}
	if len(cur) > 0 {
		k.cur = &cur[0]
	}
	if q, ok := qm[k]; ok {
		return q
	}
	q := flagsQuiet(parseBase(base), setOf(cur), keeps)
	qm[k] = q
	return q
}

func flagsQuiet(base, cur flagSet, keeps Keeps) bool {
	if len(cur.minus(base)) > 0 {
		return false
	}
	for fl := range base.minus(cur) {
		if keeps.Has(fl) {
			return false
		}
	}
	return true
}

// changes are what a change listing reported for one side of a folder.
type changes struct {
	fresh map[mail.ID]mail.Envelope // ChangeNew
	flags map[mail.ID][]mail.Flag   // ChangeFlags
	gone  map[mail.ID]bool          // ChangeVanished
}

func (c *changes) add(ch mail.Change) error {
	switch ch.Kind {
	case mail.ChangeNew:
		c.fresh[ch.Envelope.ID] = ch.Envelope
	case mail.ChangeFlags:
		c.flags[ch.Envelope.ID] = ch.Envelope.Flags
	case mail.ChangeVanished:
		c.gone[ch.Envelope.ID] = true
	}
	return nil
}

// changeSide lists side s of folder name by what changed since rec, the
// status its last complete pass recorded (rebuild makes the side's listing
// from the records and them). An unchanged side asks the server nothing.
// ok is false when the side must be listed in full instead.
func (r *run) changeSide(s Side, name string, rec state.SideStatus, base []state.Message, recorded map[mail.ID]bool) (ch *changes, now state.SideStatus, ok bool, err error) {
	ch = &changes{fresh: map[mail.ID]mail.Envelope{}, flags: map[mail.ID][]mail.Flag{}, gone: map[mail.ID]bool{}}
	now, known := r.sts[s][name]
	if !known || !sameStatus(rec, now) {
		cl := mail.FeaturesOf(r.stores[s].Source).ChangeLister
		if r.stores[s].Maildir != nil || cl == nil || rec.UIDValidity == 0 || rec.UIDNext == 0 || !flagsKnown(base) {
			return nil, now, false, nil
		}
		sum, err := cl.ListChanges(r.ctx, name, folderStatus(rec), knownIDs(base, s), ch.add)
		switch {
		case r.ctx.Err() != nil:
			return nil, now, false, r.ctx.Err()
		case errors.Is(err, mail.ErrMailboxNotFound): // gone: no listing (ch nil)
			return nil, state.SideStatus{}, true, nil
		case err != nil:
			r.log.Warn("sync: changes not listed: listing in full", "side", s.String(), "mailbox", name, "err", err)
			return nil, now, false, nil
		case sum.Full:
			r.log.Debug("sync: listing in full", "side", s.String(), "mailbox", name, "reason", sum.Reason)
			return nil, now, false, nil
		}
		id := now.MailboxID // a change listing's status has none
		now = sideStatus(sum.Status)
		now.MailboxID = id
	}
	if why := ch.unplaced(recorded); why != "" {
		r.log.Debug("sync: listing in full", "side", s.String(), "mailbox", name, "reason", why)
		return nil, now, false, nil
	}
	return ch, now, true, nil
}

// flagsKnown reports whether every record has base flags: an unchanged
// message's flags are read from them.
func flagsKnown(base []state.Message) bool {
	for _, m := range base {
		if !m.FlagsKnown {
			return false
		}
	}
	return true
}

// knownIDs yields side s's ids of the records.
func knownIDs(base []state.Message, s Side) iter.Seq[mail.ID] {
	return func(yield func(mail.ID) bool) {
		for _, m := range base {
			if id := sideID(m, s); id != "" && !yield(id) {
				return
			}
		}
	}
}

// unplaced says why the changes cannot be placed on the records ("" they
// can): a flag change of a message no record names (kept out before as
// \Deleted, now undeleted) needs the envelope only a full listing gives.
func (c *changes) unplaced(recorded map[mail.ID]bool) string {
	for id, fl := range c.flags {
		if !recorded[id] && !(mail.Envelope{Flags: fl}).HasFlag(mail.FlagDeleted) {
			return fmt.Sprintf("message %s, which no record names, changed", id)
		}
	}
	return ""
}

// rebuild is side s's listing of folder name from its records and the
// changes since their pass: every record's message not reported gone,
// with its changed flags or the base flags the side keeps, and the new
// messages as listed.
func (r *run) rebuild(s Side, name string, base []state.Message, recorded map[mail.ID]bool, ch *changes) Listing {
	keeps := r.keepsIn(s, name)
	l := Listing{Keeps: r.keeps[s][name], Exists: true, Msgs: make([]Msg, 0, len(base)+len(ch.fresh))}
	kept := map[string][]mail.Flag{} // one slice per distinct base, not per message
	flags := flagInterner{}
	for _, rec := range base {
		id := sideID(rec, s)
		if _, listed := ch.fresh[id]; id == "" || listed || ch.gone[id] {
			continue
		}
		fl, changed := ch.flags[id]
		if !changed {
			var ok bool
			if fl, ok = kept[rec.Flags]; !ok {
				fl = keptFlags(rec.Flags, keeps)
				kept[rec.Flags] = fl
			}
		}
		// The record's size is side A's: a Maildir's differs (line ends).
		l.Msgs = append(l.Msgs, Msg{ID: id, Flags: fl, Size: -1, Date: rec.Date, MsgID: rec.MsgID})
	}
	r.fillMessageIDs(s, name, ch.fresh, recorded)
	for id, env := range ch.fresh {
		m := toMsg(env, recorded[id])
		m.Flags = flags.intern(m.Flags)
		l.Msgs = append(l.Msgs, m)
	}
	sort.Slice(l.Msgs, func(i, j int) bool { return l.Msgs[i].ID < l.Msgs[j].ID })
	return l
}

// keptFlags are the base flags a side holds: those it can store.
func keptFlags(base string, keeps Keeps) []mail.Flag {
	var out []mail.Flag
	for _, f := range strings.Fields(base) {
		if keeps.Has(mail.Flag(f)) {
			out = append(out, mail.Flag(f))
		}
	}
	return out
}

// noteRemoved counts messages the run removed from folder on side s (a
// deletion, or a move out): their records are forgotten, so the next
// change listing, which only reports known messages as vanished, would
// otherwise find the counts disagree and list the folder in full.
func (r *run) noteRemoved(s Side, folder string, n int) {
	if r.removed[s] == nil {
		r.removed[s] = map[string]int{}
	}
	r.removed[s][folder] += n
}

// recordPasses ends the run's passes: every skipped folder pair is
// counted, and every listed pair whose changes were all applied gets its
// pass (the statuses read before listing). After a failure no pass is
// recorded: the next run lists the changes again from the previous passes
// (a move half done must be seen from both of its folders).
func (r *run) recordPasses(plan *Plan) error {
	if r.opt.DryRun {
		return nil
	}
	if len(r.skipped) > 0 {
		r.settleEvidence(r.skipped)
		if err := r.st.SkipPasses(r.skipped); err != nil {
			return err
		}
	}
	if r.res.Side[A].Failed+r.res.Side[B].Failed > 0 {
		return nil
	}
	var passing []*FolderPlan
	for i := range plan.Folders {
		fp := &plan.Folders[i]
		p := r.passes[fp.Name]
		if _, known := r.st.Summary(fp.Name); !known || p == nil || p.noPass != "" || fp.Skip != "" || fp.Forget ||
			fp.Removes() || len(fp.Held) > 0 {
			continue // renamed away, removed, or not done: listed again next run
		}
		passing = append(passing, fp)
	}
	// The Maildir sides' proofs read directories while the server sides'
	// wait on their answers: neither needs the other's.
	var evidence [2]map[string]string
	wait := inBackground(func() { evidence = r.maildirEvidenceAfter(passing) })
	proved := r.proveOwnWrites(passing)
	wait()
	var passes []state.Pass
	for _, fp := range passing {
		p := r.passes[fp.Name]
		st := p.status
		for s := range st {
			if now, ok := proved[s][fp.Name]; ok {
				st[s] = now // after the run's own writes, which it holds
				continue
			}
			if ev, ok := evidence[s][fp.Name]; ok {
				st[s].Evidence = ev
			}
			st[s].Messages -= min(st[s].Messages, uint32(r.removed[s][fp.Name]))
			if _, pending := pendingHash(st[s].Evidence); pending {
				st[s].Evidence = "" // racy, and no listing hashed it: listed next run
			}
		}
		passes = append(passes, state.Pass{Name: fp.Name, A: st[A], B: st[B], Full: p.full})
	}
	// One write of the summary for every folder's pass (applyfs: not one
	// per folder).
	if err := r.st.CompletePasses(passes); err != nil {
		return err
	}
	for _, p := range passes {
		if err := r.st.Release(p.Name); err != nil {
			return err
		}
	}
	return nil
}

// maildirEvidenceAfter is, per Maildir side, the evidence each folder of
// passing records with its pass (evidenceAfter): proved right after the
// folder's apply (proveEarly), else now.
func (r *run) maildirEvidenceAfter(passing []*FolderPlan) [2]map[string]string {
	early := r.earlyProofs()
	var out [2]map[string]string
	for s, st := range r.stores {
		if st.Maildir == nil {
			continue
		}
		out[s] = make(map[string]string, len(passing))
		for _, fp := range passing {
			if ev, ok := early[s][fp.Name]; ok {
				out[s][fp.Name] = ev
				continue
			}
			out[s][fp.Name] = r.evidenceAfter(Side(s), fp.Name, r.passes[fp.Name].status[s].Evidence)
		}
	}
	return out
}

// proveOwnWrites asks each server side (mail.WriteProver) for the status
// now of the folders about to get their pass, where every change since
// the status their listing recorded is one of the run's own writes: that
// status is recorded instead, so the next run does not list a folder only
// to find the run's own changes there. A folder not proved keeps the
// listing's status (the next run lists its changes, as before); a side
// that cannot tell proves nothing.
func (r *run) proveOwnWrites(passing []*FolderPlan) [2]map[string]state.SideStatus {
	var out [2]map[string]state.SideStatus
	for s, st := range r.stores {
		wp := mail.FeaturesOf(st.Source).WriteProver
		if wp == nil || st.Maildir != nil {
			continue
		}
		out[s] = map[string]state.SideStatus{}
		since := map[string]mail.FolderStatus{}
		for _, fp := range passing {
			if now, ok := r.own.early[s][fp.Name]; ok {
				out[s][fp.Name] = now // proved right after its writes (ownproof.go)
				continue
			}
			if rec := r.passes[fp.Name].status[s]; rec.HighestModSeq > 0 && rec.UIDValidity > 0 {
				since[fp.Name] = folderStatus(rec)
			}
		}
		if len(since) == 0 {
			continue
		}
		got, err := wp.ProveOwnWrites(r.ctx, since)
		if err != nil {
			r.log.Debug("sync: own writes not proved: those folders are listed next run", "side", Side(s).String(), "err", err)
			continue
		}
		for name, fs := range got {
			out[s][name] = provedStatus(r.passes[name].status[s], fs)
		}
	}
	return out
}
