package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// gmailFake is a Gmail-like IMAP server: go-imap's memory server behind a
// proxy that adds Gmail's special-use attributes to LIST replies and
// answers FETCH X-GM-MSGID, which go-imap's server cannot. Every label is
// a folder holding its own copy of the message, as on Gmail.
type gmailFake struct {
	user  *imapmemserver.User
	addr  string
	attrs map[string]string // folder -> special-use attribute

	mu    sync.Mutex
	gmids map[string][]uint64 // folder -> X-GM-MSGID by UID-1
}

func startGmailFake(t *testing.T) *gmailFake {
	t.Helper()
	f := &gmailFake{
		user: imapmemserver.NewUser("alice@gmail.com", "gm-pass"),
		attrs: map[string]string{
			"[Gmail]/All Mail": `\All`, "[Gmail]/Sent Mail": `\Sent`, "[Gmail]/Drafts": `\Drafts`,
			"[Gmail]/Spam": `\Junk`, "[Gmail]/Trash": `\Trash`, "[Gmail]/Starred": `\Flagged`, "[Gmail]/Important": `\Important`,
		},
		gmids: map[string][]uint64{},
	}
	for _, mb := range []string{"INBOX", "Label1", "[Gmail]/All Mail", "[Gmail]/Sent Mail", "[Gmail]/Drafts", "[Gmail]/Spam", "[Gmail]/Trash", "[Gmail]/Starred", "[Gmail]/Important"} {
		f.user.Create(mb, nil)
	}
	mem := imapmemserver.New()
	mem.AddUser(f.user)
	backend := serveIMAP(t, mem, imap.CapSet{imap.CapIMAP4rev1: {}}, nil)
	ln := mailtest.Listen(t)
	f.addr = ln.Addr().String()
	mailtest.Serve(t, ln, func(c net.Conn) { f.proxy(c, backend) })
	return f
}

// add appends a message to the folders of its labels, with one X-GM-MSGID.
func (f *gmailFake) add(t *testing.T, gmid uint64, body string, folders ...string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, mb := range folders {
		_, err := f.user.Append(mb, demoLiteral{bytes.NewReader([]byte(body))}, &imap.AppendOptions{Time: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatalf("Append(%q) = %v", mb, err)
		}
		f.gmids[mb] = append(f.gmids[mb], gmid)
	}
}

func (f *gmailFake) proxy(c net.Conn, backend string) {
	defer c.Close()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	var wmu sync.Mutex // client writes: backend replies and our own
	go func() {
		defer c.Close()
		r := bufio.NewReader(b)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "* LIST (") {
				line = f.listAttrs(line)
			}
			// go-imap's server announces only the extensions it knows.
			line = strings.Replace(line, "CAPABILITY IMAP4rev1", "CAPABILITY IMAP4rev1 X-GM-EXT-1", 1)
			wmu.Lock()
			_, err = io.WriteString(c, line)
			if n, ok := fakeLiteral(line); ok && err == nil {
				_, err = io.CopyN(c, r, n)
			}
			wmu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	r := bufio.NewReader(c)
	selected := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		if cmd, arg, _ := strings.Cut(rest, " "); strings.EqualFold(cmd, "EXAMINE") || strings.EqualFold(cmd, "SELECT") {
			selected = strings.Trim(arg, `"`)
		}
		if strings.Contains(strings.ToUpper(rest), "X-GM-MSGID") {
			f.mu.Lock()
			var out strings.Builder
			for i, gm := range f.gmids[selected] {
				fmt.Fprintf(&out, "* %d FETCH (X-GM-MSGID %d UID %d)\r\n", i+1, gm, i+1)
			}
			f.mu.Unlock()
			fmt.Fprintf(&out, "%s OK Success\r\n", tag)
			wmu.Lock()
			io.WriteString(c, out.String())
			wmu.Unlock()
			continue
		}
		if _, err := io.WriteString(b, line); err != nil {
			return
		}
	}
}

// listAttrs adds the folder's Gmail attribute to a LIST reply line.
func (f *gmailFake) listAttrs(line string) string {
	i := strings.LastIndex(strings.TrimRight(line, "\r\n"), `"/" `)
	if i < 0 {
		return line
	}
	name := strings.Trim(strings.TrimRight(line[i+4:], "\r\n"), `"`)
	if a, ok := f.attrs[name]; ok {
		if rest, ok := strings.CutPrefix(line, "* LIST ()"); ok {
			return "* LIST (" + a + ")" + rest
		}
		return strings.Replace(line, "* LIST (", "* LIST ("+a+" ", 1)
	}
	return line
}

func fakeLiteral(line string) (int64, bool) {
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(line[i+1:len(line)-1], 10, 64)
	return n, err == nil
}

// serveIMAP serves mem in clear text on loopback; appends, when not nil,
// counts the APPEND commands clients send.
func serveIMAP(t *testing.T, mem *imapmemserver.Server, caps imap.CapSet, appends *atomic.Int64) string {
	t.Helper()
	ln := mailtest.Listen(t)
	l := ln
	if appends != nil {
		l = &countingListener{Listener: ln, n: appends}
	}
	mailtest.ServeIMAP(t, mem, imapserver.Options{Caps: caps, InsecureAuth: true}, l)
	return ln.Addr().String()
}

// countingListener counts " APPEND " in what clients send (the test
// bodies never contain it).
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n    *atomic.Int64
	tail []byte
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		const pat = " APPEND "
		buf := append(c.tail, p[:n]...)
		c.n.Add(int64(strings.Count(strings.ToUpper(string(buf)), pat) - strings.Count(strings.ToUpper(string(c.tail)), pat)))
		c.tail = append([]byte(nil), buf[max(0, len(buf)-16):]...)
	}
	return n, err
}

// folderBodies returns the bodies in each folder of an IMAP account.
func folderBodies(t *testing.T, addr, user, pass string) map[string][]string {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, d := range list {
		sd, err := c.Select(d.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		out[d.Mailbox] = []string{}
		if sd.NumMessages == 0 {
			continue
		}
		var all imap.SeqSet
		all.AddRange(1, 0) // 1:*
		msgs, err := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			for _, b := range m.BodySection {
				out[d.Mailbox] = append(out[d.Mailbox], string(b.Bytes))
			}
		}
		sort.Strings(out[d.Mailbox])
	}
	return out
}

// TestC11GmailLabelsOnce: a Gmail-like account where one message carries
// INBOX and Label1 (so it is in INBOX, Label1 and All Mail), one is
// archived (All Mail only), two different messages share a Message-ID and
// every header, one is sent, one is starred (Starred and Important views),
// one is spam. IMAP->IMAP with --gmail stores each message once, in its
// first label folder (All Mail as Archive, Sent as Sent), both
// same-Message-ID messages, nothing from Spam; the rerun, a rerun without
// the checkpoint (--reset), and a rerun after a label was added to the
// archived message make no APPEND.
func TestC11GmailLabelsOnce(t *testing.T) {
	g := startGmailFake(t)
	const hdr = "From: a@example.org\r\nTo: alice@gmail.com\r\nDate: Fri, 01 Mar 2024 12:00:00 +0000\r\n"
	labelled := hdr + "Message-ID: <labelled@example.org>\r\nSubject: labels\r\n\r\nin INBOX and Label1\r\n"
	archived := hdr + "Message-ID: <archived@example.org>\r\nSubject: archived\r\n\r\nonly in All Mail\r\n"
	twinA := hdr + "Message-ID: <twin@example.org>\r\nSubject: twin\r\n\r\nfirst twin body\r\n"
	twinB := hdr + "Message-ID: <twin@example.org>\r\nSubject: twin\r\n\r\nsecond twin body, not the first\r\n"
	sent := hdr + "Message-ID: <sent@example.org>\r\nSubject: sent\r\n\r\nsent by alice\r\n"
	spam := hdr + "Message-ID: <spam@example.org>\r\nSubject: spam\r\n\r\nbuy now\r\n"
	g.add(t, 1001, labelled, "INBOX", "Label1", "[Gmail]/All Mail")
	g.add(t, 1002, archived, "[Gmail]/All Mail")
	g.add(t, 1003, twinA, "INBOX", "[Gmail]/All Mail", "[Gmail]/Starred", "[Gmail]/Important")
	g.add(t, 1004, twinB, "INBOX", "[Gmail]/All Mail")
	g.add(t, 1005, sent, "[Gmail]/Sent Mail", "[Gmail]/All Mail")
	g.add(t, 1006, spam, "[Gmail]/Spam")

	dmem := imapmemserver.New()
	duser := imapmemserver.NewUser("bob", "dst-pass")
	duser.Create("INBOX", nil)
	dmem.AddUser(duser)
	var appends atomic.Int64
	daddr := serveIMAP(t, dmem, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapLiteralPlus: {}}, &appends)

	dir := t.TempDir()
	env := map[string]string{"MAILFERRY_SRC_PASSWORD": "gm-pass", "MAILFERRY_DST_PASSWORD": "dst-pass"}
	copyGmail := func(extra ...string) (copied int64) {
		t.Helper()
		args := append([]string{"copy", "imap://alice@gmail.com@" + g.addr, "imap://bob@" + daddr, "--gmail", "--allow-plaintext-auth",
			"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--json", "--progress", "never"}, extra...)
		code, stdout, stderr := runCLI(t, env, args...)
		if code != 0 {
			t.Fatalf("copy %v = %d\n%s", extra, code, stderr)
		}
		var s struct {
			Totals struct{ Copied int64 } `json:"totals"`
		}
		if err := json.Unmarshal([]byte(stdout), &s); err != nil {
			t.Fatalf("--json output %q: %v", stdout, err)
		}
		return s.Totals.Copied
	}

	if n := copyGmail(); n != 5 {
		t.Errorf("first run copied %d messages, want 5", n)
	}
	want := map[string][]string{
		"INBOX":   {labelled, twinA, twinB},
		"Label1":  {},
		"Archive": {archived},
		"Sent":    {sent},
		"Drafts":  {},
	}
	for _, v := range want {
		sort.Strings(v)
	}
	check := func(when string) {
		t.Helper()
		got := folderBodies(t, daddr, "bob", "dst-pass")
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: destination holds\n%q\nwant\n%q", when, got, want)
		}
	}
	check("first run")
	first := appends.Load()
	if first == 0 {
		t.Fatal("the first run sent no APPEND: the counter is broken")
	}

	for _, tc := range []struct {
		name   string
		before func()
		flags  []string
	}{
		{"rerun", nil, nil},
		{"rerun without the checkpoint", nil, []string{"--reset"}},
		{"rerun after labelling the archived message", func() { g.add(t, 1002, archived, "Label1") }, nil},
	} {
		if tc.before != nil {
			tc.before()
		}
		// After --reset the sink finds the messages already there and the
		// engine may count them as copied: the APPEND count is what says
		// nothing was stored twice.
		if n := copyGmail(tc.flags...); n != 0 && tc.flags == nil {
			t.Errorf("%s copied %d messages, want 0", tc.name, n)
		}
		if n := appends.Load(); n != first {
			t.Errorf("%s sent %d APPEND commands, want 0", tc.name, n-first)
		}
		check(tc.name)
		first = appends.Load()
	}
}

// TestC11GmailSpamOnlyWhenIncluded: Spam is left out by default and copied
// when an --include names it (here into a Maildir, as "Junk").
func TestC11GmailSpamOnlyWhenIncluded(t *testing.T) {
	g := startGmailFake(t)
	g.add(t, 7, "Message-ID: <spam@example.org>\r\nSubject: spam\r\n\r\nbuy now\r\n", "[Gmail]/Spam")
	g.add(t, 8, "Message-ID: <ham@example.org>\r\nSubject: ham\r\n\r\nhello\r\n", "INBOX", "[Gmail]/All Mail")
	env := map[string]string{"MAILFERRY_SRC_PASSWORD": "gm-pass"}
	for _, tc := range []struct {
		include []string
		want    map[string]int
	}{
		{nil, map[string]int{"": 1, ".Junk": 0, ".Archive": 0}},
		{[]string{"--include", "Spam"}, map[string]int{"": 0, ".Junk": 1}},
	} {
		dir := t.TempDir()
		args := append([]string{"copy", "imap://alice@gmail.com@" + g.addr, "maildir:" + filepath.Join(dir, "m"), "--gmail", "--allow-plaintext-auth",
			"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--quiet"}, tc.include...)
		if code, _, stderr := runCLI(t, env, args...); code != 0 {
			t.Fatalf("copy %v = %d %s", tc.include, code, stderr)
		}
		for sub, want := range tc.want {
			cur, _ := os.ReadDir(filepath.Join(dir, "m", sub, "cur"))
			fresh, _ := os.ReadDir(filepath.Join(dir, "m", sub, "new"))
			if got := len(cur) + len(fresh); got != want {
				t.Errorf("copy %v: Maildir folder %q holds %d messages, want %d", tc.include, sub, got, want)
			}
		}
	}
}

// TestGmailHint: without --gmail, a Gmail source gets a hint about it; a
// --gmail copy from a server that is not Gmail is a usage error.
func TestGmailHint(t *testing.T) {
	g := startGmailFake(t)
	g.add(t, 8, "Message-ID: <ham@example.org>\r\nSubject: ham\r\n\r\nhello\r\n", "INBOX", "[Gmail]/All Mail")
	dir := t.TempDir()
	env := map[string]string{"MAILFERRY_SRC_PASSWORD": "gm-pass"}
	code, _, stderr := runCLI(t, env, "copy", "imap://alice@gmail.com@"+g.addr, "maildir:"+filepath.Join(dir, "m"), "--allow-plaintext-auth",
		"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--progress", "never")
	if code != 0 || !strings.Contains(stderr, "--gmail copies each message once") {
		t.Errorf("copy from Gmail without --gmail = %d, want 0 and a hint:\n%s", code, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"maildir:" + filepath.Join(dir, "m"), "maildir:" + filepath.Join(dir, "n"), "--gmail"}, "--gmail needs an imaps:// source"},
		{[]string{"imap://alice@gmail.com@" + g.addr, "maildir:" + filepath.Join(dir, "n"), "--gmail", "--delete-source"}, "--gmail with --delete-source"},
	} {
		code, _, stderr = runCLI(t, env, append([]string{"copy"}, tc.args...)...)
		if code != exitcode.Usage || !strings.Contains(stderr, tc.want) {
			t.Errorf("copy %v = %d %q, want %d", tc.args, code, stderr, exitcode.Usage)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "n")); err == nil {
		t.Error("a refused --gmail copy created the destination")
	}
}
