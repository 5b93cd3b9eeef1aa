package twoway

import (
	"fmt"
	"strings"
	gosync "sync"
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
	return r.evidenceAfterOf(s, name, before, r.keepsIn(s, name), func() (map[mail.ID]string, error) {
		return r.proofRecords(s, name)
	})
}

// evidenceAfterOf is evidenceAfter with the flags the side keeps in the
// folder and its records (read only when the stamps moved) given: an early
// proof (proveEarly) runs beside the apply, which changes what the run
// holds, and reads nothing of it.
func (r *run) evidenceAfterOf(s Side, name, before string, keeps Keeps, records func() (map[mail.ID]string, error)) string {
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
	recorded, err := records()
	if err != nil {
		return before
	}
	names, ok := r.holdsRecords(dir, recorded, keeps)
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

// holdsRecords reads the names of a Maildir folder (at dir) and reports
// whether they are exactly its records, recorded (the side's ids and base
// flags, made canonical here in place): one file per id, with the
// record's flags as the side keeps them (keeps), and no other. It returns
// the names read.
func (r *run) holdsRecords(dir string, recorded map[mail.ID]string, keeps Keeps) ([]string, bool) {
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
	err := maildirfmt.RegularNames(r.ctx, dir, func(_, n string) {
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

// A Maildir folder's proof (evidenceAfter) runs as soon as the folder's
// apply ended (proveEarly), on a goroutine of its own, one folder after the
// other, while the apply goes on with the next folders (their IMAP round
// trips, their fsyncs): the end of the run then waits for what is left of
// them instead of reading every written folder's names in turn. The run
// writes to a folder after its apply only to move a message out of it
// (applied in the destination's apply): that drops the folder's early
// proof (dropEarlyMaildirProof), and the end of the run proves it again,
// from the state's records. A change of another client after an early
// proof moves the folder's stamps, as after one at the end of the run.

// mdEarly is the run's early Maildir proofs.
type mdEarly struct {
	jobs    chan func() // to the goroutine that proves them in turn
	pending gosync.WaitGroup
	mu      gosync.Mutex
	got     [2]map[string]string // side -> folder -> evidence proved early
	dropped map[string]bool      // folders written after their apply
}

// proveEarly proves, for each Maildir side of folder pair fp that may get
// a pass with evidence, that the folder holds its records (evidenceAfter),
// beside the apply: the records' side ids and base flags are taken now, as
// the folder's apply ends and before its records are released, one copy
// per distinct flag set, not the records.
func (r *run) proveEarly(fp *FolderPlan) error {
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
		r.startEarlyProof(Side(s), fp.Name, p.status[s].Evidence, kept)
	}
	return nil
}

// startEarlyProof hands side s's proof of folder name to the early
// proofs' goroutine (started with the first), with everything it reads
// of the run: the evidence before, the flags kept there, the records.
func (r *run) startEarlyProof(s Side, name, before string, recorded map[mail.ID]string) {
	e := &r.early
	if e.jobs == nil {
		e.jobs = make(chan func(), 16)
		go func() {
			for job := range e.jobs {
				job()
			}
		}()
	}
	keeps := r.keepsIn(s, name)
	e.pending.Add(1)
	e.jobs <- func() {
		defer e.pending.Done()
		ev := r.evidenceAfterOf(s, name, before, keeps, func() (map[mail.ID]string, error) { return recorded, nil })
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.dropped[name] {
			return
		}
		if e.got[s] == nil {
			e.got[s] = map[string]string{}
		}
		e.got[s][name] = ev
	}
}

// dropEarlyMaildirProof forgets the early proofs of folder name, whose
// records and files change after its apply (a move out of it, applied in
// another folder's): the end of the run proves it again.
func (r *run) dropEarlyMaildirProof(name string) {
	e := &r.early
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dropped == nil {
		e.dropped = map[string]bool{}
	}
	e.dropped[name] = true
	for s := range e.got {
		delete(e.got[s], name)
	}
}

// earlyProofs waits for the early proofs started so far and returns them:
// side -> folder -> evidence.
func (r *run) earlyProofs() [2]map[string]string {
	r.early.pending.Wait()
	r.early.mu.Lock()
	defer r.early.mu.Unlock()
	return r.early.got
}

// stopEarlyProofs ends the early proofs' goroutine once its proofs are
// done, when the run returns.
func (r *run) stopEarlyProofs() {
	if r.early.jobs != nil {
		r.early.pending.Wait()
		close(r.early.jobs)
	}
}

// proofRecords is, for a proof at the end of the run, side s's ids of
// folder name's records with their base flags, read from the state.
func (r *run) proofRecords(s Side, name string) (map[mail.ID]string, error) {
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
