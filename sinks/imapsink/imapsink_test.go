package imapsink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

var testDate = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// msg builds a small message.
func msg(msgid, subject, body string) string {
	h := "From: a@example.org\r\nDate: Thu, 4 Mar 2021 05:06:07 +0000\r\nSubject: " + subject + "\r\n"
	if msgid != "" {
		h += "Message-ID: " + msgid + "\r\n"
	}
	return h + "\r\n" + body
}

func put(t *testing.T, s *Sink, mailbox, body string, date time.Time, flags ...mail.Flag) mail.ID {
	t.Helper()
	id, err := s.Put(context.Background(), mail.Envelope{Mailbox: mailbox, ID: "x", Size: int64(len(body)), Date: date, Flags: flags}, strings.NewReader(body))
	if pe := (*mail.PresentError)(nil); errors.As(err, &pe) {
		return pe.ID // already there: the dedupe's answer
	}
	if err != nil {
		t.Fatalf("Put(%q) = %v", imapconn.Clip(body, 40), err)
	}
	return id
}

func commit(t *testing.T, s *Sink) {
	t.Helper()
	if err := s.Commit(context.Background()); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
}

// readBack lists mailbox through the IMAP source and returns the bodies.
func (m *memServer) readBack(t *testing.T, mailbox string) []string {
	t.Helper()
	src := m.source(t)
	var out []string
	err := src.List(context.Background(), mailbox, func(e mail.Envelope) error {
		rc, err := src.Open(context.Background(), e)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		out = append(out, string(b))
		return err
	})
	if err != nil {
		t.Fatalf("List(%q) = %v", mailbox, err)
	}
	return out
}

func TestPutPlainMemServer(t *testing.T) {
	m := startMem(t)
	s := m.sink(t)
	if s.multi {
		t.Fatal("memory server has no MULTIAPPEND, but the sink uses it")
	}
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, "Archive/2024/Q1"); err != nil {
		t.Fatalf("CreateMailbox = %v", err)
	}
	body := msg("<1@x>", "one", "hello\r\n")
	id := put(t, s, "Archive/2024/Q1", body, testDate, mail.FlagSeen, `\Recent`, "$Label1", "bad keyword", `\Bogus`)
	if !strings.HasPrefix(string(id), fmt.Sprint(1)) && !strings.Contains(string(id), ".1") {
		t.Errorf("Put ID = %q, want uidvalidity.1", id)
	}
	commit(t, s)
	src := m.source(t)
	var envs []mail.Envelope
	if err := src.List(ctx, "Archive/2024/Q1", func(e mail.Envelope) error { envs = append(envs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(envs) != 1 {
		t.Fatalf("listed %d messages, want 1", len(envs))
	}
	e := envs[0]
	if e.ID != id {
		t.Errorf("stored ID %q, Put returned %q", e.ID, id)
	}
	if !e.Date.Equal(testDate) {
		t.Errorf("date %v, want %v", e.Date, testDate)
	}
	got := strings.ToLower(fmt.Sprint(e.Flags)) // the memory server lower-cases keywords
	if got != strings.ToLower(fmt.Sprint([]mail.Flag{"$Label1", mail.FlagSeen})) {
		t.Errorf("flags %v, want [$Label1 \\Seen] (\\Recent, bad keyword, \\Bogus dropped)", e.Flags)
	}
}

func TestCreateMailboxNamespaces(t *testing.T) {
	for _, tc := range []struct {
		ns      namespace
		name    string
		want    string
		parents []string
	}{
		{namespace{"", '/'}, "Archive/2024", "Archive/2024", []string{"Archive"}},
		{namespace{"", '/'}, "inbox", "INBOX", nil},
		{namespace{"", '/'}, "Inbox/Sub", "INBOX/Sub", []string{}},
		{namespace{"INBOX.", '.'}, "Sent", "INBOX.Sent", nil},
		{namespace{"INBOX.", '.'}, "INBOX", "INBOX", nil},
		{namespace{"INBOX.", '.'}, "INBOX/Sent", "INBOX.Sent", nil},
		{namespace{"INBOX.", '.'}, "Archive/2024/Q1", "INBOX.Archive.2024.Q1", []string{"INBOX.Archive", "INBOX.Archive.2024"}},
		{namespace{"INBOX.", '.'}, "v1.2/x", "INBOX.v1_2.x", []string{"INBOX.v1_2"}},
		{namespace{"INBOX.", '.'}, "a%2Fb", "INBOX.a/b", nil},
		{namespace{"", 0}, "a/b", "a/b", nil},
	} {
		got, _ := tc.ns.serverName(tc.name)
		if got != tc.want {
			t.Errorf("%+v.serverName(%q) = %q, want %q", tc.ns, tc.name, got, tc.want)
		}
		if p := tc.ns.parents(got); len(p)+len(tc.parents) > 0 && fmt.Sprint(p) != fmt.Sprint(tc.parents) {
			t.Errorf("%+v.parents(%q) = %q, want %q", tc.ns, got, p, tc.parents)
		}
		if back := tc.ns.userName(got); !strings.EqualFold(back, tc.name) && tc.name != "v1.2/x" && tc.name != "INBOX/Sent" && tc.name != "a%2Fb" {
			t.Errorf("%+v.userName(%q) = %q, want %q", tc.ns, got, back, tc.name)
		}
	}
}

func TestEncodeMUTF7(t *testing.T) {
	for in, want := range map[string]string{
		"INBOX":             "INBOX",
		"Übersicht":         "&ANw-bersicht",
		"Tom & Jerry":       "Tom &- Jerry",
		"日本語/メール":           "&ZeVnLIqe-/&MOEw,DDr-",
		"Gesendete Objekte": "Gesendete Objekte",
	} {
		if got := encodeMUTF7(in); got != want {
			t.Errorf("encodeMUTF7(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSanitize(t *testing.T) {
	got := sanitize([]mail.Flag{`\Seen`, `\Recent`, `\seen`, `$Forwarded`, `a b`, `(x`, `\Draft`, `Junk]`, `\NotAFlag`, `NonJunk`})
	want := []string{`\Seen`, `$Forwarded`, `\Draft`, `NonJunk`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sanitize = %q, want %q", got, want)
	}
}

func TestAppendUIDs(t *testing.T) {
	for _, tc := range []struct {
		args string
		v    uint32
		uids []uint32
	}{
		{"38505 3955", 38505, []uint32{3955}},
		{"7 5:7", 7, []uint32{5, 6, 7}},
		{"7 5,9:10", 7, []uint32{5, 9, 10}},
		{"7 x", 0, nil},
		{"7", 0, nil},
	} {
		v, uids := imapconn.AppendUIDs(response{Code: "APPENDUID", Args: tc.args})
		if v != tc.v || fmt.Sprint(uids) != fmt.Sprint(tc.uids) {
			t.Errorf("appendUIDs(%q) = %d %v, want %d %v", tc.args, v, uids, tc.v, tc.uids)
		}
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		line  string
		check func(error) bool
		what  string
	}{
		{"A1 NO [OVERQUOTA] Quota exceeded", mail.Fatal, "fatal"},
		{"A1 NO Mailbox is over quota", mail.Fatal, "fatal"},
		{"A1 NO [TRYCREATE] no such mailbox", func(err error) bool { return errors.Is(err, errTryCreate) }, "trycreate"},
		{"A1 NO [TOOBIG] message too big", func(err error) bool { return errors.Is(err, mail.ErrTooLarge) }, "too large"},
		{"A1 NO Maximum size of appendable message has been exceeded", func(err error) bool { return errors.Is(err, mail.ErrTooLarge) }, "too large"},
		{"A1 NO [LIMIT] too many flags", mail.Temporary, "temporary"},
		{"A1 NO [UNAVAILABLE] try later", mail.Temporary, "temporary"},
		{"A1 BAD Request is throttled. Suggested Backoff Time: 5000 milliseconds", mail.Temporary, "temporary"},
		{"A1 NO [CANNOT] refused", func(err error) bool { return err != nil && !mail.Temporary(err) && !mail.Fatal(err) }, "permanent"},
	} {
		err := verdict("append", imapconn.ParseResponse(tc.line))
		if !tc.check(err) {
			t.Errorf("verdict(%q) = %v, want %s", tc.line, err, tc.what)
		}
	}
	if d := backoff(imapconn.ParseResponse("A1 BAD Request is throttled. Suggested Backoff Time: 5000 milliseconds")); d != 5*time.Second {
		t.Errorf("backoff = %v, want 5s", d)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		multi bool
		box   string
		bad   bool
	}{
		{"imaps://bob@host", true, "", false},
		{"imaps://bob@host/Old%20Account?multiappend=off", false, "Old Account", false},
		{"imap://bob@host?multiappend=on", true, "", false},
		{"imaps://bob@host?multiappend=maybe", false, "", true},
		{"imaps://bob@host?folders=x", false, "", true},
	} {
		u, _ := url.Parse(tc.raw)
		cfg, err := ParseURL(u)
		if tc.bad {
			if !errors.Is(err, mail.ErrConfig) {
				t.Errorf("ParseURL(%q) = %v, want a config error", tc.raw, err)
			}
			continue
		}
		if err != nil || cfg.MultiAppend != tc.multi || cfg.Mailbox != tc.box {
			t.Errorf("ParseURL(%q) = %+v, %v", tc.raw, cfg, err)
		}
	}
}

func TestRegister(t *testing.T) {
	r := mail.NewRegistry()
	Register(r)
	_, sinks := r.Schemes()
	if fmt.Sprint(sinks) != "[imap imaps]" {
		t.Errorf("sink schemes = %v", sinks)
	}
}

func TestCloseThenPut(t *testing.T) {
	m := startMem(t)
	s := m.sink(t)
	s.Close()
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	_, err := s.Put(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: "1"}, strings.NewReader("a\r\n"))
	if !errors.Is(err, mail.ErrClosed) {
		t.Errorf("Put after Close = %v, want ErrClosed", err)
	}
}

// TestDedupeMemServer covers rule 2 without a checkpoint: a destination
// already holding some of the mail (from another tool) gets only the rest.
func TestDedupeMemServer(t *testing.T) {
	m := startMem(t)
	a := msg("<same@x>", "same id", "first body\r\n")
	b := msg("<same@x>", "same id", "second, different body\r\n") // same Message-ID, other body
	c := msg("", "no id", "no message-id here\r\n")
	d := msg("", "no id", "no message-id, other body\r\n")
	m.seed(t, "INBOX", a, testDate)
	m.seed(t, "INBOX", c, testDate)
	s := m.sink(t)
	for _, body := range []string{a, b, c, d, a} { // a twice: a true duplicate in the source
		put(t, s, "INBOX", body, testDate)
	}
	commit(t, s)
	got := m.readBack(t, "INBOX")
	want := []string{a, c, b, d, a}
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("INBOX holds %d messages %q,\nwant %d %q", len(got), got, len(want), want)
	}
	// A second run with a fresh sink (no checkpoint) appends nothing.
	s2 := m.sink(t)
	for _, body := range []string{a, b, c, d, a} {
		put(t, s2, "INBOX", body, testDate)
	}
	commit(t, s2)
	if got := m.readBack(t, "INBOX"); len(got) != len(want) {
		t.Errorf("after the rerun INBOX holds %d messages, want %d", len(got), len(want))
	}
}

func TestIdentity(t *testing.T) {
	mk := func(body string, date time.Time) identity {
		var w idWriter
		io.Copy(&w, iotestHalf(strings.NewReader(body)))
		return w.identity(date)
	}
	srv := func(uid uint32, body string, date time.Time) (string, *entry) {
		hdr, text := fakeSections([]byte(body))
		return entryFrom(uid, int64(len(body)), date, []byte(hdr), []byte(text))
	}
	long := strings.Repeat("line of text\r\n", 40)
	lf := "From: a@x\nSubject: s\nMessage-ID: <lf@x>\n\nbody\nmore\n"
	crlf := strings.ReplaceAll(lf, "\n", "\r\n")
	for _, tc := range []struct {
		name   string
		put    string
		stored string
		date   time.Time
		same   bool
	}{
		{"identical", msg("<1@x>", "s", "b\r\n"), msg("<1@x>", "s", "b\r\n"), testDate, true},
		{"same msgid other body same size", msg("<1@x>", "s", "body A\r\n"), msg("<1@x>", "s", "body B\r\n"), testDate, false},
		{"same msgid other subject", msg("<1@x>", "s", "b\r\n"), msg("<1@x>", "t", "b\r\n"), testDate, false},
		{"no msgid identical", msg("", "s", "b\r\n"), msg("", "s", "b\r\n"), testDate, true},
		{"no msgid other body", msg("", "s", "b1\r\n"), msg("", "s", "b2\r\n"), testDate, false},
		{"long bodies differ after 256 bytes", msg("<1@x>", "s", long+"A"), msg("<1@x>", "s", long+"B"), testDate, true}, // documented limit
		{"long bodies differ in size", msg("<1@x>", "s", long+"A"), msg("<1@x>", "s", long+"AB"), testDate, false},
		{"bare LF stored as CRLF", lf, crlf, testDate, true},
		{"folded header unfolded", "Subject: a\r\n b\r\nMessage-ID: <f@x>\r\n\r\nx", "Subject: a\r\n\tb\r\nMessage-ID: <f@x>\r\n\r\nx", time.Time{}, true},
		{"headers only", "Subject: h\r\nMessage-ID: <h@x>\r\n", "Subject: h\r\nMessage-ID: <h@x>\r\n", testDate, true},
		{"8-bit header bytes as X (Cyrus munge8bit)", msg("<1@x>", "Grüße", "b\r\n"), msg("<1@x>", "GrXXXXe", "b\r\n"), testDate, true},
		{"8-bit header other length", msg("<1@x>", "Grüße", "b\r\n"), msg("<1@x>", "GrXXe", "b\r\n"), testDate, false},
		{"final CRLF added (Courier)", msg("<1@x>", "s", "no end"), msg("<1@x>", "s", "no end\r\n"), testDate, true},
		{"final CRLF added to a long text", msg("<1@x>", "s", long+"no end"), msg("<1@x>", "s", long+"no end\r\n"), testDate, true},
		{"two bytes more, not a line end", msg("<1@x>", "s", "no end"), msg("<1@x>", "s", "no endXY"), testDate, false},
		{"two bytes more after a line end", msg("<1@x>", "s", "end\r\n"), msg("<1@x>", "s", "end\r\n\r\n"), testDate, false},
	} {
		id := mk(tc.put, tc.date)
		key, e := srv(5, tc.stored, tc.date)
		same := key == id.key && id.matches(e)
		if same != tc.same {
			t.Errorf("%s: same = %v, want %v (key %q vs %q)", tc.name, same, tc.same, id.key, key)
		}
	}
	// A different internal date is another message.
	id := mk(msg("<1@x>", "s", "b\r\n"), testDate)
	_, e := srv(5, msg("<1@x>", "s", "b\r\n"), testDate.Add(time.Hour))
	if id.matches(e) {
		t.Error("matched across different internal dates")
	}
}

// iotestHalf reads half of what is asked, to cross Write boundaries.
func iotestHalf(r io.Reader) io.Reader { return &halfReader{r} }

type halfReader struct{ r io.Reader }

func (h *halfReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:len(p)/2]
	}
	return h.r.Read(p)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

func TestSetFlagsMemServer(t *testing.T) {
	m := startMem(t)
	s := m.sink(t)
	ctx := context.Background()
	id := put(t, s, "INBOX", msg("<f@x>", "f", "x\r\n"), testDate, mail.FlagSeen)
	if err := s.SetFlags(ctx, "INBOX", id, []mail.Flag{mail.FlagFlagged, `\Recent`, "$Todo"}); err != nil {
		t.Fatalf("SetFlags = %v", err)
	}
	var flags []mail.Flag
	m.source(t).List(ctx, "INBOX", func(e mail.Envelope) error { flags = e.Flags; return nil })
	if got := strings.ToLower(fmt.Sprint(flags)); got != `[$todo \flagged]` {
		t.Errorf("flags after SetFlags = %v, want [$Todo \\Flagged]", flags)
	}
	uidv, uid, _ := parseID(id)
	for _, bad := range []mail.ID{makeID(uidv, uid+1), makeID(uidv+1, uid), "x"} {
		if err := s.SetFlags(ctx, "INBOX", bad, nil); !errors.Is(err, mail.ErrNotFound) {
			t.Errorf("SetFlags(%q) = %v, want ErrNotFound", bad, err)
		}
	}
}

// TestPutCreatesMissingMailbox: a Put into a mailbox nobody created makes
// it (with its parents) instead of failing.
func TestPutCreatesMissingMailbox(t *testing.T) {
	m := startMem(t)
	s := m.sink(t)
	body := msg("<n@x>", "n", "new box\r\n")
	put(t, s, "Neu/Übersicht", body, testDate)
	if got := m.readBack(t, "Neu/Übersicht"); fmt.Sprint(got) != fmt.Sprint([]string{body}) {
		t.Errorf("Neu/Übersicht = %q", got)
	}
}
