package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	srcmaildir "github.com/mailferry/mailferry/sources/maildir"
	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// killedSink stops the run right after the first SetFlags renamed its file,
// as a kill between the rename and the engine's record would.
type killedSink struct {
	*Sink
	killed bool
}

func (k *killedSink) SetFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	if err := k.Sink.SetFlags(ctx, mailbox, id, flags); err != nil {
		return err
	}
	if !k.killed {
		k.killed = true
		return mail.MakeFatal(errors.New("killed after the rename"))
	}
	return nil
}

// engineRun is one mailferry run from src into the Maildir at root, the
// sink wrapped by wrap (nil: as is).
func engineRun(t *testing.T, src mail.Source, root, cpPath string, wrap func(*Sink) mail.Sink) (*mailferry.Result, error) {
	t.Helper()
	s, err := New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := checkpoint.Open(cpPath, "src", "maildir:"+root, false)
	if err != nil {
		t.Fatal(errors.Join(err, s.Close()))
	}
	var dst mail.Sink = s
	if wrap != nil {
		dst = wrap(s)
	}
	res, err := mailferry.Copy(ctx, src, dst, mailferry.Options{SrcEndpoint: "src", Checkpoint: cp, Backoff: time.Millisecond, BatchSize: 4, BatchDelay: time.Millisecond})
	return res, errors.Join(err, cp.Close(), s.Close())
}

// flagsOf lists what the Maildir holds, as the Maildir source reads it:
// "mailbox subject: flags".
func flagsOf(t *testing.T, root string, mailboxes ...string) []string {
	t.Helper()
	src, err := srcmaildir.New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := src.Close(); err != nil {
			t.Error(err)
		}
	}()
	var out []string
	for _, mb := range mailboxes {
		for _, e := range listed(t, root, mb) {
			rc, err := src.Open(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			if err = errors.Join(err, rc.Close()); err != nil {
				t.Fatal(err)
			}
			subject, _, _ := strings.Cut(strings.TrimPrefix(string(b), "Subject: "), "\r")
			out = append(out, fmt.Sprintf("%s %s: %q", mb, subject, e.Flags))
		}
	}
	sort.Strings(out)
	return out
}

// TestFlagsFollowIntoMaildir is the engine's flag-follow test (sync's
// TestFlagsFollowOnRerun, docs/failure-model.md G3) with the Maildir sink:
// flags set, changed and cleared on the source after the first run reach
// the Maildir copies on the next run, keywords included; a third run
// changes nothing. A run killed between a rename and its record leaves a
// state the next run completes.
func TestFlagsFollowIntoMaildir(t *testing.T) {
	for _, c := range []struct {
		name string
		kill bool
	}{{"rerun", false}, {"killed between rename and record", true}} {
		t.Run(c.name, func(t *testing.T) {
			var fx []mailtest.Fixture
			for i := range 6 {
				mb := []string{"INBOX", "Work"}[i%2]
				f := mailtest.Fixture{Mailbox: mb, Body: fmt.Appendf(nil, "Subject: m%d\r\n\r\nbody %d\r\n", i, i), Flags: []mail.Flag{}}
				if i == 4 {
					f.Flags = []mail.Flag{mail.FlagSeen, "$Label1"}
				}
				fx = append(fx, f)
			}
			src := mailtest.NewMemSource(fx)
			dir := t.TempDir()
			root, cp := filepath.Join(dir, "Maildir"), filepath.Join(dir, "cp.jsonl")
			if _, err := engineRun(t, src, root, cp, nil); err != nil {
				t.Fatal(err)
			}
			src.Mark("INBOX", "1", mail.FlagSeen)                         // m0
			src.Mark("Work", "2", mail.FlagFlagged, "$Label1", "NonJunk") // m3
			src.Mark("INBOX", "3", []mail.Flag{}...)                      // m4: cleared (not nil: a source without flags)
			if c.kill {
				res, err := engineRun(t, src, root, cp, func(s *Sink) mail.Sink { return &killedSink{Sink: s} })
				if err == nil {
					t.Fatalf("killed run = nil, flags updated %d", res.Stats.FlagsUpdated.Load())
				}
			}
			res, err := engineRun(t, src, root, cp, nil)
			if err != nil || res.Stats.FlagsUpdated.Load() != 3 || res.Stats.Copied.Load() != 0 {
				t.Fatalf("rerun: err %v, flags updated %d, copied %d; want 3 updated, none copied", err, res.Stats.FlagsUpdated.Load(), res.Stats.Copied.Load())
			}
			want := []string{
				`INBOX m0: ["\\Seen"]`, `INBOX m2: []`, `INBOX m4: []`,
				`Work m1: []`, `Work m3: ["$Label1" "NonJunk" "\\Flagged"]`, `Work m5: []`,
			}
			if got := flagsOf(t, root, "INBOX", "Work"); !slices.Equal(got, want) {
				t.Errorf("the Maildir holds\n%q\nwant\n%q", got, want)
			}
			res, err = engineRun(t, src, root, cp, nil)
			if err != nil || res.Stats.FlagsUpdated.Load() != 0 || res.Stats.Copied.Load() != 0 {
				t.Fatalf("third run: err %v, flags updated %d, copied %d; want nothing to do", err, res.Stats.FlagsUpdated.Load(), res.Stats.Copied.Load())
			}
		})
	}
}

// keptOpen is a source whose Close does nothing, for mailferry.Run (which
// closes its source) in a test that runs again on the same source.
type keptOpen struct{ *mailtest.MemSource }

func (keptOpen) Close() error { return nil }

// TestFlagsFollowAfterRebuild: a checkpoint rebuilt from the Maildir (A9)
// records the flags each stored copy has, so flags changed on the source
// since follow on that same run, and a message whose copy already has the
// source's flags is left alone.
func TestFlagsFollowAfterRebuild(t *testing.T) {
	var fx []mailtest.Fixture
	for i := range 4 {
		fx = append(fx, mailtest.Fixture{Mailbox: "INBOX", Body: fmt.Appendf(nil, "Subject: m%d\r\n\r\nbody %d\r\n", i, i), Flags: []mail.Flag{mail.FlagSeen}})
	}
	src := mailtest.NewMemSource(fx)
	dir := t.TempDir()
	root, cpPath := filepath.Join(dir, "Maildir"), filepath.Join(dir, "cp.jsonl")
	if _, err := engineRun(t, src, root, cpPath, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cpPath); err != nil { // the checkpoint is lost
		t.Fatal(err)
	}
	src.Mark("INBOX", "2", mail.FlagSeen, mail.FlagFlagged, "$Label1") // m1
	src.Mark("INBOX", "3", []mail.Flag{}...)                           // m2

	s, err := New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := checkpoint.Open(cpPath, "src", "maildir:"+root, false)
	if err != nil {
		t.Fatal(errors.Join(err, s.Close()))
	}
	res, err := mailferry.Run(ctx, keptOpen{src}, s, mailferry.Options{SrcEndpoint: "src", Checkpoint: cp, Backoff: time.Millisecond,
		Rebuild: &mailferry.Rebuild{File: cpPath, Asked: true}})
	if err != nil || res.Stats.FlagsUpdated.Load() != 2 || res.Stats.Copied.Load() != 0 {
		t.Fatalf("run with a rebuilt checkpoint: err %v, flags updated %d, copied %d; want 2 updated, none copied", err, res.Stats.FlagsUpdated.Load(), res.Stats.Copied.Load())
	}
	want := []string{`INBOX m0: ["\\Seen"]`, `INBOX m1: ["$Label1" "\\Flagged" "\\Seen"]`, `INBOX m2: []`, `INBOX m3: ["\\Seen"]`}
	if got := flagsOf(t, root, "INBOX"); !slices.Equal(got, want) {
		t.Errorf("the Maildir holds\n%q\nwant\n%q", got, want)
	}
	res, err = engineRun(t, src, root, cpPath, nil)
	if err != nil || res.Stats.FlagsUpdated.Load() != 0 || res.Stats.Copied.Load() != 0 {
		t.Fatalf("next run: err %v, flags updated %d, copied %d; want nothing to do", err, res.Stats.FlagsUpdated.Load(), res.Stats.Copied.Load())
	}
}
