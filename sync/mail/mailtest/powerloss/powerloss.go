// Package powerloss is what the sinks' power-loss trials share
// (docs/failure-model.md A2, A3, A12; invariants I3, I5): a source corpus the
// engine copies in delete mode onto a crashfs.FS, the run itself, and the
// checks every sink must pass whatever its format. Each sink's test brings
// its fixtures, opens its sink on the FS, and reports which messages it
// finds stored; crashfs.FS.Trial cuts the power and recovers.
package powerloss

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"time"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/mail/mailtest/crashfs"
	"github.com/mailferry/mailferry/sync/state"
)

// Corpus is a trial's source and what the checks know of it.
type Corpus struct {
	Src    *mailtest.MemSource
	Bodies map[[32]byte]string // fixture body hash -> mailbox
	IDs    map[string][32]byte // "mailbox/id" on the source -> body hash
}

// NewCorpus serves fx from a MemSource; the bodies must be distinct.
func NewCorpus(fx []mailtest.Fixture) *Corpus {
	c := &Corpus{Src: mailtest.NewMemSource(fx), Bodies: map[[32]byte]string{}, IDs: map[string][32]byte{}}
	n := map[string]int{}
	for _, f := range fx {
		h := sha256.Sum256(f.Body)
		c.Bodies[h] = f.Mailbox
		n[f.Mailbox]++ // MemSource numbers each mailbox's messages from 1
		c.IDs[fmt.Sprintf("%s/%d", f.Mailbox, n[f.Mailbox])] = h
	}
	return c
}

// Run names the endpoints of a trial and where its checkpoint lives.
type Run struct {
	Src, Dst string // endpoint names recorded in the checkpoint
	CP       string // checkpoint path, on the crashfs.FS
}

// Sink is a sink a run closes.
type Sink interface {
	mail.Sink
	Close() error
}

// Copy is one mailferry run on the model's disk: the engine copies c.Src
// into s in delete mode, in batches of 3, recording in the checkpoint the
// CLI uses (the per-folder state at r.CP.state, sync/state.Store, opened on
// fsys); then the checkpoint and s are closed. It returns the first error,
// the power cut's when one came.
func (c *Corpus) Copy(ctx context.Context, fsys *crashfs.FS, s Sink, r Run) error {
	st, err := state.Open(r.CP+".state", r.Src, r.Dst, state.Options{FS: StateFS{CheckpointFS{fsys}}})
	if err != nil {
		_ = s.Close()
		return err
	}
	cp := state.NewStore(st)
	_, err = mailferry.Copy(ctx, c.Src, s, mailferry.Options{
		SrcEndpoint: r.Src, Workers: 2, Checkpoint: cp, DeleteSource: true,
		BatchSize: 3, BatchDelay: time.Hour, Backoff: time.Millisecond,
	})
	if cerr := cp.Close(); err == nil {
		err = cerr
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// Check returns what breaks the invariants every sink keeps, given how
// many whole copies of each body the sink's files hold: a message deleted
// on the source that is not stored (I3), a checkpoint that does not parse;
// with final (the run completed) a source not empty (I5) and a message not
// stored exactly once (dupID names the invariant: I5, or A12 for mbox).
func (c *Corpus) Check(stored map[[32]byte]int, r Run, final bool, dupID string) []string {
	var bad []string
	for _, env := range c.Src.Removed {
		if stored[c.IDs[env.Mailbox+"/"+string(env.ID)]] == 0 {
			bad = append(bad, fmt.Sprintf("I3: %s/%s was deleted on the source and is not complete on disk", env.Mailbox, env.ID))
		}
	}
	if err := readState(r); err != nil {
		bad = append(bad, "checkpoint: "+err.Error())
	}
	if !final {
		return bad
	}
	var boxes []string
	for _, mb := range c.Bodies {
		if !slices.Contains(boxes, mb) {
			boxes = append(boxes, mb)
		}
	}
	slices.Sort(boxes)
	for _, mb := range boxes {
		if n := c.Src.Len(mb); n != 0 {
			bad = append(bad, fmt.Sprintf("I5: %d messages left in %s on the source after a complete run", n, mb))
		}
	}
	for h, mb := range c.Bodies {
		if stored[h] != 1 {
			bad = append(bad, fmt.Sprintf("%s: a message of %s is stored %d times, want once", dupID, mb, stored[h]))
		}
	}
	return bad
}

// readState opens the run's state, if there is one, and reads every
// folder's records: a state a power cut left unreadable is an error.
func readState(r Run) error {
	if _, err := os.Stat(r.CP + ".state"); err != nil {
		return nil
	}
	st, err := state.Open(r.CP+".state", r.Src, r.Dst, state.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }()
	cp := state.NewStore(st)
	for _, mb := range st.Folders() {
		if err := cp.Load(mb); err != nil {
			return err
		}
	}
	return nil
}

// StateFS adapts a crashfs.FS to the state's file system.
type StateFS struct{ CheckpointFS }

// ReadDirNames lists dir on the model.
func (p StateFS) ReadDirNames(dir string) ([]string, error) { return p.FS.ReadDirNames(dir) }

// CheckpointFS adapts a crashfs.FS to the checkpoint's file system.
type CheckpointFS struct{ *crashfs.FS }

// OpenFile opens name on the model.
func (p CheckpointFS) OpenFile(name string, flag int, perm os.FileMode) (checkpoint.FSFile, error) {
	f, err := p.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}
