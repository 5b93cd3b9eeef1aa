// Package sync is mailferry's engine: it walks a Source's mailboxes, skips
// what the checkpoint already holds, and copies the rest into a Sink with a
// pool of workers, in the order store, record, delete:
//
//  1. a worker opens the message on the source and Puts it into the sink;
//  2. the committer makes a batch of Put messages durable (Committer.Commit),
//     then records them in the checkpoint and fsyncs it;
//  3. only then, in delete mode, are they removed from the source.
//
// A crash between any two steps can cause at most a re-copy, which sinks
// absorb through Envelope.Key; it can never lose a message.
//
// Only cmd/mailferry imports this package (aliased mailferry where the
// standard library's sync is needed too).
package sync
