package twoway

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// A Maildir folder that changed since its last complete pass is listed by
// names (listNarrow): one readdir of new/ and cur/ gives every file's id
// and flags, and only the files a judgement needs are stat'ed:
//
//   - a name no record has: its size and date are pairing and copying's;
//   - a record without this side's evidence, or whose evidence kept a
//     content hash (it was stamped within the racy window): the edit check
//     compares, or stamps, them;
//   - after both sides are listed, a record whose message is gone from the
//     other side (statDoomed): about to be deleted here, or moved, so the
//     edit check of rule 4 must run first: a file edited in place is copied
//     again, never deleted. A folder rebuilt from the records (its stamps
//     did not move) gets the same check.
//
// Any other file's record stands for it as in a rebuilt listing (its size
// unknown, its date the record's): an edit in place of a file nobody
// deletes is found by the next full listing (every RunOptions.FullEvery-th
// pass, a first sync, a lost state), which stats every file.

// listNarrow lists side s's Maildir folder name by names (above); base are
// the folder's records, recorded their ids on side s. The names come
// sorted by id, once each (Tree.ListNames): each becomes its message in
// turn, and only the new ones are held aside, for their Message-IDs.
func (r *run) listNarrow(s Side, name string, base []state.Message, recorded map[mail.ID]bool) (Listing, error) {
	need, dates := statNeeded(base, s), recordDates(base, s)
	sc := r.takeScan(s, name)
	kw, hashing, herr := sc.kw, sc.hashing, sc.herr
	tree := r.stores[s].Maildir.files()
	now := time.Now()
	l := Listing{Exists: true, byNames: true, Msgs: make([]Msg, 0, len(dates))}
	fresh := map[mail.ID]mail.Envelope{} // no record names them: pairing reads their Message-IDs
	var racy []mail.ID                   // of them, those written in the last seconds
	flags := flagInterner{}
	var names []string
	var ids []mail.ID
	err := sc.names.Each(r.ctx, func(env mail.Envelope, rel string) error {
		ids = append(ids, env.ID)
		if hashing {
			names = append(names, filepath.Base(rel))
		}
		if recorded[env.ID] && !need[env.ID] {
			// Its record stands for it (its flags are shared per name's
			// info by ListNames, as the interner would share them).
			m := toMsg(env, true)
			m.Date = dates[env.ID] // as a listing rebuilt from the records has it
			l.Msgs = append(l.Msgs, m)
			return nil
		}
		fi, at, err := tree.Lstat(r.ctx, name, env.ID, rel)
		if errors.Is(err, mail.ErrNotFound) {
			return nil // gone since the directory was read, as ListFiles skips it
		}
		if err != nil {
			return err
		}
		if at != rel { // renamed meanwhile: its flags are the new name's
			env.Flags = tree.FlagsAt(name, at)
		}
		env.Size, env.Date = fi.Size(), fi.ModTime().Truncate(time.Second)
		st := stampFile(fi, now)
		if !recorded[env.ID] {
			fresh[env.ID] = env
			if st.racy {
				racy = append(racy, env.ID)
			}
		}
		m := toMsg(env, recorded[env.ID])
		m.Flags, m.Stamp, m.Racy = flags.intern(m.Flags), st.stamp, st.racy
		l.Msgs = append(l.Msgs, m)
		return nil
	})
	if ok, err := r.listingEnded(s, name, &l, err); !ok {
		return l, err
	}
	if err == nil {
		r.prepareSink(s, name, ids)
		if hashing && herr == nil {
			l.evidenceHash = hashNames(names, kw)
		}
	}
	if len(fresh) > 0 {
		contents := r.readRacyNew(s, name, fresh, racy)
		r.fillMessageIDs(s, name, fresh, recorded)
		for i := range l.Msgs {
			if env, ok := fresh[l.Msgs[i].ID]; ok {
				l.Msgs[i].MsgID = checkpoint.MsgIDSum(env.MessageID)
				l.Msgs[i].Content = contents[l.Msgs[i].ID]
			}
		}
	}
	return l, nil
}

// readRacyNew reads each new file of ids (racy: its stamp cannot be
// trusted, so fillEvidence would read it whole for its content hash) once
// for both its Message-ID, which pairing needs (fillMessageIDs then
// skips it), and its content hash, returned by id: not once for each.
func (r *run) readRacyNew(s Side, name string, fresh map[mail.ID]mail.Envelope, ids []mail.ID) map[mail.ID]string {
	src := r.stores[s].Source
	if len(ids) == 0 || mail.FeaturesOf(src).HeaderFetcher != nil {
		return nil
	}
	out := make(map[mail.ID]string, len(ids))
	for _, id := range ids {
		env := fresh[id]
		if env.MessageID != "" {
			continue
		}
		env.MessageID, out[id] = readMessageIDAndContent(r.ctx, src, env)
		fresh[id] = env
	}
	return out
}

// A folder listed by names has its directories read while its records
// load (startScans, on a goroutine per Maildir side): neither needs the
// other, and the records of a 5,000-message folder take as long to read as
// its names. The names are read after the folder's stamps (askStatuses),
// as the listing reads them; the dovecot-keywords bytes its hash takes
// before them (hashStart), as listFiles does.

// nameScan is side s's read of a folder's names (and, when its evidence
// waits for a hash, of its dovecot-keywords bytes first).
type nameScan struct {
	name    string
	done    chan struct{} // closed once read
	kw      []byte
	hashing bool
	herr    error
	names   *maildirfmt.Names
}

func (r *run) readScan(s Side, sc *nameScan) {
	sc.kw, sc.hashing, sc.herr = r.hashStart(s, sc.name)
	sc.names = r.stores[s].Maildir.files().ScanNames(r.ctx, sc.name)
}

// startScans starts reading, for each Maildir side of folder pair name
// that listSideAs will list by names (its last pass counts, and its
// stamps moved), the folder's names.
func (r *run) startScans(name string, exists [2]map[string]bool) {
	sum, ok := r.passed(name)
	for s, st := range r.stores {
		r.scans[s] = nil
		if !ok || st.Maildir == nil || !exists[s][name] || r.opt.Plan.Sides[s].Untrusted != "" {
			continue
		}
		rec := sum.A
		if s == int(B) {
			rec = sum.B
		}
		if now, known := r.sts[s][name]; known && sameStatus(rec, now) {
			continue // rebuilt from its records: no names read
		}
		sc := &nameScan{name: name, done: make(chan struct{})}
		go func() {
			defer close(sc.done)
			r.readScan(Side(s), sc)
		}()
		r.scans[s] = sc
	}
}

// takeScan returns side s's read of folder name's names: the one
// startScans started, once done, else one read now.
func (r *run) takeScan(s Side, name string) *nameScan {
	if sc := r.scans[s]; sc != nil && sc.name == name {
		<-sc.done
		return sc
	}
	sc := &nameScan{name: name}
	r.readScan(s, sc)
	return sc
}

// endScans waits for the reads startScans began (one listSideAs did not
// use, a listing that stopped) and forgets them.
func (r *run) endScans() {
	for s, sc := range r.scans {
		if sc != nil {
			<-sc.done
			r.scans[s] = nil
		}
	}
}

// statNeeded are side s's ids of the records whose file a listing by names
// stats anyway: no evidence on side s yet (it is stamped now, not after
// the run's own changes), or evidence with a content hash (a racy stamp:
// compared by content while the stamp alone cannot tell).
func statNeeded(base []state.Message, s Side) map[mail.ID]bool {
	need := map[mail.ID]bool{}
	for _, m := range base {
		id := sideID(m, s)
		if id == "" {
			continue
		}
		if ev, ok := evidenceOf(m.Evidence, s); !ok || ev.content != "" {
			need[id] = true
		}
	}
	return need
}

// recordDates maps side s's ids of the records to their dates.
func recordDates(base []state.Message, s Side) map[mail.ID]int64 {
	out := make(map[mail.ID]int64, len(base))
	for _, m := range base {
		if id := sideID(m, s); id != "" {
			out[id] = m.Date
		}
	}
	return out
}

// statDoomed stats, on each Maildir side of folder f, the files no listing
// stat'ed (a listing by names, or one rebuilt from the records) whose
// record's message is gone from the other side: the planner is about to
// delete them, or move them, and rule 4 needs their evidence first (an
// edited file is copied again, never deleted). Where the other side has
// no listing of the folder at all, every such file is stat'ed. A file gone
// meanwhile leaves the listing: gone from both sides, its record is
// forgotten.
func (r *run) statDoomed(f *Folder) error {
	for s := range f.Side {
		if r.stores[s].Maildir == nil || !f.Side[s].Exists {
			continue
		}
		o := 1 - s
		var there map[mail.ID]*Msg
		if f.Side[o].Exists {
			there = indexMsgs(f.Side[o].Msgs)
		}
		recs := make(map[mail.ID]state.Message, len(f.Base))
		for _, m := range f.Base {
			if id := sideID(m, Side(s)); id != "" {
				recs[id] = m
			}
		}
		msgs := f.Side[s].Msgs[:0:0]
		for _, m := range f.Side[s].Msgs {
			rec, known := recs[m.ID]
			oid := sideID(rec, Side(o))
			if m.Stamp != 0 || !known || (there != nil && oid != "" && there[oid] != nil) {
				msgs = append(msgs, m)
				continue
			}
			still, err := r.stampDoomed(Side(s), f.Name, rec, &m)
			if err != nil {
				return err
			}
			if still {
				msgs = append(msgs, m)
			}
		}
		f.Side[s].Msgs = msgs
	}
	return nil
}

// stampDoomed fills in m, side s's message of record rec in folder, from
// its file: its stamp, its size and, when the stamp is racy or the record
// kept a content hash, its content. The file is looked for under the name
// m's listed flags give (a listing by names keeps no paths: for a 200,000-
// message account they held 37 MiB, for the few files stat'ed here), else
// found by a scan. It returns false when the file is gone. A file that
// cannot be stat'ed stops the folder: without its evidence it could be
// deleted edited.
func (r *run) stampDoomed(s Side, folder string, rec state.Message, m *Msg) (bool, error) {
	md := r.stores[s].Maildir
	fi, err := md.stat(r.ctx, folder, m.ID, setOf(m.Flags).String())
	if errors.Is(err, mail.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("side %s: %w", s, err)
	}
	st := stampFile(fi, time.Now())
	m.Stamp, m.Racy, m.Size = st.stamp, st.racy, fi.Size()
	if ev, ok := evidenceOf(rec.Evidence, s); m.Racy || ok && ev.content != "" {
		env := mail.Envelope{Mailbox: folder, ID: m.ID, Flags: m.Flags, Size: m.Size}
		m.Content = contentHash(r.ctx, r.stores[s].Source, env)
	}
	return true, nil
}

// prepareSink hands side s's sink the ids of every message its folder name
// held when a complete listing read it (mail.PutPreparerFrom), so that
// the run's copies into the folder do not read its names again to look
// for a stored copy of each (the Maildir sink's delivery keys).
func (r *run) prepareSink(s Side, name string, ids []mail.ID) {
	if pp := mail.FeaturesOf(r.stores[s].Sink).PutPreparerFrom; pp != nil {
		pp.PreparePutsFrom(name, ids)
	}
}
