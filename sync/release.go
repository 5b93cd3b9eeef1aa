package sync

import (
	"fmt"
	stdsync "sync"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// A checkpoint that keeps each folder's records apart
// (checkpoint.Folders: sync/state's) reads a folder only when the run
// lists it, and the run releases it once it is done with it, so that its
// memory follows the folders that moved, not the account (a first copy of
// 200,000 messages holds one folder's records at a time, not all).
//
// A folder is done when the lister is past it and every message it queued
// is settled: recorded by the committer, or given up by a worker. A
// release that comes too early costs only a second read of the log: the
// records are flushed first and read again on the next use.

// folderUse counts, per folder, the messages queued and not yet settled.
type folderUse struct {
	mu     stdsync.Mutex
	open   map[string]int
	listed map[string]bool
}

// queuedIn counts the jobs of b that will be settled (not the probes, which
// the lister waits for).
func (r *run) queuedIn(b []job) {
	if r.folders == nil {
		return
	}
	r.use.mu.Lock()
	defer r.use.mu.Unlock()
	for _, j := range b {
		if j.probe == nil {
			r.use.open[j.env.Mailbox]++
		}
	}
}

// settled counts n messages of mb as settled and releases mb when it is
// done.
func (r *run) settled(mb string, n int) error {
	if r.folders == nil {
		return nil
	}
	r.use.mu.Lock()
	r.use.open[mb] -= n
	done := r.use.listed[mb] && r.use.open[mb] == 0
	r.use.mu.Unlock()
	if !done {
		return nil
	}
	return r.release(mb)
}

// listedAll tells that the lister is past mb, and releases it when nothing
// it queued is still open.
func (r *run) listedAll(mb string) error {
	if r.folders == nil {
		return nil
	}
	r.use.mu.Lock()
	r.use.listed[mb] = true
	done := r.use.open[mb] == 0
	r.use.mu.Unlock()
	if !done {
		return nil
	}
	return r.release(mb)
}

// release writes mb's buffered records and drops them from memory, and
// lets the sink drop what it keeps for mb's destination
// (mail.MailboxReleaser): everything of mb is committed by now.
func (r *run) release(mb string) error {
	if err := r.folders.Release(mb); err != nil {
		return mail.MakeFatal(fmt.Errorf("release the records of %q: %w", mb, err))
	}
	if rel := r.dstF.MailboxReleaser; rel != nil && !r.opt.DryRun {
		rel.ReleaseMailbox(r.opt.dstName(mb))
	}
	return nil
}

// loadFolder reads mb's records before the run lists it, so that a damaged
// record log stops the run (exit 6) before anything is copied.
func (r *run) loadFolder(mb string) error {
	if r.folders == nil {
		return nil
	}
	if err := r.folders.Load(mb); err != nil {
		return mail.MakeFatal(err)
	}
	return nil
}

// loadFolderAsync starts loadFolder(mb) on another goroutine and returns
// the function that waits for its result. A change listing runs beside
// it: reading a 50,000-message folder's log (10 MB, about 60 ms of CPU)
// then overlaps the listing's login and EXAMINE instead of preceding
// them. The records are safe to use meanwhile: the checkpoint locks a
// folder while it reads it, so a lookup during the read waits for it
// (or reads the folder itself, first). What matters is that the run acts
// on the folder only after wait: a damaged log still stops the run before
// anything is copied.
func (r *run) loadFolderAsync(mb string) (wait func() error) {
	if r.folders == nil {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() { done <- err }()
		defer catchPanic(&err, r.log)
		err = r.loadFolder(mb)
	}()
	var (
		once stdsync.Once
		err  error
	)
	return func() error {
		once.Do(func() { err = <-done })
		return err
	}
}

// recordCount returns how many records the checkpoint holds for mb, a
// folder the run lists (its records are read).
func (r *run) recordCount(mb string) int {
	if r.cp == nil {
		return 0
	}
	if r.folders != nil {
		return r.folders.Len(mb)
	}
	return len(r.cp.Records(mb))
}

// recordedIDs returns the IDs the checkpoint holds for mb, less those of
// messages the source reported expunged (Record.Vanished), without
// building their records where the store can (checkpoint.Folders).
func (r *run) recordedIDs(mb string) []mail.ID {
	if r.folders != nil {
		return r.folders.IDs(mb)
	}
	var ids []mail.ID
	for _, rec := range r.cp.Records(mb) {
		if !rec.Vanished {
			ids = append(ids, rec.ID)
		}
	}
	return ids
}

// recordLookup returns a function that finds mb's record of an ID: one
// record at a time where the store can (checkpoint.Folders), so a change
// listing's few flag changes do not build a 50,000-record folder; else from
// one map of Records.
func (r *run) recordLookup(mb string) func(mail.ID) (checkpoint.Record, bool) {
	if r.folders != nil {
		return func(id mail.ID) (checkpoint.Record, bool) {
			return r.folders.Get(checkpoint.Key{Mailbox: mb, ID: id})
		}
	}
	recs := map[mail.ID]checkpoint.Record{}
	for _, rec := range r.cp.Records(mb) {
		recs[rec.ID] = rec
	}
	return func(id mail.ID) (checkpoint.Record, bool) {
		rec, ok := recs[id]
		return rec, ok
	}
}
