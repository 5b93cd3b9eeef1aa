package maildir

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	srcmaildir "github.com/mailferry/mailferry/sources/maildir"
	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/mail/mailtest/crashfs"
	"github.com/mailferry/mailferry/sync/mail/mailtest/powerloss"
)

// Power loss during a rerun that makes flags follow (docs/failure-model.md
// A8 for SetFlags): a first run copies INBOX onto the real disk; then the
// source changes the flags of some INBOX messages and gets new messages in
// Work (whose commits flush the checkpoint, flag records included), and
// reruns on the crashfs model are cut at random operations. After every
// recovery each INBOX message is in the Maildir exactly once (a rename
// neither loses nor duplicates); after the run that completes, every file
// carries its source message's flags: a rename the cut undid was not
// recorded, so a later run did it again.

// flFS is the sink's file system in these trials; with noFlagSync the
// directory fsyncs of INBOX's cur/ and new/ do nothing, which only SetFlags
// asks for in a rerun (no new message goes to INBOX): the negative control.
type flFS struct {
	plFS
	inbox      string
	noFlagSync bool
}

func (f flFS) SyncDir(name string) error {
	if f.noFlagSync && (name == filepath.Join(f.inbox, "cur") || name == filepath.Join(f.inbox, "new")) {
		return nil
	}
	return f.plFS.SyncDir(name)
}

// flWorld is one trial's disk, source and the flags each body must end with.
type flWorld struct {
	maildir, cp string
	fs          *crashfs.FS
	src         *mailtest.MemSource
	noFlagSync  bool
	want        map[[32]byte]string // body hash -> flags, as flagKey prints them
	mailbox     map[[32]byte]string // body hash -> mailbox
}

func flagKey(flags []mail.Flag) string {
	s := make([]string, len(flags))
	for i, f := range flags {
		s[i] = strings.ToLower(string(f))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// newFLWorld copies 9 INBOX messages onto the real disk (some with the
// keyword $Label1, so dovecot-keywords exists before the cuts: the sink
// writes that file around the model), then changes the source and starts
// the model.
func newFLWorld(t *testing.T, seed uint64, noFlagSync bool) *flWorld {
	t.Helper()
	root := t.TempDir()
	w := &flWorld{maildir: filepath.Join(root, "mail"), cp: filepath.Join(root, "state", "cp.jsonl"),
		src: mailtest.NewMemSource(nil), noFlagSync: noFlagSync, want: map[[32]byte]string{}, mailbox: map[[32]byte]string{}}
	hashes := map[mail.ID][32]byte{}
	add := func(mb string, i int, flags []mail.Flag) {
		body := fmt.Appendf(nil, "Subject: %s %d\r\n\r\nbody %d of %s\r\n", mb, i, i, mb)
		h := sha256.Sum256(body)
		w.want[h], w.mailbox[h] = flagKey(flags), mb
		id := w.src.Add(mailtest.Fixture{Mailbox: mb, Body: body, Flags: flags, Date: time.Date(2021, 1, 1+i, 0, 0, 0, 0, time.UTC)})
		hashes[id] = h
	}
	for i := range 9 {
		flags := [][]mail.Flag{{}, {mail.FlagSeen}, {mail.FlagSeen, "$Label1"}}[i%3]
		add("INBOX", i, flags)
	}
	s, err := newSink(ctx, w.maildir, nil, osFS{}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.copy(s, func() (*checkpoint.File, error) {
		return checkpoint.Open(w.cp, plEndpoint, "maildir:"+w.maildir, false)
	}); err != nil {
		t.Fatalf("first run: %v", err)
	}
	// New flags for INBOX messages 1, 2, 4, 5, 7 and 8 (IDs from 1).
	changes := [][]mail.Flag{{mail.FlagSeen}, {mail.FlagFlagged, mail.FlagSeen}, {}, {"$Label1"}, {mail.FlagAnswered, mail.FlagSeen, "$Label1"}, {mail.FlagDraft}}
	for i, fl := range changes {
		id := mail.ID(fmt.Sprint(1 + i + i/2))
		w.src.Mark("INBOX", id, fl...)
		w.want[hashes[id]] = flagKey(fl)
	}
	for i := range 6 {
		add("Work", i, []mail.Flag{})
	}
	if w.fs, err = crashfs.New(root, seed); err != nil {
		t.Fatal(err)
	}
	w.fs.Torn = seed%2 == 1
	return w
}

// copy is one mailferry run into s with the checkpoint open gives; it
// closes both.
func (w *flWorld) copy(s *Sink, open func() (*checkpoint.File, error)) error {
	cp, err := open()
	if err != nil {
		return errors.Join(err, s.Close())
	}
	_, err = mailferry.Copy(ctx, w.src, s, mailferry.Options{
		SrcEndpoint: plEndpoint, Workers: 2, Checkpoint: cp, BatchSize: 3, BatchDelay: time.Hour, Backoff: time.Millisecond,
	})
	return errors.Join(err, cp.Close(), s.Close())
}

// run is one rerun on the model's disk.
func (w *flWorld) run() error {
	var fsyncs, syncfs atomic.Int64
	s, err := newSink(ctx, w.maildir, nil, flFS{plFS{w.fs, &fsyncs, &syncfs}, w.maildir, w.noFlagSync}, time.Now)
	if err != nil {
		return err
	}
	return w.copy(s, func() (*checkpoint.File, error) {
		return checkpoint.OpenFS(powerloss.CheckpointFS{FS: w.fs}, w.cp, plEndpoint, "maildir:"+w.maildir, false)
	})
}

// check returns what is wrong after a recovery (final: after the run that
// completed): a file that is no whole message, an INBOX message not there
// exactly once; with final, a message not stored exactly once or whose
// flags are not its source message's.
func (w *flWorld) check(final bool) (bad []string) {
	src, err := srcmaildir.New(ctx, w.maildir, nil)
	if err != nil {
		return []string{err.Error()}
	}
	defer func() {
		if err := src.Close(); err != nil {
			bad = append(bad, err.Error())
		}
	}()
	count := map[[32]byte]int{}
	for _, mb := range []string{"INBOX", "Work"} {
		err := src.List(ctx, mb, func(e mail.Envelope) error {
			rc, err := src.Open(ctx, e)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(rc)
			if err = errors.Join(err, rc.Close()); err != nil {
				return err
			}
			h := sha256.Sum256(b)
			if w.mailbox[h] != mb {
				bad = append(bad, fmt.Sprintf("%s/%s: %d bytes that are no message of %s", mb, e.ID, len(b), mb))
				return nil
			}
			count[h]++
			if got := flagKey(e.Flags); final && got != w.want[h] {
				bad = append(bad, fmt.Sprintf("%s/%s has flags %q, the source %q", mb, e.ID, got, w.want[h]))
			}
			return nil
		})
		if err != nil && !errors.Is(err, mail.ErrMailboxNotFound) {
			bad = append(bad, err.Error())
		}
	}
	for h, mb := range w.mailbox {
		if (mb == "INBOX" || final) && count[h] != 1 {
			bad = append(bad, fmt.Sprintf("a message of %s is stored %d times, want once", mb, count[h]))
		}
	}
	return bad
}

// flTrial runs reruns until one completes, cutting the power in the first
// cuts of them, and returns every violation.
func flTrial(t *testing.T, seed uint64, cuts, opsPerRun int, noFlagSync bool) []string {
	t.Helper()
	w := newFLWorld(t, seed, noFlagSync)
	bad, err := w.fs.Trial(rand.New(rand.NewPCG(seed, 2)), cuts, opsPerRun, w.run, w.check)
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// flOps counts the model's operations of one uncut rerun, which must make
// every flag follow.
func flOps(t *testing.T) int {
	t.Helper()
	w := newFLWorld(t, 0, false)
	if err := w.run(); err != nil {
		t.Fatalf("uncut rerun: %v", err)
	}
	if bad := w.check(true); len(bad) > 0 {
		t.Fatalf("uncut rerun: %v", bad)
	}
	return w.fs.Ops()
}

// TestA8PowerLossFlagsMaildir: 30 trials, each cutting the power at
// random operations of up to 3 successive reruns; see the top of the file.
func TestA8PowerLossFlagsMaildir(t *testing.T) {
	ops := flOps(t)
	trials := 30
	if testing.Short() {
		trials = 5
	}
	for seed := range uint64(trials) {
		if bad := flTrial(t, seed, 1+int(seed%3), ops, false); len(bad) > 0 {
			t.Errorf("trial %d (%d ops per run): %d violation(s):\n%s", seed, ops, len(bad), strings.Join(bad, "\n"))
		}
	}
}

// TestA8PowerLossFlagsMaildirNegativeControl runs the same trials with
// SetFlags' directory fsyncs doing nothing: a cut after the checkpoint
// recorded the new flags undoes renames nobody redoes, and the check must
// see it, else the test above proves nothing.
func TestA8PowerLossFlagsMaildirNegativeControl(t *testing.T) {
	ops := flOps(t)
	for seed := range uint64(30) {
		if bad := flTrial(t, seed, 1+int(seed%3), ops, true); len(bad) > 0 {
			t.Logf("without SetFlags' directory fsyncs, trial %d broke an invariant: %s", seed, bad[0])
			return
		}
	}
	t.Fatal("without SetFlags' directory fsyncs no trial of 30 lost a flag change: the check cannot fail")
}
