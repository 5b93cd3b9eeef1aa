package imapsink

import (
	"strings"

	"github.com/mailferry/mailferry/internal/imapconn"
)

// namespace is how the server spells mailbox names: the personal namespace
// prefix (RFC 2342; "INBOX." on Courier-style servers, usually "") and the
// hierarchy delimiter (0 for a flat server).
type namespace struct {
	prefix string
	delim  rune
}

// serverName maps a mailbox name as the engine gives it (UTF-8, '/'
// separators) to the server's: components joined with the server's
// delimiter, under the personal namespace prefix. INBOX (any case) is
// INBOX. A name already under the prefix ("INBOX/Sent" for prefix
// "INBOX.") is not prefixed twice. "%2F" in a component, which the IMAP
// source writes for a '/' inside a name on a server whose delimiter is not
// '/', becomes '/' again where the delimiter allows it. A delimiter inside a
// component would silently add a level, so it is replaced by '_' and
// reported through changed.
func (ns namespace) serverName(name string) (server string, changed bool) {
	parts := strings.Split(strings.Trim(name, "/"), "/")
	if strings.EqualFold(parts[0], "INBOX") {
		parts[0] = "INBOX"
	}
	if len(parts) == 1 && parts[0] == "INBOX" {
		return "INBOX", false
	}
	d := string(ns.delim)
	for i, p := range parts {
		if ns.delim != '/' && strings.Contains(p, "%2F") {
			p = strings.ReplaceAll(p, "%2F", "/")
		}
		if ns.delim != 0 && strings.Contains(p, d) {
			p, changed = strings.ReplaceAll(p, d, "_"), true
		}
		parts[i] = p
	}
	if ns.delim == 0 {
		return ns.prefix + strings.Join(parts, "/"), changed
	}
	joined := strings.Join(parts, d)
	if ns.prefix != "" && strings.HasPrefix(joined+d, ns.prefix) {
		return joined, changed // already under the prefix (INBOX/x with INBOX.)
	}
	return ns.prefix + joined, changed
}

// userName is the inverse of serverName: the '/'-separated name the sink
// reports (MailboxRoles) for a server mailbox name.
func (ns namespace) userName(server string) string {
	if strings.EqualFold(server, "INBOX") {
		return "INBOX"
	}
	rest := server
	if ns.prefix != "" && strings.HasPrefix(server, ns.prefix) && len(server) > len(ns.prefix) {
		rest = server[len(ns.prefix):]
	}
	if ns.delim == 0 || ns.delim == '/' {
		return rest
	}
	parts := strings.Split(rest, string(ns.delim))
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, "/", "%2F")
	}
	return strings.Join(parts, "/")
}

// parents returns the server names of name's ancestors below the namespace
// prefix, outermost first, so CreateMailbox can make each level: Dovecot,
// for one, does not create intermediate levels itself (they stay
// \NonExistent).
func (ns namespace) parents(server string) []string {
	if ns.delim == 0 {
		return nil
	}
	rest := server
	base := ""
	if ns.prefix != "" && strings.HasPrefix(server, ns.prefix) {
		base, rest = ns.prefix, server[len(ns.prefix):]
	}
	parts := strings.Split(rest, string(ns.delim))
	var out []string
	for i := 1; i < len(parts); i++ {
		p := base + strings.Join(parts[:i], string(ns.delim))
		if strings.EqualFold(p, "INBOX") {
			continue // always exists; never CREATE it
		}
		out = append(out, p)
	}
	return out
}

// encodeMUTF7 and quote are the IMAP source's: the hand-driven append
// connections need them, imapclient does them for the control connection.
var (
	encodeMUTF7 = imapconn.EncodeMUTF7
	quote       = imapconn.Quote
)
