// Package imapsink is the IMAP destination: it appends messages to an
// account (RFC 9051, RFC 3501) so a whole account can move between
// providers. URL: imaps://USER@HOST[:PORT][/FOLDER][?multiappend=off], or
// imap:// with STARTTLS. Dialing, TLS, login and the wire helpers come from
// internal/imapconn, which the IMAP source shares.
//
// # Mailbox names
//
// The engine names mailboxes in UTF-8 with '/' separators. The sink maps
// them to the server's hierarchy delimiter and personal namespace prefix
// (NAMESPACE, RFC 2342): "Archive/2024" becomes "INBOX.Archive.2024" on a
// Courier-style server. INBOX stays INBOX. CreateMailbox creates every
// missing level (Dovecot does not create parents itself) and subscribes
// what it created. A folder in the URL path places everything below it.
//
// # Appending
//
// Every body is first spooled to an unlinked temporary file: APPEND must
// announce the exact size (a wrong one desynchronises the connection,
// docs/library-notes.md §0.8), the identity below is learned on the way, and a batch
// can be sent again after a failure. Memory stays flat whatever the size.
// Flags are sanitised (\Recent and unknown system flags dropped, keywords
// kept only when they are atoms the target's PERMANENTFLAGS allow) and the
// internal date is the envelope's.
//
// Append connections are driven by hand (go-imap cannot send MULTIAPPEND).
// When the server offers MULTIAPPEND (RFC 3502), Put adds the message to
// the command open on its connection, with a non-synchronising literal
// where LITERAL+ allows, and returns a provisional ID; Commit ends the
// commands of all connections at once and reads the APPENDUID UIDs (RFC
// 4315), which FinalID then returns. The command is all-or-nothing, which
// keeps retries simple. Since a Commit waits for every server session's
// transaction while no Put can use those connections, the sink asks the
// engine for fewer, larger commits (Limits().Batch, 256 messages).
// Without MULTIAPPEND (or with ?multiappend=off) Put runs one APPEND into
// the SELECTed folder and returns "uidvalidity.uid" once the server said
// OK.
//
// # Identity and duplicates
//
// A rerun that lost its checkpoint, or a destination another tool already
// filled, must not get a second copy, while different messages that share
// a Message-ID, or have none, must all arrive. On the first Put into a
// folder the sink indexes it with one FETCH of, per message: RFC822.SIZE,
// INTERNALDATE, BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE FROM SUBJECT)]
// and the first 256 bytes of BODY.PEEK[TEXT]: a few hundred bytes a
// message. A Put is the same message as an indexed one when all of these
// agree:
//
//   - the Message-ID field and a hash of the Date, From and Subject fields
//     (each unfolded, white space collapsed, first occurrence; a message
//     without Message-ID is identified by the hash alone);
//   - the size: the server's RFC822.SIZE equals the body's length, or its
//     length with every bare LF made CRLF (servers such as Dovecot store
//     that);
//   - the internal date, to the second, when the source knows it;
//   - the first 256 bytes of the body text, compared without CR and with
//     NUL read as 0x80 (what Dovecot serves), and the whole text when it
//     is shorter.
//
// What servers are known to change on APPEND is absorbed, so that a rerun
// without checkpoint still finds the stored copy: 8-bit header bytes are
// compared as 'X' (Cyrus IMAP's munge8bit, on by default, rewrites them
// so), and a message without a final line break also matches a copy two
// bytes longer whose text ends with one (Courier IMAP adds CRLF). When a
// copy is recognised that way the sink counts it (AlteredOnAppend) and
// warns once per run.
//
// Matching is a multiset: each indexed message pairs with at most one Put
// of the run, so two identical source messages need two copies and get
// them, and messages this run appended are never offered for pairing. A
// paired Put reads its body, appends nothing and returns the existing
// message's ID.
//
// What it cannot tell apart: two messages with equal identity fields,
// equal size, the same internal date and the same first 256 bytes of text
// (in practice the same message). What makes it miss (and copy again): a
// destination copy whose internal date or bytes another tool changed.
//
// # Errors and unknown outcomes
//
// An APPEND answered NO [OVERQUOTA] is fatal for the run. NO [TRYCREATE]
// creates the folder and retries once. [TOOBIG], an APPENDLIMIT the
// message exceeds (checked before sending) and "too large" texts give
// mail.ErrTooLarge. [UNAVAILABLE], [INUSE], [LIMIT] and "throttled" texts
// are temporary (after the pause a "Suggested Backoff Time" asks for), and
// so is a lost connection or BYE. When a connection is lost after a
// message's last byte went out but before the tagged answer (scenario A6),
// nobody knows whether the server stored it: the folder is marked stale,
// and before anything else is paired or sent again, the sink reads the
// folder's tail from the last known UIDNEXT and pairs the message with a
// copy found there.
package imapsink
