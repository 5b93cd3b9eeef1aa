package mbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/mail/mailtest/crashfs"
	"github.com/mailferry/mailferry/sync/mail/mailtest/powerloss"
)

// Power loss (docs/failure-model.md A8 for the mbox sink, and A12's power-loss
// variant) on the crashfs model: mbox files, journals and the checkpoint
// live on it, a delete-mode copy is cut at a random file system operation,
// the tree is rewritten to what a reboot finds (unsynced appends dropped,
// or torn: a random prefix kept), and the next run must cut the torn tail
// and append.

// plFS adapts a crashfs.FS to the sink's fileSystem.
type plFS struct{ *crashfs.FS }

func (p plFS) OpenFile(name string, flag int, perm os.FileMode) (osFile, error) {
	f, err := p.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

const plEndpoint = "imaps://alice@imap.example.org"

// plFixtures: distinct messages over two mailboxes, with the lines mboxrd
// must quote ("From ", ">From "), one without a final newline, CRLF and LF,
// and one big message (A12's large write, scaled down to 256 KiB).
func plFixtures() []mailtest.Fixture {
	var fx []mailtest.Fixture
	for i := range 18 {
		mb := "INBOX"
		if i%3 == 2 {
			mb = "Archive"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "Subject: message %d\nMessage-ID: <%d@powerloss>\n\n", i, i)
		for j := range 1 + i*37%150 {
			switch j % 7 {
			case 3:
				fmt.Fprintf(&b, "From the line %d of %d, quoted in mboxrd\n", j, i)
			case 5:
				fmt.Fprintf(&b, ">From already quoted %d\r\n", j)
			default:
				fmt.Fprintf(&b, "line %d of message %d\n", j, i)
			}
		}
		body := b.String()
		if i == 4 {
			body = strings.TrimSuffix(body, "\n")
		}
		fx = append(fx, mailtest.Fixture{Mailbox: mb, Body: []byte(body), Date: time.Date(2020, 1, 1+i, 0, 0, 0, 0, time.UTC)})
	}
	fx[9].Body = mailtest.Big(256 << 10)
	return fx
}

type plWorld struct {
	root, mbox, cp string
	fs             *crashfs.FS
	corpus         *powerloss.Corpus
}

func newPLWorld(t *testing.T, seed uint64, noDirSync bool) *plWorld {
	t.Helper()
	root := t.TempDir()
	fsys, err := crashfs.New(root, seed)
	if err != nil {
		t.Fatal(err)
	}
	fsys.NoDirSync = noDirSync
	fsys.Torn = seed%2 == 1
	return &plWorld{root: root, mbox: filepath.Join(root, "mbox", "alice"), cp: filepath.Join(root, "state", "cp.jsonl"),
		fs: fsys, corpus: powerloss.NewCorpus(plFixtures())}
}

// run is one mailferry run on the model's disk, in delete mode.
func (w *plWorld) run() error {
	ctx := context.Background()
	s, err := openSink(ctx, Config{Root: w.mbox, LockWait: -1}, nil, plFS{w.fs})
	if err != nil {
		return err
	}
	return w.corpus.Copy(ctx, w.fs, s, w.plRun()) // closes s
}

func (w *plWorld) plRun() powerloss.Run {
	return powerloss.Run{Src: plEndpoint, Dst: "mbox:" + w.mbox, CP: w.cp}
}

// entries parses b strictly as mboxrd and returns each entry's body hash;
// a torn entry (no final LF, not a From_ line) is an error.
func entries(b []byte) ([][32]byte, error) {
	r := mboxfmt.NewReader(bytes.NewReader(b))
	var out [][32]byte
	for {
		_, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return out, err
		}
		out = append(out, [32]byte(h.Sum(nil)))
	}
}

// check returns what is wrong on disk. After a recovery (final false) it
// reads each file up to the length its journal commits, which is what the
// next run keeps: every entry there must be one whole message of that
// mailbox, and every message deleted on the source must be there (I3), and
// the checkpoint must parse. After a complete run (final true) it parses
// the whole file: exactly one entry per message, byte-identical (A12), the
// journal closed, the source empty (I5).
func (w *plWorld) check(final bool) []string {
	var bad []string
	stored := map[[32]byte]int{}
	for _, mb := range []string{"INBOX", "Archive"} {
		path, _ := mboxfmt.FilePath(w.mbox, mb)
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		j, err := mboxfmt.ReadJournal(path + mboxfmt.JournalSuffix)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: journal: %v", mb, err))
		case final && j != nil && (j.Dirty || j.Committed != int64(len(b))):
			bad = append(bad, fmt.Sprintf("%s: after a complete run the journal says dirty=%v committed=%d, file %d bytes", mb, j.Dirty, j.Committed, len(b)))
		case !final && j != nil && j.Dirty && j.Committed <= int64(len(b)):
			b = b[:j.Committed]
		}
		hs, err := entries(b)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: mboxrd parse of %d bytes after %d entries: %v", mb, len(b), len(hs), err))
		}
		for _, h := range hs {
			if w.corpus.Bodies[h] != mb {
				bad = append(bad, fmt.Sprintf("%s: an entry is no message of %s (torn, or joined to another)", mb, mb))
				continue
			}
			stored[h]++
		}
	}
	return append(bad, w.corpus.Check(stored, w.plRun(), final, "A12")...)
}

// plTrial runs until a run completes, cutting the power at a random
// operation in each of the first cuts runs.
func plTrial(t *testing.T, seed uint64, cuts, opsPerRun int, noDirSync bool) []string {
	t.Helper()
	w := newPLWorld(t, seed, noDirSync)
	bad, err := w.fs.Trial(rand.New(rand.NewPCG(seed, 2)), cuts, opsPerRun, w.run, w.check)
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

func plOps(t *testing.T) int {
	w := newPLWorld(t, 0, false)
	if err := w.run(); err != nil {
		t.Fatalf("uncut run: %v", err)
	}
	if bad := w.check(true); len(bad) > 0 {
		t.Fatalf("uncut run: %v", bad)
	}
	return w.fs.Ops()
}

// TestA12PowerLossMbox covers A8 for the mbox sink and A12's power-loss
// variant: 30 trials, each cutting the power at random operations of up
// to 3 successive delete-mode runs; odd trials keep a random prefix of
// unsynced appends (a torn tail, possibly inside the 256 KiB message). After
// every recovery the committed part of each file parses into whole
// messages and holds every message deleted on the source (I3), and the
// checkpoint parses; the final run leaves each file holding exactly the
// 18 messages, once each, byte-identical after unquoting.
func TestA12PowerLossMbox(t *testing.T) {
	ops := plOps(t)
	trials := 30
	if testing.Short() {
		trials = 5
	}
	for seed := range uint64(trials) {
		if bad := plTrial(t, seed, 1+int(seed%3), ops, false); len(bad) > 0 {
			t.Errorf("trial %d (seed %d, %d ops per run): %d violation(s):\n%s", seed, seed, ops, len(bad), strings.Join(bad, "\n"))
		}
	}
}

// TestA12PowerLossMboxNegativeControl: the same trials with directory
// fsyncs disabled must break an invariant, else the test proves nothing.
func TestA12PowerLossMboxNegativeControl(t *testing.T) {
	ops := plOps(t)
	caught := 0
	for seed := range uint64(10) {
		if bad := plTrial(t, seed, 1+int(seed%3), ops, true); len(bad) > 0 {
			caught++
			if caught == 1 {
				t.Logf("without directory fsyncs, trial %d: %s", seed, bad[0])
			}
		}
	}
	if caught == 0 {
		t.Fatal("with directory fsync disabled no trial lost a message: the power-loss check cannot fail")
	}
	t.Logf("without directory fsyncs, %d of 10 trials broke an invariant", caught)
}

var _ = mail.ErrClosed
