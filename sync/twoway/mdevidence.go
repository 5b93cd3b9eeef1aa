package twoway

import (
	"fmt"
	"strings"
	"time"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// evidenceAfter is the evidence side s's Maildir folder name records at
// the end of its pass, before being the evidence read before listing: the
// folder's stamps as they are now, after the run's own writes (a copy
// into it, a flag's rename, a move, a deletion into the quarantine), when
// one readdir of its names, taken after the stamps, proves that it holds
// exactly what the state's records say, each file under its record's id
// with the flags its record has (as the folder keeps them). Else, or when
// the stamps did not move, before: the next run compares with that.
//
// Without it the first run after a sync that wrote to a folder listed it
// again, its stamps moved by our own writes. A change another client made
// after the listing, before the readdir, leaves a name the records do not
// have, or lack one they have: the proof fails, and the next run lists the
// folder. One made after the readdir moves the stamps, or, in the same
// clock tick, the names (the stamps are racy then: kept with the names'
// hash, as maildirEvidence keeps them), and is listed too. An edit in place
// moves neither, as for any folder whose stamps did not move: statDoomed
// and the full listings find it.
func (r *run) evidenceAfter(s Side, name, before string) string {
	md := r.stores[s].Maildir
	if md == nil || before == "" || r.ctx.Err() != nil {
		return before
	}
	dir, err := maildirfmt.FolderDir(md.Root, name)
	if err != nil {
		return before
	}
	now := time.Now()
	ev, racy, err := dirStamps(dir, now)
	if err != nil {
		return before
	}
	if stamps, _, _ := strings.Cut(before, "#"); stamps == ev {
		if settled := r.settled[s][name]; settled == ev {
			return settled // no longer racy (maildirEvidence)
		}
		return before // nothing renamed in or out since the listing
	}
	names, ok := r.holdsRecords(s, name, dir)
	if !ok {
		return before
	}
	if !racy {
		return ev
	}
	kw, err := readKeywordBytes(dir)
	if err != nil {
		return before
	}
	return fmt.Sprintf("%s#%d#%s", ev, now.UnixNano(), hashNames(names, kw))
}

// holdsRecords reads the names of side s's Maildir folder name (at dir)
// and reports whether they are exactly the state's records of the folder:
// one file per record's side-s id, with the record's flags as the side
// keeps them, and no other. It returns the names read.
func (r *run) holdsRecords(s Side, name, dir string) ([]string, bool) {
	recorded, err := r.proofRecords(s, name)
	if err != nil {
		return nil, false
	}
	keeps := r.keepsIn(s, name)
	// A folder's messages have few distinct flag sets: each is made
	// canonical once, not per message.
	byBase, byInfo := map[string]string{}, map[string]string{}
	want := recorded // the proof's own: made canonical in place
	for id, flags := range want {
		c, ok := byBase[flags]
		if !ok {
			c = setOf(keptFlags(flags, keeps)).String()
			byBase[flags] = c
		}
		want[id] = c
	}
	kw := maildirfmt.ReadKeywords(dir)
	var names []string
	same := true
	err = maildirfmt.RegularNames(r.ctx, dir, func(_, n string) {
		names = append(names, n)
		id := maildirfmt.IDOf(n)
		info := n[len(id):]
		c, ok := byInfo[info]
		if !ok {
			c = setOf(maildirfmt.FlagsOf(n, kw)).String()
			byInfo[info] = c
		}
		if flags, known := want[id]; !known || flags != c {
			same = false // another file, another flag, or a second file of one id
		}
		delete(want, id)
	})
	return names, err == nil && same && len(want) == 0
}

// settleEvidence keeps, for the skipped folders names, the stamps alone of
// Maildir evidence that no longer needs its names' hash (maildirEvidence's
// settled), so the runs after this one read no names there. Nothing of it
// is a pass; state.SetEvidence keeps it beside the pass counts.
func (r *run) settleEvidence(names []string) {
	for s := range r.settled {
		for _, n := range names {
			if ev := r.settled[s][n]; ev != "" {
				r.st.SetEvidence(n, s, ev)
			}
		}
	}
}

// keepProofRecords keeps, for each Maildir side of folder pair fp that may
// get a pass with evidence, its records' side ids and base flags, taken as
// the folder's apply ends and before its records are released: the proof
// at the end of the run (holdsRecords) then does not read the folder's
// records from the state again. Only the ids and flags are kept, one copy
// per distinct flag set, not the records.
func (r *run) keepProofRecords(fp *FolderPlan) error {
	p := r.passes[fp.Name]
	if p == nil || p.noPass != "" || fp.Skip != "" || fp.Forget || fp.Removes() || len(fp.Held) > 0 {
		return nil // no pass: no proof (recordPasses)
	}
	for s, st := range r.stores {
		if st.Maildir == nil || p.status[s].Evidence == "" {
			continue
		}
		fo, err := r.st.Folder(fp.Name) // loaded: the apply's records
		if err != nil {
			return err
		}
		flags, kept := map[string]string{}, map[mail.ID]string{}
		fo.Each(func(m state.Message) {
			if id := sideID(m, Side(s)); id != "" {
				f, ok := flags[m.Flags]
				if !ok {
					f = strings.Clone(m.Flags)
					flags[f] = f
				}
				kept[id] = f
			}
		})
		if r.proofs[s] == nil {
			r.proofs[s] = map[string]map[mail.ID]string{}
		}
		r.proofs[s][fp.Name] = kept
	}
	return nil
}

// dropProofRecords forgets what keepProofRecords kept of folder name, whose
// records change after its apply (a move out of it, applied in another
// folder's).
func (r *run) dropProofRecords(name string) {
	for s := range r.proofs {
		delete(r.proofs[s], name)
	}
}

// proofRecords is, for the proof, side s's ids of folder name's records
// with their base flags: those keepProofRecords kept (used once, then
// dropped), else read from the state.
func (r *run) proofRecords(s Side, name string) (map[mail.ID]string, error) {
	if kept, ok := r.proofs[s][name]; ok {
		delete(r.proofs[s], name)
		return kept, nil
	}
	fo, err := r.st.Folder(name)
	if err != nil {
		return nil, err
	}
	out := map[mail.ID]string{}
	fo.Each(func(m state.Message) {
		if id := sideID(m, s); id != "" {
			out[id] = m.Flags
		}
	})
	return out, nil
}
