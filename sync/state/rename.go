package state

import (
	"fmt"

	"github.com/mailferry/mailferry/sync/mail"
)

// RenameFolder moves folder from's records to folder to (a folder renamed
// on both sides by a two-way sync): a log of a new generation under the new
// name, then one summary write that drops from and names to, so a crash
// leaves either name in force, never both or neither. The pass state is
// not carried over: the next pass lists the folder in full. to must not be
// known yet.
func (s *State) RenameFolder(from, to string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readOnly {
		return ErrReadOnly
	}
	if _, ok := s.sum.Folders[to]; ok {
		return fmt.Errorf("state: rename folder %q to %q: %q is known already", from, to, to)
	}
	old, ok := s.sum.Folders[from]
	if !ok {
		return fmt.Errorf("state: rename folder %q: %w", from, mail.ErrMailboxNotFound)
	}
	f, err := s.folder(from)
	if err != nil {
		return err
	}
	if err := s.flushFolder(f); err != nil {
		return err
	}
	gen := s.sum.NextGen
	data := headerLine(nil, gen, to)
	for _, src := range sortedIDs(f.recs) {
		data = putLine(data, f.recs[src])
	}
	if err := replaceFile(s.fs, s.logPath(gen), data); err != nil {
		return mail.MakeFatal(fmt.Errorf("state: folder %q: %w", to, err))
	}
	delete(s.sum.Folders, from)
	s.sum.Folders[to] = &folderItem{Gen: gen}
	s.sum.NextGen = gen + 1
	if err := s.writeSummary(); err != nil {
		delete(s.sum.Folders, to)
		s.sum.Folders[from] = old
		return err
	}
	_ = s.fs.Remove(s.logPath(old.Gen)) // an orphan left by a failure is never read
	delete(s.folders, from)
	nf := &Folder{s: s, name: to, gen: gen, recs: f.recs, lines: len(f.recs), end: int64(len(data))}
	s.folders[to] = nf
	f.recs = map[mail.ID]Message{}
	return nil
}
