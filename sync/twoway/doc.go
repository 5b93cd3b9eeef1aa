// Package twoway plans and applies a two-way sync of two mail stores
// (`mailferry sync A B`, the two-way sync issue). It is not two one-way
// copies: each folder pair is planned from a three-way view, side A's
// listing, side B's listing and the state both last agreed on (package
// sync/state), and only then are copies, flag changes, moves and deletions
// applied.
//
// The planner (Planner.Plan) is pure logic with no I/O, so every rule below
// is checked by table tests and by a randomized model test without a server:
//
//   - Flags: three-way merge flag by flag: result = base + added on A +
//     added on B - removed on A - removed on B, keywords too. A flag a side
//     cannot store (SideInfo.Keeps: a Maildir's, an IMAP server's
//     PERMANENTFLAGS without `\*`) is never read as removed there. With
//     CONDSTORE a flag write is conditional (UNCHANGEDSINCE the folder's
//     HIGHESTMODSEQ before the listing); a message another client changed
//     meanwhile is re-read and merged again in the same run.
//   - New mail on one side is copied to the other with its flags.
//   - Deletions: known on both sides and gone from one: deleted on the
//     other. Gone from both: forgotten. Deleted on one side while its flags
//     changed on the other: the deletion wins and counts as a conflict.
//   - Absence is never read as a deletion when it cannot be trusted: an
//     incomplete listing or a side whose identity does not match (the
//     caller says why in Listing.Untrusted or SideInfo.Untrusted), a side
//     whose ids were reset (UIDVALIDITY), a message out of scope (it
//     freezes, it is not deleted); an empty folder whose state says it held
//     mail holds its deletions back (below).
//   - Moves: a message gone from folder X and new in folder Y of the same
//     side, with the same id where ids survive moves (Maildir base names,
//     SideInfo.StableIDs) or the same (Message-ID, size, date), unique on
//     that side, is moved on the other side, not copied again: a rename in
//     a Maildir, UID MOVE (else COPY, \Deleted and UID EXPUNGE of that UID)
//     on an IMAP server.
//   - A Maildir file a mail client edited in place (its size and mtime in
//     ns are no longer the record's evidence; a file whose mtime was too
//     recent to trust is compared by content: evidence.go) is a new
//     message: copied again, never deleted. The edit is noticed before any
//     deletion of that file and in every full listing (a first sync, a
//     lost state, every RunOptions.FullEvery-th pass); a sync after a few
//     changes stats only the files it must (mdlisting.go).
//   - First sync or a lost state: messages new on both sides are paired by
//     (Message-ID, size, date), then by content hash, duplicates count for
//     count; the unpaired are copied; flags are the union; nothing is
//     deleted.
//   - The mass-delete guard holds back a side's deletions that exceed
//     Options.MaxDelete of a folder's known messages, or 25 % of the side's
//     known messages (all folders), in both cases more than 20 messages (so
//     a small account may delete a few); and the deletions read from a
//     folder that is empty while the state says it held mail (an unmounted
//     disk, a replaced directory). Options.Force applies them. A held-back
//     deletion keeps its record, so the message is not copied back to the
//     side that deleted it while it waits.
//   - Folders: created on one side, created on the other. Renamed on one
//     side (followRenames: the old name vanished there and a new folder
//     there has its MAILBOXID where the server offers OBJECTID, RFC 8474,
//     else holds >= 90 % of its messages, by id else by Message-ID):
//     renamed on the other side first, the state re-keyed, nothing copied or
//     deleted. Deleted on one side: a warning, and nothing of that folder is
//     changed on either side; with Options.RemoveFolders the other side's
//     copy is deleted when unchanged since the last sync, or, when it
//     changed, recreated on the deleting side with everything in it (a
//     conflict). Folder deletions count for the guard with their messages;
//     when more than half of the paired folders vanished from one side, that
//     side's deletions, folders included, are all held back.
//
// # Listing a Maildir (mdlisting.go, mdevidence.go)
//
// A Maildir folder whose directories' stamps did not move since its last
// pass is not read: its listing is the records. One whose stamps moved is
// read by names and only the files a judgement needs are stat'ed (new
// names, records without evidence or with a racy one, and, before any
// deletion, the files whose copy on the other side is gone). After the
// run's own writes, a folder keeps the stamps they left when a readdir
// proves it holds exactly what the records say, so the next run does not
// list it again.
//
// # Applying (apply.go, journal.go, settle.go)
//
// The changes of every folder are written to a journal in the state's
// directory, durably and in one write, before the first is made (a first
// sync, applied folder by folder, journals each folder's before its
// changes); each change's record goes to the state once the change is
// durable, a folder's records in one flush at the folder's end, and the
// journal is emptied once the state holds every outcome, at the end of the
// run. The next run, before planning, settles what a
// kill -9 or a power loss left: a copy stored but not recorded gets its
// record (never copied twice, and a deletion of its original since reaches
// it), a move found done is recorded and one left copied is finished, a
// journaled deletion is completed (never copied back). An IMAP side's
// identity is its host, user and INBOX UIDVALIDITY: a recreated account is
// merged, never deleted from.
package twoway
