package imap

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestDovecotPrefetchChanges: after changes by another client in two
// folders, PrefetchChanges sends both folders' EXAMINE (QRESYNC) and
// INBOX's FETCH of new messages in one round trip, and ListChanges then
// answers each folder from it, exactly as a listing of its own would
// (TestDovecotListChanges's changes), with no command more. A folder
// asked since another status is listed on its own (the negative control:
// its EXAMINE is sent again). The first folder goes last, SELECTed
// read-write for the writes a sync makes there next.
func TestDovecotPrefetchChanges(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	ctx := context.Background()
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{deltaMsg(1), deltaMsg(2), deltaMsg(3), deltaMsg(4), deltaMsg(5)})
	d.Seed(t, user, pw, "Work", []mailtest.SeedMessage{deltaMsg(6), deltaMsg(7)})
	s, trace := deltaSource(t, d, user, pw, nil)
	st0, err := s.FolderStatuses(ctx, []string{"INBOX", "Work"})
	if err != nil {
		t.Fatal(err)
	}
	var known []mail.ID
	if err := s.List(ctx, "INBOX", func(e mail.Envelope) error { known = append(known, e.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	deltaOtherClient(t, d, user, pw)
	c := d.Dial(t, user, pw)
	if _, err := c.Select("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout()
	st1, err := s.FolderStatuses(ctx, []string{"INBOX", "Work"})
	if err != nil {
		t.Fatal(err)
	}
	for _, stale := range []bool{false, true} {
		opens := func() int { return strings.Count(trace(), " EXAMINE ") + strings.Count(trace(), " SELECT ") }
		before := opens()
		s.PrefetchChanges(ctx, []mail.ChangeMark{{Mailbox: "INBOX", Since: st0["INBOX"], Now: st1["INBOX"]}, {Mailbox: "Work", Since: st0["Work"], Now: st1["Work"]}})
		sinceWork := st0["Work"]
		if stale {
			sinceWork.Messages++ // not the status prefetched: listed on its own
		}
		got, sum := listChanges(t, s, "INBOX", st0["INBOX"], slices.Values(known))
		if want := []string{"new 6 <m8@delta.test> [$Label1]", `flags 2 [\Flagged]`, "vanished 3"}; !slices.Equal(changeText(got), want) || sum.Full || sum.Status != st1["INBOX"] {
			t.Fatalf("INBOX: changes %q, summary %+v; want %q, status %+v", changeText(got), sum, want, st1["INBOX"])
		}
		got, sum = listChanges(t, s, "Work", sinceWork, nil)
		if want := []string{`flags 1 [\Seen]`}; !stale && (!slices.Equal(changeText(got), want) || sum.Full || sum.Status != st1["Work"]) {
			t.Fatalf("Work: changes %q, summary %+v; want %q, status %+v", changeText(got), sum, want, st1["Work"])
		}
		if n, want := opens()-before, map[bool]int{false: 2, true: 3}[stale]; n != want {
			t.Errorf("stale %v: %d EXAMINEs and SELECTs, want %d:\n%s", stale, n, want, trace())
		}
	}
}
