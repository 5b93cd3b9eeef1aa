package mail

import (
	"context"
	"io"
	"iter"
)

// This file lists every optional capability an endpoint may have beyond
// Source and Sink, with what it promises, and Features: the capabilities
// of one endpoint, discovered once. Callers ask a Features value instead
// of type-asserting the endpoint, so that a wrapper (a filter, a preset,
// a fault injector) can say which capabilities it keeps, which it
// replaces and which it hides (see Featurer and Wrap).
//
// Every endpoint asserts at compile time the capabilities it has:
//
//	var _ mail.Committer = (*Sink)(nil)

// Committer is implemented by sinks that batch durability: Put writes a
// message but only Commit makes every message Put before it durable (for a
// Maildir: fsync the files, rename them into place, fsync the directories).
// The engine records a message in the checkpoint only after the Commit that
// covers it returned nil. Commit may run concurrently with Put.
type Committer interface {
	Commit(ctx context.Context) error
}

// CommitError is what Commit returns when it stored all but some messages:
// Failed maps the IDs Put returned for the messages given up to why. Every
// other message Put before the Commit is durable. The engine counts the
// failed ones as failed messages and goes on; any other Commit error stops
// the run.
type CommitError struct {
	Failed map[ID]error
	Err    error
}

func (e *CommitError) Error() string { return e.Err.Error() }
func (e *CommitError) Unwrap() error { return e.Err }

// IDResolver is implemented by sinks whose Put returns a provisional ID that
// Commit replaces with the final one (IMAP MULTIAPPEND learns UIDs only
// from the command's APPENDUID). The engine asks after Commit, before it
// records the message in the checkpoint.
type IDResolver interface {
	FinalID(id ID) (ID, bool)
}

// Indexer is implemented by sinks that can list what they already hold, so a
// run without a checkpoint (lost, or a destination filled by another tool)
// can still avoid duplicates.
type Indexer interface {
	Index(ctx context.Context, mailbox string, fn func(Envelope) error) error
}

// FlagSetter is implemented by sinks that can update the flags of a message
// they already hold, so flag changes on the source follow on a rerun.
type FlagSetter interface {
	SetFlags(ctx context.Context, mailbox string, id ID, flags []Flag) error
}

// StoredReader is implemented by sinks that can read back a message they
// hold (the Maildir sink), by the ID their Index gives. A checkpoint rebuilt
// from the destination then records the content hash too (docs/failure-model.md
// A9), as the copy would have.
type StoredReader interface {
	OpenStored(ctx context.Context, mailbox string, id ID) (io.ReadCloser, error)
}

// Holder is implemented by sinks that can tell whether they still hold
// messages they stored earlier, so that --delete-after deletes a source
// message only while its stored copy is there. Holds answers, for each of
// stored (all of mailbox), whether the sink still holds it: a Maildir or
// mbox sink by the delivery key it stored the message under (Key), an IMAP
// sink by the final ID it returned (ID, UIDVALIDITY included). A mailbox
// that does not exist holds nothing. Holds reads only.
type Holder interface {
	Holds(ctx context.Context, mailbox string, stored []Stored) ([]bool, error)
}

// Stored names a message a sink stored: the ID it returned and the
// delivery key (Envelope.Key) the engine gave it.
type Stored struct {
	ID  ID
	Key string
}

// BatchOpener is implemented by sources that stream many messages of one
// mailbox in a single request (IMAP: one UID FETCH for a set of UIDs), which
// saves a round trip and server work per message. OpenBatch calls fn once
// for each message of envs it can serve, in the source's order, with the
// body as the source stores it; the body is valid only during fn. A message
// the source does not return is simply not passed to fn: the caller falls
// back to Open for it. An error from fn stops OpenBatch, which returns it;
// so does a failure of the request. All envs are of the same mailbox. fn
// must not call the source: a one-connection source is busy meanwhile.
type BatchOpener interface {
	OpenBatch(ctx context.Context, envs []Envelope, fn func(env Envelope, body io.Reader) error) error
}

// Remover is implemented by sources that can delete messages after they were
// copied (POP3 DELE, IMAP \Deleted + UID EXPUNGE). The engine calls it only
// after the sink committed the messages and the checkpoint recorded them.
// Deletion may take effect only at Close (POP3 commits deletions at QUIT).
type Remover interface {
	Remove(ctx context.Context, envs []Envelope) error
}

// DeleteAware is implemented by sources that identify messages differently
// when they will be deleted after the copy (POP3 without UIDL: by content,
// which is safe only when each message is read once). The engine calls
// DeleteAfterCopy before Mailboxes when the run deletes.
type DeleteAware interface {
	DeleteAfterCopy()
}

// UnstoredReporter is implemented by sources whose server may stop offering
// a message once it was read (Gmail's POP3). After the run, Unstored returns
// the messages read but not stored (stored says which were), so the engine
// reports them as failures instead of letting them vanish unnoticed.
type UnstoredReporter interface {
	Unstored(stored func(Envelope) bool) []Envelope
}

// AlterationCounter is implemented by sinks that recognise a copy the
// server changed when it stored it (a server that rewrites 8-bit header
// bytes, or adds a final line break), so that a rerun does not store it
// again. AlteredOnAppend returns how many such copies the sink has
// recognised so far; the run's summary reports it once.
type AlterationCounter interface {
	AlteredOnAppend() int64
}

// HeaderFetcher is implemented by sources whose listing carries no
// Message-ID but that can read a message's header section without its body
// (POP3 TOP msg 0, RFC 1939 §7). The engine calls MessageIDs once for the
// messages of a folder whose identifiers were reset (docs/failure-model.md C3),
// so that it can match them with the messages it copied before by
// Message-ID and size instead of downloading each one.
//
// MessageIDs returns the Message-ID of each message ids names in mailbox,
// exactly as a HeaderScanner fed the message from its start finds it ("" for
// a message without one), so that it equals what the engine found when it
// copied the body. It returns either an entry for every ID or an error; an
// ID the source does not have gives ErrNotFound, and a source or server
// that cannot do it gives ErrUnsupported. It may be called concurrently with
// the other Source methods. Cancelling ctx aborts it with ctx's error.
type HeaderFetcher interface {
	MessageIDs(ctx context.Context, mailbox string, ids []ID) (map[ID]string, error)
}

// Statter is implemented by sources that count a mailbox without listing
// it message by message (IMAP STATUS, POP3 STAT), for `mailferry ls`.
// Stat returns the number of messages in mailbox and their total size in
// octets as the server announces them; a mailbox that does not exist gives
// ErrMailboxNotFound.
type Statter interface {
	Stat(ctx context.Context, mailbox string) (messages int, bytes int64, err error)
}

// RoleLister is implemented by endpoints that know which mailbox serves
// which purpose (IMAP SPECIAL-USE, RFC 6154), so a copy can put the source's
// "Sent Items" into the destination's "Sent" (see sync.RoleMap).
//
// MailboxRoles maps mailbox names, spelt as the endpoint's Mailboxes, List
// or Put take them (UTF-8, '/' separators), to a role such as RoleSent.
// Mailboxes without a role are absent. It is safe for concurrent use;
// cancelling ctx returns an error wrapping ctx.Err().
type RoleLister interface {
	MailboxRoles(ctx context.Context) (map[string]string, error)
}

// FolderStatus is what a source says about a folder without listing it
// (IMAP STATUS), and what a change listing starts from: the status at the
// end of the last complete listing. IDs are only comparable while
// UIDValidity stays the same (RFC 9051 §2.3.1.1).
type FolderStatus struct {
	UIDValidity uint32
	// UIDNext is the next UID the folder will give: every message the
	// listing saw has a lower one. A caller that kept only the highest UID
	// it saw passes that + 1.
	UIDNext  uint32
	Messages uint32
	// HighestModSeq is the folder's highest mod-sequence (CONDSTORE, RFC
	// 7162), 0 when the server has none; it grows with every change of a
	// message's flags, every new message and every expunge.
	HighestModSeq uint64
	// NoModSeq is set when the server offers CONDSTORE but keeps no
	// mod-sequences for this folder (NOMODSEQ, or HIGHESTMODSEQ 0).
	NoModSeq bool
	// MailboxID is the folder's MAILBOXID where the server offers OBJECTID
	// (RFC 8474): it stays with the folder across a rename, so a two-way
	// sync follows the rename by it. "" when the server has none.
	MailboxID string
	// Evidence is the change evidence of a folder without UIDs or
	// mod-sequences (a Maildir's directories, an mbox file), compared for
	// equality only: the same evidence means the same messages with the
	// same flags. Such a status leaves UIDValidity, UIDNext and
	// HighestModSeq 0, and Messages 0 where counting means reading the
	// messages (mbox). Empty for IMAP.
	Evidence string
	// Unsettled is set when the evidence was taken too soon after a change
	// to rule out a second change within the file system's timestamp
	// granularity, which would leave the same evidence (the "racy git"
	// problem): the folder must be listed, and the evidence not kept as
	// the mark of a complete pass.
	Unsettled bool
}

// FolderStatuser is implemented by sources that can report the status of
// many folders at once (IMAP: one LIST-STATUS, RFC 5819, or pipelined
// STATUS; Maildir and mbox: change evidence from the file system), so
// that a rerun lists only the folders that moved.
//
// FolderStatuses returns the status of each of mailboxes (spelt as
// Mailboxes returns them) in one round trip where the protocol allows; a
// folder that does not exist is absent from the map. A folder whose status
// equals the one recorded at the end of its last complete listing holds
// the same messages, and, when HighestModSeq is not 0 or Evidence is set
// and not Unsettled, the same flags: without mod-sequences or evidence a
// flag change does not show in the status. Safe for concurrent use with
// the other Source methods; cancelling ctx returns an error wrapping
// ctx.Err().
type FolderStatuser interface {
	FolderStatuses(ctx context.Context, mailboxes []string) (map[string]FolderStatus, error)
}

// ChangeKind says what a Change reports.
type ChangeKind uint8

// The kinds of Change.
const (
	// ChangeNew: a message the last listing did not see. Envelope is
	// complete, as List gives it (Message-ID included).
	ChangeNew ChangeKind = iota + 1
	// ChangeFlags: a message the last listing saw, or one that arrived
	// after it that the caller holds (known: a two-way sync's own copy),
	// with its flags now. Envelope has Mailbox, ID and Flags only. The
	// flags may be unchanged: without mod-sequences every message is
	// reported.
	ChangeFlags
	// ChangeVanished: a message the last listing saw, or a known one that
	// arrived after it, that is gone. Envelope has Mailbox and ID only.
	ChangeVanished
)

// Change is one difference between a folder now and at its last complete
// listing.
type Change struct {
	Kind     ChangeKind
	Envelope Envelope
}

// ChangeSummary is how a change listing went.
type ChangeSummary struct {
	// Status is the folder's status for the next change listing: record
	// it once every change passed to fn is applied. It is set also when
	// Full is.
	Status FolderStatus
	// Full, when set, says the changes cannot be trusted to be complete
	// and the folder must be listed in full; Reason says why (UIDVALIDITY
	// changed, HIGHESTMODSEQ went backwards, the server said NOMODSEQ,
	// counts disagree, no earlier listing). Full may be set after ChangeNew
	// and ChangeFlags changes were passed to fn (they are true), never after
	// a ChangeVanished one.
	Full   bool
	Reason string
	// New, Flags and Vanished count the changes passed to fn. AllFlags is
	// set when every known message was reported as ChangeFlags (no
	// mod-sequences).
	New, Flags, Vanished int
	AllFlags             bool
}

// ChangeLister is implemented by sources that can list what changed in a
// folder since a recorded status instead of listing it whole (IMAP:
// CONDSTORE CHANGEDSINCE, QRESYNC VANISHED (EARLIER), UID FETCH of the UIDs
// from the last UIDNEXT on, as issue 11 describes).
//
// ListChanges calls fn for each change in mailbox since the status since
// (the ChangeSummary.Status, or FolderStatus, recorded at the end of the
// last complete listing): new messages first, then flag changes, then
// vanished messages, on the caller's goroutine. known, when not nil,
// yields the IDs the caller holds for the folder; a source that must find
// expunges by comparing (no QRESYNC) asks for it, and reports only
// vanished IDs it yielded; without it such a source may answer Full. A
// source may iterate known on a goroutine of its own (the IMAP source does,
// during its round trips), only before its first call of fn and never
// after ListChanges returns. An
// error from fn stops the listing and is returned unchanged. A zero since
// gives Full. Cancelling ctx returns an error wrapping ctx.Err().
type ChangeLister interface {
	ListChanges(ctx context.Context, mailbox string, since FolderStatus, known iter.Seq[ID], fn func(Change) error) (ChangeSummary, error)
}

// ChangePrefetcher is implemented by change listers that can start the
// change listings of many folders at once (IMAP: every folder's EXAMINE
// (QRESYNC), and its FETCH of new messages, in one round trip, instead of
// one round trip or two per folder).
//
// PrefetchChanges is told, before the ListChanges calls, the folders
// whose changes are about to be listed: each with the status since which
// they are asked (as ListChanges will be given it) and the status read
// now (Now, zero when unknown). A later ListChanges of one of them with
// the same since may answer from what it fetched. It reports nothing:
// a folder it could not start is listed by ListChanges as before.
type ChangePrefetcher interface {
	PrefetchChanges(ctx context.Context, folders []ChangeMark)
}

// ChangeMark is one folder for ChangePrefetcher.
type ChangeMark struct {
	Mailbox    string
	Since, Now FolderStatus
}

// WriteProver is implemented by sources whose server can show that what
// changed in a folder since a listing is only this process's own writes
// (IMAP with CONDSTORE and QRESYNC: the MODSEQ each conditional STORE got,
// the APPENDUID of each APPEND, the UIDs of each UID EXPUNGE, checked
// against a CHANGEDSINCE/VANISHED answer). A two-way sync then records
// the status after its writes, so the next run does not list a folder
// only to find its own changes there.
//
// ProveOwnWrites takes, per mailbox, the status its listing recorded,
// and returns the status now of each one where every change since is a
// write this process logged; a mailbox it cannot prove (a change by
// another client, a write whose outcome is unknown, a server without the
// extensions) is left out. Call it after the run's last write.
type WriteProver interface {
	ProveOwnWrites(ctx context.Context, since map[string]FolderStatus) (map[string]FolderStatus, error)
}

// FolderWriteProver is implemented by WriteProvers that can prove one
// folder right after the run's last write there, where the server still
// has it open from those writes (IMAP: no second open of it, which costs
// Dovecot a rescan of a Maildir folder it just changed, and no round trip
// at the end of the run).
//
// ProveFolderWrites takes the status mailbox's listing recorded and
// returns, with ok, the status now as ProveOwnWrites would; ok false
// when it cannot tell there and then (the caller asks ProveOwnWrites at
// the end, as before). A write to mailbox after it makes the status it
// returned an earlier one: still safe to record (the next run lists
// what came after), not the best. next, when not "", names the folder
// the caller writes to next: the source may open it in the same round
// trip.
type FolderWriteProver interface {
	ProveFolderWrites(ctx context.Context, mailbox string, since FolderStatus, next string) (now FolderStatus, ok bool, err error)
}

// Two-way sync writes on a side it also reads (the two-way sync issue):
// the three capabilities below let it do so as a mail client would.

// FlagState is a message's flags and mod-sequence after a conditional
// flag write.
type FlagState struct {
	Flags  []Flag
	ModSeq uint64
	// Stored is false when the message changed since the mod-sequence
	// given: nothing was written, and Flags are what it holds now.
	Stored bool
}

// ConditionalFlagSetter is implemented by sinks that can write a message's
// flags only if no one changed them since a mod-sequence (IMAP CONDSTORE,
// RFC 7162 §3.1.3: UID STORE with UNCHANGEDSINCE). SetFlagsIf replaces the
// flags of message id of mailbox unless its mod-sequence is now above
// since; either way it returns the message's flags and mod-sequence after
// the call, so that a caller merging flags merges again with what another
// client wrote meanwhile (and passes the new ModSeq). It returns an error
// wrapping ErrNotFound when the message is gone, and ErrUnsupported when
// the server or the mailbox keeps no mod-sequences (use FlagSetter).
//
// SetFlagsIfAll does the same for many messages of mailbox at once (IMAP:
// one round trip, the writes of the same flags and since sharing one UID
// STORE). Its results are in the order of ws; a message gone has Err
// wrapping ErrNotFound. An error of the call itself (ErrUnsupported, a
// lost connection) is returned alone.
type ConditionalFlagSetter interface {
	SetFlagsIf(ctx context.Context, mailbox string, id ID, flags []Flag, since uint64) (FlagState, error)
	SetFlagsIfAll(ctx context.Context, mailbox string, ws []FlagWrite) ([]FlagResult, error)
}

// FlagWrite is one message's conditional flag write (SetFlagsIfAll).
type FlagWrite struct {
	ID    ID
	Flags []Flag
	Since uint64
}

// FlagResult is what SetFlagsIfAll did to one message: what SetFlagsIf
// would have returned for it.
type FlagResult struct {
	FlagState
	Err error
}

// Mover is implemented by sinks that can move a message they hold into
// another of their mailboxes without the body travelling: IMAP UID MOVE
// (RFC 6851) where offered, else UID COPY, then \Deleted and UID EXPUNGE of
// that UID (UIDPLUS, RFC 4315). Move returns the message's id in to ("" when
// the server does not say). After a nil error the message is in to and no
// longer visible in mailbox, except on a server without MOVE and UIDPLUS,
// where the original is left flagged \Deleted (a plain EXPUNGE would also
// remove what other clients flagged), which Move logs. On an error the
// message is still in mailbox (and may also be in to: a COPY done before a
// failed \Deleted).
type Mover interface {
	Move(ctx context.Context, mailbox string, id ID, to string) (ID, error)
}

// FlagKeeper is implemented by sinks whose mailboxes may keep only some
// flags (IMAP PERMANENTFLAGS, RFC 9051 §7.1). KeptFlags returns the flags
// mailbox keeps, with the flag \* when it keeps any keyword a client makes
// up; all is true when the server does not say (it keeps every flag).
type FlagKeeper interface {
	KeptFlags(ctx context.Context, mailbox string) (flags []Flag, all bool, err error)
}

// FolderManager is implemented by sinks that can rename and delete
// folders (IMAP RENAME and DELETE), for a two-way sync that follows a
// folder renamed or deleted on the other side. RenameMailbox is done, not
// an error, when from no longer exists and to does (a rename a crash left
// unrecorded, or one the server did along with a parent's). DeleteMailbox
// deletes name only while it holds exactly the messages holds names (ids
// as the matching source lists them), and returns an error otherwise, so
// mail that arrived after the listing is never deleted with the folder.
type FolderManager interface {
	RenameMailbox(ctx context.Context, from, to string) error
	DeleteMailbox(ctx context.Context, name string, holds []ID) error
}

// AnyHolder is implemented by sinks that can tell whether a mailbox holds
// any message without listing it (the Maildir sink reads new/ and cur/ only
// up to the first message file). The copy engine checks with it that the
// destination of a folder skipped as unchanged was not emptied, replaced
// or unmounted (docs/failure-model.md rule 5) at a cost that does not grow
// with the folder; without it, it lists the folder (Indexer). A missing
// mailbox holds nothing.
type AnyHolder interface {
	HoldsAny(ctx context.Context, mailbox string) (bool, error)
}

// HoldEvidencer is implemented by AnyHolders that can vouch for an earlier
// answer from cheap change evidence (the Maildir sink: a stat of the
// folder's new/ and cur/, internal/fsevidence), so that a no-op rerun does
// not read every skipped folder's directories. HoldsSince answers as
// HoldsAny, but when since (evidence it returned earlier) equals the
// mailbox's evidence now, it answers true without reading the mailbox.
// It returns the evidence to keep for the next call: "" when the mailbox
// holds nothing or its evidence is too recent to trust (a change in the
// same clock tick would not show in it).
type HoldEvidencer interface {
	HoldsSince(ctx context.Context, mailbox, since string) (held bool, evidence string, err error)
}

// MailboxReleaser is implemented by sinks that keep something in memory
// per mailbox for the life of the run (the Maildir sink's index of the
// keys stored in a folder): the copy engine calls ReleaseMailbox once
// everything it put there is committed and it is done with the folder, so
// the run's memory follows the folders in work, not the account. A later
// Put there builds it again; a sink still holding uncommitted messages of
// the mailbox keeps it.
type MailboxReleaser interface {
	ReleaseMailbox(mailbox string)
}

// PutPreparer is implemented by sinks whose Put of a message looks for a
// stored copy of it by reading the destination folder (the Maildir sink
// reads its file names for the delivery key, tens of milliseconds in a
// 50,000-message folder): the copy engine calls PreparePuts when it is
// about to list a folder's new messages (a nightly rerun), so the sink can
// do that read in the background, beside the listing's round trips,
// instead of in the first Put. It returns at once, creates no folder, and
// changes nothing that Put does or returns; Close waits for the read.
type PutPreparer interface {
	PreparePuts(mailbox string)
}

// PutPreparerFrom is implemented by sinks that can take, instead of
// reading them (PutPreparer), the ids of the messages a destination folder
// holds from a caller that has just read them itself (two-way sync lists a
// Maildir folder by its names before copying into it; the sink read them
// again, three times in a folder that gets several copies). ids are every
// message the folder held when the caller read it, as the sink's Indexer
// lists them. PreparePutsFrom returns at once, creates no folder, and
// changes nothing that Put does or returns.
type PutPreparerFrom interface {
	PreparePutsFrom(mailbox string, ids []ID)
}

// The capability names, as Features.Names reports them and the conformance
// suite names its subtests.
const (
	CapCommitter         = "Committer"
	CapIDResolver        = "IDResolver"
	CapIndexer           = "Indexer"
	CapFlagSetter        = "FlagSetter"
	CapStoredReader      = "StoredReader"
	CapBatchOpener       = "BatchOpener"
	CapRemover           = "Remover"
	CapDeleteAware       = "DeleteAware"
	CapUnstoredReporter  = "UnstoredReporter"
	CapHeaderFetcher     = "HeaderFetcher"
	CapStatter           = "Statter"
	CapRoleLister        = "RoleLister"
	CapFolderStatuser    = "FolderStatuser"
	CapChangeLister      = "ChangeLister"
	CapWriteProver       = "WriteProver"
	CapChangePrefetcher  = "ChangePrefetcher"
	CapFolderWriteProver = "FolderWriteProver"
	CapAlterationCounter = "AlterationCounter"
	CapHolder            = "Holder"
	CapConditionalFlags  = "ConditionalFlagSetter"
	CapMover             = "Mover"
	CapFlagKeeper        = "FlagKeeper"
	CapFolderManager     = "FolderManager"
	CapAnyHolder         = "AnyHolder"
	CapHoldEvidencer     = "HoldEvidencer"
	CapMailboxReleaser   = "MailboxReleaser"
	CapPutPreparer       = "PutPreparer"
	CapPutPreparerFrom   = "PutPreparerFrom"
)

// Features holds the optional capabilities of one endpoint: each field is
// the value that provides it, or nil when the endpoint lacks it. Discover
// them once with FeaturesOf and ask the fields instead of type-asserting
// the endpoint (as rclone's fs.Features).
type Features struct {
	// Sink capabilities.
	Committer         Committer
	IDResolver        IDResolver
	Indexer           Indexer
	FlagSetter        FlagSetter
	StoredReader      StoredReader
	AlterationCounter AlterationCounter
	Holder            Holder
	// ConditionalFlagSetter, Mover, FlagKeeper: see above.
	ConditionalFlagSetter ConditionalFlagSetter
	Mover                 Mover
	FlagKeeper            FlagKeeper
	FolderManager         FolderManager
	AnyHolder             AnyHolder
	HoldEvidencer         HoldEvidencer
	MailboxReleaser       MailboxReleaser
	PutPreparer           PutPreparer
	PutPreparerFrom       PutPreparerFrom
	// Source capabilities.
	BatchOpener       BatchOpener
	Remover           Remover
	DeleteAware       DeleteAware
	UnstoredReporter  UnstoredReporter
	HeaderFetcher     HeaderFetcher
	Statter           Statter
	FolderStatuser    FolderStatuser
	ChangeLister      ChangeLister
	WriteProver       WriteProver
	FolderWriteProver FolderWriteProver
	ChangePrefetcher  ChangePrefetcher
	// Either side.
	RoleLister RoleLister
}

// Featurer is implemented by endpoints whose capabilities are not simply
// the methods they have: wrappers, whose methods may forward to an inner
// endpoint that lacks them. FeaturesOf asks it instead of type-asserting.
type Featurer interface {
	Features() *Features
}

// FeaturesOf returns the capabilities of endpoint v (a Source, a Sink or
// anything else): v.Features() when v is a Featurer, otherwise the
// capabilities v's methods implement. nil has none. The result is a fresh
// value the caller may change.
func FeaturesOf(v any) *Features {
	if fr, ok := v.(Featurer); ok {
		if f := fr.Features(); f != nil {
			c := *f
			return &c
		}
		return &Features{}
	}
	return new(Features).Fill(v)
}

// Wrap returns the capabilities of a wrapper outer around inner: those
// outer implements itself and inner has too (Mask: outer's forwarding
// methods promise nothing inner cannot do), and, for each capability
// outer does not implement, inner's (PassThrough). A wrapper's Features
// method usually returns Wrap(w, w.inner), then clears or replaces the
// fields it changes. Wrap does not call outer's Features, so it is safe
// there.
func Wrap(outer, inner any) *Features {
	in := FeaturesOf(inner)
	return new(Features).Fill(outer).Mask(in).PassThrough(in)
}

// Fill sets every field from v's methods, by type assertion, as rclone's
// Features.Fill: the field holds v when v implements the capability and
// nil otherwise. It does not consult Featurer (see FeaturesOf). It returns
// f.
func (f *Features) Fill(v any) *Features {
	f.Committer, _ = v.(Committer)
	f.IDResolver, _ = v.(IDResolver)
	f.Indexer, _ = v.(Indexer)
	f.FlagSetter, _ = v.(FlagSetter)
	f.StoredReader, _ = v.(StoredReader)
	f.AlterationCounter, _ = v.(AlterationCounter)
	f.Holder, _ = v.(Holder)
	f.ConditionalFlagSetter, _ = v.(ConditionalFlagSetter)
	f.Mover, _ = v.(Mover)
	f.FlagKeeper, _ = v.(FlagKeeper)
	f.BatchOpener, _ = v.(BatchOpener)
	f.Remover, _ = v.(Remover)
	f.DeleteAware, _ = v.(DeleteAware)
	f.UnstoredReporter, _ = v.(UnstoredReporter)
	f.HeaderFetcher, _ = v.(HeaderFetcher)
	f.Statter, _ = v.(Statter)
	f.RoleLister, _ = v.(RoleLister)
	f.FolderStatuser, _ = v.(FolderStatuser)
	f.ChangeLister, _ = v.(ChangeLister)
	f.WriteProver, _ = v.(WriteProver)
	f.FolderWriteProver, _ = v.(FolderWriteProver)
	f.ChangePrefetcher, _ = v.(ChangePrefetcher)
	f.FolderManager, _ = v.(FolderManager)
	f.AnyHolder, _ = v.(AnyHolder)
	f.HoldEvidencer, _ = v.(HoldEvidencer)
	f.MailboxReleaser, _ = v.(MailboxReleaser)
	f.PutPreparer, _ = v.(PutPreparer)
	f.PutPreparerFrom, _ = v.(PutPreparerFrom)
	return f
}

// Mask clears every capability that in lacks, as rclone's Features.Mask: a
// wrapper whose methods forward to an inner endpoint offers a capability
// only when the inner one has it too. It returns f.
func (f *Features) Mask(in *Features) *Features {
	mask(&f.Committer, in.Committer)
	mask(&f.IDResolver, in.IDResolver)
	mask(&f.Indexer, in.Indexer)
	mask(&f.FlagSetter, in.FlagSetter)
	mask(&f.StoredReader, in.StoredReader)
	mask(&f.AlterationCounter, in.AlterationCounter)
	mask(&f.Holder, in.Holder)
	mask(&f.ConditionalFlagSetter, in.ConditionalFlagSetter)
	mask(&f.Mover, in.Mover)
	mask(&f.FlagKeeper, in.FlagKeeper)
	mask(&f.BatchOpener, in.BatchOpener)
	mask(&f.Remover, in.Remover)
	mask(&f.DeleteAware, in.DeleteAware)
	mask(&f.UnstoredReporter, in.UnstoredReporter)
	mask(&f.HeaderFetcher, in.HeaderFetcher)
	mask(&f.Statter, in.Statter)
	mask(&f.RoleLister, in.RoleLister)
	mask(&f.FolderStatuser, in.FolderStatuser)
	mask(&f.ChangeLister, in.ChangeLister)
	mask(&f.WriteProver, in.WriteProver)
	mask(&f.FolderWriteProver, in.FolderWriteProver)
	mask(&f.ChangePrefetcher, in.ChangePrefetcher)
	mask(&f.FolderManager, in.FolderManager)
	mask(&f.AnyHolder, in.AnyHolder)
	mask(&f.HoldEvidencer, in.HoldEvidencer)
	mask(&f.MailboxReleaser, in.MailboxReleaser)
	mask(&f.PutPreparer, in.PutPreparer)
	mask(&f.PutPreparerFrom, in.PutPreparerFrom)
	return f
}

// PassThrough sets every capability f lacks to in's, so that a wrapper
// keeps what the inner endpoint offers and the wrapper does not change.
// It returns f.
func (f *Features) PassThrough(in *Features) *Features {
	pass(&f.Committer, in.Committer)
	pass(&f.IDResolver, in.IDResolver)
	pass(&f.Indexer, in.Indexer)
	pass(&f.FlagSetter, in.FlagSetter)
	pass(&f.StoredReader, in.StoredReader)
	pass(&f.AlterationCounter, in.AlterationCounter)
	pass(&f.Holder, in.Holder)
	pass(&f.ConditionalFlagSetter, in.ConditionalFlagSetter)
	pass(&f.Mover, in.Mover)
	pass(&f.FlagKeeper, in.FlagKeeper)
	pass(&f.BatchOpener, in.BatchOpener)
	pass(&f.Remover, in.Remover)
	pass(&f.DeleteAware, in.DeleteAware)
	pass(&f.UnstoredReporter, in.UnstoredReporter)
	pass(&f.HeaderFetcher, in.HeaderFetcher)
	pass(&f.Statter, in.Statter)
	pass(&f.RoleLister, in.RoleLister)
	pass(&f.FolderStatuser, in.FolderStatuser)
	pass(&f.ChangeLister, in.ChangeLister)
	pass(&f.WriteProver, in.WriteProver)
	pass(&f.FolderWriteProver, in.FolderWriteProver)
	pass(&f.ChangePrefetcher, in.ChangePrefetcher)
	pass(&f.FolderManager, in.FolderManager)
	pass(&f.AnyHolder, in.AnyHolder)
	pass(&f.HoldEvidencer, in.HoldEvidencer)
	pass(&f.MailboxReleaser, in.MailboxReleaser)
	pass(&f.PutPreparer, in.PutPreparer)
	pass(&f.PutPreparerFrom, in.PutPreparerFrom)
	return f
}

// Names lists the capabilities f has, in the order of the Cap constants.
func (f *Features) Names() []string {
	var names []string
	for _, c := range []struct {
		name string
		v    any
	}{
		{CapCommitter, f.Committer}, {CapIDResolver, f.IDResolver}, {CapIndexer, f.Indexer},
		{CapFlagSetter, f.FlagSetter}, {CapStoredReader, f.StoredReader}, {CapHolder, f.Holder}, {CapBatchOpener, f.BatchOpener},
		{CapRemover, f.Remover}, {CapDeleteAware, f.DeleteAware}, {CapUnstoredReporter, f.UnstoredReporter},
		{CapHeaderFetcher, f.HeaderFetcher}, {CapStatter, f.Statter}, {CapRoleLister, f.RoleLister},
		{CapFolderStatuser, f.FolderStatuser}, {CapChangeLister, f.ChangeLister}, {CapWriteProver, f.WriteProver},
		{CapFolderWriteProver, f.FolderWriteProver}, {CapChangePrefetcher, f.ChangePrefetcher},
		{CapAlterationCounter, f.AlterationCounter}, {CapFolderManager, f.FolderManager},
		{CapConditionalFlags, f.ConditionalFlagSetter}, {CapMover, f.Mover}, {CapFlagKeeper, f.FlagKeeper},
		{CapAnyHolder, f.AnyHolder}, {CapHoldEvidencer, f.HoldEvidencer}, {CapMailboxReleaser, f.MailboxReleaser},
		{CapPutPreparer, f.PutPreparer}, {CapPutPreparerFrom, f.PutPreparerFrom},
	} {
		if c.v != nil {
			names = append(names, c.name)
		}
	}
	return names
}

// Has reports whether f has the capability called name (a Cap constant).
func (f *Features) Has(name string) bool {
	for _, n := range f.Names() {
		if n == name {
			return true
		}
	}
	return false
}

// mask clears *dst when in is nil.
func mask[T any](dst *T, in T) {
	if any(in) == nil {
		var zero T
		*dst = zero
	}
}

// pass sets *dst to in when *dst is nil.
func pass[T any](dst *T, in T) {
	if any(*dst) == nil {
		*dst = in
	}
}
