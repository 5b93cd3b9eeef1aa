package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// g2Secret stands for a password a panicking endpoint might have formatted
// into its panic value.
const g2Secret = "pw-G2-s3cr3t-Zq7"

// nilMap is never made: writing to it is the runtime error RuntimeError wants.
var nilMap map[string]string

// panicListSource panics while listing one folder.
type panicListSource struct {
	*mailtest.MemSource
	folder string
}

func (s panicListSource) List(ctx context.Context, mb string, fn func(mail.Envelope) error) error {
	n := 0
	return s.MemSource.List(ctx, mb, func(env mail.Envelope) error {
		if n++; mb == s.folder && n == 3 {
			panic("list: password " + g2Secret)
		}
		return fn(env)
	})
}

// TestG2PanicAndFailingFolderIsolated: one folder's every APPEND fails
// (NO [SERVERBUG]) and a worker panics in another; the third folder is
// copied and checkpointed, every failure is listed, the panic becomes an
// error naming no secret, and a rerun without the faults copies exactly
// what is missing (no duplicate).
func TestG2PanicAndFailingFolderIsolated(t *testing.T) {
	serverBug := errors.New("imapsink: append: NO [SERVERBUG] internal error")
	for _, tc := range []struct {
		name string
		// panics sets up the panic: it may wrap the source, the sink's
		// Fail function (called for every Put) and the Step hook.
		batch     bool
		listPanic bool
		putPanic  func(env mail.Envelope)
		stepPanic bool
		wantFail  int    // failures besides the 10 of "Bad"
		wantWhat  string // in the panic failure's text
		stored    int    // messages stored before the rerun
	}{
		{name: "SinkPut", putPanic: func(env mail.Envelope) {
			if env.Mailbox == "Panicky" && env.ID == "4" {
				panic(fmt.Sprintf("put: token=%s", g2Secret))
			}
		}, wantFail: 1, wantWhat: "a value of type string", stored: 19},
		{name: "SinkPutBatched", batch: true, putPanic: func(env mail.Envelope) {
			if env.Mailbox == "Panicky" && env.ID == "4" {
				panic(errors.New("put: password " + g2Secret))
			}
		}, wantFail: 1, wantWhat: "a value of type *errors.errorString", stored: 19},
		{name: "RuntimeError", putPanic: func(env mail.Envelope) {
			if env.Mailbox == "Panicky" && env.ID == "4" {
				nilMap[g2Secret] = "x" // assignment to entry in nil map
			}
		}, wantFail: 1, wantWhat: "assignment to entry in nil map", stored: 19},
		{name: "StepHookAfterPut", stepPanic: true, wantFail: 1, wantWhat: "a value of type string", stored: 20},
		{name: "Lister", listPanic: true, wantFail: 1, wantWhat: "a value of type string", stored: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := fixtures(30, "INBOX", "Bad", "Panicky")
			mem := mailtest.NewMemSource(fx)
			var src mail.Source = mem
			if tc.batch {
				src = &mailtest.BatchSource{MemSource: mem}
			}
			if tc.listPanic {
				src = panicListSource{mem, "Panicky"}
			}
			sink := mailtest.NewMemSink()
			dst := &mailtest.FaultSink{Sink: sink, Fail: func(n int, env mail.Envelope) error {
				if tc.putPanic != nil {
					tc.putPanic(env)
				}
				if env.Mailbox == "Bad" {
					return serverBug
				}
				return nil
			}}
			cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
			opt := fastOpts(cp)
			if tc.stepPanic {
				puts := 0
				opt.Workers = 1 // Step is called from the one worker: puts needs no lock
				opt.Step = func(step string) {
					if step == "put" {
						if puts++; puts == 15 {
							panic("step: password " + g2Secret)
						}
					}
				}
			}
			res, err := Copy(context.Background(), src, dst, opt)
			if err != nil {
				t.Fatalf("Copy = %v, want the run to finish", err)
			}
			if got := len(sink.Messages("INBOX")); got != 10 || len(cp.Records("INBOX")) != 10 {
				t.Errorf("INBOX: %d stored, %d recorded; want 10 and 10", got, len(cp.Records("INBOX")))
			}
			bad, panicked := 0, 0
			for _, f := range res.Failures {
				if strings.Contains(f.Err, g2Secret) {
					t.Errorf("I6: failure %s %s shows the secret: %s", f.Mailbox, f.ID, f.Err)
				}
				switch {
				case f.Mailbox == "Bad" && strings.Contains(f.Err, "SERVERBUG"):
					bad++
				case strings.Contains(f.Err, "panic"):
					panicked++
					if !strings.Contains(f.Err, tc.wantWhat) || !strings.Contains(f.Err, ".go:") {
						t.Errorf("panic failure %q lacks %q and a file:line", f.Err, tc.wantWhat)
					}
				default:
					t.Errorf("unexpected failure %+v", f)
				}
			}
			if bad != 10 || panicked != tc.wantFail {
				t.Errorf("failures: %d SERVERBUG (want 10), %d panics (want %d): %+v", bad, panicked, tc.wantFail, res.Failures)
			}
			if got := total(sink); got != tc.stored {
				t.Errorf("stored %d, want %d", got, tc.stored)
			}
			// The rerun without faults completes the copy exactly once.
			dst.Fail = nil
			opt.Step = nil
			if _, err := Copy(context.Background(), mem, dst, opt); err != nil {
				t.Fatalf("rerun: %v", err)
			}
			want := map[string]int{}
			for _, f := range fx {
				want[string(f.Body)]++
			}
			got := map[string]int{}
			for _, mb := range sink.Mailboxes() {
				for _, m := range sink.Messages(mb) {
					got[string(m.Body)]++
				}
			}
			// The step hook panics after a durable Put: that message is
			// stored but not recorded, and the rerun's Put of it is absorbed
			// by its delivery Key (as Maildir and the IMAP sink do).
			for body, n := range want {
				if got[body] != n {
					t.Errorf("after rerun: message %q stored %d times, want %d", body, got[body], n)
				}
			}
		})
	}
}

// TestG2PanicInCommitStopsRun: a panic while committing leaves the state of
// sink and checkpoint unknown, so the run stops with a fatal error (no
// deadlock, no secret), and a rerun finishes the copy.
func TestG2PanicInCommitStopsRun(t *testing.T) {
	src := mailtest.NewMemSource(fixtures(20, "INBOX", "Sent"))
	sink := mailtest.NewMemSink()
	cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
	opt := fastOpts(cp)
	commits := 0
	opt.Step = func(step string) {
		if step == "record" { // the committer's goroutine only
			if commits++; commits == 2 {
				panic("commit: password " + g2Secret)
			}
		}
	}
	_, err := Copy(context.Background(), src, sink, opt)
	var pe *PanicError
	if !mail.Fatal(err) || !errors.As(err, &pe) || strings.Contains(err.Error(), g2Secret) {
		t.Fatalf("Copy = %v, want a fatal *PanicError without the secret", err)
	}
	opt.Step = nil
	if _, err := Copy(context.Background(), src, sink, opt); err != nil || total(sink) < 20 {
		t.Fatalf("rerun = %v, stored %d", err, total(sink))
	}
}

// TestRecoveredNamesLocation: the recovered error names the panicking
// function, and a runtime error keeps its text while other values do not.
func TestRecoveredNamesLocation(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func()
		want string
		not  string
	}{
		{"String", func() { panic("secret " + g2Secret) }, "a value of type string", g2Secret},
		{"Index", func() { _ = []int{}[len(g2Secret)] }, "index out of range [16] with length 0", g2Secret},
		{"Error", func() { panic(io.ErrUnexpectedEOF) }, "a value of type *errors.errorString", "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := func() (err error) {
				defer catchPanic(&err, nil)
				tc.f()
				return nil
			}()
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.not) || !strings.Contains(err.Error(), "TestRecoveredNamesLocation") {
				t.Errorf("recovered = %v, want %q and the test's name, without %q", err, tc.want, tc.not)
			}
		})
	}
}
