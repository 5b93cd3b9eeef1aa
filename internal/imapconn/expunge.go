package imapconn

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

// Expunge expunges every message flagged \Deleted in the selected
// mailbox, also those other clients flagged (docs/failure-model.md C9).
func (s *Session) Expunge() error {
	return s.run1("EXPUNGE", nil)
}
