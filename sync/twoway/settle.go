package twoway

import (
	"fmt"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// settle finishes or records, before anything is planned, each change an
// interrupted run journaled (rule 1), from what the listings show now:
//
//   - a copy whose message is on the other side without a record gets its
//     record (it was stored, the kill came before the record): it is never
//     copied twice, and a deletion of the original since reaches the copy
//     instead of the copy coming back;
//   - a move found done on its side has its record moved, and an original
//     still there beside it (a copy within the store, killed before the
//     expunge) is removed: a move never ends both copied and left;
//   - a deletion is completed (the guard let it pass, or --force did), and
//     its record forgotten: what was deleted is never copied back;
//   - a flag write needs nothing: the three-way merge of the next plan
//     reaches the same result from a half-written one.
//
// A change not found done is left to the plan, which makes it again.
func (r *run) settle(folders []Folder, pending []intent) error {
	if len(pending) == 0 {
		return nil
	}
	s := &settler{r: r, folders: map[string]*settleFolder{}}
	for i := range folders {
		s.folders[folders[i].Name] = newSettleFolder(&folders[i])
	}
	for _, in := range pending {
		var err error
		switch in.Op {
		case opCopy:
			err = s.copy(in)
		case opMove:
			err = s.move(in)
		case opDelete:
			err = s.delete(in)
		}
		if err != nil {
			return err
		}
	}
	for _, sf := range s.folders {
		sf.compact()
	}
	if s.n > 0 {
		r.log.Info("sync: settled the changes an interrupted run journaled", "count", s.n)
	}
	if err := r.step("settle: flush"); err != nil {
		return err
	}
	if err := r.st.Flush(); err != nil {
		return err
	}
	return r.jr.clear()
}

type settler struct {
	r       *run
	folders map[string]*settleFolder
	n       int // changes found done or completed
}

// settleFolder indexes one listed folder for settling: records by each
// side's id, messages by id, and the unrecorded messages by key.
type settleFolder struct {
	f      *Folder
	rec    [2]map[mail.ID]int // side id -> index in f.Base
	msgs   [2]map[mail.ID]int // id -> index in f.Side[s].Msgs
	gone   map[int]bool       // records forgotten (indexes in f.Base)
	goneID [2]map[mail.ID]bool
}

func newSettleFolder(f *Folder) *settleFolder {
	sf := &settleFolder{f: f, gone: map[int]bool{}}
	for s := range sf.rec {
		sf.rec[s], sf.msgs[s], sf.goneID[s] = map[mail.ID]int{}, map[mail.ID]int{}, map[mail.ID]bool{}
		for i, m := range f.Side[s].Msgs {
			sf.msgs[s][m.ID] = i
		}
	}
	for i, m := range f.Base {
		sf.index(i, m)
	}
	return sf
}

func (sf *settleFolder) index(i int, m state.Message) {
	sf.rec[A][m.Src] = i
	if m.Dst != "" {
		sf.rec[B][m.Dst] = i
	}
}

// recorded reports whether side s's message id has a live record.
func (sf *settleFolder) recorded(s Side, id mail.ID) bool {
	i, ok := sf.rec[s][id]
	return ok && !sf.gone[i]
}

// present returns side s's listed message id (nil: not listed, or
// removed by settling).
func (sf *settleFolder) present(s Side, id mail.ID) *Msg {
	i, ok := sf.msgs[s][id]
	if !ok || sf.goneID[s][id] {
		return nil
	}
	return &sf.f.Side[s].Msgs[i]
}

// find returns an unrecorded message of side s that is rec's message: the
// same id where ids survive moves, else the same (Message-ID, size, date),
// else the only one with its Message-ID (a server that changed the message
// on APPEND, bare LF to CRLF, changed its size).
func (sf *settleFolder) find(s Side, id mail.ID, stable bool, rec state.Message) *Msg {
	if stable {
		if m := sf.present(s, id); m != nil && !sf.recorded(s, id) {
			return m
		}
	}
	if rec.MsgID == "" {
		return nil
	}
	k := msgKey(rec.MsgID, rec.Size, rec.Date)
	var same []*Msg
	for i := range sf.f.Side[s].Msgs {
		m := &sf.f.Side[s].Msgs[i]
		if m.MsgID != rec.MsgID || sf.recorded(s, m.ID) || sf.goneID[s][m.ID] {
			continue
		}
		if m.key() == k {
			return m
		}
		same = append(same, m)
	}
	if len(same) == 1 {
		return same[0]
	}
	return nil
}

// put records m in the folder, for the state and for the planner.
func (sf *settleFolder) put(fo *state.Folder, m state.Message) error {
	if err := fo.Put(m); err != nil {
		return err
	}
	if i, ok := sf.rec[A][m.Src]; ok && !sf.gone[i] {
		sf.f.Base[i] = m
		sf.index(i, m)
		return nil
	}
	sf.f.Base = append(sf.f.Base, m)
	sf.index(len(sf.f.Base)-1, m)
	return nil
}

// forget drops the record whose side-A id is src.
func (sf *settleFolder) forget(fo *state.Folder, src mail.ID) error {
	i, ok := sf.rec[A][src]
	if !ok || sf.gone[i] {
		return nil
	}
	sf.gone[i] = true
	return fo.Forget(src)
}

// compact drops forgotten records and removed messages from the planner's
// input.
func (sf *settleFolder) compact() {
	if len(sf.gone) > 0 {
		base := sf.f.Base[:0]
		for i, m := range sf.f.Base {
			if !sf.gone[i] {
				base = append(base, m)
			}
		}
		sf.f.Base = base
	}
	for s := range sf.goneID {
		if len(sf.goneID[s]) == 0 {
			continue
		}
		l := &sf.f.Side[s]
		msgs := l.Msgs[:0]
		for _, m := range l.Msgs {
			if !sf.goneID[s][m.ID] {
				msgs = append(msgs, m)
			}
		}
		l.Msgs = msgs
	}
}

// copy records a copy found stored on side in.On.
func (s *settler) copy(in intent) error {
	sf := s.folders[in.Folder]
	if sf == nil || sf.recorded(in.On.Other(), in.ID) && sideID(sf.f.Base[sf.rec[in.On.Other()][in.ID]], in.On) != "" {
		return nil // out of scope now, or recorded
	}
	m := sf.find(in.On, "", false, in.Rec)
	if m == nil {
		return nil // not stored: the plan copies it again while the original is there
	}
	fo, err := s.r.st.Folder(in.Folder)
	if err != nil {
		return err
	}
	rec := in.Rec
	setSideID(&rec, in.On, m.ID)
	s.n++
	return sf.put(fo, rec)
}

// move records a move found done on side in.On, removing the original
// when a copy within the store was killed before removing it.
func (s *settler) move(in intent) error {
	to, from := s.folders[in.Folder], s.folders[in.From]
	if to == nil || from == nil || in.Old == nil {
		return nil
	}
	m := to.find(in.On, in.ID, s.r.stores[in.On].StableIDs, in.Rec)
	if m == nil {
		return nil // not moved: the plan moves it again
	}
	if from.present(in.On, in.ID) != nil && m.ID != in.ID {
		if done, err := s.remove(from, in.On, in.ID); !done {
			return err // left for the plan: a deletion there, a pair here
		}
		s.r.res.Side[in.On].Moved++
	}
	fo, err := s.r.st.Folder(in.From)
	if err != nil {
		return err
	}
	if err := from.forget(fo, in.Old.Src); err != nil {
		return err
	}
	// The old record's base, not the merged flags: a flag write the kill
	// cut short is then merged again, never read as a change.
	rec := in.Rec
	setSideID(&rec, in.On, m.ID)
	rec.Flags, rec.FlagsKnown = in.Old.Flags, in.Old.FlagsKnown
	if fo, err = s.r.st.Folder(in.Folder); err != nil {
		return err
	}
	s.n++
	return to.put(fo, rec)
}

// delete completes a journaled deletion and forgets its record.
func (s *settler) delete(in intent) error {
	sf := s.folders[in.Folder]
	if sf == nil {
		return nil
	}
	if sf.present(in.On, in.ID) != nil {
		if done, err := s.remove(sf, in.On, in.ID); !done {
			return err // the record stays: the message is not copied back
		}
		s.r.res.Side[in.On].Deleted++
	}
	fo, err := s.r.st.Folder(in.Folder)
	if err != nil {
		return err
	}
	s.n++
	if i, ok := sf.rec[A][in.Rec.Src]; ok && sf.f.Base[i].Dst != in.Rec.Dst {
		return nil // the Src names another record now (an edited Maildir file copied again)
	}
	return sf.forget(fo, in.Rec.Src)
}

// remove deletes message id from side on and reports whether it did; a
// failure other than a fatal one is a warning, and the message stays for
// the plan to judge.
func (s *settler) remove(sf *settleFolder, on Side, id mail.ID) (bool, error) {
	if err := s.r.step("settle: remove " + string(id)); err != nil {
		return false, err
	}
	err := s.r.stores[on].remove(s.r.ctx, []mail.Envelope{s.r.env(on, sf.f.Name, id)})
	if err != nil {
		if fatal(err) {
			return false, err
		}
		s.r.fail(on, fmt.Sprintf("finish removing %s of %q on side %s", id, sf.f.Name, on), err)
		return false, nil
	}
	sf.goneID[on][id] = true
	return true, nil
}
