// Package mbox reads a folder of mbox files, one per mailbox, in the format
// that internal/mboxfmt defines and the mbox sink (sinks/mbox) writes: an
// exact variant of mboxrd that gives every message back byte for byte. See
// that package for the layout (mboxfmt.FilePath), the entry format and the
// journal (mboxfmt.Journal).
//
// # IDs and concurrency
//
// An entry's ID is the decimal byte offset of its From_ line, stable while
// the file is only appended to. Size is the exact unquoted length, which
// List computes by reading the whole file once. The source reads without a
// lock, but only up to the length the journal says is committed while a
// writer is active (or crashed), so it never sees a half-written entry.
package mbox
