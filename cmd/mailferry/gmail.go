package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// checkGmail refuses --gmail where it cannot work, before any I/O.
func checkGmail(o *copyOptions, reg *mail.Registry, srcURL string) error {
	if !o.gmail {
		return nil
	}
	if err := checkGmailSource(reg, srcURL); err != nil {
		return err
	}
	if o.deleteSource {
		return &usageError{"--gmail with --delete-source: on Gmail, deleting from a label folder only removes the label; drop one of them"}
	}
	return nil
}

// checkGmailSource refuses a --gmail source URL that cannot be a Gmail
// account, one whose scheme has no Gmail preset; copy and verify share it.
func checkGmailSource(reg *mail.Registry, srcURL string) error {
	u, err := url.Parse(srcURL)
	if err != nil {
		return errNoGmail
	}
	if f, ok := reg.Lookup(u.Scheme); !ok || f.Source == nil || !f.HasPreset(gmailPresetName) {
		return errNoGmail
	}
	return nil
}

// errNoGmail refuses --gmail for a source that cannot be Gmail.
var errNoGmail = &usageError{"--gmail needs an imaps:// source (a Gmail account)"}

// gmailSetup is what the Gmail preset takes from a command: copy and
// verify build it from the same flags, so that verify --gmail expects each
// message in the folder copy --gmail put it.
type gmailSetup struct {
	on      bool              // --gmail
	include []string          // --include: Spam and Trash are kept when one names them
	filter  func(string) bool // the folder selection (--include, --exclude)
	store   checkpoint.Store  // the copy's checkpoint, nil if none: folders copied from stay owners
	hint    string            // logged for a Gmail source without --gmail
}

const (
	gmailHintCopy   = "the source is Gmail: each label is copied as a folder, so a message with labels is copied once per label and again from [Gmail]/All Mail; --gmail copies each message once (see mailferry help gmail)"
	gmailHintVerify = "the source is Gmail: verify compares folder by folder, so after a copy --gmail the messages it stored in another folder count as missing; verify --gmail checks such a copy (see mailferry help gmail)"
)

// gmailPreset returns the source the copy engine reads and the role
// mapping of the destination folders (see gmailSource).
func gmailPreset(ctx context.Context, o *copyOptions, src mail.Source, dst mail.Sink, store checkpoint.Store, filter func(string) bool, log *slog.Logger) (mail.Source, func(string) string, error) {
	return gmailSource(ctx, gmailSetup{on: o.gmail, include: o.common.include, filter: filter, store: store, hint: gmailHintCopy}, src, dst, log)
}

// gmailSource returns the source to read and the role mapping of the
// destination folders. With --gmail the source is wrapped in the Gmail
// preset (backends.go's openGmail)
// (each message listed once, in its owner folder, see 'mailferry help
// gmail'); without it, a Gmail source only earns a hint, and special-use
// folders follow their role (RoleMapFor). dst is the copy's sink or the
// source verify reads the destination through: either way only its
// mailbox roles are asked for (mail.RoleLister), before anything is
// written.
func gmailSource(ctx context.Context, gs gmailSetup, src mail.Source, dst any, log *slog.Logger) (mail.Source, func(string) string, error) {
	if !gs.on {
		if isGmail(ctx, src) {
			log.Info(gs.hint)
		}
		roleMap, err := mailferry.RoleMapFor(ctx, src, dst)
		return src, roleMap, err
	}
	gopt := gmailOptions{folders: gs.filter}
	// Spam and Trash are left out unless an --include names them.
	var inc []*regexp.Regexp
	for _, s := range gs.include {
		if re, err := regexp.Compile(s); err == nil { // checked by mailboxFilter
			inc = append(inc, re)
		}
	}
	gopt.keep = func(name string) bool {
		for _, re := range inc {
			if re.MatchString(name) {
				return true
			}
		}
		return false
	}
	if gs.store != nil {
		store := gs.store
		gopt.copied = func(mailbox string, id mail.ID) bool {
			return store.Has(checkpoint.Key{Mailbox: mailbox, ID: id})
		}
	}
	g, err := openGmail(ctx, src, gopt)
	if err != nil {
		return nil, nil, err
	}
	var srcRoles, dstRoles map[string]string
	if sl := mail.FeaturesOf(g).RoleLister; sl != nil {
		if srcRoles, err = sl.MailboxRoles(ctx); err != nil {
			return nil, nil, fmt.Errorf("source mailbox roles: %w", err)
		}
	}
	if dl := mail.FeaturesOf(dst).RoleLister; dl != nil {
		if dstRoles, err = dl.MailboxRoles(ctx); err != nil {
			return nil, nil, fmt.Errorf("destination mailbox roles: %w", err)
		}
	}
	return g, mailferry.GmailFolders(srcRoles, dstRoles), nil
}

const helpGmail = `Copying a Gmail account: --gmail copies each message once.

Gmail shows every label as a folder: a message labelled Work that is still
in the inbox appears in INBOX, in Work and in [Gmail]/All Mail. A plain
copy stores it three times. With --gmail mailferry asks Gmail for each
message's X-GM-MSGID (the same in every folder) and copies it once, into
the first of its folders in this order:

  1. INBOX
  2. your labels, by name (nested labels such as Work/2024 stay nested)
  3. [Gmail]/Sent Mail, then [Gmail]/Drafts
  4. [Gmail]/All Mail, which so holds only archived mail without labels

The destination gets the same folder names, except that Sent Mail, Drafts
and All Mail go to the destination's Sent, Drafts and Archive folders (found
by their special-use role, else named Sent, Drafts and Archive). Label
folders are created even when all their messages went to INBOX.

  mailferry copy imaps://alice@gmail.com@imap.gmail.com \
    imaps://alice@imap.example.org --gmail --src-oauth2-token-cmd '...'

Left out:
  [Gmail]/Starred, [Gmail]/Important   views of All Mail; a starred message
                                       keeps its \Flagged flag
  [Gmail]/Spam, [Gmail]/Trash          not in All Mail; copied only when an
                                       --include names them (--include Trash)
A message with several labels lands in one folder: labels are not copied
as extra copies (the only way plain IMAP could carry them).

Reruns copy nothing twice. The order depends only on names, and a folder a
message was copied from stays its home: labelling an archived message
later does not copy it again (the checkpoint remembers; after --reset or
a lost checkpoint, messages whose labels did not change are found on the
destination and not stored again). Different messages sharing a Message-ID are all copied: identity is
the X-GM-MSGID. --gmail refuses --delete-source (on Gmail, deleting from a
label folder only removes the label). Without --gmail, a Gmail source is
detected (X-GM-EXT-1) and a hint is logged. In a job: mailferry run JOB --gmail.

Checking the copy: verify --gmail, with the copy's folder flags
(--include, --exclude, --map), expects each message once, in the folder
copy --gmail put it, and reports a missing one under its Gmail folder
("expected in Archive"). It reads the copy's checkpoint (the default one,
or --checkpoint FILE), so a message labelled after it was copied is
expected where it was copied to. A plain verify compares folder by folder
and so reports every label's messages stored elsewhere as missing.

  mailferry verify imaps://alice@gmail.com@imap.gmail.com \
    imaps://alice@imap.example.org --gmail --src-oauth2-token-cmd '...'
`
