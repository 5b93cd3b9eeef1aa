package mbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	mboxsrc "github.com/mailferry/mailferry/sources/mbox"
	"github.com/mailferry/mailferry/sync/mail"
)

var testDate = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// msgs are bodies whose round trip is usually lossy.
var msgs = []string{
	"Subject: a\r\n\r\nFrom here\r\n>From there\r\n>>From everywhere\r\n",
	"Subject: b\n\nbare LF, no final newline",
	"",
	"Subject: d\r\n\r\nends in blank lines\r\n\r\n\r\n",
	"Subject: e\r\n\r\nends in CR\r",
}

func key(i int) string { return mail.DeliveryKey("test:", "INBOX", mail.ID(strconv.Itoa(i))) }

func env(mailbox string, i int) mail.Envelope {
	return mail.Envelope{Mailbox: mailbox, ID: mail.ID(strconv.Itoa(i)), Size: -1, Date: testDate.Add(time.Duration(i) * time.Hour), Key: key(i)}
}

func put(t testing.TB, s *Sink, mailbox string, i int) mail.ID {
	t.Helper()
	id, err := s.Put(context.Background(), env(mailbox, i), strings.NewReader(msgs[i%len(msgs)]))
	if err != nil {
		t.Fatalf("Put(%d) = %v", i, err)
	}
	return id
}

func commit(t testing.TB, s *Sink) {
	t.Helper()
	if err := s.Commit(context.Background()); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
}

// encoded is the exact file content holding messages idx in order.
func encoded(t testing.TB, idx ...int) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, i := range idx {
		if _, err := mboxfmt.WriteEntry(&b, "", testDate.Add(time.Duration(i)*time.Hour), strings.NewReader(msgs[i%len(msgs)])); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// listed reads mailbox through the source: IDs and bodies.
func listed(t testing.TB, root, mailbox string) (ids []mail.ID, bodies []string) {
	t.Helper()
	src, err := mboxsrc.New(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	err = src.List(context.Background(), mailbox, func(e mail.Envelope) error {
		rc, err := src.Open(context.Background(), e)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		ids, bodies = append(ids, e.ID), append(bodies, string(b))
		return err
	})
	if err != nil {
		t.Fatalf("List(%q) = %v", mailbox, err)
	}
	return ids, bodies
}

func wantFile(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s holds\n%q\nwant\n%q", filepath.Base(path), got, want)
	}
}

// TestExactFileAndIDs: the file is exactly the format's encoding, IDs are
// the offsets the source lists, and every message reads back exactly.
func TestExactFileAndIDs(t *testing.T) {
	root := t.TempDir()
	s := newSink(t, root, nil)
	var ids []mail.ID
	for i := range msgs {
		ids = append(ids, put(t, s, "INBOX", i))
	}
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	all := []int{0, 1, 2, 3, 4}
	wantFile(t, filepath.Join(root, "INBOX.mbox"), encoded(t, all...))
	gotIDs, bodies := listed(t, root, "INBOX")
	if fmt.Sprint(gotIDs) != fmt.Sprint(ids) {
		t.Errorf("source lists IDs %v, Put returned %v", gotIDs, ids)
	}
	for i := range msgs {
		if bodies[i] != msgs[i] {
			t.Errorf("message %d read back as %q, want %q", i, bodies[i], msgs[i])
		}
	}
	if _, err := os.Stat(filepath.Join(root, "INBOX.mbox.lock")); !os.IsNotExist(err) {
		t.Errorf("dotlock left after Close: %v", err)
	}
	j, err := mboxfmt.ReadJournal(filepath.Join(root, "INBOX.mbox.mfjournal"))
	if err != nil || j == nil || j.Dirty || len(j.Keys) != len(msgs) {
		t.Errorf("journal after Close = %+v, %v; want clean with %d keys", j, err, len(msgs))
	}
}

// TestCloseDiscardsUncommitted: the Sink contract drops Puts not committed.
func TestCloseDiscardsUncommitted(t *testing.T) {
	root := t.TempDir()
	s := newSink(t, root, nil)
	put(t, s, "INBOX", 0)
	commit(t, s)
	put(t, s, "INBOX", 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(root, "INBOX.mbox"), encoded(t, 0))
}

// TestDedupeAcrossRunsA3: a message committed by a run that crashed before
// its checkpoint record is not stored again by the rerun.
func TestDedupeAcrossRunsA3(t *testing.T) {
	root := t.TempDir()
	s1 := newSink(t, root, nil)
	id0, id1 := put(t, s1, "INBOX", 0), put(t, s1, "INBOX", 1)
	commit(t, s1)
	s1.abandon() // crash: no close record, dotlock left behind

	s2 := newSink(t, root, nil)
	if got := put(t, s2, "INBOX", 1); got != id1 {
		t.Errorf("rerun Put of a stored key = %s, want the first copy's %s", got, id1)
	}
	if got := put(t, s2, "INBOX", 0); got != id0 {
		t.Errorf("rerun Put of a stored key = %s, want %s", got, id0)
	}
	put(t, s2, "INBOX", 2)
	if got := put(t, s2, "INBOX", 2); got == "" {
		t.Error("second Put of a key Put in this run gave no ID")
	}
	commit(t, s2)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(root, "INBOX.mbox"), encoded(t, 0, 1, 2))
}

// TestTornTailA12: a crash mid-append leaves a torn entry past the last
// commit; readers never see it, and the next run cuts it and appends.
func TestTornTailA12(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "INBOX.mbox")
	s1 := newSink(t, root, nil)
	put(t, s1, "INBOX", 0)
	put(t, s1, "INBOX", 1)
	commit(t, s1)
	put(t, s1, "INBOX", 2) // written, never committed
	s1.abandon()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	half := encoded(t, 3)
	f.Write(half[:len(half)/2])
	f.Close()

	// A reader meanwhile sees only the committed messages.
	if _, bodies := listed(t, root, "INBOX"); len(bodies) != 2 || bodies[0] != msgs[0] || bodies[1] != msgs[1] {
		t.Fatalf("source reads %q from a file with a torn tail, want the 2 committed messages", bodies)
	}

	s2 := newSink(t, root, nil)
	for i := 0; i < 4; i++ { // the rerun puts everything again
		put(t, s2, "INBOX", i)
	}
	commit(t, s2)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, encoded(t, 0, 1, 2, 3))
	if _, bodies := listed(t, root, "INBOX"); len(bodies) != 4 {
		t.Fatalf("after recovery the source reads %d messages, want 4", len(bodies))
	}
}

// TestKilledMidAppendA12 kills a real process (SIGKILL) while it appends a
// large message, then reruns: one copy of each message, nothing joined.
func TestKilledMidAppendA12(t *testing.T) {
	if os.Getenv("MBOX_TEST_CHILD") != "" {
		crashChild(os.Getenv("MBOX_TEST_CHILD"))
		return
	}
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledMidAppendA12$")
	cmd.Env = append(os.Environ(), "MBOX_TEST_CHILD="+root)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // never written: the child's stalled body blocks on it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, %v", line, err)
	}
	cmd.Process.Kill() // SIGKILL mid-append
	cmd.Wait()

	path := filepath.Join(root, "INBOX.mbox")
	committed := int64(len(encoded(t, 0, 1, 2)))
	if fi, err := os.Stat(path); err != nil || fi.Size() <= committed {
		t.Fatalf("after the kill the file has %v bytes (%v), want more than the %d committed", fi.Size(), err, committed)
	}
	s := newSink(t, root, nil)
	for i := 0; i < 3; i++ {
		put(t, s, "INBOX", i)
	}
	big := bigBody()
	if _, err := s.Put(context.Background(), env("INBOX", 3), bytes.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, bodies := listed(t, root, "INBOX")
	if len(bodies) != 4 {
		t.Fatalf("after the rerun the mailbox holds %d messages, want 4", len(bodies))
	}
	for i := 0; i < 3; i++ {
		if bodies[i] != msgs[i] {
			t.Errorf("message %d = %q, want %q", i, bodies[i], msgs[i])
		}
	}
	if bodies[3] != string(big) {
		t.Errorf("big message read back with %d bytes, want %d", len(bodies[3]), len(big))
	}
}

func bigBody() []byte {
	var b bytes.Buffer
	b.WriteString("Subject: big\r\n\r\n")
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, "From line %d, quoted in the file\r\n", i)
	}
	return b.Bytes()
}

// crashChild commits three messages, then appends a big one whose body
// stalls after 256 KiB; it says "ready" and waits to be killed.
func crashChild(root string) {
	s, err := New(context.Background(), Config{Root: root}, nil)
	if err != nil {
		panic(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.Put(context.Background(), env("INBOX", i), strings.NewReader(msgs[i])); err != nil {
			panic(err)
		}
	}
	if err := s.Commit(context.Background()); err != nil {
		panic(err)
	}
	big := bigBody()
	body := io.MultiReader(bytes.NewReader(big[:256<<10]), stallReader{})
	s.Put(context.Background(), env("INBOX", 3), body)
	panic("unreachable: the stalled body never ends")
}

// stallReader says "ready" once the bytes before it were consumed, then
// blocks on stdin, which never delivers.
type stallReader struct{}

func (stallReader) Read(p []byte) (int, error) {
	os.Stdout.WriteString("ready\n")
	return os.Stdin.Read(make([]byte, 1))
}

// TestFailedPutLeavesFileUnchanged: a body that fails, or a context
// cancelled mid-body, leaves the file byte for byte as it was, also when the
// Put had to spool because another Put held the file.
func TestFailedPutLeavesFileUnchanged(t *testing.T) {
	for _, c := range []struct {
		name   string
		cancel bool
		busy   bool
	}{{"body error", false, false}, {"cancel", true, false}, {"cancel while spooling", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, "INBOX.mbox")
			s := newSink(t, root, nil)
			put(t, s, "INBOX", 0)
			commit(t, s)
			before, _ := os.ReadFile(path)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			boom := errors.New("boom")
			body := &failAfter{r: bytes.NewReader(bigBody()), left: 200 << 10, err: boom}
			if c.cancel {
				body.err, body.cancel = context.Canceled, cancel
			}
			m, _ := s.file("INBOX")
			if c.busy {
				m.mu.Lock()
				go func() { <-ctx.Done(); m.mu.Unlock() }()
			}
			_, err := s.Put(ctx, env("INBOX", 1), body)
			if !errors.Is(err, body.err) {
				t.Fatalf("Put = %v, want %v", err, body.err)
			}
			if c.busy {
				waitUnlocked(&m.mu) // wait for the helper to release it
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatalf("file changed by a failed Put: %d bytes, was %d", len(after), len(before))
			}
			if entries, _ := filepath.Glob(filepath.Join(root, "mailferry-spool-*")); len(entries) != 0 {
				t.Errorf("spool files left: %v", entries)
			}
			put(t, s, "INBOX", 2)
			commit(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			wantFile(t, path, encoded(t, 0, 2))
		})
	}
}

// failAfter returns left bytes of r, then err (cancelling first if set).
type failAfter struct {
	r      io.Reader
	left   int
	err    error
	cancel context.CancelFunc
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.left <= 0 {
		if f.cancel != nil {
			f.cancel()
		}
		return 0, f.err
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= n
	return n, err
}

// TestLockContention: a second sink on the same file waits up to its lock
// wait, then fails with a fatal ErrLocked; it gets the file once the first
// closes. Other mailboxes are not affected.
func TestLockContention(t *testing.T) {
	root := t.TempDir()
	s1 := newSink(t, root, nil)
	put(t, s1, "INBOX", 0)
	commit(t, s1)

	s2 := newSink(t, root, func(s *Sink) { s.lockWait = -1 })
	_, err := s2.Put(context.Background(), env("INBOX", 1), strings.NewReader(msgs[1]))
	if !errors.Is(err, ErrLocked) || !mail.Fatal(err) {
		t.Fatalf("Put into a locked file = %v, want a fatal ErrLocked", err)
	}
	if _, err := s2.Put(context.Background(), env("Other", 1), strings.NewReader(msgs[1])); err != nil {
		t.Fatalf("Put into another mailbox = %v", err)
	}

	// A sink with a lock wait gets the file when the holder closes.
	var once sync.Once
	s3 := newSink(t, root, func(s *Sink) {
		s.lockWait = time.Minute
		s.onBusy = func() { once.Do(func() { s1.Close() }) }
	})
	put(t, s3, "INBOX", 1)
	commit(t, s3)
	s2.Close()
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(root, "INBOX.mbox"), encoded(t, 0, 1))

	// Cancelling the wait gives context.Canceled.
	s4 := newSink(t, root, nil)
	put(t, s4, "INBOX", 2)
	ctx, cancel := context.WithCancel(context.Background())
	s5 := newSink(t, root, func(s *Sink) { s.lockWait = time.Minute; s.onBusy = cancel })
	if _, err := s5.Put(ctx, env("INBOX", 3), strings.NewReader(msgs[3])); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled while waiting for the lock = %v, want context.Canceled", err)
	}
}

// TestDotlock: a stale dotlock (dead pid, or no pid and old) is taken over;
// a live one makes the file busy.
func TestDotlock(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("cannot run true to get a dead pid")
	}
	old := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		name    string
		content string
		mtime   time.Time
		busy    bool
	}{
		{"dead pid", strconv.Itoa(dead.Process.Pid) + "\n", time.Now(), false},
		{"our own pid", strconv.Itoa(os.Getpid()), time.Now(), false},
		{"live pid", "1\n", time.Now(), true},
		{"no pid, fresh", "", time.Now(), true},
		{"no pid, old", "", old, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			lock := filepath.Join(root, "INBOX.mbox.lock")
			if err := os.WriteFile(lock, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(lock, c.mtime, c.mtime)
			s := newSink(t, root, func(s *Sink) { s.lockWait = -1 })
			_, err := s.Put(context.Background(), env("INBOX", 0), strings.NewReader(msgs[0]))
			if c.busy != errors.Is(err, ErrLocked) || (!c.busy && err != nil) {
				t.Fatalf("Put with dotlock %q = %v, want busy=%v", c.content, err, c.busy)
			}
			if c.busy {
				return
			}
			b, _ := os.ReadFile(lock)
			if string(b) != fmt.Sprintf("%d\n", os.Getpid()) {
				t.Errorf("dotlock holds %q, want our pid", b)
			}
			// The pid is written to a temporary file linked to the lock
			// (createDotlock), which must not stay behind.
			if tmps, _ := filepath.Glob(lock + ".*"); len(tmps) != 0 {
				t.Errorf("temporary lock files left: %q", tmps)
			}
			s.Close()
			if _, err := os.Stat(lock); !os.IsNotExist(err) {
				t.Errorf("dotlock not removed on Close: %v", err)
			}
		})
	}
}

// TestForeignFileWithoutFinalLF: appending to a file another tool left
// without a final LF keeps its last message intact.
func TestForeignFileWithoutFinalLF(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "INBOX.mbox")
	foreign := "From someone@example.org Thu Mar  4 05:06:07 2021\nSubject: old\n\nlast line"
	if err := os.WriteFile(path, []byte(foreign), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, root, nil)
	put(t, s, "INBOX", 0)
	// Uncommitted, the append is invisible and the foreign message intact.
	if _, bodies := listed(t, root, "INBOX"); len(bodies) != 1 || bodies[0] != "Subject: old\n\nlast line" {
		t.Fatalf("before Commit the source reads %q", bodies)
	}
	commit(t, s)
	s.Close()
	wantFile(t, path, append([]byte(foreign+"\n"), encoded(t, 0)...))
	_, bodies := listed(t, root, "INBOX")
	if len(bodies) != 2 || bodies[0] != "Subject: old\n\nlast line" || bodies[1] != msgs[0] {
		t.Fatalf("read %q", bodies)
	}
}

// TestRefusedNames: names FilePath refuses fail that message (or mailbox)
// only, never the run, and nothing is written outside the root.
func TestRefusedNames(t *testing.T) {
	root := t.TempDir()
	s := newSink(t, filepath.Join(root, "dst"), nil)
	for _, name := range []string{"../escape", "/abs", "a//b", "a\x00b", ""} {
		_, err := s.Put(context.Background(), env(name, 0), strings.NewReader(msgs[0]))
		if !errors.Is(err, mail.ErrUnsupported) || mail.Fatal(err) {
			t.Errorf("Put(%q) = %v, want a non-fatal ErrUnsupported", name, err)
		}
		if err := s.CreateMailbox(context.Background(), name); !errors.Is(err, mail.ErrUnsupported) || mail.Fatal(err) {
			t.Errorf("CreateMailbox(%q) = %v, want a non-fatal ErrUnsupported", name, err)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(root, "*.mbox")); len(m) != 0 {
		t.Errorf("files written outside the root: %v", m)
	}
}

// TestSymlinksRefused: a mailbox file or folder that is a symlink is not
// followed, and its target is left alone.
func TestSymlinksRefused(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	target := filepath.Join(outside, "victim")
	os.WriteFile(target, []byte("precious"), 0o600)
	os.Symlink(target, filepath.Join(root, "INBOX.mbox"))
	os.Symlink(outside, filepath.Join(root, "Dir"))
	s := newSink(t, root, nil)
	for _, mb := range []string{"INBOX", "Dir/Sub"} {
		if _, err := s.Put(context.Background(), env(mb, 0), strings.NewReader(msgs[0])); err == nil {
			t.Errorf("Put(%q) through a symlink succeeded", mb)
		}
		if err := s.CreateMailbox(context.Background(), mb); err == nil {
			t.Errorf("CreateMailbox(%q) through a symlink succeeded", mb)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Errorf("symlink target changed: %q", b)
	}
	if m, _ := filepath.Glob(filepath.Join(outside, "*")); len(m) != 1 {
		t.Errorf("files created through a symlink: %v", m)
	}
}

func TestCreateMailbox(t *testing.T) {
	root := t.TempDir()
	s := newSink(t, root, nil)
	for _, mb := range []string{"A/B/C", "A", "A/B/C"} {
		if err := s.CreateMailbox(context.Background(), mb); err != nil {
			t.Fatalf("CreateMailbox(%q) = %v", mb, err)
		}
	}
	src, err := mboxsrc.New(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	boxes, err := src.Mailboxes(context.Background())
	if err != nil || fmt.Sprint(boxes) != "[A A/B/C]" {
		t.Fatalf("Mailboxes() = %v, %v; want [A A/B/C]", boxes, err)
	}
}

func TestNewRefusesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.mbox")
	os.WriteFile(file, nil, 0o600)
	_, err := New(context.Background(), Config{Root: file}, nil)
	var ce *mail.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("New(a file) = %v, want a *mail.ConfigError", err)
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want Config
		bad  bool
	}{
		{raw: "mbox:///srv/mail", want: Config{Root: "/srv/mail"}},
		{raw: "mbox:/srv/mail?lockwait=30s", want: Config{Root: "/srv/mail", LockWait: 30 * time.Second}},
		{raw: "mbox:/srv/mail?lockwait=0s", want: Config{Root: "/srv/mail", LockWait: -1}},
		{raw: "mbox:/srv/mail?lockwait=soon", bad: true},
		{raw: "mbox:/srv/mail?sync=1", bad: true},
		{raw: "mbox://host/srv/mail", bad: true},
	} {
		u, err := url.Parse(c.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseURL(u)
		var ce *mail.ConfigError
		if c.bad != errors.As(err, &ce) || (!c.bad && (err != nil || got != c.want)) {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v (error: %v)", c.raw, got, err, c.want, c.bad)
		}
	}
}

func TestRegister(t *testing.T) {
	r := mail.NewRegistry()
	Register(r)
	root := filepath.Join(t.TempDir(), "new")
	s, err := r.OpenSink(context.Background(), "mbox:"+root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		t.Fatalf("sink did not create its folder: %v", err)
	}
}

// BenchmarkPut measures appending 16 KiB messages with a Commit every 100.
func BenchmarkPut(b *testing.B) {
	s := newSink(b, b.TempDir(), nil)
	body := bytes.Repeat([]byte("From quoted line and some text to fill it up\r\n"), 16<<10/47)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Put(context.Background(), env("INBOX", i), bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
		if i%100 == 99 {
			commit(b, s)
		}
	}
	commit(b, s)
}

func TestPruneKeys(t *testing.T) {
	keys := map[string]int64{"a": 0, "b": 10, "c": 20, "d": 30}
	pruneKeys(keys, 2)
	if len(keys) != 2 || keys["c"] != 20 || keys["d"] != 30 {
		t.Fatalf("pruneKeys kept %v, want the two newest", keys)
	}
}

// waitUnlocked returns once mu is free: it takes the lock and gives it back.
func waitUnlocked(mu sync.Locker) {
	mu.Lock()
	defer mu.Unlock()
}
