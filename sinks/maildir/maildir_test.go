package maildir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	srcmaildir "github.com/mailferry/mailferry/sources/maildir"
	"github.com/mailferry/mailferry/sync/mail"
)

// recFS records the delivery path's file system calls in order and can
// inject errors.
type recFS struct {
	osFS
	mu     sync.Mutex
	events []string
	// failSync, failWrite and failRename, when set, may return an error for a
	// path instead of doing the call.
	failSync   func(name string) error
	failWrite  func(name string) error
	failRename func(oldpath, newpath string) error
	// failSyncDir, when set, may fail a directory fsync.
	failSyncDir func(name string) error
	// failSyncFS, when set, may fail a syncfs instead of doing it.
	failSyncFS func() error
	syncs      map[string]int
}

func (r *recFS) record(format string, args ...any) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *recFS) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recFS) Reset() {
	r.mu.Lock()
	r.events = nil
	r.mu.Unlock()
}

func (r *recFS) Create(name string, perm os.FileMode) (file, error) {
	f, err := r.osFS.Create(name, perm)
	if err != nil {
		return nil, err
	}
	r.record("create %s", name)
	return &recFile{file: f, name: name, fs: r}, nil
}

func (r *recFS) Mkdir(name string, perm os.FileMode) error {
	err := r.osFS.Mkdir(name, perm)
	if err == nil {
		r.record("mkdir %s", name)
	}
	return err
}

func (r *recFS) RenameNoReplace(oldpath, newpath string) error {
	if r.failRename != nil {
		if err := r.failRename(oldpath, newpath); err != nil {
			return err
		}
	}
	err := r.osFS.RenameNoReplace(oldpath, newpath)
	if err == nil {
		r.record("rename %s %s", oldpath, newpath)
	}
	return err
}

func (r *recFS) SyncDir(name string) error {
	r.record("syncdir %s", name)
	if r.failSyncDir != nil {
		if err := r.failSyncDir(name); err != nil {
			return err
		}
	}
	return r.osFS.SyncDir(name)
}

// OpenSyncFS opens the real syncfs, recording each sync as "syncfs".
func (r *recFS) OpenSyncFS(root string) (fsSyncer, uint64, error) {
	sy, dev, err := r.osFS.OpenSyncFS(root)
	if err != nil {
		return nil, 0, err
	}
	return &recSyncer{fsSyncer: sy, fs: r}, dev, nil
}

type recSyncer struct {
	fsSyncer
	fs *recFS
}

func (y *recSyncer) SyncAll() error {
	y.fs.record("syncfs")
	if y.fs.failSyncFS != nil {
		if err := y.fs.failSyncFS(); err != nil {
			return err
		}
	}
	return y.fsSyncer.SyncAll()
}

type recFile struct {
	file
	name string
	fs   *recFS
}

func (f *recFile) Write(p []byte) (int, error) {
	if f.fs.failWrite != nil {
		if err := f.fs.failWrite(f.name); err != nil {
			return 0, err
		}
	}
	return f.file.Write(p)
}

func (f *recFile) Sync() error {
	f.fs.mu.Lock()
	if f.fs.syncs == nil {
		f.fs.syncs = map[string]int{}
	}
	f.fs.syncs[f.name]++
	f.fs.mu.Unlock()
	f.fs.record("sync %s", f.name)
	if f.fs.failSync != nil {
		if err := f.fs.failSync(f.name); err != nil {
			return err
		}
	}
	return f.file.Sync()
}

var ctx = context.Background()

func newTestSink(t *testing.T, root string, fsys fileSystem) *Sink {
	t.Helper()
	if fsys == nil {
		fsys = osFS{}
	}
	s, err := newSink(ctx, root, nil, fsys, time.Now)
	if err != nil {
		t.Fatalf("New(%q) = %v", root, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t *testing.T, s *Sink, env mail.Envelope, body string) mail.ID {
	t.Helper()
	id, err := s.Put(ctx, env, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Put(%q, key %q) = %v", env.Mailbox, env.Key, err)
	}
	return id
}

func commit(t *testing.T, s *Sink) {
	t.Helper()
	if err := s.Commit(ctx); err != nil {
		t.Fatalf("Commit = %v", err)
	}
}

// files lists the files below dir/sub ("cur", "new", "tmp").
func files(t *testing.T, dir, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// tmpFiles lists the tmp/ files other than run lock files.
func tmpFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range files(t, dir, "tmp") {
		if !strings.HasSuffix(n, lockSuffix) {
			out = append(out, n)
		}
	}
	return out
}

func listed(t *testing.T, root, mailbox string) []mail.Envelope {
	t.Helper()
	src, err := srcmaildir.New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var out []mail.Envelope
	err = src.List(ctx, mailbox, func(e mail.Envelope) error { out = append(out, e); return nil })
	if err != nil && !errors.Is(err, mail.ErrMailboxNotFound) {
		t.Fatalf("List(%q) = %v", mailbox, err)
	}
	return out
}

func TestPutLayoutFlagsAndDate(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, nil)
	date := time.Date(2021, 6, 7, 8, 9, 10, 0, time.UTC)
	idSeen := put(t, s, mail.Envelope{Mailbox: "Archive/Übersicht", Key: "k1", Date: date,
		Flags: []mail.Flag{mail.FlagSeen, `\flagged`, "$Label1", FlagForwardedForTest, mail.FlagSeen}}, "seen body")
	idNew := put(t, s, mail.Envelope{Mailbox: "Archive/Übersicht", Key: "k2"}, "new body")
	idKwOnly := put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "k3", Flags: []mail.Flag{"$Junk"}}, "keyword only")
	commit(t, s)

	dir := filepath.Join(root, ".Archive.&ANw-bersicht")
	// $Label1 takes the folder's first keyword letter, a (dovecot-keywords).
	if got, want := files(t, dir, "cur"), []string{string(idSeen) + ":2,FPSa"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cur/ = %q, want %q", got, want)
	}
	if got, want := files(t, dir, "new"), []string{string(idNew)}; !reflect.DeepEqual(got, want) {
		t.Errorf("new/ = %q, want %q", got, want)
	}
	if got := files(t, root, "cur"); !reflect.DeepEqual(got, []string{string(idKwOnly) + ":2,a"}) {
		t.Errorf("INBOX cur/ = %q, want the keyword-only message with its keyword letter", got)
	}
	for _, c := range []struct{ dir, want string }{{dir, "0 $Label1\n"}, {root, "0 $Junk\n"}} {
		if b, err := os.ReadFile(filepath.Join(c.dir, "dovecot-keywords")); err != nil || string(b) != c.want {
			t.Errorf("%s/dovecot-keywords = %q, %v; want %q", c.dir, b, err, c.want)
		}
	}
	if !strings.Contains(string(idSeen), ",MF=k1,S=9") {
		t.Errorf("ID %q lacks the key and size fields", idSeen)
	}
	fi, err := os.Stat(filepath.Join(dir, "cur", string(idSeen)+":2,FPSa"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(date) {
		t.Errorf("mtime = %v, want the envelope's date %v", fi.ModTime(), date)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600 in a 0700 root", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, "maildirfolder")); err != nil {
		t.Errorf("maildirfolder marker: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "maildirfolder")); err == nil {
		t.Errorf("the root (INBOX) has a maildirfolder marker")
	}
	envs := listed(t, root, "Archive/Übersicht")
	if len(envs) != 2 || envs[0].ID != idSeen && envs[1].ID != idSeen {
		t.Fatalf("source lists %v, want IDs %q and %q", envs, idSeen, idNew)
	}
	if got := tmpFiles(t, dir); len(got) != 0 {
		t.Errorf("tmp/ after Commit = %q", got)
	}
}

// FlagForwardedForTest is maildirfmt.FlagForwarded, the P letter.
const FlagForwardedForTest = maildirfmt.FlagForwarded

// TestIdempotentPutA3 is docs/failure-model.md A3: the message became durable but
// the run died before the checkpoint recorded it. The next run's Put of the
// same key stores nothing and returns the existing ID.
func TestIdempotentPutA3(t *testing.T) {
	root := t.TempDir()
	s1 := newTestSink(t, root, nil)
	env := mail.Envelope{Mailbox: "Sent", Key: "0123456789abcdef01234567", Flags: []mail.Flag{mail.FlagSeen}}
	id1 := put(t, s1, env, "the body")
	// Same key again before the Commit: still one message.
	if id := put(t, s1, env, "the body"); id != id1 {
		t.Errorf("second Put in the same batch = %q, want %q", id, id1)
	}
	commit(t, s1)
	s1.Close() // the crash: nothing was recorded

	s2 := newTestSink(t, root, nil)
	body := strings.NewReader("the body")
	id2, err := s2.Put(ctx, env, body)
	if err != nil || id2 != id1 {
		t.Fatalf("Put after restart = %q, %v, want %q", id2, err, id1)
	}
	if body.Len() != 0 {
		t.Errorf("Put left %d body bytes unread", body.Len())
	}
	commit(t, s2)
	if envs := listed(t, root, "Sent"); len(envs) != 1 {
		t.Fatalf("Sent holds %d messages, want 1: %v", len(envs), envs)
	}
	// A different key is a different message.
	put(t, s2, mail.Envelope{Mailbox: "Sent", Key: "other"}, "the body")
	commit(t, s2)
	if envs := listed(t, root, "Sent"); len(envs) != 2 {
		t.Fatalf("Sent holds %d messages, want 2", len(envs))
	}
	// Index reports the keys.
	var keys []string
	if err := s2.Index(ctx, "Sent", func(e mail.Envelope) error { keys = append(keys, e.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	if want := []string{"0123456789abcdef01234567", "other"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("Index keys = %q, want %q", keys, want)
	}
	if err := s2.Index(ctx, "Nope", func(mail.Envelope) error { return errors.New("called") }); err != nil {
		t.Errorf("Index(missing mailbox) = %v, want nil", err)
	}
}

// TestKeyLookupScansFirst: a sink reopened over a folder holding messages
// finds a stored key by scanning the folder's names, without indexing them,
// for its first keyScans lookups (a rerun adding a message or two to a big
// folder), then indexes them once; either way a stored key is put once.
// The index's state is the observable: keys holds only what was looked up
// until the index is built (with the old eager index it held all at once).
func TestKeyLookupScansFirst(t *testing.T) {
	root := t.TempDir()
	s1 := newTestSink(t, root, nil)
	ids := map[string]mail.ID{}
	for i := range 5 {
		k := fmt.Sprintf("stored%d", i)
		ids[k] = put(t, s1, mail.Envelope{Mailbox: "Big", Key: k, Flags: []mail.Flag{mail.FlagSeen}}, "body "+k)
	}
	commit(t, s1)
	s1.Close()

	s2 := newTestSink(t, root, nil)
	for i, c := range []struct {
		key     string
		stored  bool
		indexed bool // after the Put
		keys    int  // len(f.keys) after the Put
	}{
		{"stored1", true, false, 1},
		{"fresh1", false, false, 2},
		{"stored1", true, false, 2}, // known now: no lookup
		{"stored3", true, true, 6},  // the third lookup indexes the other 4 stored
		{"fresh2", false, true, 7},
	} {
		body := strings.NewReader("body " + c.key)
		id, err := s2.Put(ctx, mail.Envelope{Mailbox: "Big", Key: c.key}, body)
		if err != nil {
			t.Fatalf("Put %d (%s) = %v", i, c.key, err)
		}
		if want, ok := ids[c.key]; c.stored && (!ok || id != want) {
			t.Errorf("Put %d (%s) = %q, want the stored copy %q", i, c.key, id, want)
		}
		if !c.stored && body.Len() != 0 {
			t.Errorf("Put %d (%s) left %d body bytes unread", i, c.key, body.Len())
		}
		ids[c.key] = id
		f, err := s2.folder(ctx, "Big")
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		indexed, keys := f.indexed, len(f.keys)
		f.mu.Unlock()
		if indexed != c.indexed || keys != c.keys {
			t.Errorf("after Put %d (%s): indexed %v with %d keys, want %v with %d", i, c.key, indexed, keys, c.indexed, c.keys)
		}
	}
	commit(t, s2)
	if envs := listed(t, root, "Big"); len(envs) != 7 {
		t.Errorf("Big holds %d messages, want 7 (5 stored, 2 fresh)", len(envs))
	}
}

// TestConcurrentSameKey: two Puts of one key at once store it once.
func TestConcurrentSameKey(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, nil)
	pr, pw := io.Pipe()
	env := mail.Envelope{Mailbox: "INBOX", Key: "samekey"}
	type res struct {
		id  mail.ID
		err error
	}
	first := make(chan res)
	go func() {
		id, err := s.Put(ctx, env, pr)
		first <- res{id, err}
	}()
	pw.Write([]byte("part one, ")) // the first Put now owns the key and is writing
	second := make(chan res)
	go func() {
		id, err := s.Put(ctx, env, strings.NewReader("part one, part two"))
		second <- res{id, err}
	}()
	pw.Write([]byte("part two"))
	pw.Close()
	a, b := <-first, <-second
	if a.err != nil || b.err != nil || a.id != b.id {
		t.Fatalf("Puts = %v and %v, want the same ID", a, b)
	}
	commit(t, s)
	if envs := listed(t, root, "INBOX"); len(envs) != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", len(envs))
	}
}

func TestUncommittedInvisibleAndDiscarded(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, nil)
	put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "a", Flags: []mail.Flag{mail.FlagSeen}}, "one")
	put(t, s, mail.Envelope{Mailbox: "Work", Key: "b"}, "two")
	if envs := listed(t, root, "INBOX"); len(envs) != 0 {
		t.Errorf("uncommitted message visible: %v", envs)
	}
	if got := tmpFiles(t, root); len(got) != 1 {
		t.Errorf("INBOX tmp/ = %q, want the pending file", got)
	}
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
	}
	for _, dir := range []string{root, filepath.Join(root, ".Work")} {
		if got := tmpFiles(t, dir); len(got) != 0 {
			t.Errorf("%s tmp/ after Close = %q", dir, got)
		}
		if got := append(files(t, dir, "cur"), files(t, dir, "new")...); len(got) != 0 {
			t.Errorf("%s holds %q after Close without Commit", dir, got)
		}
	}
	if got := files(t, root, "tmp"); len(got) != 0 {
		t.Errorf("tmp/ after Close = %q, want the lock gone too", got)
	}
	if _, err := s.Put(ctx, mail.Envelope{Mailbox: "INBOX"}, strings.NewReader("x")); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("Put after Close = %v, want ErrClosed", err)
	}
	if err := s.Commit(ctx); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("Commit after Close = %v, want ErrClosed", err)
	}
}

// TestCancelMidBodyLeavesNothing: a cancel while the body streams leaves no
// tmp file, and the key is free for the retry.
func TestCancelMidBodyLeavesNothing(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, nil)
	cctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("partial "))
		cancel()
		pw.Write([]byte("more"))
		pw.Close()
	}()
	env := mail.Envelope{Mailbox: "INBOX", Key: "k"}
	if _, err := s.Put(cctx, env, pr); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled mid-body = %v, want context.Canceled", err)
	}
	if got := tmpFiles(t, root); len(got) != 0 {
		t.Errorf("tmp/ after the cancel = %q", got)
	}
	put(t, s, env, "whole")
	commit(t, s)
	if envs := listed(t, root, "INBOX"); len(envs) != 1 || envs[0].Size != 5 {
		t.Errorf("INBOX = %v, want the retried message only", envs)
	}
}

// TestDurabilityOrderA8 records the file system calls: Put only writes to
// tmp/; Commit fsyncs each file before renaming it, renames before fsyncing
// the directory, and fsyncs the directories of new folders.
func TestDurabilityOrderA8(t *testing.T) {
	root := t.TempDir()
	rec := &recFS{}
	s := newTestSink(t, root, rec)
	rec.Reset()
	ids := []mail.ID{
		put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "a", Flags: []mail.Flag{mail.FlagSeen}}, "1"),
		put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "b"}, "2"),
		put(t, s, mail.Envelope{Mailbox: "New/Folder", Key: "c", Flags: []mail.Flag{mail.FlagDraft}}, "3"),
	}
	for _, e := range rec.Events() {
		if strings.HasPrefix(e, "rename") || strings.HasPrefix(e, "sync") {
			t.Fatalf("Put did %q: nothing may be synced or published before Commit", e)
		}
	}
	rec.Reset()
	commit(t, s)
	ev := rec.Events()
	at := func(prefix string) int { // index of the first event equal to prefix
		t.Helper()
		for i, e := range ev {
			if e == prefix {
				return i
			}
		}
		t.Fatalf("no event %q in\n%s", prefix, strings.Join(ev, "\n"))
		return -1
	}
	folder := filepath.Join(root, ".New.Folder")
	finals := []string{
		filepath.Join(root, "cur", string(ids[0])+":2,S"),
		filepath.Join(root, "new", string(ids[1])),
		filepath.Join(folder, "cur", string(ids[2])+":2,D"),
	}
	for _, final := range finals {
		ren := -1
		for i, e := range ev {
			if strings.HasPrefix(e, "rename ") && strings.HasSuffix(e, " "+final) {
				ren = i
			}
		}
		if ren < 0 {
			t.Fatalf("no rename to %s in\n%s", final, strings.Join(ev, "\n"))
		}
		tmp := strings.Fields(ev[ren])[1]
		if s := at("sync " + tmp); s > ren {
			t.Errorf("%s renamed (event %d) before its fsync (event %d)", final, ren, s)
		}
		if d := at("syncdir " + filepath.Dir(final)); d < ren {
			t.Errorf("directory of %s fsynced (event %d) before the rename (event %d)", final, d, ren)
		}
	}
	// The new folder's own entries: .New.Folder in the root, cur/new/tmp and
	// maildirfolder in the folder.
	at("syncdir " + root)
	at("syncdir " + folder)
	if t.Failed() {
		t.Logf("events:\n%s", strings.Join(ev, "\n"))
	}
	rec.Reset()
	commit(t, s) // nothing pending: no I/O
	if ev := rec.Events(); len(ev) != 0 {
		t.Errorf("empty Commit did %q", ev)
	}
}

// TestCommitFsyncFailureD2: a failed fsync is never retried and the message
// is not published; its key is free again, the others are committed.
func TestCommitFsyncFailureD2(t *testing.T) {
	root := t.TempDir()
	rec := &recFS{}
	s := newTestSink(t, root, rec)
	bad := ""
	rec.failSync = func(name string) error {
		if name == bad {
			return &os.PathError{Op: "sync", Path: name, Err: syscall.EIO}
		}
		return nil
	}
	put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "good"}, "good")
	put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "bad"}, "bad")
	for _, e := range rec.Events() {
		if strings.HasPrefix(e, "create ") && strings.HasSuffix(e, tmpSuffix) {
			bad = strings.TrimPrefix(e, "create ") // the last one created: "bad"
		}
	}
	err := s.Commit(ctx)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("Commit with a failing fsync = %v, want EIO in the chain", err)
	}
	if rec.syncs[bad] != 1 {
		t.Errorf("the failed file was fsynced %d times, want exactly once", rec.syncs[bad])
	}
	envs := listed(t, root, "INBOX")
	if len(envs) != 1 || envs[0].Size != 4 {
		t.Fatalf("INBOX = %v, want only the good message", envs)
	}
	if got := tmpFiles(t, root); len(got) != 0 {
		t.Errorf("tmp/ after the failed Commit = %q", got)
	}
	rec.failSync = nil
	put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "bad"}, "bad")
	commit(t, s)
	if envs := listed(t, root, "INBOX"); len(envs) != 2 {
		t.Fatalf("INBOX after the retry = %v, want 2 messages", envs)
	}
}

// TestENOSPCIsFatalD1: a full disk during the body write is fatal, keeps its
// errno, and leaves no tmp file.
func TestENOSPCIsFatalD1(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EACCES} {
		t.Run(errno.Error(), func(t *testing.T) {
			root := t.TempDir()
			rec := &recFS{failWrite: func(name string) error { return &os.PathError{Op: "write", Path: name, Err: errno} }}
			s := newTestSink(t, root, rec)
			_, err := s.Put(ctx, mail.Envelope{Mailbox: "INBOX", Key: "k"}, strings.NewReader("body"))
			if !errors.Is(err, errno) || !mail.Fatal(err) {
				t.Fatalf("Put on %v = %v, want a fatal error wrapping it", errno, err)
			}
			if got := tmpFiles(t, root); len(got) != 0 {
				t.Errorf("tmp/ = %q", got)
			}
		})
	}
}

// TestNameCollisionD3: a file already has the final name. The rename never
// overwrites it; the message gets a fresh name and the key follows it.
func TestNameCollisionD3(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, nil)
	id := put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "k", Flags: []mail.Flag{mail.FlagSeen}}, "ours")
	squatter := filepath.Join(root, "cur", string(id)+":2,S")
	if err := os.WriteFile(squatter, []byte("theirs"), 0o600); err != nil {
		t.Fatal(err)
	}
	commit(t, s)
	if b, err := os.ReadFile(squatter); err != nil || string(b) != "theirs" {
		t.Fatalf("pre-existing file = %q, %v: overwritten", b, err)
	}
	cur := files(t, root, "cur")
	if len(cur) != 2 {
		t.Fatalf("cur/ = %q, want the squatter and ours", cur)
	}
	again := put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "k"}, "ours")
	if again == id || !slices.Contains(cur, string(again)+":2,S") {
		t.Errorf("Put of the key = %q, want the renamed message's ID (cur/ = %q)", again, cur)
	}
}

// TestHostileMailboxF7: hostile names are refused as configuration errors and
// nothing is created outside the root; a planted symlink is not followed.
func TestHostileMailboxF7(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "Maildir")
	outside := filepath.Join(parent, "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	s := newTestSink(t, root, nil)
	if err := os.Symlink(outside, filepath.Join(root, ".Foo")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ".File"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"..", ".", "../x", "../../etc", "a/../../b", "/abs", "a//b", "", "x\x00y", "x\ny",
		strings.Repeat("n", 300), "Foo", "File"} {
		_, err := s.Put(ctx, mail.Envelope{Mailbox: name, Key: "k"}, strings.NewReader("x"))
		var ce *mail.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("Put(%q) = %v, want a *mail.ConfigError", name, err)
		}
		if err := s.CreateMailbox(ctx, name); err == nil {
			t.Errorf("CreateMailbox(%q) succeeded", name)
		}
	}
	commit(t, s)
	if got := files(t, parent, ""); !reflect.DeepEqual(got, []string{"Maildir", "outside"}) {
		t.Errorf("parent of the root holds %q", got)
	}
	if got := files(t, outside, ""); len(got) != 0 {
		t.Errorf("the symlink was followed: %s holds %q", outside, got)
	}
}

// caseFS folds ".foo" to ".Foo" as a case-insensitive file system would.
type caseFS struct{ osFS }

func (caseFS) fold(p string) string { return strings.Replace(p, "/.foo", "/.Foo", 1) }

func (c caseFS) Mkdir(name string, perm os.FileMode) error {
	return c.osFS.Mkdir(c.fold(name), perm)
}
func (c caseFS) Lstat(name string) (os.FileInfo, error) { return c.osFS.Lstat(c.fold(name)) }

func TestCaseCollisionRefused(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, caseFS{})
	put(t, s, mail.Envelope{Mailbox: "Foo"}, "x")
	_, err := s.Put(ctx, mail.Envelope{Mailbox: "foo"}, strings.NewReader("y"))
	var ce *mail.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Put into a case-folded twin = %v, want a *mail.ConfigError", err)
	}
}

// TestManyPendingFilesReopened: past maxOpenPending, files are closed after
// the write and reopened to be fsynced; every message still arrives.
func TestManyPendingFilesReopened(t *testing.T) {
	root := t.TempDir()
	s := newTestSink(t, root, nil)
	n := maxOpenPending + 10
	for i := range n {
		put(t, s, mail.Envelope{Mailbox: "INBOX", Key: fmt.Sprint("k", i), Date: time.Unix(1e9, 0)}, fmt.Sprint("body ", i))
	}
	commit(t, s)
	envs := listed(t, root, "INBOX")
	if len(envs) != n {
		t.Fatalf("INBOX holds %d messages, want %d", len(envs), n)
	}
	for _, e := range envs {
		if !e.Date.Equal(time.Unix(1e9, 0)) {
			t.Fatalf("%s: date %v", e.ID, e.Date)
		}
	}
}

// TestKilledRunLeavesNoTmpD4 is "kill -9, rerun: no stray files in tmp/": a
// child process writes uncommitted messages and is killed; the next New
// removes exactly its files, not other programs' files nor those of a run
// still alive.
func TestKilledRunLeavesNoTmpD4(t *testing.T) {
	if root := os.Getenv("MAILFERRY_MAILDIR_CHILD"); root != "" {
		s, err := New(ctx, root, nil)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for _, mb := range []string{"INBOX", "Sub"} {
			if _, err := s.Put(ctx, mail.Envelope{Mailbox: mb, Key: "k" + mb}, strings.NewReader("uncommitted")); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
		}
		fmt.Println("ready")
		select {} // wait for SIGKILL
	}
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledRunLeavesNoTmpD4$")
	cmd.Env = append(os.Environ(), "MAILFERRY_MAILDIR_CHILD="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	if line != "ready\n" {
		t.Fatalf("child said %q", line)
	}
	sub := filepath.Join(root, ".Sub")
	if len(tmpFiles(t, root)) != 1 || len(tmpFiles(t, sub)) != 1 {
		t.Fatalf("the killed run left tmp/ %q and %q, want one file each", tmpFiles(t, root), tmpFiles(t, sub))
	}
	foreign := filepath.Join(root, "tmp", "1700000000.M1P1.otherhost")
	if err := os.WriteFile(foreign, []byte("someone else's delivery"), 0o600); err != nil {
		t.Fatal(err)
	}
	alive := newTestSink(t, root, nil) // also cleans, as a rerun
	put(t, alive, mail.Envelope{Mailbox: "INBOX", Key: "alive"}, "alive, uncommitted")

	s := newTestSink(t, root, nil) // a second run while alive still works
	if got, want := tmpFiles(t, root), 2; len(got) != want {
		t.Errorf("INBOX tmp/ = %q, want the foreign file and the live run's", got)
	}
	if got := tmpFiles(t, sub); len(got) != 0 {
		t.Errorf(".Sub tmp/ = %q, want the killed run's file gone", got)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("foreign tmp file removed: %v", err)
	}
	locks := 0
	for _, n := range files(t, root, "tmp") {
		if strings.HasSuffix(n, lockSuffix) {
			locks++
		}
	}
	if locks != 2 {
		t.Errorf("tmp/ holds %d run locks, want 2 (the dead run's removed)", locks)
	}
	commit(t, alive)
	s.Close()
	alive.Close()
	if got := tmpFiles(t, root); len(got) != 1 {
		t.Errorf("INBOX tmp/ at the end = %q, want only the foreign file", got)
	}
}

func TestParseURLAndRegister(t *testing.T) {
	root := filepath.Join(t.TempDir(), "new-root")
	r := mail.NewRegistry()
	Register(r)
	s, err := r.OpenSink(ctx, "maildir:"+root, nil)
	if err != nil {
		t.Fatalf("OpenSink = %v", err)
	}
	defer s.Close()
	for _, d := range []string{"cur", "new", "tmp"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("root %s/: %v", d, err)
		}
	}
	u, _ := url.Parse("maildir:" + root + "?x=1")
	var ce *mail.ConfigError
	if _, err := ParseURL(u); !errors.As(err, &ce) {
		t.Errorf("ParseURL with an option = %v, want *mail.ConfigError", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(ctx, file, nil); !errors.As(err, &ce) {
		t.Errorf("New(a file) = %v, want *mail.ConfigError", err)
	}
}
