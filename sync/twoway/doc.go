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
//     cannot store (SideInfo.Keeps) is never read as removed there.
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
//     that side, is moved on the other side, not copied again.
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
//     there holds >= 90 % of its messages, by id else by Message-ID):
//     renamed on the other side first, the state re-keyed, nothing copied or
//     deleted. Deleted on one side: a warning, and nothing of that folder is
//     changed on either side; with Options.RemoveFolders the other side's
//     copy is deleted when unchanged since the last sync, or, when it
//     changed, recreated on the deleting side with everything in it (a
//     conflict). Folder deletions count for the guard with their messages;
//     when more than half of the paired folders vanished from one side, that
//     side's deletions, folders included, are all held back.
package twoway
