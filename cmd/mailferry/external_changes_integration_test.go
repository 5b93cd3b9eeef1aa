package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	maildirsource "github.com/mailferry/mailferry/sources/maildir"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// g3Source wraps the real IMAP source so that a test can act as another
// client at a precise point of a run: after is called once List of a
// mailbox returned (the snapshot is taken; nothing of that mailbox has been
// fetched yet, since the engine queues a folder only once it is listed).
type g3Source struct {
	mail.Source
	after func(mailbox string)
}

func (s *g3Source) List(ctx context.Context, mb string, fn func(mail.Envelope) error) error {
	err := s.Source.List(ctx, mb, fn)
	if err == nil && s.after != nil {
		s.after(mb)
	}
	return err
}

// g3Registry is the real registry with the imaps source wrapped in
// g3Source; the wrapper keeps the optional interfaces the engine and the
// command use (batch fetches, special-use roles).
func g3Registry(after func(string)) *mail.Registry {
	base := registry()
	r := mail.NewRegistry()
	r.AddSource("imaps", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Source, error) {
		src, err := base.OpenSource(ctx, u.String(), o)
		if err != nil {
			return nil, err
		}
		w := &g3Source{Source: src, after: after}
		b, okB := src.(mail.BatchOpener)
		l, okL := src.(mail.RoleLister)
		if !okB || !okL {
			return nil, fmt.Errorf("g3: the IMAP source lost BatchOpener or RoleLister: the wrapper must follow")
		}
		return struct {
			*g3Source
			mail.BatchOpener
			mail.RoleLister
		}{w, b, l}, nil
	})
	r.AddSink("imaps", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Sink, error) {
		return base.OpenSink(ctx, u.String(), o)
	})
	r.AddSink("maildir", func(ctx context.Context, u *url.URL, o *mail.OpenOptions) (mail.Sink, error) {
		return base.OpenSink(ctx, u.String(), o)
	})
	return r
}

// g3Pause lets the run's hook hand control to the test goroutine (where
// t.Fatal is allowed) and wait until the test's changes are made.
type g3Pause struct {
	ask, resume chan struct{}
}

func newG3Pause() *g3Pause { return &g3Pause{make(chan struct{}), make(chan struct{})} }

// wait is called by the run: it blocks until the test has acted.
func (p *g3Pause) wait() {
	p.ask <- struct{}{}
	<-p.resume
}

// g3Run runs the copy in-process (under the test's -race) with reg, calls
// act on the test goroutine whenever the run waits on pause (nil: none),
// and fails the test if the run does not end within a minute (a loop).
func g3Run(t *testing.T, reg *mail.Registry, pause *g3Pause, act func(), env map[string]string, args ...string) (int, summary, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, hooks: inProcessHooks(env), reg: reg}
	finished := make(chan int, 1)
	go func() { finished <- runEnv(ctx, args, e) }()
	var ask chan struct{}
	if pause != nil {
		ask = pause.ask
	}
	var code int
	for done := false; !done; {
		select {
		case <-ask:
			act()
			pause.resume <- struct{}{}
		case code = <-finished:
			done = true
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("run still going after a minute (a loop?): %s", errb.String())
	}
	var s summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("--json output %q: %v; stderr: %s", out.String(), err, errb.String())
	}
	return code, s, errb.String()
}

// TestG3ConcurrentExternalChanges (docs/failure-model.md G3, invariants I1 I2):
// while a run is copying, another client adds 20 messages, deletes 10 that
// the run listed but has not copied yet, and re-flags 40 (30 copied by an
// earlier run, 10 about to be copied). The run must end (no crash, no
// loop), exit 0, copy the 20 survivors, and report the 10 as vanished in
// the --json counts and the folder's counters. The next run copies the 20
// added meanwhile and gives the 40 re-flagged messages their new flags
// (into IMAP by STORE, into a Maildir by renaming the files); a third run
// has nothing to do. At the end the destination holds exactly the source's
// messages, each once, with the source's flags.
//
// The changes are made by a wrapper around the real IMAP source, right
// after INBOX is listed: deterministic, no sleeps. The plan's 100/50/200
// are scaled down to 20/10/40 to keep CI fast.
func TestG3ConcurrentExternalChanges(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, kind := range []string{"imaps", "maildir"} {
		t.Run(kind, func(t *testing.T) {
			user, pw := d.NewUser(t)
			// UIDs in INBOX: 1-30 the first batch, 31-60 the second.
			d.Seed(t, user, pw, "INBOX", uidMessages(30, "a"))
			d.Seed(t, user, pw, "Work", uidMessages(10, "w"))
			dir := t.TempDir()
			env := map[string]string{"MAILFERRY_SRC_PASSWORD": pw}
			dst := "maildir:" + filepath.Join(dir, "out")
			var dstUser, dstPW string
			if kind == "imaps" {
				dstUser, dstPW = d.NewUser(t)
				env["MAILFERRY_DST_PASSWORD"] = dstPW
				dst = "imaps://" + dstUser + "@" + d.IMAPS
			}
			args := []string{"copy", "imaps://" + user + "@" + d.IMAPS, dst, "--checkpoint", filepath.Join(dir, "cp.jsonl"),
				"--ca-file", d.CAFile, "--json", "--progress", "never", "--workers", "4"}
			plain := g3Registry(nil)
			if code, s, stderr := g3Run(t, plain, nil, nil, env, args...); code != 0 || s.Counts.Stored != 40 {
				t.Fatalf("first run: exit %d, stored %d; want 0, 40: %s", code, s.Counts.Stored, stderr)
			}
			d.Seed(t, user, pw, "INBOX", uidMessages(30, "b"))

			var once stdsync.Once
			pause := newG3Pause()
			meddle := g3Registry(func(mb string) {
				if mb == "INBOX" {
					once.Do(pause.wait)
				}
			})
			changed := false
			code, s, stderr := g3Run(t, meddle, pause, func() {
				d.Seed(t, user, pw, "INBOX", uidMessages(20, "c"))
				d.Doveadm(t, "expunge", "-u", user, "mailbox", "INBOX", "uid", "31:40")
				d.Doveadm(t, "flags", "add", "-u", user, `\Flagged $Label1`, "mailbox", "INBOX", "uid", "1:30,41:50")
				changed = true
			}, env, args...)
			if !changed {
				t.Fatal("the other client never ran: the test tests nothing")
			}
			if in := s.Folders["INBOX"]; code != 0 || s.Counts.Stored != 20 || s.Counts.Vanished != 10 || in.Listed != 60 || in.Vanished != 10 || s.Counts.Failed != 0 {
				t.Errorf("run during the changes: exit %d, counts %+v, INBOX %+v; want exit 0, 20 stored, 10 vanished (of 60 listed in INBOX), 0 failed: %s",
					code, s.Counts, s.Folders["INBOX"], stderr)
			}

			wantFlags := int64(40) // both sinks change flags after the copy (FlagSetter)
			code, s, stderr = g3Run(t, plain, nil, nil, env, args...)
			if code != 0 || s.Counts.Stored != 20 || s.Counts.Vanished != 0 || s.Totals.FlagsUpdated != wantFlags {
				t.Errorf("next run: exit %d, counts %+v, flags updated %d; want 0, the 20 added stored, %d flags updated: %s",
					code, s.Counts, s.Totals.FlagsUpdated, wantFlags, stderr)
			}
			code, s, stderr = g3Run(t, plain, nil, nil, env, args...)
			if code != 0 || s.Counts.Stored != 0 || s.Counts.Fetched != 0 || s.Totals.FlagsUpdated != 0 {
				t.Errorf("third run: exit %d, counts %+v, flags updated %d; want 0 and nothing to do: %s", code, s.Counts, s.Totals.FlagsUpdated, stderr)
			}

			// I1, I2: the destination holds the source's messages exactly.
			srcMsgs := d.Fetch(t, user, pw)
			if n := len(srcMsgs["INBOX"]); n != 70 {
				t.Fatalf("source INBOX holds %d messages, want 70 (30 + 30 - 10 + 20)", n)
			}
			if kind == "maildir" {
				got := bodiesIn(t, dst, true)
				for _, mb := range []string{"INBOX", "Work"} {
					want := map[[32]byte]int{}
					for _, m := range srcMsgs[mb] {
						want[sha256.Sum256(mailtest.CRLF(m.Body))]++
					}
					if !sameMultiset(got[mb], want) {
						t.Errorf("%s: the destination holds %d distinct bodies, want the source's %d, each once", mb, len(got[mb]), len(want))
					}
				}
				// The Maildir copies carry the source's flags, keywords included.
				flags := maildirFlags(t, dst)
				for _, mb := range []string{"INBOX", "Work"} {
					for _, m := range srcMsgs[mb] {
						sum := sha256.Sum256(mailtest.CRLF(m.Body))
						if g, f := flags[mb][sum], fmt.Sprint(sortedFlags(m.Flags)); g != f {
							t.Errorf("%s: source UID %d has flags %s, its Maildir copy %s", mb, m.UID, f, g)
						}
					}
				}
				return
			}
			dstMsgs := d.Fetch(t, dstUser, dstPW)
			for _, mb := range []string{"INBOX", "Work"} {
				want := map[[32]byte]string{}
				for _, m := range srcMsgs[mb] {
					want[sha256.Sum256(m.Body)] = fmt.Sprint(sortedFlags(m.Flags))
				}
				got := map[[32]byte]int{}
				for _, m := range dstMsgs[mb] {
					sum := sha256.Sum256(m.Body)
					got[sum]++
					if f, ok := want[sum]; !ok {
						t.Errorf("%s: destination UID %d is not on the source (a deleted message copied?)", mb, m.UID)
					} else if g := fmt.Sprint(sortedFlags(m.Flags)); g != f {
						t.Errorf("%s: destination UID %d has flags %s, the source %s", mb, m.UID, g, f)
					}
				}
				for sum := range want {
					if got[sum] != 1 {
						t.Errorf("%s: a source message is %d times in the destination, want once", mb, got[sum])
					}
				}
			}
		})
	}
}

// maildirFlags reads the Maildir of rawURL back: per mailbox, each body's
// hash (CRLF line endings) and its flags as sortedFlags prints them.
func maildirFlags(t *testing.T, rawURL string) map[string]map[[32]byte]string {
	t.Helper()
	u, _ := url.Parse(rawURL)
	root, _ := mail.LocalPath(u)
	ctx := context.Background()
	src, err := maildirsource.New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := src.Close(); err != nil {
			t.Error(err)
		}
	}()
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[[32]byte]string{}
	for _, mb := range boxes {
		out[mb] = map[[32]byte]string{}
		err := src.List(ctx, mb, func(e mail.Envelope) error {
			rc, err := src.Open(ctx, e)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(rc)
			err = errors.Join(err, rc.Close())
			fl := make([]imap.Flag, len(e.Flags))
			for i, f := range e.Flags {
				fl[i] = imap.Flag(f)
			}
			out[mb][sha256.Sum256(mailtest.CRLF(b))] = fmt.Sprint(sortedFlags(fl))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
