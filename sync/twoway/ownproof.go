package twoway

import (
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// Own writes proved folder by folder (mail.FolderWriteProver): right
// after a folder's changes an IMAP side proves its own writes there on
// the session that made them, with the folder still open, and opens the
// next folder it writes to in the same round trip. The end-of-run proof
// (proveOwnWrites) is left with the folders not proved so: it opens each
// again, which costs Dovecot a rescan of a Maildir folder changed in the
// last seconds, and a round trip.

// ownProofs is the run's state of the folder-by-folder proofs.
type ownProofs struct {
	// early: side -> folder -> the status proved right after its writes.
	early [2]map[string]state.SideStatus
	// next: side -> the folder the apply writes to next on that side
	// ("" none or unknown), set before each folder's apply.
	next [2]string
	// after: side -> plan index -> the next folder after it with writes
	// on that side (nextWrites); first: the first one.
	after [2][]string
	first [2]string
}

// nextWrites notes, for each folder of plan and each side, the next
// folder of the plan with changes made on that side's session.
func (r *run) nextWrites(plan *Plan) {
	for s := range r.own.after {
		after := make([]string, len(plan.Folders))
		next := ""
		for i := len(plan.Folders) - 1; i >= 0; i-- {
			after[i] = next
			if writesOn(&plan.Folders[i], Side(s)) {
				next = plan.Folders[i].Name
			}
		}
		r.own.after[s], r.own.first[s] = after, next
	}
}

// startOpenFirst opens, on each IMAP side, the first folder the apply
// writes to there (mail.FolderWriteProver with nothing to prove), on a
// goroutine of its own while the journal is written, which touches no
// IMAP side: the listing left its last folder open, often not that one.
// It returns the wait for it; nothing else may use the IMAP sides before.
func (r *run) startOpenFirst() (wait func()) {
	return inBackground(func() {
		_ = r.bothSides(func(s Side) error {
			st := r.stores[s]
			fw := mail.FeaturesOf(st.Source).FolderWriteProver
			if fw == nil || st.Maildir != nil || r.own.first[s] == "" {
				return nil
			}
			if _, _, err := fw.ProveFolderWrites(r.ctx, "", mail.FolderStatus{}, r.own.first[s]); err != nil {
				r.log.Debug("sync: first folder not opened ahead", "side", s.String(), "mailbox", r.own.first[s], "err", err)
			}
			return nil
		})
	})
}

// setNext notes the folders written after plan index i (nextWrites).
func (r *run) setNext(i int) {
	for s := range r.own.next {
		r.own.next[s] = ""
		if i >= 0 && i < len(r.own.after[s]) {
			r.own.next[s] = r.own.after[s][i]
		}
	}
}

// writesOn reports whether fp's apply reads or writes on side s's session:
// bodies copied from or to it, flag writes, deletions (a move there runs
// on a connection of its own).
func writesOn(fp *FolderPlan, s Side) bool {
	if fp.Forget || fp.Skip != "" {
		return false
	}
	if len(fp.Copies) > 0 {
		return true
	}
	for i := range fp.Flags {
		if fp.Flags[i].Changes(s) {
			return true
		}
	}
	for _, d := range fp.Deletes {
		if d.On == s {
			return true
		}
	}
	return false
}

// startProveFolder runs proveFolder(fp) on a goroutine of its own and
// returns the wait for it: the proof's round trip (and the next folder's
// SELECT) overlaps the state's flush of the folder, which touches no IMAP
// side, instead of adding to it. Nothing else may use the IMAP sides
// until the wait returned.
func (r *run) startProveFolder(fp *FolderPlan) (wait func()) {
	return inBackground(func() { r.proveFolder(fp) })
}

// inBackground runs fn on a goroutine of its own and returns the wait
// for it.
func inBackground(fn func()) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	return func() { <-done }
}

// proveFolder asks each IMAP side, right after fp's changes, for the
// status after its own writes there (mail.FolderWriteProver), and opens
// the next folder it writes to. A side that cannot tell there and then
// is asked at the end of the run (proveOwnWrites); an error only means
// nothing is proved now.
func (r *run) proveFolder(fp *FolderPlan) {
	p := r.passes[fp.Name]
	var got [2]*state.SideStatus
	// Both sides at once (IMAP <-> IMAP): each its own session and server.
	_ = r.bothSides(func(s Side) error {
		st := r.stores[s]
		fw := mail.FeaturesOf(st.Source).FolderWriteProver
		if fw == nil || st.Maildir != nil {
			return nil
		}
		var since mail.FolderStatus
		if p != nil && p.noPass == "" && p.status[s].HighestModSeq > 0 && p.status[s].UIDValidity > 0 {
			since = folderStatus(p.status[s])
		}
		now, ok, err := fw.ProveFolderWrites(r.ctx, fp.Name, since, r.own.next[s])
		if err != nil {
			r.log.Debug("sync: own writes not proved after the folder's writes", "side", s.String(), "mailbox", fp.Name, "err", err)
			return nil
		}
		if ok && since.HighestModSeq > 0 {
			st := provedStatus(p.status[s], now)
			got[s] = &st
		}
		return nil
	})
	for s, st := range got {
		if st == nil {
			continue
		}
		if r.own.early[s] == nil {
			r.own.early[s] = map[string]state.SideStatus{}
		}
		r.own.early[s][fp.Name] = *st
	}
}

// dropEarlyProof forgets side s's proof of folder: the run wrote there
// after it (a move out), and the end of the run proves it again.
func (r *run) dropEarlyProof(s Side, folder string) {
	delete(r.own.early[s], folder)
}

// provedStatus is the listing's status rec with what a proof found now.
// It keeps what the listing learnt (MAILBOXID, Keeps).
func provedStatus(rec state.SideStatus, fs mail.FolderStatus) state.SideStatus {
	rec.UIDValidity, rec.UIDNext, rec.Messages, rec.HighestModSeq = fs.UIDValidity, fs.UIDNext, fs.Messages, fs.HighestModSeq
	return rec
}
