// Package checkpoint remembers which source messages a copy has already
// stored, so an interrupted run resumes where it stopped and a rerun copies
// nothing twice.
//
// Store is what the engine asks of a checkpoint; Folders is what a store
// that keeps each mailbox apart adds (sync/state.Store, the CLI's: its
// records per folder, read only for the folders a run lists). File, below,
// is the one-file store of older versions, which sync/state.Migrate reads
// once into a state; tests and other stores still use it.
//
// File is a JSON Lines file, append-only: a header line names the format
// version and the two endpoints, then one line per stored message. Records
// are buffered and written with one fsync per batch (Flush); the engine adds
// a record only after the sink made the message durable, and flushes before
// any deletion on the source. Loading tolerates a torn last line (a crash
// mid-append) and refuses a file written for other endpoints.
package checkpoint
