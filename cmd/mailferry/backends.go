package main

import (
	"github.com/mailferry/mailferry/sinks/imapsink"
	maildirsink "github.com/mailferry/mailferry/sinks/maildir"
	mboxsink "github.com/mailferry/mailferry/sinks/mbox"
	"github.com/mailferry/mailferry/sources/imap"
	maildirsource "github.com/mailferry/mailferry/sources/maildir"
	mboxsource "github.com/mailferry/mailferry/sources/mbox"
	"github.com/mailferry/mailferry/sources/pop3"
	"github.com/mailferry/mailferry/sync/mail"
)

// registry lists every endpoint mailferry knows. Adding one is one line here.
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
