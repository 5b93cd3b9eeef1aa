package pop3

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestC3DovecotUIDLReset: Dovecot's POP3 UIDLs (pop3_uidl_format
// %08Xu%08Xv) all change when the folder gets a new UIDVALIDITY over the
// same messages (`doveadm mailbox update --uid-validity`), as after a
// server rebuild. The run after that (without --remap) re-maps every
// message by Message-ID and size from one TOP pass, with no RETR, and a
// final run sends no RETR or TOP and copies nothing. It also shows that Dovecot's TOP msg 0
// serves the header bytes its RETR does (the Message-ID hashes agree).
func TestC3DovecotUIDLReset(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	const n = 24
	seed := make([]mailtest.SeedMessage, n)
	for i := range seed {
		var b strings.Builder
		fmt.Fprintf(&b, "From: a@example.org\r\nMessage-ID: <c3-%d@example.org>\r\nSubject: c3 %d\r\n\r\n", i, i)
		for b.Len() < 8<<10 {
			fmt.Fprintf(&b, "line of message %d\r\n", i)
		}
		seed[i] = mailtest.SeedMessage{Body: []byte(b.String())}
	}
	d.Seed(t, user, pw, "INBOX", seed)

	host, port, err := net.SplitHostPort(d.POP3S)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	var mu gosync.Mutex
	cmds := map[string]int{}
	o := &mail.OpenOptions{
		CAFile:   d.CAFile,
		Password: func(context.Context) (string, error) { return pw, nil },
		Trace: func(line string) {
			if c, ok := strings.CutPrefix(line, "C: "); ok {
				verb, _, _ := strings.Cut(c, " ")
				mu.Lock()
				cmds[verb]++
				mu.Unlock()
			}
		},
	}
	sink := mailtest.NewMemSink()
	cp, err := checkpoint.Open(filepath.Join(t.TempDir(), "cp.jsonl"), "pop3", "mem", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close() })
	run := func(remap bool) (res *mailferry.Result, retr, top int, err error) {
		t.Helper()
		mu.Lock()
		clear(cmds)
		mu.Unlock()
		s, err := New(context.Background(), &Config{Host: host, Port: p, User: user, TLS: TLSImplicit}, o)
		if err != nil {
			t.Fatalf("New = %v", err)
		}
		opt := mailferry.Options{SrcEndpoint: "pop3", Checkpoint: cp, Remap: remap, Backoff: time.Millisecond, BatchDelay: time.Millisecond}
		res, err = mailferry.Copy(context.Background(), s, sink, opt)
		if cerr := s.Close(); cerr != nil {
			t.Errorf("Close = %v", cerr)
		}
		mu.Lock()
		defer mu.Unlock()
		return res, cmds["RETR"], cmds["TOP"], err
	}
	if _, retr, _, err := run(false); err != nil || retr != n {
		t.Fatalf("first run: %v, %d RETR; want %d", err, retr, n)
	}
	for _, r := range cp.Records("INBOX") {
		if r.MsgID == "" {
			t.Fatalf("record %+v has no Message-ID hash", r)
		}
	}
	d.Doveadm(t, "mailbox", "update", "-u", user, "--uid-validity", "4242", "INBOX")

	// Confirmed, the renumbering is re-mapped without --remap (issue 10:
	// this run used to halt until a rerun with --remap).
	res, retr, top, err := run(false)
	if err != nil {
		t.Fatalf("--remap: Copy = %v", err)
	}
	if len(res.Events) != 1 || res.Events[0].Kind != "remapped" || res.Events[0].ByListing != n || res.Events[0].Hashed != 0 {
		t.Fatalf("--remap: events %+v; want remapped, %d by listing, 0 hashed", res.Events, n)
	}
	if retr != 0 || top > n || sink.Puts.Load() != n {
		t.Errorf("--remap: %d RETR, %d TOP, %d puts in all; want 0, at most %d, %d", retr, top, sink.Puts.Load(), n, n)
	}
	t.Logf("--remap run: %d RETR, %d TOP for %d messages", retr, top, n)

	res, retr, top, err = run(false)
	if err != nil || len(res.Events) != 0 || retr != 0 || top != 0 || res.Stats.Copied.Load() != 0 {
		t.Errorf("final run: %v, events %+v, %d RETR, %d TOP, %d copied; want nothing", err, res.Events, retr, top, res.Stats.Copied.Load())
	}
}
