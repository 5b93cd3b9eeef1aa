package imapsink

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// docs/failure-model.md F9: names and Message-IDs from a hostile source must not
// turn into extra or malformed commands on the IMAP target.

// f9Names are source folder names crafted to break out of a quoted string
// or to announce a literal; each carries a command that must never run.
var f9Names = []string{
	`Quote" DELETE Victim`,
	`Back\ Slash\" DELETE Victim`,
	`Brace {5}`,
	`Plus {5+}`,
	"CRLF\r\nX1 DELETE Victim",
	"LF\nX2 DELETE Victim\r\n",
	`Mixed "{3}` + "\r\n" + `abc" & ü`,
	"Tab\tNUL-free ~{4}",
}

// f9MessageIDs are Message-ID values (as List would report them) with the
// same tricks; the header in the body carries them too.
var f9MessageIDs = []string{
	`<"quoted"@x>`, `<back\slash@x>`, "<crlf\r\nX3 DELETE Victim@x>", `<lit{5}@x>`, `<lit+{5+}@x>`, `<"{0}"@x>`, `<tab	x@x>`, `<&amp;@x>`,
}

// recListener records, per connection, the bytes the client sent.
type recListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*bytes.Buffer
}

type recConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &bytes.Buffer{}
	l.conns = append(l.conns, b)
	return &recConn{Conn: c, mu: &l.mu, buf: b}, nil
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (l *recListener) streams() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][]byte
	for _, b := range l.conns {
		out = append(out, bytes.Clone(b.Bytes()))
	}
	return out
}

// imapCmd is one client command as a server would parse it.
type imapCmd struct {
	tag, verb string
	args      []string // top-level strings (quoted, literal or atom), decoded
}

// parseClientStream splits a client's byte stream into commands with a
// strict reading of RFC 9051 §4 and §9 (tag, atoms, quoted strings with
// only \\ and \" escapes and no CR/LF, {n}/{n+} literals, parenthesised
// lists). Anything else is an error: a malformed command is as bad as an
// injected one.
func parseClientStream(b []byte) ([]imapCmd, error) {
	var cmds []imapCmd
	for len(b) > 0 {
		var c imapCmd
		var err error
		i := bytes.IndexByte(b, ' ')
		if i <= 0 {
			return cmds, fmt.Errorf("no tag in %q", clipBytes(b))
		}
		c.tag, b = string(b[:i]), b[i+1:]
		depth := 0
		for {
			if len(b) == 0 {
				return cmds, fmt.Errorf("command %s: stream ends inside it", c.tag)
			}
			switch ch := b[0]; {
			case ch == '\r':
				if len(b) < 2 || b[1] != '\n' || depth != 0 {
					return cmds, fmt.Errorf("command %s: bare CR or unbalanced list", c.tag)
				}
				b = b[2:]
				goto done
			case ch == ' ':
				b = b[1:]
			case ch == '(':
				depth++
				b = b[1:]
			case ch == ')':
				if depth--; depth < 0 {
					return cmds, fmt.Errorf("command %s: unbalanced )", c.tag)
				}
				b = b[1:]
			case ch == '"':
				var s strings.Builder
				j := 1
				for ; j < len(b) && b[j] != '"'; j++ {
					switch b[j] {
					case '\\':
						if j+1 >= len(b) || (b[j+1] != '\\' && b[j+1] != '"') {
							return cmds, fmt.Errorf("command %s: bad escape in quoted string", c.tag)
						}
						j++
					case '\r', '\n', 0:
						return cmds, fmt.Errorf("command %s: CR, LF or NUL in a quoted string", c.tag)
					}
					s.WriteByte(b[j])
				}
				if j >= len(b) {
					return cmds, fmt.Errorf("command %s: unterminated quoted string", c.tag)
				}
				if depth == 0 {
					c.args = append(c.args, s.String())
				}
				b = b[j+1:]
			case ch == '{' || (ch == '~' && len(b) > 1 && b[1] == '{'):
				k := bytes.Index(b, []byte("}\r\n"))
				if k < 0 {
					return cmds, fmt.Errorf("command %s: bad literal", c.tag)
				}
				num := strings.TrimSuffix(strings.TrimLeft(string(b[:k]), "~{"), "+")
				n, perr := strconv.Atoi(num)
				if perr != nil || n < 0 || k+3+n > len(b) {
					return cmds, fmt.Errorf("command %s: bad literal size %q", c.tag, num)
				}
				if depth == 0 {
					c.args = append(c.args, string(b[k+3:k+3+n]))
				}
				b = b[k+3+n:]
			default:
				j := 0
				brackets := 0
				for ; j < len(b); j++ {
					x := b[j]
					if x == '[' {
						brackets++
					} else if x == ']' {
						brackets--
					} else if brackets == 0 && (x == ' ' || x == '(' || x == ')' || x == '\r' || x == '\n' || x == '"' || x == '{') {
						break
					} else if x < 0x20 || x == 0x7f {
						return cmds, fmt.Errorf("command %s: control character in an atom", c.tag)
					}
				}
				if j == 0 {
					return cmds, fmt.Errorf("command %s: unexpected byte %q", c.tag, b[0])
				}
				if depth == 0 {
					c.args = append(c.args, string(b[:j]))
				}
				b = b[j:]
			}
		}
	done:
		if len(c.args) == 0 {
			return cmds, fmt.Errorf("command %s: no verb", c.tag)
		}
		c.verb, c.args = strings.ToUpper(c.args[0]), c.args[1:]
		if c.verb == "UID" && len(c.args) > 0 {
			c.verb, c.args = "UID "+strings.ToUpper(c.args[0]), c.args[1:]
		}
		if err != nil {
			return cmds, err
		}
		cmds = append(cmds, c)
	}
	return cmds, nil
}

func clipBytes(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

// TestF9HostileNamesAndMessageIDs copies messages whose folder names and
// Message-IDs are built to inject commands into an IMAP target (go-imap's
// memory server behind a listener recording what the client sends). Every
// connection's byte stream must parse as well-formed commands; each folder
// is CREATEd exactly once under its exact name (modified UTF-7 decoded),
// gets exactly one APPEND, and the only commands seen are the ones the
// sink means to send: none of the injected DELETEs, and the bystander
// "Victim" folder keeps its message.
func TestF9HostileNamesAndMessageIDs(t *testing.T) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser(testUser, testPass)
	for _, b := range []string{"INBOX", "Victim"} {
		if err := user.Create(b, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := user.Append("Victim", literal{strings.NewReader("Subject: keep me\r\n\r\nx\r\n")}, &imapv2.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	// Clear text, so the recorder sees the commands (TLS would hide them).
	ln := mailtest.Listen(t)
	rec := &recListener{Listener: ln}
	mailtest.ServeIMAP(t, mem, imapserver.Options{
		Caps:         imapv2.CapSet{imapv2.CapIMAP4rev1: {}, imapv2.CapUIDPlus: {}, imapv2.CapLiteralPlus: {}},
		InsecureAuth: true,
	}, rec)
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	cfg := &Config{Config: imapconn.Config{Host: host, Port: p, User: testUser, TLS: imapconn.TLSStartTLS}, MultiAppend: true}
	o := &mail.OpenOptions{AllowPlaintext: true, Password: func(context.Context) (string, error) { return testPass, nil }, Timeout: 10 * time.Second}

	s, err := New(context.Background(), cfg, o)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx := context.Background()
	for i, name := range f9Names {
		if err := s.CreateMailbox(ctx, name); err != nil {
			t.Fatalf("CreateMailbox(%q) = %v", name, err)
		}
		msgid := f9MessageIDs[i%len(f9MessageIDs)]
		hdrID := strings.NewReplacer("\r", "", "\n", "").Replace(msgid)
		body := fmt.Sprintf("Message-ID: %s\r\nSubject: %s\r\n\r\nbody %d\r\n", hdrID, strings.ReplaceAll(name, "\r\n", " "), i)
		env := mail.Envelope{Mailbox: name, ID: mail.ID(fmt.Sprintf("1.%d", i+1)), Size: int64(len(body)), MessageID: msgid, Date: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
		if _, err := s.Put(ctx, env, strings.NewReader(body)); err != nil {
			t.Fatalf("Put(%q, %q) = %v", name, msgid, err)
		}
	}
	if err := s.Commit(ctx); err != nil { // MULTIAPPEND: durable only now
		t.Fatalf("Commit() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	creates := map[string]int{}
	appends := map[string]int{}
	allowed := map[string]bool{"CAPABILITY": true, "LOGIN": true, "AUTHENTICATE": true, "NAMESPACE": true, "LIST": true, "CREATE": true, "SUBSCRIBE": true,
		"SELECT": true, "EXAMINE": true, "APPEND": true, "FETCH": true, "UID FETCH": true, "UID SEARCH": true, "SEARCH": true, "NOOP": true, "LOGOUT": true,
		"ENABLE": true, "ID": true, "STATUS": true, "CLOSE": true, "UNSELECT": true, "STARTTLS": true}
	for i, stream := range rec.streams() {
		cmds, err := parseClientStream(stream)
		if err != nil {
			t.Fatalf("connection %d: %v\nstream: %q", i, err, stream)
		}
		for _, c := range cmds {
			if !allowed[c.verb] {
				t.Errorf("connection %d: unexpected command %s %q", i, c.verb, c.args)
			}
			if len(c.args) == 0 {
				continue
			}
			name, err := decodeMUTF7(c.args[0])
			if err != nil {
				t.Errorf("%s %q: mailbox is not modified UTF-7: %v", c.verb, c.args[0], err)
			}
			switch c.verb {
			case "CREATE":
				creates[name]++
			case "APPEND":
				appends[name]++
			case "DELETE", "RENAME", "EXPUNGE":
				t.Errorf("injected %s %q", c.verb, c.args)
			}
		}
	}
	for _, name := range f9Names {
		server, _ := namespace{delim: '/'}.serverName(name)
		if creates[server] != 1 || appends[server] != 1 {
			t.Errorf("folder %q: %d CREATE and %d APPEND, want 1 and 1 (creates %v)", server, creates[server], appends[server], creates)
		}
		st, err := user.Status(server, &imapv2.StatusOptions{NumMessages: true})
		if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
			t.Errorf("target folder %q: status %+v, %v; want 1 message", server, st, err)
		}
	}
	if len(creates) != len(f9Names) {
		t.Errorf("CREATEd %d folders, want %d: %v", len(creates), len(f9Names), creates)
	}
	if st, err := user.Status("Victim", &imapv2.StatusOptions{NumMessages: true}); err != nil || *st.NumMessages != 1 {
		t.Errorf("Victim: %v, %v; want its one message kept", st, err)
	}
}

// decodeMUTF7 is a strict modified UTF-7 decoder (RFC 3501 §5.1.3), for
// checking what the sink sent.
func decodeMUTF7(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", fmt.Errorf("byte %#x outside printable ASCII", c)
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		j := strings.IndexByte(s[i:], '-')
		if j < 0 {
			return "", errors.New("unterminated &")
		}
		enc := s[i+1 : i+j]
		i += j + 1
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := base64.RawStdEncoding.DecodeString(strings.ReplaceAll(enc, ",", "/"))
		if err != nil || len(raw)%2 != 0 {
			return "", fmt.Errorf("bad base64 run %q", enc)
		}
		u := make([]uint16, len(raw)/2)
		for k := range u {
			u[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		b.WriteString(string(utf16.Decode(u)))
	}
	return b.String(), nil
}

// FuzzEncodeMUTF7 (F10) checks the sink's own modified UTF-7 encoder and
// quoting, which the raw APPEND connections put on the wire: for any
// valid UTF-8 name, the encoding is printable ASCII without CR or LF,
// decodes back to the name, and quote() of it parses as exactly one
// well-formed quoted string holding it, so a name can never end a command
// or start another. Each input is also bounded in time.
func FuzzEncodeMUTF7(f *testing.F) {
	for _, s := range append(f9Names, "", "&", "&-", "a&b", "Ünïcödé", "日本語", "😀", "a\x00b", "\x7f", "&Jjo-") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || len(s) > 4096 {
			return
		}
		start := time.Now()
		enc := encodeMUTF7(s)
		for i := 0; i < len(enc); i++ {
			if enc[i] < 0x20 || enc[i] > 0x7e {
				t.Fatalf("encodeMUTF7(%q) = %q holds byte %#x", s, enc, enc[i])
			}
		}
		dec, err := decodeMUTF7(enc)
		if err != nil || dec != s {
			t.Fatalf("decode(encodeMUTF7(%q) = %q) = %q, %v", s, enc, dec, err)
		}
		cmds, err := parseClientStream([]byte("A1 CREATE " + quote(enc) + "\r\n"))
		if err != nil || len(cmds) != 1 || cmds[0].verb != "CREATE" || len(cmds[0].args) != 1 || cmds[0].args[0] != enc {
			t.Fatalf("CREATE %s parses as %+v, %v", quote(enc), cmds, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%d-byte name took %v", len(s), d)
		}
	})
}

// TestF9MultiAppendPath runs the hostile names through the sink's
// hand-written MULTIAPPEND connection (the scripted fake offers it; the
// memory server does not): each folder receives its one message under its
// exact modified UTF-7 name, and every command line the fake read starts
// with a tag and a known verb, so no name spilled into a line of its own.
func TestF9MultiAppendPath(t *testing.T) {
	f := startFake(t, "UIDPLUS MULTIAPPEND LITERAL+")
	s := f.sink(t)
	ctx := context.Background()
	for i, name := range f9Names {
		if err := s.CreateMailbox(ctx, name); err != nil {
			t.Fatalf("CreateMailbox(%q) = %v", name, err)
		}
		body := fmt.Sprintf("Message-ID: %s\r\n\r\nbody %d\r\n", strings.NewReplacer("\r", "", "\n", "").Replace(f9MessageIDs[i]), i)
		env := mail.Envelope{Mailbox: name, ID: mail.ID(fmt.Sprintf("1.%d", i+1)), Size: int64(len(body)), MessageID: f9MessageIDs[i]}
		if _, err := s.Put(ctx, env, strings.NewReader(body)); err != nil {
			t.Fatalf("Put(%q) = %v", name, err)
		}
	}
	if err := s.Commit(ctx); err != nil { // MULTIAPPEND: durable only now
		t.Fatalf("Commit() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	for i, name := range f9Names {
		server, _ := namespace{delim: '/'}.serverName(name)
		enc := encodeMUTF7(server)
		if got := f.messages(enc); len(got) != 1 || !strings.HasSuffix(got[0], fmt.Sprintf("body %d\r\n", i)) {
			t.Errorf("folder %q (%q) holds %q, want its one message", name, enc, got)
		}
	}
	f.mu.Lock()
	lines := append([]string(nil), f.lines...)
	f.mu.Unlock()
	verbs := map[string]bool{"CAPABILITY": true, "LOGIN": true, "LIST": true, "CREATE": true, "SUBSCRIBE": true, "SELECT": true, "EXAMINE": true,
		"APPEND": true, "FETCH": true, "UID": true, "NOOP": true, "LOGOUT": true, "NAMESPACE": true, "ENABLE": true, "ID": true, "SEARCH": true, "STATUS": true, "UNSELECT": true, "CLOSE": true}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || !verbs[strings.ToUpper(f[1])] || strings.ContainsAny(l, "\r\n") {
			t.Errorf("the fake read a line that is not a command: %q", l)
		}
	}
}

// TestF9ParserCatchesInjection shows the recorder's parser failing on the
// streams a broken quoting would produce, so TestF9 can fail.
func TestF9ParserCatchesInjection(t *testing.T) {
	for _, s := range []string{
		"A1 CREATE \"Quote\" DELETE Victim\"\r\n",
		"A1 CREATE \"CRLF\r\nX1 DELETE Victim\"\r\n",
		"A1 CREATE \"Back\\ Slash\"\r\n",
		"A1 CREATE {5}\r\nab\r\n",
		"A1 CREATE Brace\x01\r\n",
		"A1 APPEND INBOX (\\Seen {3}\r\nabc\r\n",
	} {
		if cmds, err := parseClientStream([]byte(s)); err == nil {
			t.Errorf("parseClientStream(%q) = %+v, want an error", s, cmds)
		}
	}
	cmds, err := parseClientStream([]byte("A1 CREATE \"Quote\" X2 DELETE Victim\r\n"))
	if err != nil || len(cmds) != 1 || len(cmds[0].args) != 4 {
		t.Errorf("an unescaped quote gives %+v, %v: want one command with 4 arguments (what the arg check catches)", cmds, err)
	}
}
