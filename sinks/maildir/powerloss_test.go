package maildir

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/mail/mailtest/crashfs"
	"github.com/mailferry/mailferry/sync/mail/mailtest/powerloss"
)

// Power loss (docs/failure-model.md A8) on a model of a crash-consistent file
// system (package crashfs, the stand-in for LazyFS): the Maildir and the
// checkpoint live on it, a delete-mode copy runs until the power is cut at
// a random file system operation, the tree is rewritten to what a reboot
// would find, and the next run resumes. Each of Commit's durability paths
// runs: an fsync per file (newSink's default, and New's where there is no
// syncfs), one syncfs per batch (New on Linux: enableSyncFS), the syncfs
// modelled by crashfs.FS.SyncFS, and the fsync per file of a batch of
// fewFiles or fewer on a sink that has syncfs (New's nightly rerun).

// plFS adapts a crashfs.FS to the sink's fileSystem, counting the sink's
// file fsyncs and syncfs calls (so a test knows which path it ran).
type plFS struct {
	*crashfs.FS
	fsyncs, syncfs *atomic.Int64
}

func (p plFS) Create(name string, perm os.FileMode) (file, error) {
	f, err := p.FS.Create(name, perm)
	if err != nil {
		return nil, err
	}
	return plFile{f, p.fsyncs}, nil
}

// OpenSyncFS hands the sink the model's syncfs. The device number is the
// real one of the tree's directory, as the sink compares it with its
// folders' Lstat.
func (p plFS) OpenSyncFS(root string) (fsSyncer, uint64, error) {
	fi, err := p.Lstat(root)
	if err != nil {
		return nil, 0, err
	}
	dev, ok := devOf(fi)
	if !ok {
		return nil, 0, errors.ErrUnsupported
	}
	return plSyncer(p), dev, nil
}

type plFile struct {
	*crashfs.File
	fsyncs *atomic.Int64
}

func (f plFile) Sync() error {
	f.fsyncs.Add(1)
	return f.File.Sync()
}

type plSyncer plFS

func (y plSyncer) SyncAll() error {
	y.syncfs.Add(1)
	return y.SyncFS()
}

func (plSyncer) Close() error { return nil }

const plEndpoint = "pop3://alice@mail.example.org"

// plFixtures are distinct messages over two mailboxes (a new folder's
// directories must survive too), some flagged (cur/), some not (new/).
func plFixtures() []mailtest.Fixture {
	var fx []mailtest.Fixture
	for i := range 24 {
		mb := "INBOX"
		if i%3 == 2 {
			mb = "Archive"
		}
		body := fmt.Sprintf("Subject: message %d\r\nMessage-ID: <%d@powerloss>\r\n\r\n%s", i, i, strings.Repeat(fmt.Sprintf("line %d of message %d\r\n", i, i), 1+i*37%200))
		f := mailtest.Fixture{Mailbox: mb, Body: []byte(body), Date: time.Date(2020, 1, 1+i, 0, 0, 0, 0, time.UTC)}
		if i%2 == 1 {
			f.Flags = []mail.Flag{mail.FlagSeen}
		}
		fx = append(fx, f)
	}
	return fx
}

// plWorld is one trial's disk, source and model.
type plWorld struct {
	root, maildir, cp string
	fs                *crashfs.FS
	path              plPath // which durability path Commit takes
	nSyncfs, nFsyncs  atomic.Int64
	corpus            *powerloss.Corpus
}

// plFault is a negative control: a durability step the model skips.
type plFault int

const (
	plNoFault   plFault = iota
	plNoDirSync         // directory fsyncs do nothing
	plNoSyncFS          // syncfs does nothing
)

// plPath is one of Commit's durability paths.
type plPath int

const (
	plFsync    plPath = iota // no syncfs: an fsync per file
	plSyncfs                 // one syncfs per batch, whatever its size
	plFewFiles               // syncfs enabled, every batch small enough for an fsync per file
)

func newPLWorld(t *testing.T, seed uint64, path plPath, fault plFault) *plWorld {
	t.Helper()
	root := t.TempDir()
	fsys, err := crashfs.New(root, seed)
	if err != nil {
		t.Fatal(err)
	}
	fsys.NoDirSync, fsys.NoSyncFS = fault == plNoDirSync, fault == plNoSyncFS
	w := &plWorld{root: root, maildir: filepath.Join(root, "mail"), cp: filepath.Join(root, "state", "cp.jsonl"),
		fs: fsys, path: path, corpus: powerloss.NewCorpus(plFixtures())}
	fsys.Torn = seed%2 == 1
	return w
}

// run is one mailferry run on the model's disk: open the sink and the
// checkpoint, copy in delete mode, close. It returns the run's error (the
// power cut's, if one came).
func (w *plWorld) run() error {
	s, err := newSink(ctx, w.maildir, nil, plFS{w.fs, &w.nFsyncs, &w.nSyncfs}, time.Now)
	if err != nil {
		return err
	}
	if w.path != plFsync {
		s.enableSyncFS()
		if s.syncRoot == nil {
			s.Close()
			return errors.New("enableSyncFS: no syncfs")
		}
		s.syncfsOver = 0
		if w.path == plFewFiles {
			s.syncfsOver = 1 << 30
		}
	}
	return w.corpus.Copy(ctx, w.fs, s, w.plRun()) // closes s
}

func (w *plWorld) plRun() powerloss.Run {
	return powerloss.Run{Src: plEndpoint, Dst: "maildir:" + w.maildir, CP: w.cp}
}

// check returns what is wrong with the disk after a recovery: a message
// deleted on the source but not complete in its folder (I3), a file in
// new/ or cur/ that is not exactly one of the messages (empty, partial),
// a checkpoint that does not parse. With final set, the run completed: the
// source must be empty and each message stored exactly once (I5).
func (w *plWorld) check(final bool) []string {
	var bad []string
	stored := map[[32]byte]int{}
	for _, mb := range []string{"INBOX", "Archive"} {
		dir, _ := maildirfmt.FolderDir(w.maildir, mb)
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
				if err != nil {
					bad = append(bad, err.Error())
					continue
				}
				h := sha256.Sum256(b)
				if w.corpus.Bodies[h] != mb {
					bad = append(bad, fmt.Sprintf("%s/%s/%s: %d bytes that are no message of %s (empty or partial)", mb, sub, e.Name(), len(b), mb))
					continue
				}
				stored[h]++
			}
		}
	}
	return append(bad, w.corpus.Check(stored, w.plRun(), final, "I5")...)
}

// plTrial runs until a run completes, cutting the power at a random
// operation in each of the first cuts runs, and returns every violation
// found after each recovery and at the end.
func plTrial(t *testing.T, seed uint64, cuts, opsPerRun int, path plPath, fault plFault) []string {
	t.Helper()
	w := newPLWorld(t, seed, path, fault)
	bad, err := w.fs.Trial(rand.New(rand.NewPCG(seed, 1)), cuts, opsPerRun, w.run, w.check)
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// plOps counts the file system operations of one uncut run, and checks
// that it took the Commit path asked for: one syncfs per batch and no
// message fsynced alone, or the reverse.
func plOps(t *testing.T, path plPath) int {
	t.Helper()
	if path != plFsync && runtime.GOOS != "linux" {
		t.Skip("syncfs(2) is Linux only")
	}
	syncfs := path == plSyncfs
	w := newPLWorld(t, 0, path, plNoFault)
	if err := w.run(); err != nil {
		t.Fatalf("uncut run: %v", err)
	}
	if bad := w.check(true); len(bad) > 0 {
		t.Fatalf("uncut run: %v", bad)
	}
	n, fsyncs := w.nSyncfs.Load(), w.nFsyncs.Load()
	if syncfs && (n == 0 || fsyncs != 0) || !syncfs && (n != 0 || fsyncs == 0) {
		t.Fatalf("uncut run (path %d): %d syncfs and %d file fsyncs", path, n, fsyncs)
	}
	return w.fs.Ops()
}

// plPaths are Commit's durability paths.
var plPaths = []struct {
	name string
	path plPath
}{{"fsync", plFsync}, {"syncfs", plSyncfs}, {"few-files", plFewFiles}}

// TestA8PowerLossMaildir covers A8 on every Commit path (fsync per file,
// syncfs per batch, fsync per file of a small batch beside syncfs): 30
// trials each, each cutting the power at
// random operations of up to 3 successive delete-mode runs (about 60 cut
// points over a run's ~170 operations), unsynced writes dropped (or, in odd
// trials, torn: a random prefix of unsynced appends kept). After every
// recovery: every message deleted on the source is complete on disk (I3),
// new/ and cur/ hold no empty or partial file, the checkpoint parses; the
// final run converges to each message exactly once and an empty source.
func TestA8PowerLossMaildir(t *testing.T) {
	for _, path := range plPaths {
		t.Run(path.name, func(t *testing.T) {
			ops := plOps(t, path.path)
			trials := 30
			if testing.Short() {
				trials = 5
			}
			for seed := range uint64(trials) {
				if bad := plTrial(t, seed, 1+int(seed%3), ops, path.path, plNoFault); len(bad) > 0 {
					t.Errorf("trial %d (seed %d, %d ops per run): %d violation(s):\n%s", seed, seed, ops, len(bad), strings.Join(bad, "\n"))
				}
			}
		})
	}
}

// TestA8PowerLossMaildirNegativeControl runs the same trials on a file
// system that skips one durability step (the builds the plan says must
// fail): directory fsyncs on either path, or the syncfs on the syncfs path
// (its files' data then never reaches the disk before their renames). The
// check has to catch lost or empty messages, else the test above proves
// nothing. Each control runs trials until one is caught, at most 30: on
// the syncfs path without directory fsyncs only the last batch before a
// cut is exposed (the next syncfs makes earlier renames durable), and
// about a third of trials catch it, so 30 keep a false alarm below 1e-4.
func TestA8PowerLossMaildirNegativeControl(t *testing.T) {
	tests := []struct {
		name  string
		path  plPath
		fault plFault
		what  string
	}{
		{"fsync/no-dir-fsync", plFsync, plNoDirSync, "without directory fsyncs"},
		{"syncfs/no-dir-fsync", plSyncfs, plNoDirSync, "without directory fsyncs"},
		{"syncfs/no-syncfs", plSyncfs, plNoSyncFS, "without the syncfs"},
		{"few-files/no-dir-fsync", plFewFiles, plNoDirSync, "without directory fsyncs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := plOps(t, tt.path)
			for seed := range uint64(30) {
				if bad := plTrial(t, seed, 1+int(seed%3), ops, tt.path, tt.fault); len(bad) > 0 {
					t.Logf("%s, trial %d broke an invariant: %s", tt.what, seed, bad[0])
					return
				}
			}
			t.Fatalf("%s no trial of 30 lost a message: the power-loss check cannot fail", tt.what)
		})
	}
}
