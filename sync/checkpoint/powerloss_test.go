package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest/crashfs"
)

// crashFS adapts a crashfs.FS to FS.
type crashFS struct{ *crashfs.FS }

func (c crashFS) OpenFile(name string, flag int, perm os.FileMode) (FSFile, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// plRun writes a checkpoint through fsys: a new file in a directory that
// does not exist yet, batches of records, a close, a reopen and more
// batches. It stops at the first error (the power cut) and returns the keys
// whose Flush succeeded and those of the batch being flushed then.
func plRun(fsys FS, path string) (durable, inflight map[Key]bool) {
	durable, inflight = map[Key]bool{}, map[Key]bool{}
	id := 0
	for session := range 2 {
		c, err := OpenFS(fsys, path, src, dst, false)
		if err != nil {
			return durable, inflight
		}
		for range 4 {
			batch := map[Key]bool{}
			for range 3 {
				id++
				r := Record{Mailbox: "INBOX", ID: mail.ID(fmt.Sprint(id)), Dst: "d", Size: int64(id), SHA256: "ab"}
				c.Add(r)
				batch[Key{r.Mailbox, r.ID}] = true
			}
			inflight = batch
			if err := c.Flush(); err != nil {
				c.Close()
				return durable, inflight
			}
			for k := range batch {
				durable[k] = true
			}
			inflight = map[Key]bool{}
		}
		if session == 0 {
			if err := c.Close(); err != nil {
				return durable, inflight
			}
		} else {
			c.Close()
		}
	}
	return durable, inflight
}

// plCheck reopens the recovered checkpoint with the real file system and
// checks that it parses and holds every record a Flush reported durable,
// and nothing but those and the batch in flight at the cut.
func plCheck(path string, durable, inflight map[Key]bool) error {
	c, err := Open(path, src, dst, false)
	if err != nil {
		return fmt.Errorf("reopen after the cut: %v", err)
	}
	defer c.Close()
	got := map[Key]bool{}
	for _, r := range c.Records("INBOX") {
		got[Key{r.Mailbox, r.ID}] = true
	}
	for k := range durable {
		if !got[k] {
			return fmt.Errorf("record %s was flushed (fsynced) but is gone after the cut (%d of %d flushed records left)", k.ID, len(got), len(durable))
		}
	}
	for k := range got {
		if !durable[k] && !inflight[k] {
			return fmt.Errorf("record %s appeared from nowhere", k.ID)
		}
	}
	return nil
}

// TestA8CheckpointPowerLoss cuts the power before every file system
// operation of a checkpoint's life (create in a new directory, flushes,
// close, reopen, more flushes), with unsynced writes dropped or torn, and
// checks after each recovery that the file parses and holds exactly the
// old or the new records: everything fsynced survives (a torn append may
// keep some whole lines of the batch in flight, each a true record).
func TestA8CheckpointPowerLoss(t *testing.T) {
	for _, torn := range []bool{false, true} {
		t.Run(fmt.Sprintf("torn=%v", torn), func(t *testing.T) {
			total := plOps(t, false)
			for cut := 1; cut <= total+1; cut++ {
				root := t.TempDir()
				path := filepath.Join(root, "state", "mailferry", "cp.jsonl")
				fsys, err := crashfs.New(root, uint64(cut))
				if err != nil {
					t.Fatal(err)
				}
				fsys.Torn = torn
				fsys.CutAt(cut)
				durable, inflight := plRun(crashFS{fsys}, path)
				if err := fsys.Recover(); err != nil {
					t.Fatal(err)
				}
				if err := plCheck(path, durable, inflight); err != nil {
					t.Errorf("power cut at operation %d of %d: %v", cut, total, err)
				}
			}
		})
	}
}

// plOps counts the operations of an uncut plRun.
func plOps(t *testing.T, noDirSync bool) int {
	root := t.TempDir()
	fsys, err := crashfs.New(root, 1)
	if err != nil {
		t.Fatal(err)
	}
	fsys.NoDirSync = noDirSync
	durable, _ := plRun(crashFS{fsys}, filepath.Join(root, "state", "mailferry", "cp.jsonl"))
	if len(durable) != 24 {
		t.Fatalf("an uncut run flushed %d records, want 24", len(durable))
	}
	return fsys.Ops()
}

// TestA8CheckpointPowerLossNegativeControl is the same test against a file
// system whose directory fsyncs do nothing: the check must catch the lost
// checkpoint, or the test above proves nothing.
func TestA8CheckpointPowerLossNegativeControl(t *testing.T) {
	total := plOps(t, true)
	caught := 0
	for cut := 1; cut <= total+1; cut++ {
		root := t.TempDir()
		path := filepath.Join(root, "state", "mailferry", "cp.jsonl")
		fsys, _ := crashfs.New(root, uint64(cut))
		fsys.NoDirSync = true
		fsys.CutAt(cut)
		durable, inflight := plRun(crashFS{fsys}, path)
		if err := fsys.Recover(); err != nil {
			t.Fatal(err)
		}
		if plCheck(path, durable, inflight) != nil {
			caught++
		}
	}
	if caught == 0 {
		t.Fatalf("with directory fsync disabled, none of %d power cuts lost a flushed record: the power-loss check cannot fail", total+1)
	}
	t.Logf("without directory fsyncs, %d of %d power cuts lost flushed records", caught, total+1)
}
