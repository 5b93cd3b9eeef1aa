package sync

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// headerSource is a POP3-like MemSource: its listing has neither
// Message-IDs nor dates, and it reads headers alone (mail.HeaderFetcher,
// as TOP msg 0 does: the header section and its blank line).
type headerSource struct {
	*mailtest.MemSource
	err   error   // MessageIDs fails with it
	leave mail.ID // MessageIDs leaves this one out
	calls atomic.Int64
	read  atomic.Int64 // headers read
}

var _ mail.HeaderFetcher = (*headerSource)(nil)

func (s *headerSource) MessageIDs(ctx context.Context, mb string, ids []mail.ID) (map[mail.ID]string, error) {
	s.calls.Add(1)
	if s.err != nil {
		return nil, s.err
	}
	out := map[mail.ID]string{}
	for _, id := range ids {
		rc, err := s.Open(ctx, mail.Envelope{Mailbox: mb, ID: id})
		if err != nil {
			return nil, err
		}
		s.Opens.Add(-1) // a header is not a body download
		b, _ := io.ReadAll(rc)
		rc.Close()
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			b = b[:i+4]
		}
		s.read.Add(1)
		if id == s.leave {
			continue
		}
		sc := mail.NewHeaderScanner(bytes.NewReader(b))
		io.Copy(io.Discard, sc)
		out[id] = sc.MessageID()
	}
	return out, nil
}

// popMsg is an INBOX message without a date, with a Message-ID header
// unless msgID is "".
func popMsg(msgID, text string) mailtest.Fixture {
	return idMsg(msgID, time.Time{}, text)
}

// TestC3POP3HeaderPass: a POP3 maildrop whose UIDLs were all regenerated
// over the same messages. The records of the first run carry Message-ID
// hashes taken from the bodies as they were copied (the listing has none);
// the reset run reads the headers once (mail.HeaderFetcher) and re-maps by
// Message-ID and size, with no body download for unique pairs: re-mapped
// (with or without --remap), and nothing to do after. Twins, a
// message without a Message-ID, and a header pass that fails or answers
// only in part fall back to SHA-256.
func TestC3POP3HeaderPass(t *testing.T) {
	unique := make([]mailtest.Fixture, 30)
	for i := range unique {
		unique[i] = popMsg(fmt.Sprintf("<p-%03d@x>", i), fmt.Sprintf("body p %03d", i))
	}
	twins := append([]mailtest.Fixture{}, unique...)
	twins[0] = popMsg("<twin@x>", "twin one")
	twins[1] = popMsg("<twin@x>", "twin two") // same Message-ID and size, other body
	noIDs := append([]mailtest.Fixture{}, unique...)
	for i := range 5 {
		noIDs[i] = popMsg("", fmt.Sprintf("no message id %03d", i))
	}
	for _, tc := range []struct {
		name    string
		fx      []mailtest.Fixture
		plain   bool    // the source cannot read headers alone
		err     error   // the header pass fails so
		leave   mail.ID // the header pass leaves this message out
		calls   int64   // header passes per reset run
		headers int     // headers read per reset run
		// by the run after the reset:
		byListing, hashed int
	}{
		{name: "Unique", fx: unique, calls: 1, headers: 30, byListing: 30},
		{name: "Twins", fx: twins, calls: 1, headers: 30, byListing: 28, hashed: 2},
		{name: "NoMessageID", fx: noIDs, calls: 1, headers: 25, byListing: 25, hashed: 5},
		{name: "PassFails", fx: unique, err: fmt.Errorf("pop3: top: %w", mail.ErrUnsupported), calls: 1, hashed: 30},
		{name: "PartialAnswer", fx: unique, leave: "u7", calls: 1, hashed: 30},
		{name: "NoHeaderFetcher", fx: unique, plain: true, hashed: 30},
	} {
		// Confirmed by header and content, the folder is re-mapped with or
		// without --remap (issue 10: it used to halt without it).
		for _, remap := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/remap=%v", tc.name, remap), func(t *testing.T) {
				sink := mailtest.NewMemSink()
				cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
				if _, err := Copy(context.Background(), &headerSource{MemSource: renumbered("", tc.fx)}, sink, fastOpts(cp)); err != nil {
					t.Fatal(err)
				}
				// The server regenerated its UIDLs: "1".."30" are now "u1".."u30".
				hs := &headerSource{MemSource: renumbered("u", tc.fx), err: tc.err, leave: tc.leave}
				var second mail.Source = hs
				if tc.plain {
					second = hs.MemSource
				}
				key := keyName(true)
				puts := sink.Puts.Load()
				opt := fastOpts(cp)
				opt.Remap = remap
				res, err := Copy(context.Background(), second, sink, opt)
				if err != nil {
					t.Fatalf("Copy = %v", err)
				}
				ev := res.Events
				if len(ev) != 1 || ev[0].Kind != "remapped" || ev[0].Rematched != 30 || ev[0].ByListing != tc.byListing || ev[0].Hashed != tc.hashed || ev[0].HeadersRead != tc.headers {
					t.Fatalf("events %+v, want one remapped: 30 re-matched, %d by listing, %d hashed, %d headers read", ev, tc.byListing, tc.hashed, tc.headers)
				}
				if !strings.Contains(ev[0].Text, fmt.Sprintf("(%d by %s, %d by content)", tc.byListing, key, tc.hashed)) {
					t.Errorf("event text %q does not say how", ev[0].Text)
				}
				// At most one header pass, one header per message, and one
				// download per message that could not be matched by header.
				if got := hs.Opens.Load(); got != int64(tc.hashed) || hs.calls.Load() != tc.calls || hs.read.Load() > 30 || sink.Puts.Load() != puts {
					t.Errorf("%d downloads, %d header passes, %d headers, %d puts; want %d, %d, <= 30, 0",
						got, hs.calls.Load(), hs.read.Load(), sink.Puts.Load()-puts, tc.hashed, tc.calls)
				}
				// Every message is recorded under its new ID with the copy of
				// its own bytes, and keeps its Message-ID hash for the next reset.
				recs, stored := recordedINBOX(sink, cp)
				for i, f := range tc.fx {
					id := mail.ID(fmt.Sprintf("u%d", i+1))
					r, ok := recs[id]
					if !ok || !bytes.Equal(stored[r.Dst], f.Body) {
						t.Errorf("%s: record %+v holds %q, want %q", id, r, stored[r.Dst], f.Body)
					}
					hasID := bytes.Contains(f.Body, []byte("Message-ID:"))
					if hasID != (r.MsgID != "") {
						t.Errorf("%s: record Message-ID hash %q, want one: %v", id, r.MsgID, hasID)
					}
				}
				opens, calls := hs.Opens.Load(), hs.calls.Load()
				res, err = Copy(context.Background(), second, sink, opt)
				if err != nil || len(res.Events) != 0 || hs.Opens.Load() != opens || hs.calls.Load() != calls || sink.Puts.Load() != puts {
					t.Errorf("final run: err %v, events %+v, %d downloads, %d header passes, %d puts; want nothing",
						err, res.Events, hs.Opens.Load()-opens, hs.calls.Load()-calls, sink.Puts.Load()-puts)
				}
			})
		}
	}
}

// TestC3BodyScanRecordsMessageID: when the listing gives no Message-ID
// (POP3), the record still gets its hash, read from the body on its way to
// the sink, on the one-by-one path and the batch path alike; folded and
// oddly cased fields are found, a Message-ID in the body is not.
func TestC3BodyScanRecordsMessageID(t *testing.T) {
	fx := []mailtest.Fixture{
		{Body: []byte("Subject: a\r\nMessage-ID: <a@x>\r\n\r\nbody\r\n")},
		{Body: []byte("message-id:\r\n <folded@x>\r\nSubject: b\r\n\r\nbody\r\n")},
		{Body: []byte("Subject: c\r\n\r\nMessage-ID: <in-body@x>\r\n")},
		{Body: []byte("Message-Id: <no-body@x>")},
	}
	want := []string{checkpoint.MsgIDSum("<a@x>"), checkpoint.MsgIDSum("<folded@x>"), "", checkpoint.MsgIDSum("<no-body@x>")}
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			var src mail.Source = mailtest.NewMemSource(fx)
			if batch {
				src = &mailtest.BatchSource{MemSource: src.(*mailtest.MemSource)}
			}
			cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
			opt := fastOpts(cp)
			if _, err := Copy(context.Background(), src, mailtest.NewMemSink(), opt); err != nil {
				t.Fatal(err)
			}
			if b, ok := src.(*mailtest.BatchSource); ok && b.Batches.Load() == 0 {
				t.Fatal("the batch path was not taken")
			}
			for _, r := range cp.Records("INBOX") {
				var i int
				fmt.Sscan(string(r.ID), &i)
				if r.MsgID != want[i-1] {
					t.Errorf("record %s: Message-ID hash %q, want %q", r.ID, r.MsgID, want[i-1])
				}
			}
		})
	}
}
