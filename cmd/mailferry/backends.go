package main

import (
	"github.com/mailferry/mailferry/sync/mail"
)

// registry lists every endpoint mailferry knows. Adding one is one line here.
func registry() *mail.Registry {
	r := mail.NewRegistry()
	return r
}
