package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/state"
)

// The checkpoint of a copy is the per-folder state in CHECKPOINT.state/
// (sync/state, docs/state-format.md): its summary is read at every run, a
// folder's record log only when the run lists that folder. CHECKPOINT
// itself is the JSON Lines file older versions kept every record in: the
// first run that finds it beside a state not yet migrated copies its
// records into the state (state.Migrate; nothing is downloaded again) and
// the file is never read again. CHECKPOINT.lock is the run's lock
// (lockRun) whichever holds the records.

// statePath is where the checkpoint at cpPath keeps its state.
func statePath(cpPath string) string { return cpPath + ".state" }

// openStore opens the checkpoint of a run that writes (not a dry run):
// the state at statePath(cpPath), created if missing, with the records
// of the old file at cpPath migrated into it first. The caller holds the
// run's lock. reset starts it afresh (--reset, --rebuild-state); then the
// old file, if any, is never migrated, so that it cannot bring back what
// was forgotten. fresh says the state holds no record.
func openStore(cpPath string, reset bool, src, dst string, log *slog.Logger) (store *state.Store, fresh bool, err error) {
	st, err := state.Open(statePath(cpPath), src, dst, state.Options{Reset: reset, Logger: log})
	if err != nil {
		return nil, false, err
	}
	if err := migrateOld(st, cpPath, reset, src, dst, log); err != nil {
		_ = st.Close()
		return nil, false, err
	}
	if fresh, err = st.Empty(); err != nil {
		_ = st.Close()
		return nil, false, err
	}
	log.Debug("checkpoint", "dir", st.Dir(), "folders", len(st.Folders()), "empty", fresh)
	return state.NewStore(st), fresh, nil
}

// migrateOld copies the records of the old checkpoint file into st, once;
// after a reset it only marks the file as never to be read.
func migrateOld(st *state.State, cpPath string, reset bool, src, dst string, log *slog.Logger) error {
	if st.Migrated() != "" {
		return nil
	}
	if reset {
		if _, err := os.Stat(cpPath); err != nil {
			return nil // nothing that could be migrated later
		}
		return st.MarkMigrated(cpPath)
	}
	n, err := state.Migrate(st, cpPath, src, dst)
	if err != nil {
		return err
	}
	if st.Migrated() != "" {
		log.Info("checkpoint migrated to the per-folder state; the old file is no longer read", "file", cpPath, "dir", st.Dir(), "records", n)
	}
	return nil
}

// openReadOnlyStore opens the checkpoint of a run that must write nothing
// (a dry run, verify): the state when there is one and it holds
// everything, else the old file when there is one (read as it is, not
// migrated), else nil. The caller holds the run's lock.
func openReadOnlyStore(cpPath, src, dst string, log *slog.Logger) (checkpoint.Store, error) {
	_, oldErr := os.Stat(cpPath)
	if _, err := os.Stat(statePath(cpPath)); err == nil {
		st, err := state.Open(statePath(cpPath), src, dst, state.Options{ReadOnly: true, Logger: log})
		if err != nil {
			return nil, err
		}
		if st.Migrated() != "" || oldErr != nil {
			return state.NewStore(st), nil
		}
		_ = st.Close() // not migrated yet: the old file holds the records
	}
	if errors.Is(oldErr, fs.ErrNotExist) {
		return nil, nil
	}
	cp, err := checkpoint.Open(cpPath, src, dst, false)
	if err != nil {
		return nil, err
	}
	if cp.Dropped != "" {
		log.Warn("checkpoint: dropped a torn last line left by an interrupted run", "file", cpPath)
	}
	return cp, nil
}

// checkpointExists reports whether a checkpoint (state or old file) is at
// cpPath.
func checkpointExists(cpPath string) bool {
	for _, p := range []string{statePath(cpPath), cpPath} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}
