// Package state is the per-folder incremental state of an endpoint pair,
// the checkpoint's successor (issue 11 item 3; two-way sync, issue 12,
// builds on it). A copy keeps its message records in it through Store (a
// checkpoint.Store that reads a folder's log only when the engine asks for
// that folder) and its folders' pass state in the summaries.
//
// A state is a directory:
//
//	summary.json   header (format version, both endpoints, each side's
//	               identity) and every folder's pass state: each side's
//	               UIDVALIDITY, UIDNEXT, MESSAGES, HIGHESTMODSEQ, highest UID
//	               seen (or opaque change evidence), when the last complete
//	               pass ended, the passes since the last full listing
//	<gen>.log      one append-only log per folder: a header line, then one
//	               CRC-framed line per message put or forgotten
//	lock           flock'd for the life of a State, never renamed
//
// Open reads summary.json only; a folder's log is read when the run asks
// for that folder (Folder). So a run that compares the servers' STATUS with
// the summaries and finds nothing moved parses no message record, whatever
// the account holds: 0.07-0.2 ms for 10 folders of 20,000 messages, where
// today's checkpoint parses all 200,000 records in 0.8-0.9 s.
//
// # Durability (the checkpoint's properties, docs/state-format.md)
//
//   - Records are buffered and written with one fsync per folder per Flush.
//     A torn last line (no newline, or a CRC that fails) is dropped with a
//     warning and cut before the next append, not at load, so a run that
//     writes nothing leaves every file alone, mtimes included.
//   - summary.json and every new or compacted log are written to a temp file,
//     fsynced, renamed into place, and the directory fsynced. A log gets its
//     summary entry before any record is appended to it, and a pass is
//     marked complete only after every folder's records are flushed.
//   - Logs are named by a generation that only grows; a log the summary does
//     not name is never read, so a crash between writing a new log and
//     switching the summary to it leaves the old one in force.
//   - A state for other endpoints, of another version, or garbled (a bad
//     summary, a missing log, a bad line before the last, a log naming
//     another folder) is refused with ErrUnusable (the checkpoint's, exit 6)
//     and left untouched, unless Options.Reset. A second Open gets
//     ErrLocked (exit 7), naming the holder's pid.
//   - TestA8StatePowerLoss cuts the power at every file system operation of
//     a state's life under the crash model (crashfs), torn and not; the
//     negative control without directory fsyncs must fail.
//
// Migrate reads an existing checkpoint into a new state, so the first run
// after the switch downloads nothing again.
//
// # Why a file set (measured)
//
//	go test -run '^$' -bench . -benchtime 5x -count 2 ./sync/state/
//	cd sync/state/testdata/compare && go test -run '^$' -bench . -benchtime 5x -count 2
//
// 10 folders of 20,000 messages, 2 shared cores (ranges over the runs;
// timings from the quieter first measurement, before loading dropped to one
// allocation per record; RSS from the final code):
//
//	                           file set       bbolt 1.5.0    SQLite 1.62.0   checkpoint today
//	open + 10 summaries        0.07-0.2 ms    0.09 ms        0.36-0.41 ms    790-870 ms
//	load one 20,000 folder     18-19 ms       14-15 ms       24-28 ms        (all of it)
//	load all 200,000           196 ms         125-138 ms     213-236 ms      790-870 ms
//	append 5,000, fsync /100   20-21 ms       58-153 ms      69-111 ms       20-22 ms
//	peak RSS, summaries        6.8-7.0 MiB    6.8 MiB        8.5 MiB         126-132 MiB
//	peak RSS, all loaded       100-107 MiB    201 MiB        109-110 MiB     126-132 MiB
//
// (An idle process peaks at 6.1-6.9 MiB.) The file set is as fast as bbolt
// where a no-op run spends its time, three times faster than either
// database at the durable append the engine does every 100 messages (a
// database commit costs two or more fsyncs), adds no dependency (SQLite
// would add 6.9 MB to the binary, bbolt 0.2 MB), and is the only one the
// crash model can check: bbolt writes through mmap and SQLite through its
// own VFS, past the FS interface the power-loss trials replace. A run holds
// only the folders it works on (Release drops one), so its memory follows
// the folders that moved, not the account.
package state
