package maildir

import (
	"maps"
	"path/filepath"
	stdsync "sync"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// listFS is the real file system, counting the listings of message
// directories (cur/ and new/) by folder directory.
type listFS struct {
	osFS
	mu    stdsync.Mutex
	lists map[string]int
}

func (f *listFS) ReadDirNames(dir string) ([]string, error) {
	f.count(dir)
	return f.osFS.ReadDirNames(dir)
}

func (f *listFS) WalkNames(dir string, fn func(string) bool) error {
	f.count(dir)
	return f.osFS.WalkNames(dir, fn)
}

func (f *listFS) count(dir string) {
	if b := filepath.Base(dir); b == "cur" || b == "new" {
		f.mu.Lock()
		f.lists[filepath.Dir(dir)]++
		f.mu.Unlock()
	}
}

func (f *listFS) listed() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.lists)
}

// TestOpenListsNoFolder (issue 11): opening the sink and making folders
// that exist read none of their message names, so a nightly run that
// stores nothing costs nothing per message stored before. Negative
// control: a Put into a folder looks at what it holds (that folder only).
func TestOpenListsNoFolder(t *testing.T) {
	root := t.TempDir()
	first := newTestSink(t, root, nil)
	for i, mb := range []string{"INBOX", "Work", "INBOX"} {
		put(t, first, mail.Envelope{Mailbox: mb, Key: "k" + string(rune('a'+i))}, "Subject: x\r\n\r\nbody\r\n")
	}
	commit(t, first)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	fsys := &listFS{lists: map[string]int{}}
	s := newTestSink(t, root, fsys)
	for _, mb := range []string{"INBOX", "Work"} {
		if err := s.CreateMailbox(ctx, mb); err != nil {
			t.Fatal(err)
		}
		if held, err := s.HoldsAny(ctx, mb); err != nil || !held {
			t.Fatalf("HoldsAny(%s) = %v, %v; want true", mb, held, err)
		}
	}
	if got := fsys.listed(); len(got) != 0 {
		t.Errorf("New, CreateMailbox and HoldsAny listed the message directories of %v; want none", got)
	}

	put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "ka"}, "Subject: x\r\n\r\nbody\r\n") // stored (in new/): found by a scan
	put(t, s, mail.Envelope{Mailbox: "INBOX", Key: "kz"}, "Subject: y\r\n\r\nbody\r\n")
	commit(t, s)
	if got := fsys.listed(); len(got) != 1 || got[root] == 0 {
		t.Errorf("two Puts into INBOX listed the message directories of %v, want INBOX's (%s) only", got, root)
	}
	if n := len(files(t, root, "cur")) + len(files(t, root, "new")); n != 3 {
		t.Errorf("INBOX holds %d messages, want 3 (the stored key found, not written twice)", n)
	}
}
