package twoway

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestHeldDirsSyncedOnceBeforeRecords: a folder whose flag write and
// deletion on the Maildir side both rename out of its new/ fsyncs each
// directory once (the hold, apply.go changes), and no record of either
// change exists before those fsyncs: at each the state still holds the old
// base and the deleted message's record. When the fsync fails (EIO),
// the run stops and the records are dropped: even the state's Close,
// which flushes what is buffered, writes neither, and the rerun converges.
// Breaking the order (putting the records as the changes return, before
// the held fsync) fails both cases.
func TestHeldDirsSyncedOnceBeforeRecords(t *testing.T) {
	for _, fail := range []bool{false, true} {
		name := "fsync"
		if fail {
			name = "fsync fails"
		}
		t.Run(name, func(t *testing.T) {
			root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
			a := newMemStore("a", "INBOX")
			for tok := 1; tok <= 4; tok++ {
				a.add("INBOX", tok)
			}
			syncMaildir(t, a, root, dir, RunOptions{})
			id1, id2 := a.find("INBOX", 1), a.find("INBOX", 2)
			a.setFlagsOf("INBOX", 1, mail.FlagSeen)
			a.removeTok("INBOX", 2)
			b, done := maildirSide(t, root, filepath.Join(dir, "quarantine"))
			defer done()
			st := openState(t, filepath.Join(dir, "state"), false)
			fo, err := st.Folder("INBOX")
			if err != nil {
				t.Fatal(err)
			}
			before, _ := fo.Get(id1)
			syncs := map[string]int{} // the Maildir's directories fsynced, and how often
			syncDir = func(d string) error {
				syncs[d]++
				fo, err := st.Folder("INBOX")
				if err != nil {
					return err
				}
				if got, _ := fo.Get(id1); got.Flags != before.Flags || !fo.Has(id2) {
					t.Errorf("at the fsync of %s the state holds %+v (and token 2: %v): recorded before the renames were durable", d, got, fo.Has(id2))
				}
				if fail {
					return syscall.EIO
				}
				return mail.SyncDir(d)
			}
			defer func() { syncDir = mail.SyncDir }()
			_, err = Run(context.Background(), [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, b}, st, RunOptions{})
			if fail != (err != nil) || fail && !errors.Is(err, syscall.EIO) {
				t.Fatalf("Run = %v, want the fsync's error: %v", err, fail)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			for d, n := range syncs {
				if n > 1 {
					t.Errorf("%s fsynced %d times, want once (%v)", d, n, syncs)
				}
			}
			if len(syncs) == 0 {
				t.Error("no directory of the Maildir fsynced")
			}
			syncDir = mail.SyncDir
			st = openState(t, filepath.Join(dir, "state"), false)
			fo, err = st.Folder("INBOX")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := fo.Get(id1)
			if recorded := got.Flags != before.Flags; recorded == fail || fo.Has(id2) != fail {
				t.Errorf("after the run the state holds %+v (and token 2: %v), want the changes recorded: %v", got, fo.Has(id2), !fail)
			}
			st.Close()
			syncMaildir(t, a, root, dir, RunOptions{})
			want := map[string]string{"INBOX": `1:\Seen,3:,4:`}
			for _, got := range []map[string]string{describeMaildir(t, root), a.describe()} {
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("after the rerun: holds %v, want %v", got, want)
				}
			}
		})
	}
}
