package state

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest/crashfs"
)

// crashFS adapts a crashfs.FS to FS.
type crashFS struct{ *crashfs.FS }

func (c crashFS) OpenFile(name string, flag int, perm os.FileMode) (checkpoint.FSFile, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// world is what the state should hold, folder -> ids: committed is what
// the last successful durable step made durable, pending what the step in
// flight would make durable.
type world struct{ committed, pending map[string]map[mail.ID]bool }

func newWorld() *world {
	return &world{committed: map[string]map[mail.ID]bool{}, pending: map[string]map[mail.ID]bool{}}
}

func (w *world) set(box string, id mail.ID, present bool) {
	if w.pending[box] == nil {
		w.pending[box] = map[mail.ID]bool{}
	}
	if present {
		w.pending[box][id] = true
	} else {
		delete(w.pending[box], id)
	}
}

// commit is called after a step that flushed every folder succeeded.
func (w *world) commit() {
	w.committed = map[string]map[mail.ID]bool{}
	for box, ids := range w.pending {
		w.committed[box] = maps.Clone(ids)
	}
}

// plRun drives a state's life through fsys: created in a directory that
// does not exist, two folders filled in batches, a pass completed, a
// close; reopened, more batches, a forget, a folder reset (a UIDVALIDITY
// change), a compaction, a folder removed. It stops at the first error
// (the power cut).
func plRun(fsys FS, dir string, w *world) {
	s, err := Open(dir, epA, epB, Options{FS: fsys})
	if err != nil {
		return
	}
	defer s.Close()
	id := 0
	batch := func(box string, n int) error {
		f, err := s.Folder(box)
		if err != nil {
			return err
		}
		for range n {
			id++
			f.Put(Message{Src: mail.ID(fmt.Sprint(id)), Dst: "d", Size: int64(id)})
			w.set(box, mail.ID(fmt.Sprint(id)), true)
		}
		return s.Flush()
	}
	steps := []func() error{
		func() error { return batch("INBOX", 3) },
		func() error { return batch("INBOX", 3) },
		func() error { return batch("Sent", 3) },
		func() error { return s.CompletePass("INBOX", SideStatus{UIDNext: 7}, SideStatus{}, true) },
		func() error { return s.Close() },
		func() (err error) { s, err = Open(dir, epA, epB, Options{FS: fsys}); return err },
		func() error { return batch("INBOX", 3) },
		func() error {
			f, err := s.Folder("INBOX")
			if err == nil {
				f.Forget("2")
				w.set("INBOX", "2", false)
				err = s.Flush()
			}
			return err
		},
		func() error { w.pending["Sent"] = nil; return s.ResetFolder("Sent") },
		func() error { return batch("Sent", 2) },
		func() error { return compactRun(s, w) },
		func() error { delete(w.pending, "Sent"); return s.RemoveFolder("Sent") },
		func() error { return s.Close() },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return
		}
		w.commit()
	}
}

// compactRun rewrites INBOX's records until the log is worth compacting,
// then completes a pass, which compacts it.
func compactRun(s *State, w *world) error {
	f, err := s.Folder("INBOX")
	if err != nil {
		return err
	}
	for i := range 1100 {
		f.Put(Message{Src: "1", Size: int64(i)})
	}
	w.set("INBOX", "1", true)
	return s.CompletePass("INBOX", SideStatus{UIDNext: 12}, SideStatus{}, false)
}

// plCheck reopens the recovered state with the real file system: it must
// open and read (nothing garbled), and each record must be there exactly
// when the last durable step or the one in flight says so.
func plCheck(dir string, w *world) error {
	s, err := Open(dir, epA, epB, Options{})
	if err != nil {
		return fmt.Errorf("reopen after the cut: %v", err)
	}
	defer s.Close()
	for _, box := range []string{"INBOX", "Sent"} {
		got := map[mail.ID]bool{}
		if _, known := s.Summary(box); known {
			f, err := s.Folder(box)
			if err != nil {
				return fmt.Errorf("read %s after the cut: %v", box, err)
			}
			for _, m := range f.Messages() {
				got[m.Src] = true
			}
		}
		ids := maps.Clone(got)
		maps.Copy(ids, w.committed[box])
		maps.Copy(ids, w.pending[box])
		for id := range ids {
			if got[id] != w.committed[box][id] && got[id] != w.pending[box][id] {
				return fmt.Errorf("%s/%s present=%v, but durable=%v and in flight=%v", box, id, got[id], w.committed[box][id], w.pending[box][id])
			}
		}
	}
	return nil
}

func plOps(t *testing.T, noDirSync bool) int {
	root := t.TempDir()
	fsys, err := crashfs.New(root, 1)
	if err != nil {
		t.Fatal(err)
	}
	fsys.NoDirSync = noDirSync
	w := newWorld()
	plRun(crashFS{fsys}, filepath.Join(root, "state", "mailferry", "st"), w)
	if len(w.committed["INBOX"]) != 8 || len(w.committed) != 1 {
		t.Fatalf("an uncut run ended with %v, want 8 records in INBOX only", w.committed)
	}
	return fsys.Ops()
}

// plTrial cuts the power at operation cut and checks the recovered state.
func plTrial(t *testing.T, cut int, torn, noDirSync bool) error {
	root := t.TempDir()
	dir := filepath.Join(root, "state", "mailferry", "st")
	fsys, err := crashfs.New(root, uint64(cut))
	if err != nil {
		t.Fatal(err)
	}
	fsys.Torn, fsys.NoDirSync = torn, noDirSync
	fsys.CutAt(cut)
	w := newWorld()
	plRun(crashFS{fsys}, dir, w)
	if err := fsys.Recover(); err != nil {
		t.Fatal(err)
	}
	return plCheck(dir, w)
}

// TestA8StatePowerLoss cuts the power before every file system operation
// of a state's life (docs/failure-model.md A8), with unsynced writes
// dropped or torn, and checks after each recovery that the state opens,
// every folder reads, and each record is as the last durable step left it
// or as the step in flight would have: nothing flushed is lost, nothing
// forgotten or reset comes back half-way, nothing appears from nowhere.
func TestA8StatePowerLoss(t *testing.T) {
	total := plOps(t, false)
	for _, torn := range []bool{false, true} {
		t.Run(fmt.Sprintf("torn=%v", torn), func(t *testing.T) {
			for cut := 1; cut <= total+1; cut++ {
				if err := plTrial(t, cut, torn, false); err != nil {
					t.Errorf("power cut at operation %d of %d: %v", cut, total, err)
				}
			}
		})
	}
}

// TestA8StatePowerLossNegativeControl runs the same trials on a file
// system whose directory fsyncs do nothing: the check must catch lost
// state, or the test above proves nothing.
func TestA8StatePowerLossNegativeControl(t *testing.T) {
	total := plOps(t, true)
	caught := 0
	for cut := 1; cut <= total+1; cut++ {
		if plTrial(t, cut, false, true) != nil {
			caught++
		}
	}
	if caught == 0 {
		t.Fatalf("with directory fsync disabled, none of %d power cuts lost state: the check cannot fail", total+1)
	}
	t.Logf("without directory fsyncs, %d of %d power cuts lost state", caught, total+1)
}
