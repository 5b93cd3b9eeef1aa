// Command imapfloor is the floor of mailferry's IMAP -> Maildir benchmark: the fastest plain
// read of a whole IMAP account over one implicit-TLS connection. It logs in, LISTs, and for
// each mailbox EXAMINEs, fetches the UIDs, then fetches every body and discards it. It stores
// nothing, so it is a lower bound, not a competitor. -mode says how bodies are asked for:
//
//	range     UID FETCH lo:hi (UID BODY.PEEK[]), -chunk UIDs per command (the fewest commands)
//	pipe      one UID FETCH per message, -chunk commands written at a time (what mbsync does)
//	lockstep  one UID FETCH per message, each waiting for the previous to complete
//	status    no bodies: the status of every mailbox (UIDVALIDITY UIDNEXT MESSAGES, and
//	          HIGHESTMODSEQ with CONDSTORE) in one LIST-STATUS (RFC 5819) where offered, else
//	          LIST and pipelined STATUS, then LOGOUT: the floor of a nightly no-op rerun, which
//	          needs to learn no more than that nothing moved
//
// Comparing the modes shows what the server charges per command. The parser is minimal:
// enough for Dovecot's replies (mailbox names as atoms or quoted strings, bodies as literals).
//
//	imapfloor -addr localhost:30993 -user alice -password-file F -ca-file cert.pem -mode range
//
// It prints "N messages, B bytes in S s" (its own clock, after login) on stdout; -mode status
// prints "N mailboxes, M messages in S s" (M: the sum of their MESSAGES).
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "localhost:30993", "imaps `HOST:PORT`")
	user := flag.String("user", "alice", "user `NAME`")
	pwFile := flag.String("password-file", "", "read the password from the first line of `FILE`")
	caFile := flag.String("ca-file", "", "trust the CA certificates in PEM `FILE`")
	mode := flag.String("mode", "range", "how to fetch bodies: range, pipe or lockstep; or status (no bodies)")
	chunk := flag.Int("chunk", 64, "messages per FETCH (range) or commands per write (pipe)")
	flag.Parse()
	if err := run(*addr, *user, *pwFile, *caFile, *mode, *chunk); err != nil {
		fmt.Fprintln(os.Stderr, "imapfloor:", err)
		os.Exit(1)
	}
}

var (
	literalRe = regexp.MustCompile(`\{(\d+)\}\r\n$`)
	uidRe     = regexp.MustCompile(`UID (\d+)`)
	listRe    = regexp.MustCompile(`^\* LIST \([^)]*\) (?:"[^"]*"|NIL) (.*)\r\n$`)
)

type client struct {
	r   *bufio.Reader
	w   *bufio.Writer
	tag int
	n   int64 // literal bytes read
}

// response reads one response, literals included, and returns its first line.
func (c *client) response() (string, error) {
	var first string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if first == "" {
			first = line
		}
		m := literalRe.FindStringSubmatch(line)
		if m == nil {
			return first, nil
		}
		k, _ := strconv.ParseInt(m[1], 10, 64)
		if _, err := io.CopyN(io.Discard, c.r, k); err != nil {
			return "", err
		}
		c.n += k
	}
}

// send buffers a command and returns its tag.
func (c *client) send(cmd string) string {
	c.tag++
	t := "T" + strconv.Itoa(c.tag)
	fmt.Fprintf(c.w, "%s %s\r\n", t, cmd)
	return t
}

// wait reads until the tagged completion of t, handing untagged first lines to fn.
func (c *client) wait(t string, fn func(string)) error {
	for {
		l, err := c.response()
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, t+" ") {
			if !strings.HasPrefix(l, t+" OK") {
				return errors.New(strings.TrimSpace(l))
			}
			return nil
		}
		if fn != nil {
			fn(l)
		}
	}
}

// do sends one command, flushes and waits for it.
func (c *client) do(cmd string, fn func(string)) error {
	t := c.send(cmd)
	if err := c.w.Flush(); err != nil {
		return err
	}
	if err := c.wait(t, fn); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
	}
	return nil
}

func run(addr, user, pwFile, caFile, mode string, chunk int) error {
	if mode != "range" && mode != "pipe" && mode != "lockstep" && mode != "status" {
		return fmt.Errorf("-mode %q: want range, pipe, lockstep or status", mode)
	}
	pw := ""
	if pwFile != "" {
		b, err := os.ReadFile(pwFile)
		if err != nil {
			return err
		}
		pw, _, _ = strings.Cut(string(b), "\n")
	}
	conn, err := dial(addr, caFile)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	c := &client{r: bufio.NewReaderSize(conn, 64<<10), w: bufio.NewWriterSize(conn, 64<<10)}
	if _, err := c.response(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	caps := ""
	if err := c.do("LOGIN "+strconv.Quote(user)+" "+strconv.Quote(pw), func(l string) {
		if strings.HasPrefix(l, "* CAPABILITY ") {
			caps = l
		}
	}); err != nil {
		return err
	}
	start := time.Now()
	if mode == "status" {
		return c.statusAll(caps, start)
	}
	var boxes []string
	if err := c.do(`LIST "" "*"`, func(l string) {
		if m := listRe.FindStringSubmatch(l); m != nil {
			boxes = append(boxes, m[1])
		}
	}); err != nil {
		return err
	}
	msgs := 0
	for _, b := range boxes {
		n, err := c.readBox(b, mode, chunk)
		if err != nil {
			return err
		}
		msgs += n
	}
	elapsed := time.Since(start)
	_ = c.do("LOGOUT", nil) // the count is made: a failed LOGOUT changes nothing
	fmt.Printf("%d messages, %d bytes in %.3f s\n", msgs, c.n, elapsed.Seconds())
	return nil
}

// dial opens the implicit-TLS connection, trusting only the certificates in caFile when given.
func dial(addr, caFile string) (*tls.Conn, error) {
	cfg := &tls.Config{}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		cfg.ServerName = host
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificates in %s", caFile)
		}
	}
	return tls.Dial("tcp", addr, cfg)
}

// readBox EXAMINEs mailbox b, fetches its UIDs, then every body as mode says, and returns
// how many messages it holds.
func (c *client) readBox(b, mode string, chunk int) (int, error) {
	if !strings.HasPrefix(b, `"`) {
		b = `"` + b + `"`
	}
	if err := c.do("EXAMINE "+b, nil); err != nil {
		return 0, err
	}
	var uids []string
	if err := c.do("UID FETCH 1:* (UID FLAGS)", func(l string) {
		if m := uidRe.FindStringSubmatch(l); m != nil {
			uids = append(uids, m[1])
		}
	}); err != nil {
		return 0, err
	}
	for i := 0; i < len(uids); i += chunk {
		if err := c.fetchBodies(uids[i:min(len(uids), i+chunk)], mode); err != nil {
			return 0, err
		}
	}
	return len(uids), nil
}

// fetchBodies fetches the bodies of part (ascending UIDs) as mode says.
func (c *client) fetchBodies(part []string, mode string) error {
	switch mode {
	case "range":
		// UIDs come back ascending, so first:last covers exactly this part.
		return c.do("UID FETCH "+part[0]+":"+part[len(part)-1]+" (UID BODY.PEEK[])", nil)
	case "pipe":
		tags := make([]string, len(part))
		for k, u := range part {
			tags[k] = c.send("UID FETCH " + u + " (UID BODY.PEEK[])")
		}
		if err := c.w.Flush(); err != nil {
			return err
		}
		for _, t := range tags {
			if err := c.wait(t, nil); err != nil {
				return fmt.Errorf("UID FETCH: %w", err)
			}
		}
	case "lockstep":
		for _, u := range part {
			if err := c.do("UID FETCH "+u+" (UID BODY.PEEK[])", nil); err != nil {
				return err
			}
		}
	}
	return nil
}

var (
	statusRe   = regexp.MustCompile(`^\* STATUS (.*) \(([^)]*)\)\r\n$`)
	messagesRe = regexp.MustCompile(`MESSAGES (\d+)`)
)

// statusAll is -mode status: the status of every mailbox in one round trip, then LOGOUT.
// caps is the server's CAPABILITY line, asked for when the login did not carry it.
func (c *client) statusAll(caps string, start time.Time) error {
	if caps == "" {
		if err := c.do("CAPABILITY", func(l string) {
			if strings.HasPrefix(l, "* CAPABILITY ") {
				caps = l
			}
		}); err != nil {
			return err
		}
	}
	has := func(cp string) bool { return strings.Contains(strings.ToUpper(caps)+" ", " "+cp+" ") }
	items := "UIDVALIDITY UIDNEXT MESSAGES"
	if has("CONDSTORE") {
		items += " HIGHESTMODSEQ"
	}
	boxes, msgs := 0, 0
	collect := func(l string) {
		if m := statusRe.FindStringSubmatch(l); m != nil {
			boxes++
			if n := messagesRe.FindStringSubmatch(m[2]); n != nil {
				k, _ := strconv.Atoi(n[1])
				msgs += k
			}
		}
	}
	if has("LIST-STATUS") {
		if err := c.do(`LIST "" "*" RETURN (STATUS (`+items+`))`, collect); err != nil {
			return err
		}
	} else {
		var names []string
		if err := c.do(`LIST "" "*"`, func(l string) {
			if m := listRe.FindStringSubmatch(l); m != nil && !strings.Contains(strings.ToLower(l), `\noselect`) {
				names = append(names, m[1])
			}
		}); err != nil {
			return err
		}
		tags := make([]string, len(names))
		for i, b := range names {
			if !strings.HasPrefix(b, `"`) {
				b = `"` + b + `"`
			}
			tags[i] = c.send("STATUS " + b + " (" + items + ")")
		}
		if err := c.w.Flush(); err != nil {
			return err
		}
		for _, t := range tags {
			if err := c.wait(t, collect); err != nil {
				return fmt.Errorf("STATUS: %w", err)
			}
		}
	}
	if err := c.do("LOGOUT", nil); err != nil {
		return err
	}
	fmt.Printf("%d mailboxes, %d messages in %.3f s\n", boxes, msgs, time.Since(start).Seconds())
	return nil
}
