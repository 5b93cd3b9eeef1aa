// Package mbox is the mbox destination: it appends messages to a folder of
// mbox files, one per mailbox (mailbox "A/B" is DIR/A/B.mbox), in the exact
// mboxrd variant defined by package internal/mboxfmt, so every message reads
// back byte for byte: line endings, "From " and ">From " lines and a missing
// final newline included. See that package's documentation for the format
// and why go-mbox's writer is not used.
//
// # Locking
//
// From the first Put into a file until Close, the sink holds an exclusive
// fcntl lock on it (an open file description lock on Linux, which also
// conflicts with the POSIX locks of mail clients) and the dotlock
// FILE.lock, created with O_EXCL and holding our pid. The fcntl lock is
// taken first, so two mailferry processes never race for the dotlock, and a
// dotlock whose pid is dead is taken over. A file locked by someone else is
// retried for Config.LockWait (DefaultLockWait, URL option lockwait), then
// Put fails with a fatal error wrapping ErrLocked: the run stops and says
// which file is busy. Within the sink, Puts into one file are serialised; a
// Put that finds the file busy spools its body to an unlinked temporary file
// in the folder first, so concurrent downloads are not held up.
//
// # Crash safety
//
// Each file has a journal, FILE.mfjournal (format: mboxfmt.Journal).
// On the first Put of a run the sink reads it, and if the previous run did
// not close cleanly it cuts the file back to the last committed length:
// a torn or uncommitted tail never survives into the next run
// (docs/failure-model.md A12), even a stub of a few bytes of a From_ line that
// a power cut kept, and even in a mailbox the next run only creates
// (CreateMailbox repairs it too). It then rewrites the journal with an "open"
// record and fsyncs it before appending anything. Put appends an entry and
// remembers its length; if the body fails or the context is cancelled, the
// file is truncated back, so nothing is visible. Commit (mail.Committer)
// fsyncs every touched file, then appends the new committed length and the
// committed messages' Envelope.Keys to the journal and fsyncs it. Close
// discards what was not committed and records a clean close. A failed fsync
// is never retried: the file is marked broken and the error is fatal.
//
// Keys make Put idempotent: a Put whose Key the journal already holds
// stores nothing and returns the first copy's ID, so a crash between Commit
// and the engine's checkpoint record cannot duplicate (A3). Readers (the
// mbox source) read only up to the committed length while the journal says
// a writer is active or crashed.
//
// Appends made by other programs between runs are kept. A file with no
// journal, or a damaged one, is adopted whole: the sink never cuts bytes it
// cannot prove are its own.
package mbox
