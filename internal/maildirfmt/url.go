package maildirfmt

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// Config is a parsed maildir: URL; sources/maildir and sinks/maildir take
// the same one.
type Config struct {
	// Root is the absolute path of the Maildir++ root (INBOX).
	Root string
}

// String returns the URL form of c.
func (c Config) String() string { return "maildir://" + c.Root }

// ParseURL parses maildir:/path, maildir:///path, maildir:relative or
// maildir:~/path (see mail.LocalPath). No query option is defined yet, so any
// is refused.
func ParseURL(u *url.URL) (Config, error) {
	if u.Scheme != "maildir" {
		return Config{}, &mail.ConfigError{Msg: fmt.Sprintf("maildir: scheme %q is not maildir", u.Scheme)}
	}
	if q := u.Query(); len(q) > 0 {
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return Config{}, &mail.ConfigError{Msg: fmt.Sprintf("%s: unknown option %s", mail.Redact(u), strings.Join(keys, ", ")), Hint: "maildir URLs take no options"}
	}
	root, err := mail.LocalPath(u)
	if err != nil {
		return Config{}, err
	}
	return Config{Root: root}, nil
}
