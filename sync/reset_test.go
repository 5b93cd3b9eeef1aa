package sync

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

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
		// C3: same content under new IDs, no --remap: halt after a sample.
		{name: "C3SameContentHalts", inbox: old, halt: true, kind: "halted", maxOpens: resetSample, rematch: 20,
			inText: "identifier reset detected (ids 123.* -> 456.*)"},
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

// TestC3RemapAfterHalt: the halted folder of a first run is re-mapped by
// the rerun with --remap, with no Put, and a final run copies nothing.
func TestC3RemapAfterHalt(t *testing.T) {
	fx := resetFixtures(40, "INBOX", "x")
	sink := mailtest.NewMemSink()
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	if _, err := Copy(context.Background(), renumbered("", fx), sink, fastOpts(cp)); err != nil { // POP3-style IDs: no "prefix."
		t.Fatal(err)
	}
	second := renumbered("u", fx) // a regenerated UIDL list
	puts := sink.Puts.Load()
	_, err := Copy(context.Background(), second, sink, fastOpts(cp))
	if !errors.Is(err, ErrIdentifierReset) || !strings.Contains(err.Error(), "--remap") {
		t.Fatalf("Copy = %v, want identifier reset detected with the --remap remedy", err)
	}
	opt := fastOpts(cp)
	opt.Remap = true
	res, err := Copy(context.Background(), second, sink, opt)
	if err != nil || sink.Puts.Load() != puts || res.Stats.Copied.Load() != 40 || len(cp.Records("INBOX")) != 80 {
		t.Fatalf("--remap: err %v, %d puts, %d recorded this run, %d records; want 0 puts, 40 and 80", err, sink.Puts.Load()-puts, res.Stats.Copied.Load(), len(cp.Records("INBOX")))
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
