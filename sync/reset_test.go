package sync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// resetFixtures returns n messages of mailbox mb; tag makes the bodies of
// one set differ from another's (same sizes, so every message is a
// candidate for re-matching).
func resetFixtures(n int, mb, tag string) []mailtest.Fixture {
	out := make([]mailtest.Fixture, n)
	for i := range out {
		out[i] = mailtest.Fixture{Mailbox: mb, Body: []byte(fmt.Sprintf("Subject: %03d\r\n\r\nbody %s %03d\r\n", i, tag, i))}
	}
	return out
}

// renumbered returns a source holding fx with IDs "prefix1", "prefix2"...
func renumbered(prefix string, fx []mailtest.Fixture) *mailtest.MemSource {
	s := mailtest.NewMemSource(nil)
	s.IDPrefix = prefix
	for _, f := range fx {
		s.Add(f)
	}
	return s
}

// TestC3C6C7IdentifierReset drives the one rule for a folder whose IDs all
// changed (reset.go): INBOX had 30 messages under UIDVALIDITY 123; now it
// lists messages under 456. "Other" keeps its IDs and gains 2 messages,
// and must be copied whatever happens to INBOX.
func TestC3C6C7IdentifierReset(t *testing.T) {
	old := resetFixtures(30, "INBOX", "old")
	for _, tc := range []struct {
		name     string
		inbox    []mailtest.Fixture // INBOX after the change
		remap    bool
		halt     bool   // Copy returns a *ResetError for INBOX
		kind     string // the INBOX event
		puts     int    // Puts into INBOX by the second run
		maxOpens int64  // Opens of INBOX messages by the second run
		rematch  int
		inText   string
	}{
		// C3: same content under new IDs, no --remap: a sample matches,
		// then the rest is confirmed by content too, and the folder is
		// re-mapped automatically (issue 10; it used to halt with exit 6).
		{name: "C3SameContentRemapped", inbox: old, kind: "remapped", maxOpens: 30, rematch: 30,
			inText: "123.* -> 456.*; 30 of 30 old records re-matched"},
		// C6 below the threshold without --remap: a sample of 20 finds 5,
		// the other 10 candidates are hashed too, and the folder halts.
		{name: "C6BelowThresholdHaltsWithoutRemap", inbox: append(append([]mailtest.Fixture{}, old[:5]...), resetFixtures(25, "INBOX", "new")...),
			halt: true, kind: "halted", maxOpens: 30, rematch: 5, inText: "only 5 of 30 old messages match"},
		// C6: with --remap, every message is confirmed by content and
		// recorded under its new ID, with no Put.
		{name: "C6RemapSameContent", inbox: old, remap: true, kind: "remapped", maxOpens: 30, rematch: 30,
			inText: "30 of 30 old records re-matched"},
		// C6: 22 of 30 the same plus 8 new ones: 22 >= 20 confirmations.
		{name: "C6RemapMostlySame", inbox: append(append([]mailtest.Fixture{}, old[:22]...), resetFixtures(8, "INBOX", "new")...), remap: true,
			kind: "remapped", puts: 8, maxOpens: 30 + 8, rematch: 22},
		// C6 below the threshold: 5 of 30 (< 20 and < 80 %): halt even
		// with --remap.
		{name: "C6BelowThresholdHalts", inbox: append(append([]mailtest.Fixture{}, old[:5]...), resetFixtures(25, "INBOX", "new")...), remap: true,
			halt: true, kind: "halted", maxOpens: 30, rematch: 5, inText: "only 5 of 30 old messages match"},
		// C7: the folder was deleted and created again with other
		// messages: copied as new, old copies kept, the event reported.
		// Downloads: 20 sampled, then the 5 unsampled are still hashed
		// before their copy (they might be old ones), then 25 copies.
		{name: "C7Replaced", inbox: resetFixtures(25, "INBOX", "new"), kind: "replaced", puts: 25, maxOpens: 20 + 5 + 25,
			inText: "123.* -> 456.*; 30 old records kept, 0 re-matched"},
		{name: "C7ReplacedRemap", inbox: resetFixtures(25, "INBOX", "new"), remap: true, kind: "replaced", puts: 25, maxOpens: 25 + 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := renumbered("123.", append(append([]mailtest.Fixture{}, old...), resetFixtures(6, "Other", "o")...))
			sink := mailtest.NewMemSink()
			cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
			if _, err := Copy(context.Background(), first, sink, fastOpts(cp)); err != nil {
				t.Fatal(err)
			}
			second := renumbered("456.", tc.inbox)
			second.IDPrefix = "123." // "Other" keeps its IDs
			for _, f := range resetFixtures(8, "Other", "o") {
				second.Add(f)
			}
			opt := fastOpts(cp)
			opt.Remap = tc.remap
			putsBefore := sink.Puts.Load()
			res, err := Copy(context.Background(), second, sink, opt)
			var re *ResetError
			if tc.halt != errors.As(err, &re) {
				t.Fatalf("Copy = %v, want halt %v", err, tc.halt)
			}
			if tc.halt && (!errors.Is(err, ErrIdentifierReset) || !errors.Is(err, checkpoint.ErrUnusable) || re.Mailbox != "INBOX") {
				t.Errorf("halt error %v: want ErrIdentifierReset, checkpoint.ErrUnusable and INBOX", err)
			}
			if !tc.halt && err != nil {
				t.Fatalf("Copy = %v", err)
			}
			// The other folder is copied in every case.
			if n := len(sink.Messages("Other")); n != 8 || len(cp.Records("Other")) != 8 {
				t.Errorf("Other: %d stored, %d recorded; want 8", n, len(cp.Records("Other")))
			}
			if got := sink.Puts.Load() - putsBefore - 2; got != int64(tc.puts) {
				t.Errorf("INBOX got %d Puts, want %d", got, tc.puts)
			}
			// Opens counts the INBOX probes and copies plus the 2 new Other messages.
			if opens := second.Opens.Load() - 2; opens > tc.maxOpens {
				t.Errorf("INBOX: %d downloads, want at most %d", opens, tc.maxOpens)
			}
			if len(res.Events) != 1 || res.Events[0].Mailbox != "INBOX" || res.Events[0].Kind != tc.kind || res.Events[0].Rematched != tc.rematch || res.Events[0].OldRecords != 30 {
				t.Fatalf("events %+v, want one %q INBOX event with 30 old records, %d re-matched", res.Events, tc.kind, tc.rematch)
			}
			if !strings.Contains(res.Events[0].Text, tc.inText) {
				t.Errorf("event text %q lacks %q", res.Events[0].Text, tc.inText)
			}
			// Old copies are never removed.
			if n := len(sink.Messages("INBOX")); n < 30 {
				t.Errorf("INBOX holds %d messages, fewer than the 30 old copies", n)
			}
			if tc.halt {
				if n := len(cp.Records("INBOX")); n != 30 {
					t.Errorf("halted INBOX: %d records, want the 30 old ones only", n)
				}
				return
			}
			// Then nothing is left to do (I4): no download, no Put.
			opens, puts := second.Opens.Load(), sink.Puts.Load()
			res, err = Copy(context.Background(), second, sink, opt)
			if err != nil || len(res.Events) != 0 || second.Opens.Load() != opens || sink.Puts.Load() != puts {
				t.Errorf("final run: err %v, events %+v, %d opens, %d puts; want nothing", err, res.Events, second.Opens.Load()-opens, sink.Puts.Load()-puts)
			}
		})
	}
}

// TestC3RemapWithoutFlag: a renumbered folder (regenerated POP3-style
// IDs) whose messages are confirmed by content is re-mapped by the first
// run after the change without --remap: no Put, counted as remapped (not
// copied), one "remapped" event, and a final run copies nothing. (It used
// to halt until a rerun with --remap: issue 10.)
func TestC3RemapWithoutFlag(t *testing.T) {
	fx := resetFixtures(40, "INBOX", "x")
	sink := mailtest.NewMemSink()
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	if _, err := Copy(context.Background(), renumbered("", fx), sink, fastOpts(cp)); err != nil { // POP3-style IDs: no "prefix."
		t.Fatal(err)
	}
	second := renumbered("u", fx) // a regenerated UIDL list
	puts := sink.Puts.Load()
	res, err := Copy(context.Background(), second, sink, fastOpts(cp))
	if err != nil || sink.Puts.Load() != puts || res.Stats.Copied.Load() != 0 || res.Stats.Remapped.Load() != 40 || len(cp.Records("INBOX")) != 80 {
		t.Fatalf("after the reset: err %v, %d puts, %d copied, %d remapped, %d records; want 0 puts, 0 copied, 40 remapped and 80 records",
			err, sink.Puts.Load()-puts, res.Stats.Copied.Load(), res.Stats.Remapped.Load(), len(cp.Records("INBOX")))
	}
	if len(res.Events) != 1 || res.Events[0].Kind != "remapped" || res.Events[0].Rematched != 40 {
		t.Errorf("events %+v, want one remapped event with 40 re-matched", res.Events)
	}
	opens := second.Opens.Load()
	if res, err := Copy(context.Background(), second, sink, fastOpts(cp)); err != nil || res.Stats.Copied.Load() != 0 || second.Opens.Load() != opens {
		t.Fatalf("final run: err %v, copied %d, opens %d", err, res.Stats.Copied.Load(), second.Opens.Load()-opens)
	}
}

// TestResetNeedsMassChange: below the detection line (a small folder, or a
// folder where fewer than 90 % of the IDs changed) the per-message
// re-match of copy.go applies, with no halt and no event.
func TestResetNeedsMassChange(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n, keep int // messages, and how many keep their IDs
	}{
		{"SmallFolder", resetMinRecords - 1, 0},
		{"FewChanged", 30, 4}, // 26 of 30 gone: under 90 %
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := resetFixtures(tc.n, "INBOX", "x")
			first := renumbered("1.", fx)
			sink := mailtest.NewMemSink()
			cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
			if _, err := Copy(context.Background(), first, sink, fastOpts(cp)); err != nil {
				t.Fatal(err)
			}
			second := renumbered("1.", fx[:tc.keep])
			second.IDPrefix = "2."
			for _, f := range fx[tc.keep:] {
				second.Add(f)
			}
			puts := sink.Puts.Load()
			res, err := Copy(context.Background(), second, sink, fastOpts(cp))
			if err != nil || len(res.Events) != 0 || sink.Puts.Load() != puts {
				t.Fatalf("Copy = %v, events %+v, %d puts; want a silent re-map", err, res.Events, sink.Puts.Load()-puts)
			}
		})
	}
}

func TestIDChange(t *testing.T) {
	for _, tc := range []struct {
		old, fresh []mail.ID
		want       string
	}{
		{[]mail.ID{"123.1", "123.2"}, []mail.ID{"456.1"}, "123.* -> 456.*"},
		{[]mail.ID{"123.1", "124.2"}, []mail.ID{"456.1"}, ""},
		{[]mail.ID{"a1", "a2"}, []mail.ID{"b1"}, ""},
		{[]mail.ID{"1.1"}, []mail.ID{"1.2"}, ""},
	} {
		if got := idChange(tc.old, tc.fresh); got != tc.want {
			t.Errorf("idChange(%v, %v) = %q, want %q", tc.old, tc.fresh, got, tc.want)
		}
	}
}

// msgIDSource is a MemSource whose listing carries each message's
// Message-ID, as the IMAP source's does (FETCH BODY.PEEK[HEADER.FIELDS
// (Message-ID)] with the metadata).
type msgIDSource struct {
	*mailtest.MemSource
	ids map[mail.ID]string
}

func newMsgIDSource(prefix string, fx []mailtest.Fixture) *msgIDSource {
	s := &msgIDSource{MemSource: mailtest.NewMemSource(nil), ids: map[mail.ID]string{}}
	s.IDPrefix = prefix
	for _, f := range fx {
		id := s.Add(f)
		h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(f.Body))).ReadMIMEHeader()
		if err != nil {
			panic(err)
		}
		s.ids[id] = h.Get("Message-Id")
	}
	return s
}

func (s *msgIDSource) List(ctx context.Context, mb string, fn func(mail.Envelope) error) error {
	return s.MemSource.List(ctx, mb, func(env mail.Envelope) error {
		env.MessageID = s.ids[env.ID]
		return fn(env)
	})
}

// idMsg is an INBOX message with a Message-ID header (none when msgID is
// "") and an internal date.
func idMsg(msgID string, date time.Time, text string) mailtest.Fixture {
	h := ""
	if msgID != "" {
		h = "Message-ID: " + msgID + "\r\n"
	}
	return mailtest.Fixture{Mailbox: "INBOX", Date: date, Body: []byte(h + "Subject: t\r\n\r\n" + text + "\r\n")}
}

// idFixtures returns n messages with unique Message-IDs and dates; tag
// makes one set differ from another (and from resetFixtures' sizes).
func idFixtures(n int, tag string, date time.Time) []mailtest.Fixture {
	out := make([]mailtest.Fixture, n)
	for i := range out {
		out[i] = idMsg(fmt.Sprintf("<%s-%03d@x>", tag, i), date.Add(time.Duration(i)*time.Minute), fmt.Sprintf("body %s %03d", tag, i))
	}
	return out
}

// TestC3C6RemapByListing: a folder whose identifiers were all reset is
// re-mapped by Message-ID, size and internal date, with no download, where
// that triple is unique; everything ambiguous (twins with one Message-ID
// and size but other bodies, no Message-ID, no date, records written
// before the checkpoint kept them) is confirmed by SHA-256 instead, and
// every message ends up mapped to the copy of its own bytes. The listing
// matches count toward the C6 threshold.
func TestC3C6RemapByListing(t *testing.T) {
	day := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	unique := idFixtures(30, "u", day)
	twins := append([]mailtest.Fixture{}, unique...)
	twins[0] = idMsg("<twin-a@x>", day, "twin one")
	twins[1] = idMsg("<twin-a@x>", day, "twin two") // same Message-ID, size and date, other body
	twins[2] = idMsg("<twin-b@x>", day, "twin three")
	twins[3] = idMsg("<twin-b@x>", day, "twin four.")
	twins[4] = idMsg("<twin-c@x>", day, "short") // same Message-ID and date, other size
	twins[5] = idMsg("<twin-c@x>", day, "a longer one")
	noIDs := append([]mailtest.Fixture{}, unique...)
	for i := range 5 {
		noIDs[i] = idMsg("", day, fmt.Sprintf("no id %03d", i))
	}
	noDates := make([]mailtest.Fixture, 30)
	for i, f := range unique {
		f.Date = time.Time{}
		noDates[i] = f
	}
	for _, tc := range []struct {
		name        string
		first       []mailtest.Fixture
		oldRecords  bool // records without Message-IDs, as versions before they were kept wrote
		noDates     bool // the listing has no dates: step 2 compares Message-ID and size
		second      []mailtest.Fixture
		kind        string
		byListing   int
		hashed      int
		opens, puts int64 // by the run after the reset
	}{
		{name: "AllUnique", first: unique, second: unique, kind: "remapped", byListing: 30},
		// Twins of one size are hashed; twins of two sizes are not.
		{name: "DuplicateMessageIDs", first: twins, second: twins, kind: "remapped", byListing: 26, hashed: 4, opens: 4},
		// A new message with the triple of an old one but another body:
		// the triple is no longer unique in the listing, so both are hashed.
		{name: "NewTwin", first: unique, second: append([]mailtest.Fixture{idMsg("<u-000@x>", day, "body X 000")}, unique...),
			kind: "remapped", byListing: 29, hashed: 2, opens: 3, puts: 1},
		// One of two old twins is gone: the survivor's triple names two
		// records, so it is hashed.
		{name: "LostTwin", first: twins, second: twins[1:], kind: "remapped", byListing: 26, hashed: 3, opens: 3},
		{name: "MissingMessageID", first: noIDs, second: noIDs, kind: "remapped", byListing: 25, hashed: 5, opens: 5},
		// Without dates (as POP3 lists), Message-ID and size must be unique.
		{name: "NoDates", first: noDates, second: noDates, noDates: true, kind: "remapped", byListing: 30},
		{name: "NoDatesNewTwin", first: noDates, second: append([]mailtest.Fixture{{Mailbox: "INBOX", Body: []byte("Message-ID: <u-000@x>\r\nSubject: t\r\n\r\nbody X 000\r\n")}}, noDates...),
			noDates: true, kind: "remapped", byListing: 29, hashed: 2, opens: 3, puts: 1},
		{name: "OldRecords", first: unique, oldRecords: true, second: unique, kind: "remapped", hashed: 30, opens: 30},
		// C6: 22 matched by listing >= 20 confirmations; the 8 new ones
		// have no orphan of their size, so they are copied unhashed.
		{name: "MostlySame", first: unique, second: append(append([]mailtest.Fixture{}, unique[:22]...), idFixtures(8, "newer", day)...),
			kind: "remapped", byListing: 22, opens: 8, puts: 8},
		// C6: 5 of 30 (< 20 and < 80 %) halts, with or without --remap.
		{name: "BelowThreshold", first: unique, second: append(append([]mailtest.Fixture{}, unique[:5]...), idFixtures(25, "newer", day)...),
			kind: "halted", byListing: 5},
	} {
		// A renumbering confirmed by content is re-mapped with or without
		// --remap (issue 10: no more exit 6 for it); --remap only hashes
		// every candidate at once, which ends the same here.
		for _, remap := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/remap=%v", tc.name, remap), func(t *testing.T) {
				sink := mailtest.NewMemSink()
				cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
				var first mail.Source = newMsgIDSource("123.", tc.first)
				if _, err := Copy(context.Background(), first, sink, fastOpts(cp)); err != nil {
					t.Fatal(err)
				}
				if tc.oldRecords {
					for _, r := range cp.Records("INBOX") {
						r.MsgID = ""
						if err := cp.Add(r); err != nil {
							t.Fatal(err)
						}
					}
				}
				key := keyName(tc.noDates)
				second := newMsgIDSource("456.", tc.second)
				puts := sink.Puts.Load()
				opens := second.Opens.Load()
				opt := fastOpts(cp)
				opt.Remap = remap
				res, err := Copy(context.Background(), second, sink, opt)
				if halt := tc.kind == "halted"; halt && (!errors.Is(err, ErrIdentifierReset) || !strings.Contains(err.Error(), fmt.Sprintf("%d by %s;", tc.byListing, key))) {
					t.Fatalf("Copy = %v, want a halt naming %d matches by %s", err, tc.byListing, key)
				}
				if halt := tc.kind == "halted"; halt != errors.Is(err, ErrIdentifierReset) || (!halt && err != nil) {
					t.Fatalf("Copy = %v, want halt %v", err, halt)
				}
				if tc.kind == "halted" && len(cp.Records("INBOX")) != 30 {
					t.Errorf("halted: %d records, want the 30 old ones", len(cp.Records("INBOX")))
				}
				if len(res.Events) != 1 || res.Events[0].Kind != tc.kind || res.Events[0].ByListing != tc.byListing || res.Events[0].Hashed != tc.hashed {
					t.Fatalf("events %+v, want one %q with %d by listing, %d hashed", res.Events, tc.kind, tc.byListing, tc.hashed)
				}
				if got := second.Opens.Load() - opens; got != tc.opens || sink.Puts.Load()-puts != tc.puts {
					t.Errorf("%d downloads, %d puts; want %d and %d", got, sink.Puts.Load()-puts, tc.opens, tc.puts)
				}
				if tc.kind == "halted" {
					return
				}
				// Re-mapped messages are counted as remapped, never as copied.
				if n := res.Stats.Remapped.Load(); n != int64(len(tc.second))-tc.puts || res.Stats.Copied.Load() != tc.puts {
					t.Errorf("counted %d remapped, %d copied; want %d and %d", n, res.Stats.Copied.Load(), int64(len(tc.second))-tc.puts, tc.puts)
				}
				// Every listed message is recorded with the copy of its own
				// bytes: no twin took the other's.
				recs, stored := recordedINBOX(sink, cp)
				for i, f := range tc.second {
					id := mail.ID(fmt.Sprintf("456.%d", i+1))
					r, ok := recs[id]
					if !ok || !bytes.Equal(stored[r.Dst], f.Body) {
						t.Errorf("%s (%q): record %+v holds %q", id, f.Body, r, stored[r.Dst])
					}
				}
				opens, puts = second.Opens.Load(), sink.Puts.Load()
				res, err = Copy(context.Background(), second, sink, opt)
				if err != nil || len(res.Events) != 0 || second.Opens.Load() != opens || sink.Puts.Load() != puts {
					t.Errorf("final run: err %v, events %+v, %d downloads, %d puts; want nothing", err, res.Events, second.Opens.Load()-opens, sink.Puts.Load()-puts)
				}
			})
		}
	}
}

// TestListingKeyRecorded: a copied message's record keeps the hash of its
// Message-ID and its date (and a message without them keeps neither), so
// that a later reset can be re-mapped without a download.
func TestListingKeyRecorded(t *testing.T) {
	day := time.Date(2024, 3, 1, 10, 0, 0, 0, time.FixedZone("x", 3600))
	fx := []mailtest.Fixture{idMsg("<a@x>", day, "a"), idMsg("", time.Time{}, "b")}
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	if _, err := Copy(context.Background(), newMsgIDSource("1.", fx), mailtest.NewMemSink(), fastOpts(cp)); err != nil {
		t.Fatal(err)
	}
	want := map[mail.ID][2]any{"1.1": {checkpoint.MsgIDSum("<a@x>"), day.Unix()}, "1.2": {"", int64(0)}}
	for _, r := range cp.Records("INBOX") {
		if got := [2]any{r.MsgID, r.Date}; got != want[r.ID] {
			t.Errorf("record %s: MsgID, Date = %v, want %v", r.ID, got, want[r.ID])
		}
	}
	if len(checkpoint.MsgIDSum("<a@x>")) != 16 {
		t.Errorf("msgIDSum = %q, want 16 hex digits", checkpoint.MsgIDSum("<a@x>"))
	}
}

// recordedINBOX returns the checkpoint's INBOX records by source ID and the
// bodies the sink's INBOX stores by destination ID, to check that each
// record points at the copy of its own message.
func recordedINBOX(sink *mailtest.MemSink, cp *checkpoint.File) (map[mail.ID]checkpoint.Record, map[mail.ID][]byte) {
	recs := map[mail.ID]checkpoint.Record{}
	for _, r := range cp.Records("INBOX") {
		recs[r.ID] = r
	}
	stored := map[mail.ID][]byte{}
	for _, m := range sink.Messages("INBOX") {
		stored[m.Env.ID] = m.Body
	}
	return recs, stored
}
