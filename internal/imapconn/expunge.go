package imapconn

import "errors"

// Removal on the raw path, for a pooled session that already has the
// mailbox selected read-write (two-way sync deletes where it just wrote
// flags or appended): UID STORE +FLAGS.SILENT (\Deleted), then UID
// EXPUNGE of exactly those UIDs (RFC 4315), or a plain EXPUNGE where the
// caller allows it.

// StoreDeleted flags the messages of set \Deleted in the selected mailbox.
func (s *Session) StoreDeleted(set UIDSet) error {
	return s.run1("UID STORE "+set.String()+` +FLAGS.SILENT (\Deleted)`, nil)
}

// UIDExpunge expunges the messages of set, and only them (UIDPLUS).
func (s *Session) UIDExpunge(set UIDSet) error {
	return s.run1("UID EXPUNGE "+set.String(), nil)
}

// DeleteExpunge is StoreDeleted then UIDExpunge of set in one round
// trip: both commands are sent before either answer is read. Safe to
// pipeline: UID EXPUNGE removes only messages of set that are flagged
// \Deleted (RFC 4315 §2.1), so if the STORE is refused it can remove only
// messages of set another client flagged \Deleted, which the caller is
// removing anyway. The removal counts as done only when both answered OK:
// the STORE's refusal is returned first. modSeq is the HIGHESTMODSEQ the
// UID EXPUNGE's answer carried (RFC 7162 §3.2.10; 0 when it did not).
func (s *Session) DeleteExpunge(set UIDSet) (modSeq uint64, err error) {
	errs, err := s.run([]string{"UID STORE " + set.String() + ` +FLAGS.SILENT (\Deleted)`, "UID EXPUNGE " + set.String()}, nil)
	if err != nil {
		return 0, err
	}
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return 0, err
	}
	modSeq, _ = ModSeqCode(s.doneStatus[1])
	return modSeq, nil
}

// Expunge expunges every message flagged \Deleted in the selected
// mailbox, also those other clients flagged (docs/failure-model.md C9).
func (s *Session) Expunge() error {
	return s.run1("EXPUNGE", nil)
}
