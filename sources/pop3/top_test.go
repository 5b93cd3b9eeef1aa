package pop3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// idBodies returns n messages with unique Message-IDs (the first folded,
// one without), each with a body bigger than its header and lines that
// need byte-stuffing.
func idBodies(n int) []fakeMsg {
	out := make([]fakeMsg, n)
	for i := range out {
		id := fmt.Sprintf("Message-ID: <m-%03d@example.org>\r\n", i)
		switch i {
		case 0:
			id = "Message-Id:\r\n <m-000@example.org>\r\n"
		case 1:
			id = ""
		}
		body := fmt.Sprintf("Subject: message %d\r\n%s\r\n%s.\r\n..\r\n", i, id, strings.Repeat("a body line, never read by TOP\r\n", 100))
		out[i] = fakeMsg{uidl: fmt.Sprintf("uid-%d", i+1), body: []byte(body)}
	}
	return out
}

// scanned is what a HeaderScanner finds in a whole message.
func scanned(b []byte) string {
	sc := mail.NewHeaderScanner(bytes.NewReader(b))
	io.Copy(io.Discard, sc)
	return sc.MessageID()
}

// TestC3TopMessageIDs: MessageIDs reads each header once with TOP msg 0,
// pipelined in one write when the server allows it, retrieves no body, and
// finds the same Message-ID the engine finds in the whole message; the
// session then still serves RETR.
func TestC3TopMessageIDs(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			msgs := idBodies(12)
			f := newFakeServer(t, fakeOpts{pipelining: pipelining}, msgs...)
			s := f.open(t, nil)
			envs := listIDs(t, s)
			ids := make([]mail.ID, len(envs))
			for i, e := range envs {
				ids[i] = e.ID
			}
			got, err := s.MessageIDs(context.Background(), "INBOX", ids)
			if err != nil {
				t.Fatalf("MessageIDs = %v", err)
			}
			for i, m := range msgs {
				want := scanned(m.body)
				if v, ok := got[mail.ID(m.uidl)]; !ok || v != want {
					t.Errorf("%s: Message-ID %q (present %v), want %q", m.uidl, v, ok, want)
				}
				if i != 1 && want == "" {
					t.Errorf("%s: the fixture has a Message-ID the scan did not find", m.uidl)
				}
			}
			if n := f.count("TOP"); n != len(msgs) || f.count("RETR") != 0 {
				t.Errorf("%d TOP and %d RETR sent, want %d and 0", n, f.count("RETR"), len(msgs))
			}
			f.mu.Lock()
			pipelined := f.pipelined
			f.mu.Unlock()
			if pipelined != pipelining {
				t.Errorf("commands pipelined: %v, want %v", pipelined, pipelining)
			}
			if b := read(t, s, envs[3]); !bytes.Equal(b, msgs[3].body) {
				t.Errorf("RETR after the TOP pass: %q, want %q", b, msgs[3].body)
			}
		})
	}
}

// TestC3TopErrors: an unknown UIDL sends nothing and gives ErrNotFound; a
// server without TOP gives ErrUnsupported; a partial refusal names the
// message; a header over 1 MiB gives ErrTooLarge and the next call works
// on a new session.
func TestC3TopErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    fakeOpts
		ids     []mail.ID
		want    error
		inText  string
		topSent int
	}{
		{name: "Unknown", ids: []mail.ID{"uid-1", "nope"}, want: mail.ErrNotFound},
		{name: "NoTop", opts: fakeOpts{noTop: true}, ids: []mail.ID{"uid-1"}, want: mail.ErrUnsupported},
		{name: "OneRefused", opts: fakeOpts{pipelining: true, topRefuse: "uid-2"}, ids: []mail.ID{"uid-1", "uid-2", "uid-3"}, inText: "refused 1 of 3: uid-2", topSent: 3},
		{name: "HugeHeader", opts: fakeOpts{topPad: maxHeader + 1000}, ids: []mail.ID{"uid-1"}, want: mail.ErrTooLarge, topSent: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, tc.opts, idBodies(3)...)
			s := f.open(t, nil)
			_, err := s.MessageIDs(context.Background(), "INBOX", tc.ids)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.inText) {
				t.Fatalf("MessageIDs = %v, want %v naming %q", err, tc.want, tc.inText)
			}
			if n := f.count("TOP"); n != tc.topSent {
				t.Errorf("%d TOP sent, want %d", n, tc.topSent)
			}
			// The source stays usable.
			envs := listIDs(t, s)
			if b := read(t, s, envs[0]); len(b) == 0 {
				t.Error("RETR after the failed TOP pass read nothing")
			}
		})
	}
	t.Run("Cancelled", func(t *testing.T) {
		f := newFakeServer(t, fakeOpts{}, idBodies(2)...)
		s := f.open(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.MessageIDs(ctx, "INBOX", []mail.ID{"uid-1"}); !errors.Is(err, context.Canceled) {
			t.Errorf("MessageIDs(cancelled) = %v, want context.Canceled", err)
		}
	})
}

// TestC3POP3ResetRemap drives the engine over the POP3 source (scripted
// server): a maildrop of 30 messages is copied, then the server regenerates
// every UIDL. The next run re-maps the folder without --remap, with one
// RETR (the message without a Message-ID) and at most one TOP per message
// (one header pass). A final run
// sends neither and copies nothing.
func TestC3POP3ResetRemap(t *testing.T) {
	msgs := idBodies(30)
	f := newFakeServer(t, fakeOpts{pipelining: true}, msgs...)
	sink := mailtest.NewMemSink()
	cp, err := checkpoint.Open(filepath.Join(t.TempDir(), "cp.jsonl"), "pop3", "mem", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close() })
	run := func(remap bool) (res *mailferry.Result, retr, top int, err error) {
		t.Helper()
		s := f.open(t, nil)
		retr0, top0 := f.count("RETR"), f.count("TOP")
		opt := mailferry.Options{SrcEndpoint: "pop3", Checkpoint: cp, Remap: remap, Backoff: time.Millisecond, BatchDelay: time.Millisecond}
		res, err = mailferry.Copy(context.Background(), s, sink, opt)
		if cerr := s.Close(); cerr != nil {
			t.Errorf("Close = %v", cerr)
		}
		return res, f.count("RETR") - retr0, f.count("TOP") - top0, err
	}
	if _, retr, _, err := run(false); err != nil || retr != 30 {
		t.Fatalf("first run: %v, %d RETR; want 30", err, retr)
	}
	f.renumber("new-")

	// Confirmed, the renumbering is re-mapped without --remap (issue 10:
	// this run used to halt until a rerun with --remap).
	res, retr, top, err := run(false)
	if err != nil {
		t.Fatalf("--remap: Copy = %v", err)
	}
	// One message has no Message-ID: it is matched by content, its one RETR.
	if len(res.Events) != 1 || res.Events[0].Kind != "remapped" || res.Events[0].Rematched != 30 || res.Events[0].ByListing != 29 || res.Events[0].HeadersRead > 30 {
		t.Fatalf("--remap: events %+v; want remapped, 30 re-matched, 29 by listing, at most 30 headers", res.Events)
	}
	if retr != 1 || top > 30 || sink.Puts.Load() != 30 || len(cp.Records("INBOX")) != 60 {
		t.Errorf("--remap: %d RETR, %d TOP, %d puts in all, %d records; want 1 (the message without a Message-ID), <= 30, 30, 60",
			retr, top, sink.Puts.Load(), len(cp.Records("INBOX")))
	}
	t.Logf("--remap run: %d RETR, %d TOP for 30 messages", retr, top)

	res, retr, top, err = run(false)
	if err != nil || len(res.Events) != 0 || retr != 0 || top != 0 || res.Stats.Copied.Load() != 0 {
		t.Errorf("final run: %v, events %+v, %d RETR, %d TOP, %d copied; want nothing", err, res.Events, retr, top, res.Stats.Copied.Load())
	}
}
