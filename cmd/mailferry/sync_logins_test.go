package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// traceLogins counts the logins (LOGIN or AUTHENTICATE) per side in a
// --trace of the CLI.
func traceLogins(trace string) map[string]int {
	n := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^trace (\w+) C: \S+ (?:LOGIN|AUTHENTICATE) `).FindAllStringSubmatch(trace, -1) {
		n[m[1]]++
	}
	return n
}

// noopLogins is how often a no-op sync logs in per IMAP side: the
// source's control connection, which lists the folders and their
// statuses (LIST-STATUS). The sink that writes nothing never connects.
const noopLogins = 1

// TestDovecotSyncNoopLogins: a sync that finds nothing changed (both
// sides IMAP, two folders) logs in noopLogins times per side and selects
// no folder (issue 12's no-op target). Before the lazy sink, the deferred
// PERMANENTFLAGS read and the statuses on the control connection it
// logged in three times per side (this test's negative control: with an
// eager sink it fails on the counts).
func TestDovecotSyncNoopLogins(t *testing.T) {
	p := newSyncPair(t)
	// The first sync copies; the second lists the first's own copies as
	// changes of known messages (it recorded the statuses read before
	// them); the third finds nothing changed.
	p.sync(t)
	p.sync(t)
	trace := p.sync(t)
	if got := traceLogins(trace); got["src"] != noopLogins || got["dst"] != noopLogins {
		t.Errorf("the no-op sync logged in %v times per side, want %d each:\n%s", got, noopLogins, trace)
	}
	if strings.Contains(trace, " SELECT ") || strings.Contains(trace, " EXAMINE ") {
		t.Errorf("the no-op sync selected a folder:\n%s", trace)
	}
}

// changeLogins is how often a sync after a few changes logs in per IMAP
// side: one raw session, shared by the side's source and sink
// (mail.Share), that lists the folders and their statuses, lists the
// changes, fetches the new bodies, appends, writes flags and deletes (the
// sink learns the capabilities and the namespace from the pool).
const changeLogins = 1

// TestDovecotSyncChangeLogins: after a new message, a flag change and a
// deletion on side A and a new message and a flag change on side B (all
// in INBOX), the sync logs in changeLogins times per side and selects
// INBOX once per side for its writes (the listing EXAMINEs it; the
// PERMANENTFLAGS come from the state: no SELECT per listed folder). The
// changes arrive. Its negative control, each endpoint connecting on its
// own (testHooks.noShare, as before the shared connections), logs in and
// selects more often.
func TestDovecotSyncChangeLogins(t *testing.T) {
	for _, tc := range []struct {
		name       string
		noShare    bool
		wantShared bool
	}{
		{"shared", false, true},
		{"each on its own (negative control)", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSyncPair(t)
			p.noShare = tc.noShare
			p.sync(t)
			p.sync(t)
			p.change(t, p.userA, p.pwA, "A", 1, 2)
			p.change(t, p.userB, p.pwB, "B", 3, 0)
			trace := p.sync(t)
			logins, selects := traceLogins(trace), traceSelects(trace)
			t.Logf("logins %v, SELECTs %v", logins, selects)
			shared := true
			for _, side := range []string{"src", "dst"} {
				shared = shared && logins[side] == changeLogins && selects[side] == 1
			}
			if shared != tc.wantShared {
				t.Errorf("the change sync logged in %v times and selected %v times per side; want %d logins and 1 SELECT each: %v",
					logins, selects, changeLogins, tc.wantShared)
			}
			for _, u := range [][2]string{{p.userA, p.pwA}, {p.userB, p.pwB}} {
				inbox := p.d.Fetch(t, u[0], u[1])["INBOX"]
				flagged := 0
				for _, m := range inbox {
					for _, f := range m.Flags {
						if f == imap.FlagFlagged {
							flagged++
						}
					}
				}
				if len(inbox) != 4 || flagged != 2 {
					t.Errorf("%s's INBOX holds %d messages, %d flagged; want 4, 2 flagged", u[0], len(inbox), flagged)
				}
			}
		})
	}
}

// traceSelects counts the SELECT commands (not EXAMINE) per side in a
// --trace of the CLI.
func traceSelects(trace string) map[string]int {
	n := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^trace (\w+) C: \S+ SELECT `).FindAllStringSubmatch(trace, -1) {
		n[m[1]]++
	}
	return n
}

// change changes user's INBOX as another client would: a new message,
// UID flag flagged, UID del (0: none) deleted.
func (p *syncPair) change(t *testing.T, user, pw, tag string, flag, del imap.UID) {
	t.Helper()
	p.d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{{Body: fmt.Appendf(nil, "Message-ID: <new.%s@logins.test>\r\nSubject: new\r\n\r\nbody\r\n", tag),
		Date: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)}})
	c := p.d.Dial(t, user, pw)
	defer c.Logout()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(flag), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if del == 0 {
		return
	}
	if err := c.Store(imap.UIDSetNum(del), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(del)).Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDovecotSyncFlagsBatched: flag changes of several messages reach the
// other side in one UID STORE per kind of change (one round trip with its
// read-back), not one per message; the flags arrive. Its negative control:
// with one conditional write per message (Store.setFlagsIf in a loop) the
// count is the number of messages.
func TestDovecotSyncFlagsBatched(t *testing.T) {
	p := newSyncPair(t)
	p.sync(t)
	p.sync(t)
	c := p.d.Dial(t, p.userA, p.pwA)
	defer c.Logout()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var set imap.UIDSet
	set.AddRange(1, 3)
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	trace := p.sync(t)
	var stores []string
	for _, l := range strings.Split(trace, "\n") {
		if strings.HasPrefix(l, "trace dst C: ") && strings.Contains(l, " UID STORE ") {
			stores = append(stores, l)
		}
	}
	if len(stores) != 1 {
		t.Errorf("3 messages flagged alike took %d UID STORE commands on the other side, want 1:\n%s", len(stores), strings.Join(stores, "\n"))
	}
	flagged := 0
	for _, m := range p.d.Fetch(t, p.userB, p.pwB)["INBOX"] {
		for _, f := range m.Flags {
			if f == imap.FlagFlagged {
				flagged++
			}
		}
	}
	if flagged != 3 {
		t.Errorf("side B has %d messages flagged, want 3", flagged)
	}
}

// syncPair is two Dovecot accounts, A with three messages in INBOX and
// three in Work, B empty, and the command that syncs them with --trace.
type syncPair struct {
	d                      *mailtest.Dovecot
	userA, pwA, userB, pwB string
	args                   []string
	noShare                bool // testHooks.noShare
}

func newSyncPair(t *testing.T) *syncPair {
	t.Helper()
	p := &syncPair{d: mailtest.NeedDovecot(t)}
	p.userA, p.pwA = p.d.NewUser(t)
	p.userB, p.pwB = p.d.NewUser(t)
	for i, box := range []string{"INBOX", "Work"} {
		var seed []mailtest.SeedMessage
		for j := 1; j <= 3; j++ {
			seed = append(seed, mailtest.SeedMessage{Body: fmt.Appendf(nil, "Message-ID: <%d.%d@logins.test>\r\nSubject: %d\r\n\r\nbody\r\n", i, j, j),
				Date: time.Date(2025, 1, j, 0, 0, 0, 0, time.UTC)})
		}
		p.d.Seed(t, p.userA, p.pwA, box, seed)
	}
	base := t.TempDir()
	pwFileA, pwFileB := filepath.Join(base, "pwa"), filepath.Join(base, "pwb")
	for f, pw := range map[string]string{pwFileA: p.pwA, pwFileB: p.pwB} {
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.args = []string{"sync", "imaps://" + p.userA + "@" + p.d.IMAPS, "imaps://" + p.userB + "@" + p.d.IMAPS,
		"--src-password-file", pwFileA, "--dst-password-file", pwFileB, "--ca-file", p.d.CAFile,
		"--checkpoint", filepath.Join(base, "state"), "--trace"}
	return p
}

// sync runs the sync, which must succeed, and returns its trace.
func (p *syncPair) sync(t *testing.T) string {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	e.hooks.noShare = p.noShare
	code, stdout, stderr := runEnv(context.Background(), p.args, e), out.String(), errb.String()
	if code != 0 {
		t.Fatalf("sync = %d\n%s%s", code, stdout, stderr)
	}
	return stderr
}

// TestTraceLogins: the counter the test above relies on finds both forms
// of login and tells the sides apart.
func TestTraceLogins(t *testing.T) {
	trace := "trace src C: T1 AUTHENTICATE PLAIN <redacted>\ntrace dst C: a1 LOGIN <redacted>\n" +
		"trace src C: L1 AUTHENTICATE PLAIN <redacted>\ntrace src C: T2 NAMESPACE\n"
	if got := traceLogins(trace); got["src"] != 2 || got["dst"] != 1 {
		t.Fatalf("traceLogins = %v", got)
	}
}
