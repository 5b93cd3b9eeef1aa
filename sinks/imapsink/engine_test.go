package imapsink

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sources/imap"
	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// serveMem serves user from a fresh go-imap memory server in clear text
// (so a recorder sees the commands) on l, which wraps a loopback listener
// when not nil.
func serveMem(t *testing.T, user *imapmemserver.User, caps imapv2.CapSet, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	mem := imapmemserver.New()
	mem.AddUser(user)
	ln := mailtest.Listen(t)
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	mailtest.ServeIMAP(t, mem, imapserver.Options{Caps: caps, InsecureAuth: true}, ln)
	return addr
}

func plainIMAPConfig(t *testing.T, addr, user string) imapconn.Config {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return imapconn.Config{Host: host, Port: p, User: user, TLS: imapconn.TLSStartTLS}
}

// f9Source serves a source account whose folder names and Message-IDs are
// the hostile f9Names and f9MessageIDs (two messages a folder) and opens
// the IMAP source on it. It returns the names the source offers and the
// bodies of each folder.
func f9Source(t *testing.T) (*imap.Source, []string, map[string]map[string]bool) {
	t.Helper()
	const perBox = 2
	srcUser := imapmemserver.NewUser("alice", testPass)
	if err := srcUser.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	date := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	bodies := map[string]map[string]bool{} // source folder -> bodies
	for i, name := range f9Names {
		if err := srcUser.Create(name, nil); err != nil {
			t.Fatalf("the source server refuses folder %q: %v", name, err)
		}
		bodies[name] = map[string]bool{}
		for k := 0; k < perBox; k++ {
			id := strings.NewReplacer("\r", "", "\n", "").Replace(f9MessageIDs[(i+k)%len(f9MessageIDs)])
			body := fmt.Sprintf("Message-ID: %s\r\nSubject: %d/%d {5}\r\n\r\nbody %d of %q\r\n", id, i, k, k, name)
			if _, err := srcUser.Append(name, literal{strings.NewReader(body)}, &imapv2.AppendOptions{Time: date}); err != nil {
				t.Fatal(err)
			}
			bodies[name][body] = true
		}
	}
	caps := imapv2.CapSet{imapv2.CapIMAP4rev1: {}, imapv2.CapUIDPlus: {}, imapv2.CapLiteralPlus: {}}
	srcAddr := serveMem(t, srcUser, caps, nil)
	ctx := context.Background()
	o := func() *mail.OpenOptions {
		return &mail.OpenOptions{AllowPlaintext: true, Password: func(context.Context) (string, error) { return testPass, nil }, Timeout: 10 * time.Second}
	}
	src, err := imap.New(ctx, ptr(plainIMAPConfig(t, srcAddr, "alice")), o())
	if err != nil {
		t.Fatalf("imap.New() = %v", err)
	}
	t.Cleanup(func() { src.Close() })
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatalf("Mailboxes() = %v", err)
	}
	// The source may skip or rename names it cannot map (F7); the names
	// built to break a quoted string or announce a literal must pass, or
	// this test proves nothing.
	offered := map[string]bool{}
	for _, b := range boxes {
		offered[b] = true
	}
	for _, must := range []string{`Quote" DELETE Victim`, `Back\ Slash\" DELETE Victim`, `Brace {5}`, `Plus {5+}`} {
		if !offered[must] {
			t.Fatalf("the source does not offer %q (offers %q): the injection is not exercised", must, boxes)
		}
	}
	t.Logf("the source offers %q", boxes)
	return src, boxes, bodies
}

// TestF9IMAPToIMAPThroughEngine plays docs/failure-model.md F9 as the plan
// states it: an IMAP→IMAP copy (the real IMAP source on a go-imap memory
// server whose folder names and Message-IDs carry `"`, `\`, CR/LF and
// `{5}`-like text, the engine with four workers, the IMAP sink on a
// recording memory server). On the target, every connection's byte stream
// parses as well-formed commands of known verbs only; each folder the
// source offers is CREATEd exactly once under its exact name, gets exactly
// one APPEND per message, at most one SELECT per APPEND and at most one
// EXAMINE (its index) and UID SEARCH per APPEND; nothing is deleted,
// renamed, expunged, stored or moved; every message arrives byte for byte,
// and the bystander folder "Victim" keeps its one message.
func TestF9IMAPToIMAPThroughEngine(t *testing.T) {
	src, boxes, bodies := f9Source(t)
	caps := imapv2.CapSet{imapv2.CapIMAP4rev1: {}, imapv2.CapUIDPlus: {}, imapv2.CapLiteralPlus: {}}
	dstUser := imapmemserver.NewUser(testUser, testPass)
	for _, b := range []string{"INBOX", "Victim"} {
		if err := dstUser.Create(b, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dstUser.Append("Victim", literal{strings.NewReader("Subject: keep me\r\n\r\nx\r\n")}, &imapv2.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	var rec *recListener
	dstAddr := serveMem(t, dstUser, caps, func(l net.Listener) net.Listener { rec = &recListener{Listener: l}; return rec })

	ctx := context.Background()
	o := func() *mail.OpenOptions {
		return &mail.OpenOptions{AllowPlaintext: true, Password: func(context.Context) (string, error) { return testPass, nil }, Timeout: 10 * time.Second}
	}
	dstCfg := plainIMAPConfig(t, dstAddr, testUser)
	dst, err := New(ctx, &Config{Config: dstCfg, MultiAppend: true}, o())
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	res, err := mailferry.Copy(ctx, src, dst, mailferry.Options{SrcEndpoint: "imap://alice@src", Workers: 4})
	if err != nil {
		t.Fatalf("Copy() = %v (failures %+v)", err, res.Failures)
	}
	if err := dst.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	want := 0
	for _, b := range boxes {
		want += len(bodies[b])
	}
	if got := res.Stats.Copied.Load(); got != int64(want) || len(res.Failures) != 0 {
		t.Fatalf("copied %d, failures %+v; want %d copied", got, res.Failures, want)
	}

	type counts struct{ create, sel, examine, appends, search int }
	per := map[string]*counts{}
	at := func(box string) *counts {
		if per[box] == nil {
			per[box] = &counts{}
		}
		return per[box]
	}
	allowed := map[string]bool{"CAPABILITY": true, "LOGIN": true, "AUTHENTICATE": true, "NAMESPACE": true, "LIST": true, "CREATE": true,
		"SUBSCRIBE": true, "SELECT": true, "EXAMINE": true, "APPEND": true, "UID FETCH": true, "FETCH": true, "UID SEARCH": true,
		"NOOP": true, "LOGOUT": true, "ENABLE": true, "ID": true, "STATUS": true, "CLOSE": true, "UNSELECT": true}
	streams := rec.streams()
	for i, stream := range streams {
		cmds, err := parseClientStream(stream)
		if err != nil {
			t.Fatalf("connection %d: %v\nstream: %q", i, err, stream)
		}
		selected := ""
		for _, c := range cmds {
			if !allowed[c.verb] {
				t.Errorf("connection %d: unexpected command %s %q", i, c.verb, c.args)
			}
			box := ""
			if len(c.args) > 0 {
				if box, err = decodeMUTF7(c.args[0]); err != nil {
					t.Errorf("%s %q: not modified UTF-7: %v", c.verb, c.args[0], err)
				}
			}
			switch c.verb {
			case "CREATE":
				at(box).create++
			case "SELECT":
				at(box).sel++
				selected = box
			case "EXAMINE":
				at(box).examine++
				selected = box
			case "APPEND":
				at(box).appends++
			case "UID SEARCH":
				at(selected).search++
			}
		}
	}
	var names []string
	for _, b := range boxes {
		server, _ := namespace{delim: '/'}.serverName(b)
		c := at(server)
		names = append(names, fmt.Sprintf("%q: CREATE %d SELECT %d EXAMINE %d APPEND %d SEARCH %d", server, c.create, c.sel, c.examine, c.appends, c.search))
		n := len(bodies[b])
		if b == "INBOX" {
			if c.create != 0 {
				t.Errorf("INBOX CREATEd %d times, want never", c.create)
			}
		} else if c.create != 1 {
			t.Errorf("folder %q: %d CREATE, want exactly 1", server, c.create)
		}
		if c.appends != n || c.sel > n || c.examine > 1 || c.search > n {
			t.Errorf("folder %q: %d APPEND (want %d), %d SELECT, %d EXAMINE, %d UID SEARCH: want at most one SELECT and SEARCH per APPEND and one EXAMINE", server, c.appends, n, c.sel, c.examine, c.search)
		}
		got := readBox(t, dstCfg, b)
		sort.Strings(got)
		var exp []string
		for body := range bodies[b] {
			exp = append(exp, body)
		}
		sort.Strings(exp)
		if strings.Join(got, "\x00") != strings.Join(exp, "\x00") {
			t.Errorf("target folder %q holds %q, want %q", server, got, exp)
		}
	}
	sort.Strings(names)
	t.Logf("%d connections to the target; per folder:\n%s", len(streams), strings.Join(names, "\n"))
	creates := 0
	for box, c := range per {
		creates += c.create
		if box == "Victim" && (c.create+c.sel+c.appends) > 0 {
			t.Errorf("Victim was touched: %+v", *c)
		}
	}
	if creates != len(boxes)-1 { // every folder but INBOX
		t.Errorf("%d CREATE in all, want %d: %v", creates, len(boxes)-1, names)
	}
	if got := readBox(t, dstCfg, "Victim"); len(got) != 1 {
		t.Errorf("Victim holds %d messages, want its one message kept", len(got))
	}
}

// TestF9IMAPToIMAPThroughEngineMultiAppend is the same copy into the
// scripted fake that offers MULTIAPPEND, so the hostile names go through
// the sink's hand-written raw connection: each folder is CREATEd once,
// SELECTed at most once per APPEND command, gets at most one APPEND
// command per message (one MULTIAPPEND carries several) and holds its
// messages byte for byte; every line the fake read is a tagged command of
// a known verb, so nothing spilled into a command of its own.
func TestF9IMAPToIMAPThroughEngineMultiAppend(t *testing.T) {
	src, boxes, bodies := f9Source(t)
	f := startFake(t, "UIDPLUS MULTIAPPEND LITERAL+")
	f.mu.Lock()
	f.boxes["Victim"], f.uidNext["Victim"] = []fakeMsg{{uid: 1, date: "02-Jan-2024 03:04:05 +0000", body: []byte("Subject: keep me\r\n\r\nx\r\n")}}, 2
	f.mu.Unlock()
	ctx := context.Background()
	dst, err := New(ctx, f.config(), f.opts())
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	res, err := mailferry.Copy(ctx, src, dst, mailferry.Options{SrcEndpoint: "imap://alice@src", Workers: 4})
	if err != nil {
		t.Fatalf("Copy() = %v (failures %+v)", err, res.Failures)
	}
	if err := dst.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	f.mu.Lock()
	lines := append([]string(nil), f.lines...)
	f.mu.Unlock()
	type counts struct{ create, sel, appends int }
	per := map[string]*counts{}
	verbs := map[string]bool{"CAPABILITY": true, "LOGIN": true, "LIST": true, "CREATE": true, "SUBSCRIBE": true, "SELECT": true, "EXAMINE": true,
		"APPEND": true, "FETCH": true, "UID": true, "NOOP": true, "LOGOUT": true, "NAMESPACE": true, "ENABLE": true, "ID": true, "STATUS": true, "UNSELECT": true, "CLOSE": true}
	for _, l := range lines {
		fl := strings.Fields(l)
		if len(fl) < 2 || !verbs[strings.ToUpper(fl[1])] || strings.ContainsAny(l, "\r\n") {
			t.Errorf("the fake read a line that is not a command: %q", l)
			continue
		}
		_, rest, _ := strings.Cut(l, " ")
		verb, args, _ := strings.Cut(rest, " ")
		box, _ := unquote(args)
		name, err := decodeMUTF7(box)
		if err != nil {
			continue // not a mailbox argument
		}
		if per[name] == nil {
			per[name] = &counts{}
		}
		switch strings.ToUpper(verb) {
		case "CREATE":
			per[name].create++
		case "SELECT":
			per[name].sel++
		case "APPEND":
			per[name].appends++
		}
	}
	for _, b := range boxes {
		server, _ := namespace{delim: '/'}.serverName(b)
		c := per[server]
		if c == nil {
			c = &counts{}
		}
		n := len(bodies[b])
		if wantCreate := 1; b == "INBOX" && c.create != 0 || b != "INBOX" && c.create != wantCreate {
			t.Errorf("folder %q: %d CREATE, want %d", server, c.create, map[bool]int{true: 0, false: 1}[b == "INBOX"])
		}
		if c.appends < min(n, 1) || c.appends > n || c.sel > c.appends {
			t.Errorf("folder %q: %d APPEND commands for %d messages, %d SELECT: want 1..%d APPEND and at most one SELECT per APPEND", server, c.appends, n, c.sel, n)
		}
		got := f.messages(encodeMUTF7(server))
		sort.Strings(got)
		var exp []string
		for body := range bodies[b] {
			exp = append(exp, body)
		}
		sort.Strings(exp)
		if strings.Join(got, "\x00") != strings.Join(exp, "\x00") {
			t.Errorf("target folder %q holds %q, want %q", server, got, exp)
		}
	}
	var summary []string
	for name, c := range per {
		summary = append(summary, fmt.Sprintf("%q: CREATE %d SELECT %d APPEND %d", name, c.create, c.sel, c.appends))
	}
	sort.Strings(summary)
	t.Logf("per folder:\n%s", strings.Join(summary, "\n"))
	if c := per["Victim"]; c != nil && c.create+c.sel+c.appends > 0 {
		t.Errorf("Victim was touched: %+v", *c)
	}
	if got := f.messages("Victim"); len(got) != 1 {
		t.Errorf("Victim holds %d messages, want its one message kept", len(got))
	}
}

func ptr[T any](v T) *T { return &v }

// readBox returns the bodies in box (named as the IMAP source names it)
// on the server at cfg, read through the IMAP source.
func readBox(t *testing.T, cfg imapconn.Config, box string) []string {
	t.Helper()
	ctx := context.Background()
	o := &mail.OpenOptions{AllowPlaintext: true, Password: func(context.Context) (string, error) { return testPass, nil }, Timeout: 10 * time.Second}
	src, err := imap.New(ctx, &cfg, o)
	if err != nil {
		t.Fatalf("imap.New() = %v", err)
	}
	defer src.Close()
	var out []string
	err = src.List(ctx, box, func(e mail.Envelope) error {
		rc, err := src.Open(ctx, e)
		if err != nil {
			return err
		}
		defer rc.Close()
		var b strings.Builder
		_, err = io.Copy(&b, rc)
		out = append(out, b.String())
		return err
	})
	if err != nil {
		t.Errorf("List(%q) on the target = %v", box, err)
	}
	return out
}
