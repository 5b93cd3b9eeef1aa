package imap

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// deltaModes are the server profiles the change listing is tested under:
// Dovecot as it is (CONDSTORE, QRESYNC, LIST-STATUS, ESEARCH), without
// QRESYNC, and without any of them (flags listed whole, expunges by
// comparison, pipelined STATUS, chunked SEARCH).
var deltaModes = []struct {
	name    string
	ignore  []string
	modseq  bool
	command string // what FolderStatuses must send
	listing string // what ListChanges must send
}{
	{"qresync", nil, true, `LIST "" "*" RETURN (STATUS`, `EXAMINE "INBOX" (QRESYNC (`},
	{"condstore", []string{"QRESYNC"}, true, `LIST "" "*" RETURN (STATUS`, `UID SEARCH RETURN (ALL) UID 1:5`},
	{"condstore without ESEARCH", []string{"QRESYNC", "ESEARCH", "LIST-STATUS"}, true, `STATUS "Work"`, `(CHANGEDSINCE `},
	{"plain", []string{"QRESYNC", "CONDSTORE", "LIST-STATUS", "ESEARCH"}, false, `STATUS "Work"`, `UID FETCH 1:5 (UID FLAGS)`},
}

// deltaSource opens a source on Dovecot hiding ignore from its delta
// connection, recording the commands it sends.
func deltaSource(t *testing.T, d *mailtest.Dovecot, user, pw string, ignore []string) (*Source, func() string) {
	t.Helper()
	hide := map[string]bool{}
	for _, c := range ignore {
		hide[c] = true
	}
	// Hidden from New on: its session (the change listing's) is the first to ask.
	return tracedSource(t, d, user, pw, hide, true)
}

// tracedSource opens a source on Dovecot hiding ignore from its raw
// session, for an incremental run or not (OpenOptions.Incremental),
// recording the commands it sends.
func tracedSource(t *testing.T, d *mailtest.Dovecot, user, pw string, ignore map[string]bool, incremental bool) (*Source, func() string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(d.IMAPS)
	p, _ := strconv.Atoi(port)
	var mu sync.Mutex
	var trace strings.Builder
	s, err := newSource(context.Background(), &Config{Host: "localhost", Port: p, User: user, TLS: TLSImplicit}, &mail.OpenOptions{
		CAFile:      d.CAFile,
		Password:    func(context.Context) (string, error) { return pw, nil },
		Incremental: incremental,
		Trace: func(line string) {
			mu.Lock()
			trace.WriteString(line + "\n")
			mu.Unlock()
		},
	}, ignore)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, func() string {
		mu.Lock()
		defer mu.Unlock()
		return trace.String()
	}
}

func deltaMsg(n int) mailtest.SeedMessage {
	return mailtest.SeedMessage{Body: []byte(fmt.Sprintf("Message-ID: <m%d@delta.test>\r\nSubject: %d\r\n\r\nbody %d\r\n", n, n, n))}
}

// listChanges runs ListChanges and collects what it passes.
func listChanges(t *testing.T, s *Source, box string, since mail.FolderStatus, known iter.Seq[mail.ID]) ([]mail.Change, mail.ChangeSummary) {
	t.Helper()
	var got []mail.Change
	sum, err := s.ListChanges(context.Background(), box, since, known, func(c mail.Change) error {
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatalf("ListChanges(%s) = %v", box, err)
	}
	return got, sum
}

// changeText renders changes for comparison: "new 6 <m9@delta.test> []",
// "flags 2 [\Flagged]", "vanished 3".
func changeText(cs []mail.Change) []string {
	var out []string
	for _, c := range cs {
		_, uid, _ := parseID(c.Envelope.ID)
		switch c.Kind {
		case mail.ChangeNew:
			out = append(out, fmt.Sprintf("new %d %s %v", uid, c.Envelope.MessageID, c.Envelope.Flags))
		case mail.ChangeFlags:
			out = append(out, fmt.Sprintf("flags %d %v", uid, c.Envelope.Flags))
		case mail.ChangeVanished:
			out = append(out, fmt.Sprintf("vanished %d", uid))
		}
	}
	return out
}

// TestDovecotListChanges appends, flags and expunges from another client
// and checks that the change listing reports exactly that, under each
// server profile, and that the status it returns is the next mark.
func TestDovecotListChanges(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	ctx := context.Background()
	for _, mode := range deltaModes {
		t.Run(mode.name, func(t *testing.T) {
			user, pw := d.NewUser(t)
			d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(1), deltaMsg(2), deltaMsg(3), deltaMsg(4), deltaMsg(5)})
			d.Seed(t, user, pw, "Work", []mailtest.SeedMessage{deltaMsg(6), deltaMsg(7)})
			s, trace := deltaSource(t, d, user, pw, mode.ignore)

			st0, err := s.FolderStatuses(ctx, []string{"INBOX", "Work", "Gone"})
			if err != nil {
				t.Fatalf("FolderStatuses = %v", err)
			}
			if len(st0) != 2 || st0["INBOX"].Messages != 5 || st0["INBOX"].UIDNext != 6 || st0["Work"].Messages != 2 {
				t.Fatalf("FolderStatuses = %+v", st0)
			}
			if got := st0["INBOX"].HighestModSeq > 0; got != mode.modseq {
				t.Fatalf("HighestModSeq = %d, want >0: %v", st0["INBOX"].HighestModSeq, mode.modseq)
			}
			if !strings.Contains(trace(), mode.command) {
				t.Errorf("FolderStatuses did not send %s", mode.command)
			}
			var known []mail.ID
			if err := s.List(ctx, "INBOX", func(e mail.Envelope) error { known = append(known, e.ID); return nil }); err != nil {
				t.Fatal(err)
			}

			// Nothing changed yet.
			got, sum := listChanges(t, s, "INBOX", st0["INBOX"], slices.Values(known))
			if sum.Full || sum.New+sum.Vanished != 0 || (mode.modseq && len(got) != 0) || sum.Status != st0["INBOX"] {
				t.Fatalf("unchanged folder: changes %v, summary %+v, want status %+v", changeText(got), sum, st0["INBOX"])
			}

			deltaOtherClient(t, d, user, pw)

			st1, err := s.FolderStatuses(ctx, []string{"INBOX", "Work"})
			if err != nil {
				t.Fatal(err)
			}
			if st1["Work"] != st0["Work"] || st1["INBOX"] == st0["INBOX"] {
				t.Fatalf("after the changes: %+v, before %+v", st1, st0)
			}
			got, sum = listChanges(t, s, "INBOX", st0["INBOX"], slices.Values(known))
			want := []string{"new 6 <m8@delta.test> [$Label1]", `flags 2 [\Flagged]`, "vanished 3"}
			if !mode.modseq {
				want = []string{"new 6 <m8@delta.test> [$Label1]", "flags 1 []", `flags 2 [\Flagged]`, "flags 4 []", "flags 5 []", "vanished 3"}
			}
			if !slices.Equal(changeText(got), want) || sum.Full {
				t.Fatalf("changes = %q (summary %+v), want %q", changeText(got), sum, want)
			}
			if !strings.Contains(trace(), mode.listing) {
				t.Errorf("ListChanges did not send %s", mode.listing)
			}
			if mode.name == "condstore without ESEARCH" && !strings.Contains(trace(), "UID SEARCH UID 1:5") {
				t.Errorf("ListChanges did not send UID SEARCH UID 1:5")
			}
			if sum.Status != st1["INBOX"] {
				t.Errorf("summary status %+v, STATUS says %+v", sum.Status, st1["INBOX"])
			}

			// From the new mark, nothing more.
			known2 := append(slices.DeleteFunc(slices.Clone(known), func(id mail.ID) bool { _, u, _ := parseID(id); return u == 3 }), got[0].Envelope.ID)
			got, sum2 := listChanges(t, s, "INBOX", sum.Status, slices.Values(known2))
			if sum2.Full || sum2.New+sum2.Vanished != 0 || (mode.modseq && len(got) != 0) {
				t.Fatalf("second listing: %q, %+v", changeText(got), sum2)
			}
			deltaFullCases(t, s, st0["INBOX"], known, mode.modseq)
		})
	}
}

// deltaOtherClient changes INBOX from another connection: one message
// appended (with a keyword), \Flagged set on UID 2, UID 3 expunged.
func deltaOtherClient(t *testing.T, d *mailtest.Dovecot, user, pw string) {
	t.Helper()
	m := deltaMsg(8)
	m.Flags = []imap.Flag{"$Label1"}
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{m})
	c := d.Dial(t, user, pw)
	defer c.Logout()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(3)).Close(); err != nil {
		t.Fatal(err)
	}
}

// deltaFullCases checks the answers that ask for a full listing, and that
// none passes a vanished message.
func deltaFullCases(t *testing.T, s *Source, since mail.FolderStatus, known []mail.ID, modseq bool) {
	t.Helper()
	tests := []struct {
		name   string
		since  mail.FolderStatus
		known  iter.Seq[mail.ID]
		reason string
	}{
		{"no earlier listing", mail.FolderStatus{}, nil, "no earlier listing"},
		{"UIDVALIDITY changed", mail.FolderStatus{UIDValidity: since.UIDValidity + 1, UIDNext: since.UIDNext, Messages: since.Messages, HighestModSeq: since.HighestModSeq}, nil, "UIDVALIDITY changed"},
		{"count off", mail.FolderStatus{UIDValidity: since.UIDValidity, UIDNext: since.UIDNext, Messages: since.Messages + 1, HighestModSeq: since.HighestModSeq}, slices.Values(known), "counts disagree"},
	}
	if modseq {
		tests = append(tests, struct {
			name   string
			since  mail.FolderStatus
			known  iter.Seq[mail.ID]
			reason string
		}{"HIGHESTMODSEQ backwards", mail.FolderStatus{UIDValidity: since.UIDValidity, UIDNext: since.UIDNext, Messages: since.Messages, HighestModSeq: since.HighestModSeq + 1000}, nil, "HIGHESTMODSEQ went backwards"})
	} else {
		tests = append(tests, struct {
			name   string
			since  mail.FolderStatus
			known  iter.Seq[mail.ID]
			reason string
		}{"expunge without known", since, nil, "need the known messages"})
	}
	for _, tt := range tests {
		got, sum := listChanges(t, s, "INBOX", tt.since, tt.known)
		if !sum.Full || !strings.Contains(sum.Reason, tt.reason) {
			t.Errorf("%s: summary %+v, want Full for %q", tt.name, sum, tt.reason)
		}
		for _, c := range got {
			if c.Kind == mail.ChangeVanished {
				t.Errorf("%s: a vanished message was passed with Full: %v", tt.name, changeText(got))
			}
		}
	}
}

// TestDovecotListChangesFnError checks that an error from fn is returned
// unchanged and that the next call still works.
func TestDovecotListChangesFnError(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(1)})
	s, _ := deltaSource(t, d, user, pw, nil)
	ctx := context.Background()
	st, err := s.FolderStatuses(ctx, []string{"INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(2), deltaMsg(3)})
	stop := errors.New("stop")
	_, err = s.ListChanges(ctx, "INBOX", st["INBOX"], nil, func(mail.Change) error { return stop })
	if err != stop {
		t.Fatalf("ListChanges = %v, want fn's error unchanged", err)
	}
	got, sum := listChanges(t, s, "INBOX", st["INBOX"], nil)
	if sum.New != 2 || len(got) != 2 || sum.Full {
		t.Fatalf("after fn's error: %q %+v", changeText(got), sum)
	}
	if _, err := s.ListChanges(ctx, "Nope", st["INBOX"], nil, func(mail.Change) error { return nil }); !errors.Is(err, mail.ErrMailboxNotFound) {
		t.Fatalf("ListChanges(missing) = %v, want ErrMailboxNotFound", err)
	}
}

// TestDovecotListChangesWindows checks that new messages are fetched
// listChunk UIDs at a time, the last FETCH open-ended, and all passed.
func TestDovecotListChangesWindows(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(1)})
	s, trace := deltaSource(t, d, user, pw, nil)
	st, err := s.FolderStatuses(context.Background(), []string{"INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []mailtest.SeedMessage
	for i := range listChunk + 5 {
		msgs = append(msgs, deltaMsg(100+i))
	}
	d.Seed(t, user, pw, "INBOX", msgs)
	got, sum := listChanges(t, s, "INBOX", st["INBOX"], nil)
	if sum.Full || sum.New != listChunk+5 || len(got) != listChunk+5 || got[len(got)-1].Envelope.MessageID != fmt.Sprintf("<m%d@delta.test>", 100+listChunk+4) {
		t.Fatalf("%d changes, summary %+v", len(got), sum)
	}
	for _, want := range []string{fmt.Sprintf("UID FETCH 2:%d (", listChunk+1), fmt.Sprintf("UID FETCH %d:* (", listChunk+2)} {
		if !strings.Contains(trace(), want) {
			t.Errorf("ListChanges did not send %q", want)
		}
	}
}

// TestDovecotListChangesRecreated deletes a folder and creates it again
// under the same name from another client: its status shows a new
// UIDVALIDITY, the change listing asks for a full one and passes no
// vanished message; after Close, both calls give mail.ErrClosed.
func TestDovecotListChangesRecreated(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "Work", []mailtest.SeedMessage{deltaMsg(1), deltaMsg(2)})
	s, _ := deltaSource(t, d, user, pw, nil)
	ctx := context.Background()
	st0, err := s.FolderStatuses(ctx, []string{"Work"})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Dial(t, user, pw)
	if err := c.Delete("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout()
	d.Seed(t, user, pw, "Work", []mailtest.SeedMessage{deltaMsg(3)})
	st1, err := s.FolderStatuses(ctx, []string{"Work"})
	if err != nil {
		t.Fatal(err)
	}
	if st1["Work"].UIDValidity == st0["Work"].UIDValidity {
		t.Fatalf("UIDVALIDITY unchanged after the folder was recreated: %+v", st1)
	}
	got, sum := listChanges(t, s, "Work", st0["Work"], nil)
	if !sum.Full || !strings.Contains(sum.Reason, "UIDVALIDITY") || len(got) != 0 || sum.Status != st1["Work"] {
		t.Fatalf("recreated folder: %q, %+v", changeText(got), sum)
	}
	s.Close()
	if _, err := s.FolderStatuses(ctx, []string{"Work"}); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("FolderStatuses after Close = %v", err)
	}
	if _, err := s.ListChanges(ctx, "Work", st1["Work"], nil, func(mail.Change) error { return nil }); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("ListChanges after Close = %v", err)
	}
}

// TestDovecotListChangesKnownNew: messages that arrived after the mark
// and that the caller knows (a two-way sync's own copies) come as flag
// changes, without a header fetch; one of them expunged comes as
// vanished; only the unknown new one is fetched whole.
func TestDovecotListChangesKnownNew(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	ctx := context.Background()
	for _, mode := range deltaModes {
		t.Run(mode.name, func(t *testing.T) {
			user, pw := d.NewUser(t)
			d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(1), deltaMsg(2), deltaMsg(3), deltaMsg(4), deltaMsg(5)})
			s, trace := deltaSource(t, d, user, pw, mode.ignore)
			st0, err := s.FolderStatuses(ctx, []string{"INBOX"})
			if err != nil {
				t.Fatal(err)
			}
			d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(6), deltaMsg(7), deltaMsg(8)}) // UIDs 6-8
			c := d.Dial(t, user, pw)
			defer c.Logout()
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			if err := c.Store(imap.UIDSetNum(7), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.UIDExpunge(imap.UIDSetNum(7)).Close(); err != nil {
				t.Fatal(err)
			}
			var known []mail.ID
			for uid := uint32(1); uid <= 7; uid++ { // 6 and 7: the caller's own copies
				known = append(known, mail.ID(fmt.Sprintf("%d.%d", st0["INBOX"].UIDValidity, uid)))
			}
			got, sum := listChanges(t, s, "INBOX", st0["INBOX"], slices.Values(known))
			want := []string{"new 8 <m8@delta.test> []", "flags 6 []", "vanished 7"}
			if !mode.modseq {
				want = []string{"new 8 <m8@delta.test> []", "flags 6 []", "flags 1 []", "flags 2 []", "flags 3 []", "flags 4 []", "flags 5 []", "vanished 7"}
			}
			if !slices.Equal(changeText(got), want) || sum.Full {
				t.Fatalf("changes = %q (summary %+v), want %q", changeText(got), sum, want)
			}
			if tr := trace(); !strings.Contains(tr, "UID FETCH 8 (UID FLAGS INTERNALDATE") || strings.Contains(tr, "UID FETCH 6:* (UID FLAGS INTERNALDATE") {
				t.Errorf("the envelopes fetched were not those of the unknown message only:\n%s", tr)
			}
		})
	}
}
