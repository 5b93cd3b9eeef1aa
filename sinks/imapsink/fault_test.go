package imapsink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

const (
	capsPlain = "UIDPLUS LITERAL+"
	capsMulti = "MULTIAPPEND UIDPLUS LITERAL+"
)

// putErr is Put with "already there" (mail.PresentError) taken as
// success: the message is in the destination either way.
func putErr(s *Sink, mailbox, body string) (mail.ID, error) {
	id, err := s.Put(context.Background(), mail.Envelope{Mailbox: mailbox, ID: "x", Size: int64(len(body)), Date: testDate}, strings.NewReader(body))
	var pe *mail.PresentError
	if errors.As(err, &pe) {
		return pe.ID, nil
	}
	return id, err
}

func count(list []string, body string) int {
	n := 0
	for _, b := range list {
		if b == body {
			n++
		}
	}
	return n
}

func TestMultiAppendBatchesAndFinalIDs(t *testing.T) {
	for _, caps := range []string{capsMulti, "MULTIAPPEND UIDPLUS"} { // LITERAL+, or "+" before each literal
		t.Run(caps, func(t *testing.T) { testMultiAppendBatches(t, caps) })
	}
}

func testMultiAppendBatches(t *testing.T, caps string) {
	f := startFake(t, caps)
	s := f.sink(t)
	if !s.multi {
		t.Fatal("sink does not use MULTIAPPEND although the server offers it")
	}
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, "Other"); err != nil {
		t.Fatal(err)
	}
	var provs []mail.ID
	var bodies []string
	for i := range 6 {
		box := "INBOX"
		if i >= 4 {
			box = "Other"
		}
		b := msg(fmt.Sprintf("<%d@x>", i), "s", fmt.Sprintf("body %d\r\n", i))
		bodies = append(bodies, b)
		provs = append(provs, put(t, s, box, b, testDate))
	}
	if _, ok := s.FinalID(provs[0]); ok {
		t.Error("FinalID known before Commit")
	}
	if n := len(f.messages("INBOX")); n != 0 {
		t.Errorf("INBOX holds %d messages before Commit, want 0 (one open MULTIAPPEND)", n)
	}
	commit(t, s)
	if got := f.appendCount(); got != 2 {
		t.Errorf("%d APPEND commands for 6 messages in 2 mailboxes, want 2", got)
	}
	for i, p := range provs {
		id, ok := s.FinalID(p)
		want := fmt.Sprintf("%d.%d", fakeUIDValidity, i%4+1)
		if i >= 4 {
			want = fmt.Sprintf("%d.%d", fakeUIDValidity, i-3)
		}
		if !ok || string(id) != want {
			t.Errorf("FinalID(%s) = %q, %v; want %q", p, id, ok, want)
		}
	}
	if got := f.messages("INBOX"); fmt.Sprint(got) != fmt.Sprint(bodies[:4]) {
		t.Errorf("INBOX = %q", got)
	}
}

// TestMultiAppendCommitEndsSlotsTogether: Commit ends the commands open on
// several append connections at once, so the server sessions finish their
// transactions (Dovecot: rename, uidlist, index, fsync) in parallel rather
// than one after another. The fake answers no command before the other has
// ended; a Commit that waits for one answer before ending the next command
// shows as the timeout.
func TestMultiAppendCommitEndsSlotsTogether(t *testing.T) {
	f := startFake(t, capsMulti)
	s := f.sink(t)
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, "Other"); err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		ended     int
		both      = make(chan struct{})
		waitedOut bool
	)
	f.script(func(n int, box string, msgs []fakeMsg) fakeAction {
		mu.Lock()
		if ended++; ended == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
		case <-time.After(3 * time.Second):
			mu.Lock()
			waitedOut = true
			mu.Unlock()
		}
		return fakeAction{store: true}
	})
	// Two mailboxes: the second Put cannot join the first one's command,
	// so two connections hold an open command each.
	put(t, s, "INBOX", msg("<1@x>", "s", "one\r\n"), testDate)
	put(t, s, "Other", msg("<2@x>", "s", "two\r\n"), testDate)
	commit(t, s)
	mu.Lock()
	defer mu.Unlock()
	if ended != 2 {
		t.Fatalf("%d MULTIAPPEND commands, want 2 (one per mailbox)", ended)
	}
	if waitedOut {
		t.Error("Commit ended the second command only after the first was answered")
	}
}

func TestC10OverQuota(t *testing.T) {
	for _, caps := range []string{capsPlain, capsMulti} {
		t.Run(caps, func(t *testing.T) {
			f := startFake(t, caps)
			f.script(func(int, string, []fakeMsg) fakeAction {
				return fakeAction{reply: "NO [OVERQUOTA] Quota exceeded (mailbox for user is full)"}
			})
			s := f.sink(t)
			_, err := putErr(s, "INBOX", msg("<q@x>", "q", "x\r\n"))
			if err == nil && s.multi {
				err = s.Commit(context.Background())
			}
			if !mail.Fatal(err) || !errors.Is(err, mail.ErrNoSpace) || !strings.Contains(err.Error(), "quota") {
				t.Fatalf("over quota: err = %v, want a fatal mail.ErrNoSpace that says quota", err)
			}
			if n := len(f.messages("INBOX")); n != 0 {
				t.Errorf("%d messages stored", n)
			}
		})
	}
}

func TestC10TryCreate(t *testing.T) {
	for _, caps := range []string{capsPlain, capsMulti} {
		t.Run(caps, func(t *testing.T) {
			f := startFake(t, caps)
			f.script(func(n int, _ string, _ []fakeMsg) fakeAction {
				if n == 1 {
					return fakeAction{reply: "NO [TRYCREATE] Mailbox doesn't exist"}
				}
				return fakeAction{store: true}
			})
			s := f.sink(t)
			body := msg("<t@x>", "t", "x\r\n")
			if _, err := putErr(s, "INBOX", body); err != nil {
				t.Fatalf("Put = %v", err)
			}
			commit(t, s)
			if got := f.messages("INBOX"); count(got, body) != 1 {
				t.Errorf("INBOX = %q, want the message once", got)
			}
			if got := f.appendCount(); got != 2 {
				t.Errorf("%d APPENDs, want 2 (refused, then retried once)", got)
			}
		})
	}
}

func TestC10TooLarge(t *testing.T) {
	f := startFake(t, capsPlain)
	f.script(func(int, string, []fakeMsg) fakeAction {
		return fakeAction{reply: "NO [TOOBIG] Maximum size of appendable message has been exceeded"}
	})
	s := f.sink(t)
	_, err := putErr(s, "INBOX", msg("<b@x>", "b", "x\r\n"))
	if !errors.Is(err, mail.ErrTooLarge) || mail.Temporary(err) || mail.Fatal(err) {
		t.Fatalf("Put = %v, want a permanent ErrTooLarge", err)
	}
	// APPENDLIMIT: refused before sending.
	s.limit = 10
	before := f.appendCount()
	if _, err := putErr(s, "INBOX", msg("<b2@x>", "b", "0123456789\r\n")); !errors.Is(err, mail.ErrTooLarge) {
		t.Fatalf("Put over APPENDLIMIT = %v, want ErrTooLarge", err)
	}
	if f.appendCount() != before {
		t.Error("a message over APPENDLIMIT was sent")
	}
}

func TestB6Throttled(t *testing.T) {
	f := startFake(t, capsPlain)
	f.script(func(n int, _ string, _ []fakeMsg) fakeAction {
		if n == 1 {
			return fakeAction{reply: "BAD Request is throttled. Suggested Backoff Time: 300 milliseconds"}
		}
		if n == 2 {
			return fakeAction{reply: "NO [LIMIT] too many requests"}
		}
		return fakeAction{store: true}
	})
	s := f.sink(t)
	body := msg("<th@x>", "th", "x\r\n")
	start := time.Now()
	_, err := putErr(s, "INBOX", body)
	if !mail.Temporary(err) {
		t.Fatalf("throttled Put = %v, want a temporary error", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("returned after %v, before the suggested backoff of 300ms", d)
	}
	if _, err := putErr(s, "INBOX", body); !mail.Temporary(err) {
		t.Fatalf("[LIMIT] Put = %v, want a temporary error", err)
	}
	if _, err := putErr(s, "INBOX", body); err != nil {
		t.Fatalf("third Put = %v", err)
	}
	if got := f.messages("INBOX"); count(got, body) != 1 {
		t.Errorf("INBOX = %q, want the message once", got)
	}
}

// TestB5ByeAndA6Drop: the connection goes away after the whole APPEND was
// sent, with and without the server having stored it; with and without
// UIDPLUS. The engine's retry (a second Put of the same message) must end
// with exactly one copy.
func TestA6AmbiguousAppend(t *testing.T) {
	for _, caps := range []string{capsPlain, "LITERAL+", "UIDPLUS"} {
		for _, tc := range []struct {
			name string
			act  fakeAction
		}{
			{"drop-stored", fakeAction{store: true, drop: true}},
			{"drop-not-stored", fakeAction{drop: true}},
			{"bye-stored", fakeAction{store: true, bye: true}},
			{"bye-not-stored", fakeAction{bye: true}},
		} {
			t.Run(caps+"/"+tc.name, func(t *testing.T) {
				f := startFake(t, caps)
				// Two messages already there share the Message-ID: the
				// retry must pair by content, not take the first match.
				x1 := msg("<dup@x>", "dup", "version one\r\n")
				x2 := msg("<dup@x>", "dup", "version two\r\n")
				x3 := msg("<dup@x>", "dup", "version three\r\n")
				f.store("INBOX", []fakeMsg{{body: []byte(x1), date: testDate.Format("_2-Jan-2006 15:04:05 -0700")}, {body: []byte(x2), date: testDate.Format("_2-Jan-2006 15:04:05 -0700")}})
				f.script(func(n int, _ string, _ []fakeMsg) fakeAction {
					if n == 1 {
						return tc.act
					}
					return fakeAction{store: true}
				})
				s := f.sink(t)
				_, err := putErr(s, "INBOX", x3)
				if !mail.Temporary(err) {
					t.Fatalf("Put with the connection lost = %v, want a temporary error", err)
				}
				// A copy the lost APPEND left is this run's store: the retry
				// says stored (nil), not already present, so it counts as copied.
				_, err = s.Put(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: "x", Size: int64(len(x3)), Date: testDate}, strings.NewReader(x3))
				if err != nil {
					t.Fatalf("retried Put = %v, want nil (stored by this run)", err)
				}
				got := f.messages("INBOX")
				if count(got, x1) != 1 || count(got, x2) != 1 || count(got, x3) != 1 || len(got) != 3 {
					t.Errorf("INBOX = %q, want each version once", got)
				}
			})
		}
	}
}

func TestA6AmbiguousMultiAppend(t *testing.T) {
	for _, caps := range []string{capsMulti, "MULTIAPPEND LITERAL+", "MULTIAPPEND UIDPLUS"} {
		for _, tc := range []struct {
			name string
			act  fakeAction
		}{
			{"drop-stored", fakeAction{store: true, drop: true}},
			{"drop-not-stored", fakeAction{drop: true}},
			{"bye-stored", fakeAction{store: true, bye: true}},
		} {
			t.Run(caps+"/"+tc.name, func(t *testing.T) {
				f := startFake(t, caps)
				f.script(func(n int, _ string, _ []fakeMsg) fakeAction {
					if n == 1 {
						return tc.act
					}
					return fakeAction{store: true}
				})
				s := f.sink(t)
				var bodies []string
				for i := range 5 {
					b := msg(fmt.Sprintf("<m%d@x>", i), "m", fmt.Sprintf("body %d\r\n", i))
					if i == 4 {
						b = bodies[0] // a true duplicate: needs its own copy
					}
					bodies = append(bodies, b)
					put(t, s, "INBOX", b, testDate)
				}
				commit(t, s)
				got := f.messages("INBOX")
				if len(got) != 5 || count(got, bodies[0]) != 2 {
					t.Errorf("INBOX = %q, want the 5 messages (one twice)", got)
				}
				if want := map[bool]int{true: 1, false: 2}[tc.act.store]; f.appendCount() != want {
					t.Errorf("%d APPEND commands, want %d", f.appendCount(), want)
				}
			})
		}
	}
}

// TestMultiAppendRefusedMessage: the server refuses a batch because of one
// message; Commit stores the others one by one and reports that one.
func TestMultiAppendRefusedMessage(t *testing.T) {
	f := startFake(t, capsMulti)
	f.script(func(n int, _ string, msgs []fakeMsg) fakeAction {
		for _, m := range msgs {
			if strings.Contains(string(m.body), "poison") {
				return fakeAction{reply: "NO [CANNOT] message contains bare newlines"}
			}
		}
		return fakeAction{store: true}
	})
	s := f.sink(t)
	bodies := []string{msg("<a@x>", "a", "ok a\r\n"), msg("<p@x>", "p", "poison\r\n"), msg("<b@x>", "b", "ok b\r\n")}
	for _, b := range bodies {
		put(t, s, "INBOX", b, testDate)
	}
	err := s.Commit(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 of 3") {
		t.Fatalf("Commit = %v, want one message reported", err)
	}
	got := f.messages("INBOX")
	if len(got) != 2 || count(got, bodies[0]) != 1 || count(got, bodies[2]) != 1 {
		t.Errorf("INBOX = %q, want the two good messages", got)
	}
	// The sink goes on working.
	put(t, s, "INBOX", msg("<c@x>", "c", "ok c\r\n"), testDate)
	commit(t, s)
}

// TestMultiAppendCancelledPut: a Put cancelled mid-body leaves nothing,
// and the batch it would have joined still commits.
func TestMultiAppendCancelledPut(t *testing.T) {
	f := startFake(t, capsMulti)
	s := f.sink(t)
	good := msg("<g@x>", "g", "good\r\n")
	put(t, s, "INBOX", good, testDate)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, mail.Envelope{Mailbox: "INBOX", ID: "c"}, strings.NewReader(msg("<c@x>", "c", "cancelled\r\n"))); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put = %v", err)
	}
	commit(t, s)
	if got := f.messages("INBOX"); fmt.Sprint(got) != fmt.Sprint([]string{good}) {
		t.Errorf("INBOX = %q", got)
	}
}

// TestB5SessionExpires: the server ends the session between two APPENDs;
// the next Put reconnects, and every message is stored once.
func TestB5SessionExpires(t *testing.T) {
	for _, caps := range []string{capsPlain, capsMulti} {
		t.Run(caps, func(t *testing.T) {
			f := startFake(t, caps)
			f.script(func(n int, _ string, _ []fakeMsg) fakeAction { return fakeAction{store: true, gone: n%2 == 1} })
			s := f.sink(t)
			var bodies []string
			for i := range 4 {
				b := msg(fmt.Sprintf("<e%d@x>", i), "e", fmt.Sprintf("body %d\r\n", i))
				bodies = append(bodies, b)
				var err error
				for try := 0; try < 3; try++ { // the engine retries temporary errors
					if _, err = putErr(s, "INBOX", b); !mail.Temporary(err) {
						break
					}
				}
				if err != nil {
					t.Fatalf("Put %d = %v", i, err)
				}
				commit(t, s)
			}
			got := f.messages("INBOX")
			for _, b := range bodies {
				if count(got, b) != 1 {
					t.Errorf("INBOX = %q, want each message once", got)
					break
				}
			}
		})
	}
}

// TestKeywordsFollowPermanentFlags: a keyword the mailbox's PERMANENTFLAGS
// do not allow (no \*) is dropped; system flags and allowed keywords stay.
func TestKeywordsFollowPermanentFlags(t *testing.T) {
	for _, caps := range []string{capsPlain, capsMulti} {
		t.Run(caps, func(t *testing.T) {
			f := startFake(t, caps)
			s := f.sink(t)
			put(t, s, "INBOX", msg("<k@x>", "k", "x\r\n"), testDate, mail.FlagSeen, "$Label1", "$NotAllowed", `\Recent`)
			commit(t, s)
			f.mu.Lock()
			defer f.mu.Unlock()
			if got := f.boxes["INBOX"][0].flags; got != `\Seen $Label1` {
				t.Errorf("APPEND flags = %q, want `\\Seen $Label1`", got)
			}
		})
	}
}
