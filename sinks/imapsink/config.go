package imapsink

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// Config is an IMAP destination as its URL names it.
type Config struct {
	// Config is the account: host, port, user, TLS mode. Its Mailbox, when
	// set, is a folder every copied mailbox is placed under
	// (imaps://bob@host/Old%20Account puts "Sent" in "Old Account/Sent").
	imapconn.Config
	// MultiAppend says whether to batch messages in one MULTIAPPEND
	// command (RFC 3502) when the server offers it. On by default;
	// ?multiappend=off sends one APPEND per message, which lets a server
	// refuse one message without failing the others of its batch.
	MultiAppend bool
}

// ParseURL reads imaps://USER@HOST[:PORT][/FOLDER][?multiappend=off] or the
// imap:// (STARTTLS) form; see imapconn.ParseURL for the account part. Errors
// are *mail.ConfigError.
func ParseURL(u *url.URL) (*Config, error) {
	cfg := &Config{MultiAppend: true}
	q := u.Query()
	if v, ok := q["multiappend"]; ok {
		switch strings.ToLower(v[len(v)-1]) {
		case "", "on", "1", "yes", "true":
		case "off", "0", "no", "false":
			cfg.MultiAppend = false
		default:
			return nil, &mail.ConfigError{Msg: fmt.Sprintf("imapsink: %s: multiappend=%q is not on or off", mail.Redact(u), v[len(v)-1])}
		}
		q.Del("multiappend")
	}
	if len(q) > 0 {
		var keys []string
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("imapsink: %s: unknown option(s) %q", mail.Redact(u), strings.Join(keys, ",")), Hint: "an IMAP destination takes ?multiappend=off only"}
	}
	c := *u
	c.RawQuery, c.ForceQuery = "", false
	ic, err := imapconn.ParseURL(&c)
	if err != nil {
		return nil, err
	}
	cfg.Config = *ic
	return cfg, nil
}
