package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// rmServer is go-imap's in-memory server in plain text with chosen
// capabilities (without UIDPLUS it is the C9 server), counting the
// EXPUNGE commands without a UID set that any client sent.
type rmServer struct {
	addr        string
	user        *imapmemserver.User
	plainExpOps atomic.Int32
}

// countingSession records plain EXPUNGE (uids == nil) and serves the rest
// from the memory server.
type countingSession struct {
	imapserver.SessionIMAP4rev2
	srv *rmServer
}

func (s *countingSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if uids == nil {
		s.srv.plainExpOps.Add(1)
	}
	return s.SessionIMAP4rev2.Expunge(w, uids)
}

func startRemoveServer(t *testing.T, caps imap.CapSet) *rmServer {
	t.Helper()
	mem, user := mailtest.NewMemIMAP(t, testUser, testPass)
	if err := user.Create("Archive", nil); err != nil {
		t.Fatal(err)
	}
	r := &rmServer{user: user}
	ln := mailtest.Listen(t)
	mailtest.ServeIMAP(t, mem, imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &countingSession{SessionIMAP4rev2: mem.NewSession().(imapserver.SessionIMAP4rev2), srv: r}, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
	}, ln)
	r.addr = ln.Addr().String()
	return r
}

// seed appends one message per subject to box.
func (r *rmServer) seed(t *testing.T, box string, subjects ...string) {
	t.Helper()
	for _, s := range subjects {
		body := fmt.Sprintf("Subject: %s\r\nMessage-ID: <%s@x>\r\n\r\nbody %s\r\n", s, s, s)
		if _, err := r.user.Append(box, literal{strings.NewReader(body)}, &imap.AppendOptions{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
	}
}

// source opens a Source on the server; its log goes to the returned buffer.
func (r *rmServer) source(t *testing.T, unsafe bool) (*Source, *lockedBuffer) {
	t.Helper()
	var logs lockedBuffer
	cfg := addrConfig(t, r.addr, TLSStartTLS)
	cfg.AllowUnsafeExpunge = unsafe
	o := plainOpts()
	o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(context.Background(), cfg, o)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, &logs
}

// client is another IMAP client of the same account, with box selected.
func (r *rmServer) client(t *testing.T, box string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(r.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select(box, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// state returns what box holds, seen by another client: subject -> flags.
func (r *rmServer) state(t *testing.T, box string) map[string]string {
	t.Helper()
	c := r.client(t, box)
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
	if err != nil && !strings.Contains(err.Error(), "No matching messages") {
		// An empty mailbox answers 1:* with an error on some servers.
		t.Fatalf("FETCH 1:* = %v", err)
	}
	out := map[string]string{}
	for _, m := range msgs {
		var fl []string
		for _, f := range m.Flags {
			if f != `\Recent` {
				fl = append(fl, string(f))
			}
		}
		sort.Strings(fl)
		out[m.Envelope.Subject] = strings.Join(fl, " ")
	}
	return out
}

// markDeleted flags the messages with these UIDs \Deleted from another
// client: "another client marks an unrelated message \Deleted" (C9).
func (r *rmServer) markDeleted(t *testing.T, box string, uids ...imap.UID) {
	t.Helper()
	c := r.client(t, box)
	if err := c.Store(imap.UIDSetNum(uids...), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func uidOf(t *testing.T, e mail.Envelope) imap.UID {
	t.Helper()
	_, uid, ok := parseID(e.ID)
	if !ok {
		t.Fatalf("parseID(%q) failed", e.ID)
	}
	return uid
}

// TestC9RemoveExpungesOnlyOwnMessages removes two of four listed messages
// after another client marked a third \Deleted and delivered a fifth
// already \Deleted. With UIDPLUS (or IMAP4rev2) exactly the two go; without
// it (C9) nothing is expunged, the two stay flagged \Deleted, the warning
// comes once per mailbox however often Remove runs, and no plain EXPUNGE is
// ever sent, unless AllowUnsafeExpunge, whose plain EXPUNGE takes the other
// client's messages too (why it is off by default).
func TestC9RemoveExpungesOnlyOwnMessages(t *testing.T) {
	rev1 := imap.CapSet{imap.CapIMAP4rev1: {}}
	for _, tc := range []struct {
		name      string
		caps      imap.CapSet
		unsafe    bool
		want      map[string]string
		warnings  int
		plainExps bool
	}{
		{"UIDPLUS", imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, false,
			map[string]string{"c": `\Deleted`, "d": "", "e": `\Deleted`}, 0, false},
		{"IMAP4rev2", imap.CapSet{imap.CapIMAP4rev2: {}}, false,
			map[string]string{"c": `\Deleted`, "d": "", "e": `\Deleted`}, 0, false},
		{"no UIDPLUS", rev1, false,
			map[string]string{"a": `\Deleted`, "b": `\Deleted`, "c": `\Deleted`, "d": "", "e": `\Deleted`}, 1, false},
		{"no UIDPLUS, unsafe expunge allowed", rev1, true,
			map[string]string{"d": ""}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRemoveServer(t, tc.caps)
			r.seed(t, "INBOX", "a", "b", "c", "d")
			s, logs := r.source(t, tc.unsafe)
			envs := listBox(t, s, "INBOX")
			if len(envs) != 4 {
				t.Fatalf("listed %d messages, want 4", len(envs))
			}
			// During the run another client marks c \Deleted and a new
			// message arrives already \Deleted.
			r.markDeleted(t, "INBOX", uidOf(t, envs[2]))
			if _, err := r.user.Append("INBOX", literal{strings.NewReader("Subject: e\r\n\r\ne\r\n")}, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDeleted}}); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for run := 0; run < 2; run++ { // a rerun removes the same again
				if err := s.Remove(ctx, envs[:2]); err != nil {
					t.Fatalf("Remove(a, b) #%d = %v", run+1, err)
				}
			}
			if got := r.state(t, "INBOX"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("INBOX holds %q, want %q", got, tc.want)
			}
			if n := strings.Count(logs.String(), "expunge skipped: no UIDPLUS"); n != tc.warnings {
				t.Errorf("%d \"expunge skipped: no UIDPLUS\" warnings, want %d; log:\n%s", n, tc.warnings, logs)
			}
			if got := r.plainExpOps.Load() > 0; got != tc.plainExps {
				t.Errorf("plain EXPUNGE sent: %v, want %v", got, tc.plainExps)
			}
			// What is left flagged \Deleted lists without \Deleted: the
			// flag is a pending expunge here, not one to copy.
			for _, e := range listBox(t, s, "INBOX") {
				for _, f := range e.Flags {
					if f == mail.FlagDeleted {
						t.Errorf("List gave %s with flags %q, want \\Deleted dropped", e.ID, e.Flags)
					}
				}
			}
		})
	}
}

// TestRemoveChecksUIDValidity: an ID recorded under another UIDVALIDITY may
// name another message now, so it is not deleted and Remove says so with
// mail.ErrNotFound; the call's valid IDs are removed all the same.
func TestRemoveChecksUIDValidity(t *testing.T) {
	r := startRemoveServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}})
	r.seed(t, "INBOX", "a", "b")
	s, _ := r.source(t, false)
	envs := listBox(t, s, "INBOX")
	uidv, uid, _ := parseID(envs[1].ID)
	stale := envs[1]
	stale.ID = makeID(uidv+1, uid) // same UID, another UIDVALIDITY
	err := s.Remove(context.Background(), []mail.Envelope{stale, envs[0]})
	if !errors.Is(err, mail.ErrNotFound) || !strings.Contains(err.Error(), "UIDVALIDITY") {
		t.Fatalf("Remove(stale, a) = %v, want mail.ErrNotFound naming UIDVALIDITY", err)
	}
	if got, want := r.state(t, "INBOX"), map[string]string{"b": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("INBOX holds %q, want %q", got, want)
	}
	bad := envs[1]
	bad.ID = "not-an-id"
	if err := s.Remove(context.Background(), []mail.Envelope{bad}); !errors.Is(err, mail.ErrNotFound) {
		t.Errorf("Remove(%q) = %v, want mail.ErrNotFound", bad.ID, err)
	}
}

// TestA7RemoveInterruptedAfterStore: a run that dies between UID STORE and
// UID EXPUNGE leaves its messages flagged \Deleted. The next run lists them
// without that flag (so it never reaches a destination) and removes them
// by the same IDs; the other messages are untouched.
func TestA7RemoveInterruptedAfterStore(t *testing.T) {
	r := startRemoveServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}})
	r.seed(t, "INBOX", "a", "b", "c")
	s, _ := r.source(t, false)
	envs := listBox(t, s, "INBOX")
	crash := errors.New("killed")
	s.rm.afterStore = func(string) error {
		s.rm.cn.kill() // the process died: the connection drops
		return crash
	}
	if err := s.Remove(context.Background(), envs[:2]); !errors.Is(err, crash) {
		t.Fatalf("Remove = %v, want the simulated crash", err)
	}
	s.Close()
	want := map[string]string{"a": `\Deleted`, "b": `\Deleted`, "c": ""}
	if got := r.state(t, "INBOX"); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the crash INBOX holds %q, want %q", got, want)
	}

	s2, _ := r.source(t, false)
	again := listBox(t, s2, "INBOX")
	if len(again) != 3 {
		t.Fatalf("rerun lists %d messages, want 3", len(again))
	}
	for i, e := range again {
		if e.ID != envs[i].ID || len(e.Flags) != 0 {
			t.Errorf("rerun lists %s with flags %q, want %s with none", e.ID, e.Flags, envs[i].ID)
		}
	}
	if err := s2.Remove(context.Background(), again[:2]); err != nil {
		t.Fatalf("rerun Remove = %v", err)
	}
	if got, want := r.state(t, "INBOX"), map[string]string{"c": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the rerun INBOX holds %q, want %q", got, want)
	}
}

// TestRemoveDuringList removes each message from inside the List callback,
// as the engine does while the lister waits: Remove has its own connection
// and must not wait for the one List holds. Messages of a mailbox this
// source never listed, and of one that is gone, are handled too.
func TestRemoveDuringList(t *testing.T) {
	r := startRemoveServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}})
	r.seed(t, "INBOX", "a", "b", "c", "d", "e")
	r.seed(t, "Archive", "x", "y")
	s, _ := r.source(t, false)
	other, _ := r.source(t, false)
	archive := listBox(t, other, "Archive")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := 0
	err := s.List(ctx, "INBOX", func(e mail.Envelope) error {
		n++
		return s.Remove(ctx, []mail.Envelope{e})
	})
	if err != nil || n != 5 {
		t.Fatalf("List with Remove in the callback = %v after %d messages, want nil after 5", err, n)
	}
	if got := r.state(t, "INBOX"); len(got) != 0 {
		t.Errorf("INBOX still holds %q", got)
	}
	// s has never listed Archive (nor any mailbox but INBOX by name).
	if err := s.Remove(ctx, archive[:1]); err != nil {
		t.Fatalf("Remove(Archive message) = %v", err)
	}
	if got, want := r.state(t, "Archive"), map[string]string{"y": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("Archive holds %q, want %q", got, want)
	}
	gone := archive[1]
	gone.Mailbox = "Gone"
	if err := s.Remove(ctx, []mail.Envelope{gone}); err != nil {
		t.Errorf("Remove(message of a missing mailbox) = %v, want nil (nothing to delete)", err)
	}
}

// TestRemoveCancelledAndClosed: a cancelled context gives context.Canceled,
// a closed source mail.ErrClosed, and neither deletes anything.
func TestRemoveCancelledAndClosed(t *testing.T) {
	r := startRemoveServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}})
	r.seed(t, "INBOX", "a")
	s, _ := r.source(t, false)
	envs := listBox(t, s, "INBOX")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Remove(ctx, envs); !errors.Is(err, context.Canceled) {
		t.Errorf("Remove(cancelled) = %v, want context.Canceled", err)
	}
	s.Close()
	if err := s.Remove(context.Background(), envs); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("Remove after Close = %v, want mail.ErrClosed", err)
	}
	if got, want := r.state(t, "INBOX"), map[string]string{"a": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("INBOX holds %q, want %q", got, want)
	}
}

// TestA7TestHookAfterStore: the crash tests' hook (OpenOptions.AfterRemoveStore,
// cmd/mailferry's MAILFERRY_TEST_CRASH_IN_REMOVE) runs once per mailbox of a Remove, after
// the server confirmed UID STORE \Deleted and before UID EXPUNGE: at that
// moment another client sees exactly the messages being removed flagged
// \Deleted and still present.
func TestA7TestHookAfterStore(t *testing.T) {
	r := startRemoveServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}})
	r.seed(t, "INBOX", "a", "b", "c")
	r.seed(t, "Archive", "x", "y")
	s, _ := r.source(t, false)
	inbox, archive := listBox(t, s, "INBOX"), listBox(t, s, "Archive")
	var calls []string
	seen := map[string]map[string]string{}
	hook := func(mailbox string) {
		calls = append(calls, mailbox)
		seen[mailbox] = r.state(t, mailbox)
	}
	s.o.AfterRemoveStore = hook
	if err := s.Remove(context.Background(), []mail.Envelope{inbox[0], archive[1], inbox[1]}); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if want := []string{"INBOX", "Archive"}; !reflect.DeepEqual(calls, want) {
		t.Fatalf("the hook ran for %q, want %q", calls, want)
	}
	want := map[string]map[string]string{
		"INBOX":   {"a": `\Deleted`, "b": `\Deleted`, "c": ""},
		"Archive": {"x": "", "y": `\Deleted`},
	}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("inside the window the mailboxes held %q, want %q", seen, want)
	}
	if got, want := r.state(t, "INBOX"), map[string]string{"c": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Remove INBOX holds %q, want %q", got, want)
	}
}
