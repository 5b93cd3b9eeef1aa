package state

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/mailferry/mailferry/sync/checkpoint"
)

// Migrate copies the records of the checkpoint at path (sync/checkpoint's
// JSON Lines file, for the endpoints src and dst) into s, so the first run
// on the new state downloads nothing again. It holds the checkpoint's lock
// while it reads (a run of an older mailferry on it gets ErrLocked, and
// Migrate gets ErrLocked while such a run is active) and leaves the file
// as it is, but for a torn last line, cut as the checkpoint always cuts it.
//
// A record keeps its store time; one written before store times were
// kept gets the checkpoint file's modification time, its last flush, which
// is never earlier than the message's true store time, so --delete-after
// waits at least as long as it should. A folder with pass state (kept
// beside the checkpoint by the mailferry that wrote it, which recorded a
// pass only once its records were flushed) keeps it, with its record
// count; any other folder's first pass lists in full. Records without
// flags (written before the destination could change flags) stay so: the
// engine learns the stored copy's flags when it next lists the folder
// (sync/flags.go).
//
// It is idempotent and resumable: the end is marked in the summary
// (Migrated) only after every record is durable, and a state already
// marked is left alone (0, nil). A missing checkpoint is nothing to
// migrate (0, nil). It returns the number of records migrated.
func Migrate(s *State, path, src, dst string) (int, error) {
	if s.Migrated() != "" {
		return 0, nil
	}
	if s.readOnly {
		return 0, ErrReadOnly
	}
	fi, err := s.fs.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("state: migrate: %w", err)
	}
	cp, err := checkpoint.Open(path, src, dst, false)
	if err != nil {
		return 0, fmt.Errorf("state: migrate: %w", err)
	}
	defer func() { _ = cp.Close() }()
	if cp.Dropped != "" {
		s.log.Warn("state: migrate: dropped a torn last line of the checkpoint", "file", path, "bytes", len(cp.Dropped))
	}
	n := 0
	stored := fi.ModTime().Unix()
	for _, mb := range cp.Mailboxes() {
		k, err := migrateFolder(s, mb, cp.Records(mb), stored)
		n += k
		if err != nil {
			return n, err
		}
	}
	if err := s.MarkMigrated(path); err != nil {
		return n, err
	}
	return n, nil
}

// migrateFolder adds one mailbox's records and flushes them.
func migrateFolder(s *State, mb string, recs []checkpoint.Record, stored int64) (int, error) {
	f, err := s.Folder(mb)
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		m := messageOf(r)
		if m.Stored == 0 {
			m.Stored = stored
		}
		if err := f.Put(m); err != nil {
			return 0, err
		}
	}
	if err := s.Release(mb); err != nil {
		return 0, err
	}
	return len(recs), nil
}

// MarkMigrated records that the checkpoint at path is never to be
// migrated (again): Migrate did, or the state was started afresh or
// rebuilt from the destination instead (--reset, --rebuild-state), which
// the old file must not undo. Folders that completed a pass get their
// record count (Summary.Len) from their logs.
func (s *State) MarkMigrated(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readOnly {
		return ErrReadOnly
	}
	for name, it := range s.sum.Folders {
		if it.Complete == 0 {
			continue
		}
		n, err := s.passLen(name)
		if err != nil {
			return err
		}
		it.Len = n
	}
	s.sum.Migrated = path
	return s.writeSummary()
}
