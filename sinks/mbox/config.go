package mbox

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// DefaultLockWait is how long Put waits for another writer (a mail client,
// an MDA, another mailferry) to release a mailbox file before giving up.
const DefaultLockWait = 10 * time.Second

// Config is a parsed mbox: destination URL.
type Config struct {
	// Root is the absolute path of the folder holding the .mbox files.
	Root string
	// LockWait bounds the wait for a mailbox file locked by another writer:
	// 0 means DefaultLockWait, a negative value fails at once.
	LockWait time.Duration
}

// String returns the URL form of c.
func (c Config) String() string {
	s := "mbox://" + c.Root
	switch {
	case c.LockWait < 0:
		s += "?lockwait=0s"
	case c.LockWait > 0:
		s += "?lockwait=" + c.LockWait.String()
	}
	return s
}

// ParseURL parses mbox:/path, mbox:///path, mbox:relative or mbox:~/path
// (see mail.LocalPath). The one option is lockwait, a Go duration ("30s",
// "0s" to fail at once); others are refused.
func ParseURL(u *url.URL) (Config, error) {
	if u.Scheme != "mbox" {
		return Config{}, &mail.ConfigError{Msg: fmt.Sprintf("mbox: scheme %q is not mbox", u.Scheme)}
	}
	var c Config
	q := u.Query()
	if v, ok := q["lockwait"]; ok {
		d, err := time.ParseDuration(v[len(v)-1])
		if err != nil || d < 0 {
			return Config{}, &mail.ConfigError{Msg: fmt.Sprintf("%s: lockwait=%q is not a duration", mail.Redact(u), v[len(v)-1]), Hint: "write e.g. lockwait=30s"}
		}
		c.LockWait = d
		if d == 0 {
			c.LockWait = -1
		}
		delete(q, "lockwait")
	}
	if len(q) > 0 {
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return Config{}, &mail.ConfigError{Msg: fmt.Sprintf("%s: unknown option %s", mail.Redact(u), strings.Join(keys, ", ")), Hint: "an mbox destination takes only lockwait"}
	}
	root, err := mail.LocalPath(u)
	if err != nil {
		return Config{}, err
	}
	c.Root = root
	return c, nil
}

// dirHint explains what an mbox: path must be when it names a file.
const dirHint = "an mbox endpoint is a folder holding one <mailbox>.mbox file per mailbox: to read a single file, move it into a folder as INBOX.mbox"

// Register adds the "mbox" sink scheme to r.
func Register(r *mail.Registry) {
	r.Add(mail.Factory{Scheme: "mbox", Kind: mail.KindLocal, Sink: mail.NewSink(ParseURL, New), DirHint: dirHint})
}
