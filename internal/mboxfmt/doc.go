// Package mboxfmt is the mbox file format that sources/mbox reads and
// sinks/mbox writes: an exact variant of mboxrd that gives every message
// back byte for byte, the mapping of mailbox names to files, and the sink's
// commit journal beside each file.
//
// # Layout
//
// An endpoint mbox:DIR is a directory. Mailbox "INBOX" is DIR/INBOX.mbox,
// "A/B" is DIR/A/B.mbox; names are UTF-8. FilePath is the mapping: it never
// leaves DIR and never maps two names to one file (see its comment for what
// it refuses). Beside a file the sink may keep FILE.lock (a dotlock) and
// FILE.mfjournal (its commit journal, see Journal).
//
// # Entry format
//
// RFC 4155 §2 describes the mbox database: each message starts with a
// "From " separator line, and lines of the message that would look like one
// must be escaped. The mboxrd convention escapes reversibly: a writer adds
// one '>' to every line matching ^>*From , and a reader removes one from
// every line matching ^>+From . Writers also end each message with an empty
// line, which readers drop. Three things usually make the round trip lossy,
// and this package keeps all three exact:
//
//  1. Line endings. Writers often rewrite CRLF as LF (go-mbox v1.0.4 does,
//     and its reader gives CRLF back on every line). Here every line keeps its
//     own ending: CRLF stays CRLF, a bare LF stays LF, a lone CR is just a
//     byte. Lines are only ever split at LF.
//  2. '>From ' lines. mboxo (go-mbox's writer) quotes only "From " lines, so
//     ">From " and "From " read back the same. mboxrd quoting, as above,
//     is a bijection: a quoted body never has a line starting "From ".
//  3. The final newline. Writers make sure a message ends in LF and then add
//     the empty separator line; a message that did not end in LF gains one.
//
// The third is solved without any header (a Content-Length would change
// the message) and without a sidecar: every entry is
//
//	"From " sender " " asctime-date LF   quoted-body   LF
//
// with exactly one LF appended, always. When the message ends in LF (nearly
// every real message), that LF is the usual empty line and the entry is
// ordinary mboxrd. When it does not, the appended LF ends the message's last
// line and the next From_ line follows at once, with no empty line between.
// A reader takes the bytes between the From_ line and the next From_ line
// (or the end of the file), drops exactly one trailing LF and unquotes: the
// message comes back exactly. The empty-line rule cannot be confused: the
// last LF is always ours, whatever came before it.
//
// Standard mboxrd readers read these files correctly. They find From_ lines
// at every line start (none need an empty line before them; go-mbox's
// reader does not), strip the separator line when present, and unquote. They
// differ from this package only in the cases every line-based reader
// normalises anyway: a message without a final newline gains one, and
// readers that rewrite line endings do so. The tests check this with
// go-mbox's reader (TestGoMboxReadsOurFiles) and show go-mbox's own writer
// is not exact (TestGoMboxNotByteExact).
//
// The From_ line is "From MAILER-DAEMON <date>" with the message's internal
// date in UTC in asctime form (time.ANSIC), so the date survives to the
// second. Flags are not stored: that would mean adding Status: headers.
//
// # Files from other tools
//
// Reader also reads ordinary mboxrd (and mboxo) files: leading empty lines
// are skipped, any line starting "From " separates, one '>' is removed from
// ^>+From lines, and the last LF before a separator is dropped. In a file
// whose From_ lines end in CRLF (written on Windows), the separator is the
// empty line "\r\n" and that is what is dropped. Files mailferry wrote never
// have CRLF From_ lines, so this costs no exactness. A last message missing
// its final LF is taken as it is, as other readers do, unless the journal
// says the file once held more: then it was cut, and reading it fails.
package mboxfmt
