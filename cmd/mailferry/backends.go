package main

import (
	"context"
	"errors"

	"github.com/mailferry/mailferry/sinks/imapsink"
	maildirsink "github.com/mailferry/mailferry/sinks/maildir"
	mboxsink "github.com/mailferry/mailferry/sinks/mbox"
	"github.com/mailferry/mailferry/sources/imap"
	maildirsource "github.com/mailferry/mailferry/sources/maildir"
	mboxsource "github.com/mailferry/mailferry/sources/mbox"
	"github.com/mailferry/mailferry/sources/pop3"
	"github.com/mailferry/mailferry/sync/mail"
)

// registry lists every endpoint mailferry knows. Adding one is one line
// here; this is the only file of the command that imports endpoints.
func registry() *mail.Registry {
	r := mail.NewRegistry()
	imap.Register(r)
	pop3.Register(r)
	maildirsource.Register(r)
	mboxsource.Register(r)
	imapsink.Register(r)
	maildirsink.Register(r)
	mboxsink.Register(r)
	return r
}

// gmailPresetName is the Gmail preset's name among a scheme's presets
// (mail.Factory.Presets): checkGmailSource asks the registry for it.
const gmailPresetName = imap.PresetGmail

// gmailOptions tune the Gmail preset (see imap.GmailOptions).
type gmailOptions struct {
	folders, keep func(name string) bool
	copied        func(mailbox string, id mail.ID) bool
}

// isGmail reports whether src, as opened, is a Gmail account.
func isGmail(ctx context.Context, src mail.Source) bool { return imap.DetectGmail(ctx, src) }

// openGmail wraps src in the Gmail preset. A source of another package
// (a test registry's fake under an imap scheme) gives errNoGmail.
func openGmail(ctx context.Context, src mail.Source, o gmailOptions) (mail.Source, error) {
	g, err := imap.GmailPreset(ctx, src, &imap.GmailOptions{Folders: o.folders, Keep: o.keep, Copied: o.copied})
	if errors.Is(err, imap.ErrNotIMAP) {
		return nil, errNoGmail
	}
	if err != nil {
		return nil, err
	}
	return g, nil
}
