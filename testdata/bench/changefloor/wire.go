package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// The wire: a minimal IMAP client, enough for Dovecot's answers (names as atoms or quoted
// strings, message data as literals).

var literalRe = regexp.MustCompile(`\{(\d+)\+?\}\r\n$`)

// response is one server response: its lines joined (literals left out) and its literals.
type response struct {
	text string
	lits [][]byte
}

type client struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	tag  int
}

// dial opens an implicit-TLS connection, trusting only the certificates in caFile when given,
// and reads the greeting.
func dial(addr, caFile string) (*client, error) {
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
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), w: bufio.NewWriterSize(conn, 64<<10)}
	if _, err := c.read(); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return c, nil
}

// read reads one response, literals included.
func (c *client) read() (response, error) {
	var rs response
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return rs, err
		}
		m := literalRe.FindStringSubmatch(line)
		if m == nil {
			b.WriteString(line)
			rs.text = b.String()
			return rs, nil
		}
		b.WriteString(line[:len(line)-len(m[0])])
		k, _ := strconv.Atoi(m[1])
		lit := make([]byte, k)
		if _, err := io.ReadFull(c.r, lit); err != nil {
			return rs, err
		}
		rs.lits = append(rs.lits, lit)
	}
}

// send buffers a command and returns its tag.
func (c *client) send(cmd string) string {
	c.tag++
	t := "T" + strconv.Itoa(c.tag)
	fmt.Fprintf(c.w, "%s %s\r\n", t, cmd)
	return t
}

// wait reads until the tagged completion of t, handing untagged responses to fn.
func (c *client) wait(t string, fn func(response)) error {
	for {
		rs, err := c.read()
		if err != nil {
			return err
		}
		if strings.HasPrefix(rs.text, t+" ") {
			if !strings.HasPrefix(rs.text, t+" OK") {
				return errors.New(strings.TrimSpace(rs.text))
			}
			return nil
		}
		if fn != nil {
			fn(rs)
		}
	}
}

// do sends one command, flushes and waits for it.
func (c *client) do(cmd string, fn func(response)) error {
	t := c.send(cmd)
	if err := c.w.Flush(); err != nil {
		return err
	}
	if err := c.wait(t, fn); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
	}
	return nil
}

// login logs in with the first line of pwFile as the password.
func (c *client) login(user, pwFile string) error {
	return c.do(loginCmd(user, readPassword(pwFile)), nil)
}

func loginCmd(user, pw string) string {
	return "LOGIN " + strconv.Quote(user) + " " + strconv.Quote(pw)
}

func readPassword(pwFile string) string {
	b, err := os.ReadFile(pwFile)
	if err != nil {
		return ""
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	return pw
}

// mailbox is a LIST name as a command argument: atoms quoted, quoted strings as they are.
func mailbox(name string) string {
	if strings.HasPrefix(name, `"`) {
		return name
	}
	return strconv.Quote(name)
}

// uidSet writes ascending UIDs as a set of ranges.
func uidSet(uids []uint32) string {
	var b strings.Builder
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(uids[i]), 10))
		if j > i {
			b.WriteString(":" + strconv.FormatUint(uint64(uids[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

// setSize counts the UIDs of a set like "3:5,9".
func setSize(set string) int {
	n := 0
	for _, part := range strings.Split(set, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		if !isRange {
			n++
			continue
		}
		a, _ := strconv.Atoi(lo)
		b, _ := strconv.Atoi(hi)
		if b < a {
			a, b = b, a
		}
		n += b - a + 1
	}
	return n
}
