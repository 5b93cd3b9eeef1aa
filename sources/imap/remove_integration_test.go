package imap

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// dovecotState returns what mailbox holds on Dovecot: body -> flags.
func dovecotState(t *testing.T, d *mailtest.Dovecot, user, pw, mailbox string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range d.Fetch(t, user, pw)[mailbox] {
		var fl []string
		for _, f := range m.Flags {
			if f != `\Recent` {
				fl = append(fl, string(f))
			}
		}
		sort.Strings(fl)
		out[strings.TrimSpace(string(m.Body))] = strings.Join(fl, " ")
	}
	return out
}

func removeSeed(names ...string) []mailtest.SeedMessage {
	var out []mailtest.SeedMessage
	for _, n := range names {
		out = append(out, mailtest.SeedMessage{Body: []byte(n), Date: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)})
	}
	return out
}

// TestDovecotC9RemoveKeepsOthersDeleted: on a real server with UIDPLUS,
// Remove expunges exactly its messages; a message another client marked
// \Deleted during the run, and one delivered already \Deleted, survive.
// Also across mailboxes in one call, and idempotent on a rerun.
func TestDovecotC9RemoveKeepsOthersDeleted(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", removeSeed("a", "b", "c", "d"))
	d.Seed(t, user, pw, "Archiv/Übersicht", removeSeed("x", "y"))
	s := dovecotSource(t, d, user, pw, false, 2)
	inbox, archive := listBox(t, s, "INBOX"), listBox(t, s, "Archiv/Übersicht")

	other := d.Dial(t, user, pw)
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	_, cUID, _ := parseID(inbox[2].ID)
	if err := other.Store(imap.UIDSetNum(cUID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	d.Seed(t, user, pw, "INBOX", []mailtest.SeedMessage{{Body: []byte("e"), Flags: []imap.Flag{imap.FlagDeleted}}})

	batch := []mail.Envelope{inbox[0], archive[0], inbox[1]}
	for run := 1; run <= 2; run++ {
		if err := s.Remove(context.Background(), batch); err != nil {
			t.Fatalf("Remove #%d = %v", run, err)
		}
	}
	if got, want := dovecotState(t, d, user, pw, "INBOX"), map[string]string{"c": `\Deleted`, "d": "", "e": `\Deleted`}; !reflect.DeepEqual(got, want) {
		t.Errorf("INBOX holds %q, want %q", got, want)
	}
	if got, want := dovecotState(t, d, user, pw, "Archiv/Übersicht"), map[string]string{"y": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("Archiv/Übersicht holds %q, want %q", got, want)
	}
}

// TestDovecotA7RemoveInterruptedAfterStore: killed between UID STORE and
// UID EXPUNGE, the messages stay flagged \Deleted on Dovecot; a new source
// lists them under the same IDs without \Deleted and removes them.
func TestDovecotA7RemoveInterruptedAfterStore(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", removeSeed("a", "b", "c"))
	s := dovecotSource(t, d, user, pw, false, 1)
	envs := listBox(t, s, "INBOX")
	crash := errors.New("killed")
	s.rm.afterStore = func(string) error { s.rm.cn.kill(); return crash }
	if err := s.Remove(context.Background(), envs[:2]); !errors.Is(err, crash) {
		t.Fatalf("Remove = %v, want the simulated crash", err)
	}
	s.Close()
	if got, want := dovecotState(t, d, user, pw, "INBOX"), map[string]string{"a": `\Deleted`, "b": `\Deleted`, "c": ""}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the crash INBOX holds %q, want %q", got, want)
	}
	s2 := dovecotSource(t, d, user, pw, false, 1)
	again := listBox(t, s2, "INBOX")
	for i, e := range again {
		if e.ID != envs[i].ID || len(e.Flags) != 0 {
			t.Errorf("rerun lists %s with flags %q, want %s with none", e.ID, e.Flags, envs[i].ID)
		}
	}
	if err := s2.Remove(context.Background(), again[:2]); err != nil {
		t.Fatalf("rerun Remove = %v", err)
	}
	if got, want := dovecotState(t, d, user, pw, "INBOX"), map[string]string{"c": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the rerun INBOX holds %q, want %q", got, want)
	}
}

// TestDovecotRemoveAfterUIDValidityChange: the mailbox is recreated between
// listing and Remove, so the old IDs' UIDs now name new messages; none of
// them may be deleted.
func TestDovecotRemoveAfterUIDValidityChange(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "Box", removeSeed("old1", "old2"))
	s := dovecotSource(t, d, user, pw, false, 1)
	envs := listBox(t, s, "Box")
	d.Doveadm(t, "mailbox", "delete", "-u", user, "Box")
	d.Seed(t, user, pw, "Box", removeSeed("new1", "new2"))
	err := s.Remove(context.Background(), envs)
	if !errors.Is(err, mail.ErrNotFound) {
		t.Fatalf("Remove(old IDs) = %v, want mail.ErrNotFound", err)
	}
	if got, want := dovecotState(t, d, user, pw, "Box"), map[string]string{"new1": "", "new2": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("Box holds %q, want %q: %s", got, want, fmt.Sprint(err))
	}
}
