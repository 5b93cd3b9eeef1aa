package mailtest

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Environment variables written to DIR/env by testdata/dovecot/dovecot.sh and read by
// NeedDovecot. URLs use the host "localhost", the name in the server's certificate.
const (
	EnvIMAP         = "MAILFERRY_TEST_IMAP"          // imaps://localhost:21993
	EnvIMAPStartTLS = "MAILFERRY_TEST_IMAP_STARTTLS" // imap://localhost:21143
	EnvPOP3         = "MAILFERRY_TEST_POP3"          // pop3s://localhost:21995
	EnvPOP3STLS     = "MAILFERRY_TEST_POP3_STLS"     // pop3://localhost:21110
	EnvCA           = "MAILFERRY_TEST_CA"            // PEM file of the self-signed server certificate
	EnvDovecotDir   = "MAILFERRY_TEST_DOVECOT_DIR"   // the DIR given to dovecot.sh start
	EnvRequire      = "MAILFERRY_TEST_REQUIRE"       // "1": a missing server fails instead of skipping
)

// Dovecot describes the running test server, from the MAILFERRY_TEST_* environment. The
// addresses are "host:port". Its methods are safe for concurrent use by parallel tests.
type Dovecot struct {
	IMAPS        string // implicit TLS IMAP
	IMAPStartTLS string // plain IMAP offering STARTTLS
	POP3S        string // implicit TLS POP3
	POP3STLS     string // plain POP3 offering STLS
	CAFile       string // PEM certificate that signs (is) the server certificate
	Dir          string // server directory: dovecot.conf, users, home/<user>
}

// NeedDovecot returns the server described by the environment or skips the test when the
// variables are unset. Under MAILFERRY_TEST_REQUIRE=1 (set by make test) a missing server
// fails the test instead. A server that is configured but does not accept connections always
// fails the test.
func NeedDovecot(t testing.TB) *Dovecot {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...) + "; run `make test`, or `bash testdata/dovecot/dovecot.sh start DIR && . DIR/env`"
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("mailtest: %s (%s=1)", msg, EnvRequire)
		}
		t.Skip("mailtest: " + msg)
	}
	for _, k := range []string{EnvIMAP, EnvIMAPStartTLS, EnvPOP3, EnvPOP3STLS, EnvCA, EnvDovecotDir} {
		if os.Getenv(k) == "" {
			missing("no Dovecot: %s is not set", k)
		}
	}
	d := &Dovecot{CAFile: os.Getenv(EnvCA), Dir: os.Getenv(EnvDovecotDir)}
	for _, v := range []struct {
		env, scheme string
		dst         *string
	}{
		{EnvIMAP, "imaps", &d.IMAPS},
		{EnvIMAPStartTLS, "imap", &d.IMAPStartTLS},
		{EnvPOP3, "pop3s", &d.POP3S},
		{EnvPOP3STLS, "pop3", &d.POP3STLS},
	} {
		addr, err := dovecotAddr(os.Getenv(v.env), v.scheme)
		if err != nil {
			t.Fatalf("mailtest: %s: %v", v.env, err)
		}
		*v.dst = addr
	}
	if _, err := os.Stat(filepath.Join(d.Dir, "users")); err != nil {
		t.Fatalf("mailtest: %s: %v", EnvDovecotDir, err)
	}
	conn, err := net.DialTimeout("tcp", d.IMAPS, 5*time.Second)
	if err != nil {
		t.Fatalf("mailtest: Dovecot configured but not reachable: %v", err)
	}
	_ = conn.Close()
	return d
}

// dovecotAddr turns "scheme://host:port" into "host:port".
func dovecotAddr(raw, scheme string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Scheme != scheme || u.Hostname() == "" || u.Port() == "" {
		return "", fmt.Errorf("%q: want %s://host:port", raw, scheme)
	}
	return u.Host, nil
}

var (
	dovecotUsersMu sync.Mutex // serialises appends to DIR/users within this process
	dovecotUserSeq atomic.Int64
)

// NewUser adds a fresh user with a random password and an empty home to the server's
// passwd-file (DIR/users) and returns its name and password. The name is
// "t<pid>x<counter>r<random>", unique across the parallel test binaries of one go test run.
// t.Cleanup removes the home (the users line stays; it is harmless).
//
// Dovecot 2.3 stats its passwd-file at most once per second, so NewUser returns only once
// the wall clock has entered the second after the append: from then on the user can log in.
// NewUser is safe for concurrent use.
func (d *Dovecot) NewUser(t testing.TB) (user, password string) {
	t.Helper()
	user = fmt.Sprintf("t%dx%dr%s", os.Getpid(), dovecotUserSeq.Add(1), dovecotRandom(t, 3))
	password = "pw-" + dovecotRandom(t, 8)
	vmail, err := dovecotVmail()
	if err != nil {
		t.Fatalf("mailtest: NewUser: %v", err)
	}
	home := filepath.Join(d.Dir, "home", user)
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatalf("mailtest: NewUser: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(home); err != nil {
			t.Errorf("mailtest: remove home of %s: %v", user, err)
		}
	})
	if err := os.Chown(home, vmail.uid, vmail.gid); err != nil {
		t.Fatalf("mailtest: NewUser: %v (the tests must run as root or as vmail)", err)
	}
	// One write(2) on an O_APPEND file is atomic with respect to other appenders, so
	// test binaries running in parallel cannot interleave lines; the mutex keeps this
	// process's own goroutines in order.
	line := fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s::\n", user, password, vmail.uid, vmail.gid, home)
	dovecotUsersMu.Lock()
	err = dovecotAppend(filepath.Join(d.Dir, "users"), line)
	written := time.Now()
	dovecotUsersMu.Unlock()
	if err != nil {
		t.Fatalf("mailtest: NewUser: %v", err)
	}
	// Dovecot skips the stat when it already looked at the file during this second
	// (db-passwd-file.c, passwd_file_sync): wait for the next one, plus a margin.
	next := written.Truncate(time.Second).Add(time.Second + 20*time.Millisecond)
	time.Sleep(time.Until(next))
	return user, password
}

func dovecotAppend(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(line)); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func dovecotRandom(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("mailtest: %v", err)
	}
	return hex.EncodeToString(b)
}

type dovecotIDs struct{ uid, gid int }

var dovecotVmail = sync.OnceValues(func() (dovecotIDs, error) {
	u, err := user.Lookup("vmail")
	if err != nil {
		return dovecotIDs{}, fmt.Errorf("look up user vmail: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return dovecotIDs{}, fmt.Errorf("user vmail: %w", err)
	}
	return dovecotIDs{uid, gid}, nil
})

// TLSConfig returns a client TLS configuration that trusts only the server's certificate,
// with ServerName "localhost".
func (d *Dovecot) TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(d.CAFile)
	if err != nil {
		t.Fatalf("mailtest: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("mailtest: no certificate in %s", d.CAFile)
	}
	return &tls.Config{RootCAs: roots, ServerName: "localhost"}
}

// Dial opens an IMAP client to the implicit-TLS port, verifying the server against CAFile
// with ServerName "localhost", and logs in as user. t.Cleanup logs out and closes it.
func (d *Dovecot) Dial(t testing.TB, user, password string) *imapclient.Client {
	t.Helper()
	c := d.dial(t, user, password)
	t.Cleanup(func() { dovecotLogout(c) })
	return c
}

// dial is Dial without the cleanup, for helpers that log out themselves.
func (d *Dovecot) dial(t testing.TB, user, password string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(d.IMAPS, &imapclient.Options{
		TLSConfig: d.TLSConfig(t),
		Dialer:    &net.Dialer{Timeout: 15 * time.Second},
	})
	if err != nil {
		t.Fatalf("mailtest: dial %s: %v", d.IMAPS, err)
	}
	if err := c.Login(user, password).Wait(); err != nil {
		_ = c.Close()
		t.Fatalf("mailtest: login %s at %s: %v", user, d.IMAPS, err)
	}
	return c
}

// dovecotLogout logs out politely, unless the connection is gone already, and closes.
func dovecotLogout(c *imapclient.Client) {
	select {
	case <-c.Closed():
	default:
		_ = c.Logout().Wait() // an error here changes nothing: the client is closed next
	}
	_ = c.Close()
}

// SeedMessage is one message for Seed. Body is appended byte for byte; \Recent in Flags is
// dropped (servers refuse it in APPEND); a zero Date lets the server pick the internal date.
type SeedMessage struct {
	Body  []byte
	Flags []imap.Flag
	Date  time.Time
}

// FetchedMessage is one message as Fetch found it: the body exactly as the server sent it
// (Dovecot sends CRLF line endings whatever was appended), flags without \Recent, and the
// internal date.
type FetchedMessage struct {
	UID   imap.UID
	Body  []byte
	Flags []imap.Flag
	Date  time.Time
}

// Seed appends msgs, in order, to mailbox of user, creating the mailbox (and its parents)
// when missing. It fails the test on any error, including a body the server did not take in
// full.
func (d *Dovecot) Seed(t testing.TB, user, password, mailbox string, msgs []SeedMessage) {
	t.Helper()
	c := d.dial(t, user, password)
	defer dovecotLogout(c)
	if !strings.EqualFold(mailbox, "INBOX") {
		boxes, err := c.List("", mailbox, nil).Collect()
		if err != nil {
			t.Fatalf("mailtest: list %q: %v", mailbox, err)
		}
		if len(boxes) == 0 {
			if err := c.Create(mailbox, nil).Wait(); err != nil {
				t.Fatalf("mailtest: create %q: %v", mailbox, err)
			}
		}
	}
	for i, m := range msgs {
		var flags []imap.Flag
		for _, f := range m.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				flags = append(flags, f)
			}
		}
		cmd := c.Append(mailbox, int64(len(m.Body)), &imap.AppendOptions{Flags: flags, Time: m.Date})
		n, err := cmd.Write(m.Body)
		if closeErr := cmd.Close(); err == nil {
			err = closeErr
		}
		if err == nil && n != len(m.Body) {
			err = fmt.Errorf("wrote %d of %d bytes", n, len(m.Body))
		}
		if err == nil {
			_, err = cmd.Wait()
		}
		if err != nil {
			t.Fatalf("mailtest: append message %d to %q of %s: %v", i, mailbox, user, err)
		}
	}
}

// Fetch returns every message of every selectable mailbox of user, keyed by mailbox name
// and sorted by UID. Every selectable mailbox is a key, empty ones (Drafts, Sent, Trash,
// Junk are always there) with a nil slice. Mailboxes are examined read-only, so \Seen does
// not change.
func (d *Dovecot) Fetch(t testing.TB, user, password string) map[string][]FetchedMessage {
	t.Helper()
	c := d.dial(t, user, password)
	defer dovecotLogout(c)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("mailtest: list mailboxes of %s: %v", user, err)
	}
	out := map[string][]FetchedMessage{}
	for _, mb := range list {
		if dovecotNoSelect(mb.Attrs) {
			continue
		}
		msgs, err := dovecotFetchMailbox(c, mb.Mailbox)
		if err != nil {
			t.Fatalf("mailtest: fetch %q of %s: %v", mb.Mailbox, user, err)
		}
		out[mb.Mailbox] = msgs
	}
	return out
}

func dovecotNoSelect(attrs []imap.MailboxAttr) bool {
	for _, a := range attrs {
		if strings.EqualFold(string(a), string(imap.MailboxAttrNoSelect)) ||
			strings.EqualFold(string(a), string(imap.MailboxAttrNonExistent)) {
			return true
		}
	}
	return false
}

// dovecotFetchMailbox examines name and fetches UID, FLAGS, INTERNALDATE and BODY.PEEK[] of
// all its messages. Items arrive in server order, so each message is assembled whole before
// it is checked; every literal is read to the end and its length checked, and the message
// count must match EXISTS (imapclient silently drops a reply it cannot route).
func dovecotFetchMailbox(c *imapclient.Client, name string) ([]FetchedMessage, error) {
	sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("examine: %w", err)
	}
	if sel.NumMessages == 0 {
		return nil, nil
	}
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	cmd := c.Fetch(all, &imap.FetchOptions{
		UID:          true,
		Flags:        true,
		InternalDate: true,
		BodySection:  []*imap.FetchItemBodySection{{Peek: true}},
	})
	defer func() { _ = cmd.Close() }()
	var out []FetchedMessage
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		var m FetchedMessage
		var haveUID, haveBody bool
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				m.UID, haveUID = it.UID, true
			case imapclient.FetchItemDataFlags:
				for _, f := range it.Flags {
					if !strings.EqualFold(string(f), `\Recent`) {
						m.Flags = append(m.Flags, f)
					}
				}
			case imapclient.FetchItemDataInternalDate:
				m.Date = it.Time
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					return nil, fmt.Errorf("message %d: NIL body", msg.SeqNum)
				}
				var buf bytes.Buffer
				n, err := io.Copy(&buf, it.Literal)
				if err != nil {
					return nil, fmt.Errorf("message %d: read body: %w", msg.SeqNum, err)
				}
				if n != it.Literal.Size() {
					return nil, fmt.Errorf("message %d: short body %d/%d", msg.SeqNum, n, it.Literal.Size())
				}
				m.Body, haveBody = buf.Bytes(), true
			}
		}
		if !haveUID || !haveBody {
			return nil, fmt.Errorf("message %d: reply lacks UID or BODY[]", msg.SeqNum)
		}
		out = append(out, m)
	}
	if err := cmd.Close(); err != nil {
		return nil, err
	}
	if uint32(len(out)) != sel.NumMessages {
		return nil, fmt.Errorf("fetched %d messages, mailbox has %d", len(out), sel.NumMessages)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, nil
}

// Doveadm runs doveadm -c DIR/dovecot.conf with args and returns its combined output,
// failing the test when it exits non-zero. Example: d.Doveadm(t, "mailbox", "list", "-u", user).
func (d *Dovecot) Doveadm(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("doveadm", append([]string{"-c", filepath.Join(d.Dir, "dovecot.conf")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mailtest: doveadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// EnvPostgres is the URL of the throwaway PostgreSQL that
// testdata/postgres/postgres.sh starts (and `make test` sets) for the
// multi-machine batch tests.
const EnvPostgres = "MAILFERRY_TEST_PG"

// NeedPostgres returns the test PostgreSQL's URL. Without one the test is
// skipped, or fails under MAILFERRY_TEST_REQUIRE=1, as NeedDovecot does.
func NeedPostgres(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvPostgres)
	if u == "" {
		msg := "no PostgreSQL: " + EnvPostgres + " is not set; run `make test`, or `bash testdata/postgres/postgres.sh start DIR && . DIR/env`"
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("mailtest: %s (%s=1)", msg, EnvRequire)
		}
		t.Skip("mailtest: " + msg)
	}
	return u
}
