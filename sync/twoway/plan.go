package twoway

import (
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// Side names one of the two stores: A (a state record's Src) or B (Dst).
type Side uint8

// The two sides.
const (
	A Side = iota
	B
)

// Other returns the opposite side.
func (s Side) Other() Side { return 1 - s }

func (s Side) String() string {
	if s == A {
		return "A"
	}
	return "B"
}

// Msg is one message as a side lists it.
type Msg struct {
	ID    mail.ID
	Flags []mail.Flag
	// Size in octets, -1 unknown; Date the internal date in Unix seconds, 0
	// unknown; MsgID the checkpoint.MsgIDSum of the Message-ID, "" unknown.
	// Together they pair messages that have no record (first sync, lost
	// state) and recognise a message moved between folders.
	Size  int64
	Date  int64
	MsgID string
	// Content is a hash of the message's CRLF-normalised bytes, "" when not
	// known; it pairs what the Message-ID key cannot.
	Content string
	// OutOfScope marks a message outside the include/exclude/since/max-size
	// scope: it is frozen (neither copied nor deleted nor merged) and its
	// presence still counts, so it never looks deleted.
	OutOfScope bool
	// Racy and Stamp are a Maildir file's evidence as listed (evidence.go):
	// Stamp 0 when the listing did not come from the file; Racy when its
	// mtime was too recent to trust (Content then holds its hash).
	Racy  bool
	Stamp uint64
}

// key is the (Message-ID, size, date) that pairs messages, "" without a
// Message-ID.
func (m *Msg) key() string { return msgKey(m.MsgID, m.Size, m.Date) }

// Listing is one side's view of one folder.
type Listing struct {
	// Exists is false when the folder is not on this side.
	Exists bool
	Msgs   []Msg
	// Untrusted, when not "", says why absence from this listing must not
	// be read as a deletion (an incomplete listing: a cut connection, an
	// error mid-way). Copies and flag merges still happen.
	Untrusted string
	// evidenceHash is the hash of a Maildir side's files as this listing
	// saw them (hashEntries), when its folder's evidence was racy.
	evidenceHash string
	// byNames is set on a Maildir listing by names: the folder was read,
	// so the run reports it listed in full, but not every file was
	// stat'ed, so the pass is not a full one (RunOptions.FullEvery).
	byNames bool
	// Keeps are the flags this side keeps in this folder (an IMAP
	// server's PERMANENTFLAGS differ per folder); nil: SideInfo.Keeps.
	Keeps Keeps
	// IDsReset is true when this side's ids changed since the state was
	// written (an IMAP UIDVALIDITY change): the folder is merged as on a
	// first sync, pairing by content, and nothing is deleted.
	IDsReset bool
}

// Folder is the input for one folder pair: what the state knows and what
// each side lists. A folder has the same name on both sides.
type Folder struct {
	Name string
	// Known is true when the state has this folder pair (it was synced).
	Known bool
	// Base are the state's records of this folder: Src is the id on A, Dst
	// the id on B, Flags the flags both sides last agreed on.
	Base []state.Message
	// Omitted counts records left out of Base and of both listings: their
	// message changed on neither side since the last pass (both sides
	// listed by their changes), so nothing happens to them this run. They
	// still count as known messages (the guard, an empty folder).
	Omitted int
	Side    [2]Listing
	// MailboxIDs are each side's RFC 8474 MAILBOXID of the folder now, and
	// KnownMailboxIDs those the state recorded ("" none): a folder renamed
	// on a server that has them is followed by them (followRenames).
	MailboxIDs, KnownMailboxIDs [2]string

	// rename is set by followRenames on a folder it made of a vanished
	// folder and the new folder it was renamed to.
	rename *Rename
}

// SideInfo is what the planner knows about a whole side.
type SideInfo struct {
	// Keeps are the flags the side stores in a folder whose Listing.Keeps
	// does not say; nil: all.
	Keeps Keeps
	// StableIDs is true when a message keeps its id when moved between
	// folders (a Maildir base name), so a move is recognised by its id.
	StableIDs bool
	// Untrusted, when not "", says why nothing absent from this side may be
	// read as deleted (its identity or marker does not match the state).
	Untrusted string
}

// Options tune the planner.
type Options struct {
	Sides [2]SideInfo
	// MaxDelete is the fraction of a folder's known messages a side may
	// delete in one run before the guard holds its deletions back (with
	// more than MinGuard of them); 0 means 0.5.
	MaxDelete float64
	// NoDelete never deletes: every deletion is kept back (not an error).
	NoDelete bool
	// Force applies deletions the guard would hold back.
	Force bool
	// RemoveFolders deletes a folder on one side when the other side
	// deleted it and this side's copy is unchanged since the last sync
	// (--remove-folders); without it a vanished folder is only a warning.
	RemoveFolders bool
	// Unlisted counts the folder pairs the run skipped as unchanged, and
	// UnlistedKnown their records: they are in no Folder, but still count
	// in the guard's shares of a side's known messages and folders.
	Unlisted, UnlistedKnown int
}

// The guard's fixed limits: a folder's deletions are held only when there
// are more than minGuard of them; a side's deletions over all folders are
// held when they exceed sideShare of the side's known messages.
const (
	minGuard         = 20
	sideShare        = 0.25
	defaultMaxDelete = 0.5
)

// Actions counts what a folder plan does on one side: copies from it to
// the other side, flag changes, moves into the folder and deletions on it,
// applied and held back (a dry run prints them).
type Actions struct {
	CopiesFrom, Flags, Moves, Deletes, Held int
}

// Actions returns what fp does on side s.
func (fp *FolderPlan) Actions(s Side) Actions {
	a := Actions{Deletes: countOn(fp.Deletes, s), Held: countOn(fp.Held, s)}
	for _, c := range fp.Copies {
		if c.From == s {
			a.CopiesFrom++
		}
	}
	for i := range fp.Flags {
		if fp.Flags[i].Changes(s) {
			a.Flags++
		}
	}
	for _, m := range fp.Moves {
		if m.On == s {
			a.Moves++
		}
	}
	return a
}

// Plan is what one run will do.
type Plan struct {
	Folders []FolderPlan
	// HeldBack is true when the guard held deletions back: the run must
	// exit 10 after doing everything else.
	HeldBack bool
	Warnings []string
}

// FolderPlan is what one run does to one folder pair. The applier carries
// out, in this order: Create, Pairs, Copies, Moves, Flags, Deletes,
// Forgets; Forget (the folder gone from both sides) replaces all of them.
type FolderPlan struct {
	Name string
	// Create[s] is true when the folder must be created on side s.
	Create [2]bool
	// Rename, when not nil, renames the folder on one side first: the
	// other side renamed it (the folder's state moves with it).
	Rename *Rename
	// Remove[s] is true when the folder must be deleted on side s (the
	// other side deleted it, --remove-folders); RemoveHeld[s] when the
	// guard held that deletion back. RemoveMsgs is how many messages the
	// folder holds there. A removal replaces every other change.
	Remove, RemoveHeld [2]bool
	RemoveMsgs         int
	// Recreate[s] is true when side s deleted the folder while the other
	// side changed it (--remove-folders): it is created again on side s
	// with everything in it, a conflict.
	Recreate [2]bool
	// Skip, when not "", says why nothing in this folder is done by the
	// message-level applier (it vanished from one side while the state
	// knows it; a removal, Remove, is carried out apart).
	Skip string
	// Forget is true when the folder is gone from both sides: drop its state.
	Forget bool
	// Pairs are messages found on both sides without a record (first sync,
	// lost state): record them. Their flags are merged by Flags.
	Pairs   []state.Message
	Copies  []Copy
	Moves   []Move
	Flags   []FlagSync
	Deletes []Delete
	// Held are deletions not done this run (guard or --no-delete); their
	// records stay.
	Held []Delete
	// Forgets are Src ids of records to drop: gone from both sides, or a
	// record lacking one side's id (its message is paired or copied anew).
	Forgets   []mail.ID
	Conflicts []string
	Warnings  []string
}

// Copy stores a message of side From on the other side, in the same folder.
// It points at the message in its side's listing instead of holding what
// Flags and Record derive from it: a first sync of a 200,000-message
// account plans 200,000 copies, each 16 bytes instead of 250.
type Copy struct {
	From Side
	Msg  *Msg
}

// Flags are the flags to give the copy: the message's own, less \Recent.
func (c *Copy) Flags() []mail.Flag { return setOf(c.Msg.Flags).sorted() }

// Record is the record to put once the copy is stored; the applier fills
// in the new id on the other side (Dst when From is A, else Src).
func (c *Copy) Record() state.Message {
	m := c.Msg
	rec := state.Message{Size: m.Size, Date: m.Date, MsgID: m.MsgID, Flags: setOf(m.Flags).String(), FlagsKnown: true}
	setSideID(&rec, c.From, m.ID)
	return rec
}

// Rename renames folder From to the plan's folder on side On.
type Rename struct {
	On   Side
	From string
}

// Counts returns what the plan changes on each side, as Result.Side
// counts a run's changes: the summary of a dry run, and the held-back
// deletions and conflicts of any run. A folder deleted with its messages
// counts them as deleted.
func (p *Plan) Counts() [2]Counts {
	var c [2]Counts
	for i := range p.Folders {
		fp := &p.Folders[i]
		fp.countFolder(&c)
		for _, cp := range fp.Copies {
			c[cp.From.Other()].Copied++
		}
		for j := range fp.Flags {
			for _, s := range []Side{A, B} {
				if fp.Flags[j].Changes(s) {
					c[s].Flagged++
				}
			}
		}
		for _, mv := range fp.Moves {
			c[mv.On].Moved++
		}
		for _, d := range fp.Deletes {
			c[d.On].Deleted++
		}
		for _, d := range fp.Held {
			c[d.On].Held++
		}
	}
	return c
}

// Conflicts counts the plan's conflicts by the side whose change lost:
// a message deleted on one side while its flags changed on the other
// counts for the side where it is deleted; a folder deleted on one side
// while it changed on the other counts for the side where it is recreated.
func (p *Plan) Conflicts() [2]int {
	var n [2]int
	for i := range p.Folders {
		fp := &p.Folders[i]
		for _, d := range fp.Deletes {
			if d.Conflict {
				n[d.On]++
			}
		}
		for s, re := range fp.Recreate {
			if re {
				n[s]++
			}
		}
	}
	return n
}

// countFolder adds the folder-level actions to c.
func (fp *FolderPlan) countFolder(c *[2]Counts) {
	if fp.Rename != nil {
		c[fp.Rename.On].FoldersRenamed++
	}
	for s := range c {
		switch {
		case fp.Create[s]:
			c[s].FoldersCreated++
		case fp.Remove[s]:
			c[s].FoldersRemoved++
			c[s].Deleted += fp.RemoveMsgs
		case fp.RemoveHeld[s]:
			c[s].FoldersHeld++
		}
	}
}

// Removes reports whether the plan deletes the folder on a side.
func (fp *FolderPlan) Removes() bool { return fp.Remove[A] || fp.Remove[B] }

// FlagSync brings one message's flags on both sides to the merged result.
type FlagSync struct {
	ID [2]mail.ID
	// Set is the whole flag set to store on each side, Add and Remove what
	// changes; a side with neither needs no write.
	Set         [2][]mail.Flag
	Add, Remove [2][]mail.Flag
	// Record is the new base, put once both sides hold it.
	Record state.Message
}

// Changes reports whether side s needs a flag write.
func (f *FlagSync) Changes(s Side) bool { return len(f.Add[s])+len(f.Remove[s]) > 0 }

// Delete removes one message from side On: the other side deleted it.
type Delete struct {
	On Side
	ID mail.ID
	// Record is the state record to forget once deleted.
	Record state.Message
	// Conflict is true when side On changed its flags since the base: the
	// deletion wins.
	Conflict bool
	// Reason says why a deletion is held back (in FolderPlan.Held).
	Reason string
}

// Move moves a message on side On from folder From into this folder: the
// other side moved it so.
type Move struct {
	On   Side
	From string
	ID   mail.ID
	// Moved is the message as the side that moved it lists it now.
	Moved Msg
	// Set are the merged flags to store on each side after the move (nil:
	// no write; Set[On] applies to the moved copy), and Record the new
	// record in this folder; the applier fills in On's new id. Old is the
	// record in From to forget.
	Set    [2][]mail.Flag
	Record state.Message
	Old    state.Message
}
