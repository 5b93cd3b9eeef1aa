package imapsink

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sources/imap"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

const (
	testUser = "bob"
	testPass = "s3cret-Pa55"
)

// memServer is go-imap's in-memory server on loopback with implicit TLS.
// It has UIDPLUS but no MULTIAPPEND: it exercises the plain APPEND path.
type memServer struct {
	user *imapmemserver.User
	addr string
	ca   string
}

func startMem(t testing.TB) *memServer {
	t.Helper()
	tlsCfg, ca := mailtest.LocalCert(t)
	mem, user := mailtest.NewMemIMAP(t, testUser, testPass)
	ln := tls.NewListener(mailtest.Listen(t), tlsCfg)
	mailtest.ServeIMAP(t, mem, imapserver.Options{
		Caps:      imapv2.CapSet{imapv2.CapIMAP4rev1: {}, imapv2.CapUIDPlus: {}, imapv2.CapNamespace: {}, imapv2.CapLiteralPlus: {}},
		TLSConfig: tlsCfg,
	}, ln)
	return &memServer{user: user, addr: ln.Addr().String(), ca: ca}
}

func (m *memServer) config(t testing.TB) *Config {
	t.Helper()
	host, port, _ := net.SplitHostPort(m.addr)
	p, _ := strconv.Atoi(port)
	return &Config{Config: imapconn.Config{Host: host, Port: p, User: testUser, TLS: imapconn.TLSImplicit}, MultiAppend: true}
}

func (m *memServer) opts() *mail.OpenOptions {
	return &mail.OpenOptions{
		CAFile:   m.ca,
		Password: func(context.Context) (string, error) { return testPass, nil },
		Timeout:  10 * time.Second,
	}
}

func (m *memServer) sink(t testing.TB) *Sink {
	t.Helper()
	s, err := New(context.Background(), m.config(t), m.opts())
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// source opens the IMAP source over the same account, to read back.
func (m *memServer) source(t testing.TB) *imap.Source {
	t.Helper()
	src, err := imap.New(context.Background(), &m.config(t).Config, m.opts())
	if err != nil {
		t.Fatalf("imap.New() = %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// seed stores a message directly in the memory server, as another tool
// would have.
func (m *memServer) seed(t testing.TB, mailbox, body string, date time.Time) {
	t.Helper()
	if err := m.user.Create(mailbox, nil); err != nil && !strings.Contains(err.Error(), "exist") {
		t.Fatal(err)
	}
	if _, err := m.user.Append(mailbox, literal{strings.NewReader(body)}, &imapv2.AppendOptions{Time: date}); err != nil {
		t.Fatal(err)
	}
}

type literal struct{ *strings.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

// fakeServer is a scripted IMAP server, plaintext, with just enough of the
// protocol for the sink: LOGIN, CAPABILITY, NAMESPACE-less LIST, CREATE,
// SUBSCRIBE, SELECT/EXAMINE, the index FETCH, APPEND and MULTIAPPEND.
// onAppend decides the fate of each APPEND command; the default stores.
type fakeServer struct {
	addr string
	caps string

	mu       sync.Mutex
	boxes    map[string][]fakeMsg
	uidNext  map[string]uint32
	appends  int      // APPEND commands seen
	lines    []string // command lines seen
	onAppend func(n int, box string, msgs []fakeMsg) fakeAction
}

type fakeMsg struct {
	uid   uint32
	flags string
	date  string
	body  []byte
}

// fakeAction is what the fake does with an APPEND command.
type fakeAction struct {
	reply string // tagged reply after the tag, e.g. "NO [OVERQUOTA] full"; "" = OK with APPENDUID
	store bool   // keep the messages (with a non-OK reply too, for drops)
	drop  bool   // close the connection instead of replying
	bye   bool   // send an untagged BYE, then close
	gone  bool   // answer OK, then send BYE and close (session expired, B5)
}

const fakeUIDValidity = 77

func startFake(t testing.TB, caps string) *fakeServer {
	t.Helper()
	f := &fakeServer{caps: caps, boxes: map[string][]fakeMsg{"INBOX": nil}, uidNext: map[string]uint32{"INBOX": 1}}
	ln := mailtest.Listen(t)
	f.addr = ln.Addr().String()
	mailtest.Serve(t, ln, f.serve)
	return f
}

func (f *fakeServer) config() *Config {
	host, port, _ := net.SplitHostPort(f.addr)
	p, _ := strconv.Atoi(port)
	return &Config{Config: imapconn.Config{Host: host, Port: p, User: testUser, TLS: imapconn.TLSStartTLS}, MultiAppend: true}
}

func (f *fakeServer) opts() *mail.OpenOptions {
	return &mail.OpenOptions{
		AllowPlaintext: true,
		Password:       func(context.Context) (string, error) { return testPass, nil },
		Timeout:        5 * time.Second,
	}
}

func (f *fakeServer) sink(t testing.TB) *Sink {
	t.Helper()
	s, err := New(context.Background(), f.config(), f.opts())
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// messages returns the bodies stored in box.
func (f *fakeServer) messages(box string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.boxes[box] {
		out = append(out, string(m.body))
	}
	return out
}

func (f *fakeServer) store(box string, msgs []fakeMsg) (first, last uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range msgs {
		msgs[i].uid = f.uidNext[box]
		f.uidNext[box]++
		f.boxes[box] = append(f.boxes[box], msgs[i])
		if i == 0 {
			first = msgs[i].uid
		}
		last = msgs[i].uid
	}
	return first, last
}

var (
	fakeQuoted  = regexp.MustCompile(`^"((?:[^"\\]|\\.)*)"`)
	fakeAppendR = regexp.MustCompile(`^\s*(\(([^)]*)\))?\s*("([^"]*)")?\s*\{(\d+)(\+?)\}$`)
)

func unquote(s string) (string, string) {
	if m := fakeQuoted.FindStringSubmatch(s); m != nil {
		return strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(m[1]), strings.TrimPrefix(s[len(m[0]):], " ")
	}
	w, rest, _ := strings.Cut(s, " ")
	return w, rest
}

func (f *fakeServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	send := func(format string, args ...any) {
		fmt.Fprintf(w, format, args...)
		w.Flush()
	}
	send("* OK [CAPABILITY IMAP4rev1 %s] fake ready\r\n", f.caps)
	selected := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		tag, rest, _ := strings.Cut(line, " ")
		cmd, args, _ := strings.Cut(rest, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "UID" {
			sub, a, _ := strings.Cut(args, " ")
			cmd, args = "UID "+strings.ToUpper(sub), a
		}
		switch cmd {
		case "CAPABILITY":
			send("* CAPABILITY IMAP4rev1 %s\r\n%s OK done\r\n", f.caps, tag)
		case "LOGIN":
			send("%s OK logged in\r\n", tag)
		case "NOOP":
			send("%s OK done\r\n", tag)
		case "LOGOUT":
			send("* BYE bye\r\n%s OK done\r\n", tag)
			return
		case "LIST":
			_, rest := unquote(args)
			pat, _ := unquote(rest)
			if pat == "" {
				send("* LIST (\\Noselect) \"/\" \"\"\r\n%s OK done\r\n", tag)
				continue
			}
			f.mu.Lock()
			for b := range f.boxes {
				if pat == "*" || pat == b {
					fmt.Fprintf(w, "* LIST () \"/\" \"%s\"\r\n", b)
				}
			}
			f.mu.Unlock()
			send("%s OK done\r\n", tag)
		case "CREATE":
			b, _ := unquote(args)
			f.mu.Lock()
			if _, ok := f.boxes[b]; !ok {
				f.boxes[b], f.uidNext[b] = nil, 1
			}
			f.mu.Unlock()
			send("%s OK created\r\n", tag)
		case "SUBSCRIBE":
			send("%s OK done\r\n", tag)
		case "SELECT", "EXAMINE":
			b, _ := unquote(args)
			f.mu.Lock()
			msgs, ok := f.boxes[b]
			next := f.uidNext[b]
			f.mu.Unlock()
			if !ok {
				send("%s NO [NONEXISTENT] no such mailbox\r\n", tag)
				continue
			}
			selected = b
			send("* %d EXISTS\r\n* OK [UIDVALIDITY %d] v\r\n* OK [UIDNEXT %d] n\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Label1)] p\r\n%s OK done\r\n",
				len(msgs), fakeUIDValidity, next, tag)
		case "FETCH", "UID FETCH":
			set, _, _ := strings.Cut(args, " ")
			lo, _, _ := strings.Cut(set, ":")
			from, _ := strconv.Atoi(lo)
			f.mu.Lock()
			msgs := append([]fakeMsg(nil), f.boxes[selected]...)
			f.mu.Unlock()
			for i, m := range msgs {
				if cmd == "UID FETCH" && m.uid < uint32(from) && i != len(msgs)-1 {
					continue
				}
				hdr, text := fakeSections(m.body)
				fmt.Fprintf(w, "* %d FETCH (UID %d RFC822.SIZE %d INTERNALDATE \"%s\" BODY[HEADER.FIELDS (MESSAGE-ID DATE FROM SUBJECT)] {%d}\r\n%s BODY[TEXT]<0> {%d}\r\n%s)\r\n",
					i+1, m.uid, len(m.body), m.date, len(hdr), hdr, len(text), text)
			}
			send("%s OK done\r\n", tag)
		case "APPEND":
			if !f.append(r, send, tag, args) {
				return
			}
		default:
			send("%s BAD unknown command\r\n", tag)
		}
	}
}

// append reads an APPEND or MULTIAPPEND command and acts on it; false
// means the connection is to be dropped.
func (f *fakeServer) append(r *bufio.Reader, send func(string, ...any), tag, args string) bool {
	box, rest := unquote(args)
	var msgs []fakeMsg
	for {
		m := fakeAppendR.FindStringSubmatch(rest)
		if m == nil {
			send("%s BAD bad append %q\r\n", tag, rest)
			return true
		}
		n, _ := strconv.Atoi(m[5])
		if m[6] == "" {
			send("+ go\r\n")
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return false
		}
		date := m[4]
		if date == "" {
			date = time.Now().Format("_2-Jan-2006 15:04:05 -0700")
		}
		msgs = append(msgs, fakeMsg{flags: m[2], date: date, body: body})
		next, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		rest = strings.TrimRight(next, "\r\n")
		if rest == "" {
			break
		}
	}
	f.mu.Lock()
	f.appends++
	n := f.appends
	_, exists := f.boxes[box]
	script := f.onAppend
	f.mu.Unlock()
	act := fakeAction{store: true}
	if script != nil {
		act = script(n, box, msgs)
	}
	if !exists && act.reply == "" {
		send("%s NO [TRYCREATE] no such mailbox\r\n", tag)
		return true
	}
	var first, last uint32
	if act.store {
		first, last = f.store(box, msgs)
	}
	switch {
	case act.drop:
		return false
	case act.bye:
		send("* BYE going away\r\n")
		return false
	case act.reply != "":
		send("%s %s\r\n", tag, act.reply)
	case strings.Contains(f.caps, "UIDPLUS") && first == last:
		send("%s OK [APPENDUID %d %d] done\r\n", tag, fakeUIDValidity, first)
	case strings.Contains(f.caps, "UIDPLUS"):
		send("%s OK [APPENDUID %d %d:%d] done\r\n", tag, fakeUIDValidity, first, last)
	default:
		send("%s OK done\r\n", tag)
	}
	if act.gone {
		send("* BYE session expired, please login again\r\n")
		return false
	}
	return true
}

// fakeSections returns the identity header fields and the first 256 bytes
// of the text of body, as a server computes them.
func fakeSections(body []byte) (string, string) {
	head, text := body, []byte(nil)
	for _, sep := range [][]byte{[]byte("\r\n\r\n"), []byte("\n\n")} {
		if i := bytes.Index(body, sep); i >= 0 && (text == nil || i < len(head)) {
			head, text = body[:i+len(sep)/2], body[i+len(sep):]
		}
	}
	var out strings.Builder
	keep := false
	for _, l := range strings.SplitAfter(string(head), "\n") {
		if l == "" {
			continue
		}
		if l[0] != ' ' && l[0] != '\t' {
			name, _, _ := strings.Cut(l, ":")
			switch strings.ToUpper(strings.TrimSpace(name)) {
			case "MESSAGE-ID", "DATE", "FROM", "SUBJECT":
				keep = true
			default:
				keep = false
			}
		}
		if keep {
			out.WriteString(l)
		}
	}
	out.WriteString("\r\n")
	if len(text) > 256 {
		text = text[:256]
	}
	return out.String(), string(text)
}

func (f *fakeServer) appendCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appends
}

func (f *fakeServer) script(fn func(n int, box string, msgs []fakeMsg) fakeAction) {
	f.mu.Lock()
	f.onAppend = fn
	f.mu.Unlock()
}
