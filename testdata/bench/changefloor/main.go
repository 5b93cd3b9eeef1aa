// Command changefloor is the floor of a two-way sync after a few changes on each side (the
// bench's sync-maildir and sync-imap "changes" phase): the least any tool must do, on the
// servers and on the disk, to bring both sides back in step. It is a lower bound, not a
// competitor: it is told, untimed, exactly what changed and where each changed message is on
// the other side, and keeps no state of its own.
//
//	changefloor plan -a USER -a-password-file F -a-record R [-b USER -b-password-file F | -maildir ROOT -maildir-inbox DIR] -b-record R -out PLAN
//	changefloor apply [-wait] PLAN
//
// plan is the untimed pre-pass: it reads what mailchange.py --record wrote for each side (the
// changed messages, and each IMAP folder's UIDVALIDITY and HIGHESTMODSEQ before the changes),
// maps Message-IDs to UIDs (one EXAMINE and header FETCH per folder) and to files (every
// Maildir file's header), and writes the plan: every command and file operation of the apply.
//
// apply is timed by its own clock, from before its TLS login to after LOGOUT's answer and the
// last fsync. Per IMAP side, over one connection and with every command written before any
// answer is read: LOGIN, ENABLE QRESYNC, LIST-STATUS (what a tool must ask to learn which
// folders moved), then per folder changed on either side a SELECT (QRESYNC) with the last
// sync's UIDVALIDITY and HIGHESTMODSEQ (the server's work of reporting that side's flag changes
// and deletions: the apply checks that it did), a UID FETCH of the new bodies, the UID STOREs of
// the other side's flag changes, STORE \Deleted + UID EXPUNGE of its deletions; one
// MULTIAPPEND of the other side's new messages (for IMAP <-> IMAP, written when the other
// connection's bodies have arrived), LOGOUT. Beside it on a Maildir: a readdir of each changed
// folder's cur/ and new/ (what a tool must read to learn a Maildir's changes), the renames and
// unlinks of the IMAP side's flag changes and deletions, each new body written to tmp/ and
// fsynced and renamed into new/ as it arrives, then an fsync of every directory whose entries
// changed. With -wait it waits for LOGIN's and each SELECT's answer before writing on, as a
// tool that checks the capabilities and each folder's UIDVALIDITY before writing does: the
// difference is what those round trips cost. It prints what it did and its time on one line; with CHANGEFLOOR_TRACE=1 also each
// command's tagged answer on stderr with when it came (Dovecot's own time per command is in
// each OK: pipelined commands overlap there).
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "plan":
		err = planMain(os.Args[2:])
	case "apply":
		fs := flag.NewFlagSet("apply", flag.ExitOnError)
		wait := fs.Bool("wait", false, "wait for LOGIN's and each SELECT's answer before writing on (as a tool that checks them does)")
		_ = fs.Parse(os.Args[2:])
		if fs.NArg() != 1 {
			usage()
		}
		err = runApply(fs.Arg(0), *wait)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "changefloor:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: changefloor plan [flags] | changefloor apply [-wait] PLAN")
	os.Exit(2)
}

func planMain(args []string) error {
	fs := flag.NewFlagSet("plan", flag.ExitOnError)
	var o planOpts
	fs.StringVar(&o.addr, "addr", "localhost:30993", "imaps `HOST:PORT`")
	fs.StringVar(&o.caFile, "ca-file", "", "trust the CA certificates in PEM `FILE`")
	fs.StringVar(&o.users[0], "a", "", "IMAP side A's user `NAME`")
	fs.StringVar(&o.pwFiles[0], "a-password-file", "", "A's password: the first line of `FILE`")
	fs.StringVar(&o.records[0], "a-record", "", "what mailchange.py --record wrote for A (`FILE`)")
	fs.StringVar(&o.users[1], "b", "", "IMAP side B's user `NAME` (IMAP <-> IMAP)")
	fs.StringVar(&o.pwFiles[1], "b-password-file", "", "B's password: the first line of `FILE`")
	fs.StringVar(&o.maildir, "maildir", "", "side B's Maildir `ROOT` (IMAP <-> Maildir)")
	fs.StringVar(&o.mdInbox, "maildir-inbox", "", "the Maildir folder `DIR` INBOX is synced with")
	fs.StringVar(&o.records[1], "b-record", "", "what mailchange.py --record wrote for B (`FILE`)")
	fs.StringVar(&o.out, "out", "", "write the plan to `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.users[0] == "" || o.records[0] == "" || o.records[1] == "" || o.out == "" ||
		(o.users[1] == "") == (o.maildir == "") || (o.maildir != "" && o.mdInbox == "") {
		fs.Usage()
		return fmt.Errorf("want -a, -a-record, -b-record, -out, and -b or -maildir with -maildir-inbox")
	}
	return runPlan(o)
}
