package twoway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/state"
)

// syncDovecotFolders runs one sync of the two accounts with --remove-folders
// as given.
func syncDovecotFolders(t *testing.T, d *mailtest.Dovecot, users [2][2]string, dir string, removeFolders bool) *Result {
	t.Helper()
	st, err := state.Open(dir, "imaps://"+users[0][0], "imaps://"+users[1][0], state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stores := [2]*Store{dovecotStore(t, d, users[0][0], users[0][1]), dovecotStore(t, d, users[1][0], users[1][1])}
	res, err := Run(context.Background(), stores, st, RunOptions{Plan: Options{RemoveFolders: removeFolders}})
	if err != nil {
		t.Fatalf("sync: %v (warnings %q)", err, res.Warnings)
	}
	return res
}

// TestDovecotFolderActions: two Dovecot users. A renames Work (IMAP
// RENAME): B's copy is renamed, nothing copied or deleted. A deletes Old:
// without --remove-folders B keeps it; with it, B's is deleted (IMAP
// DELETE). B deletes Keep while A gets new mail in it: recreated on B with
// everything. A sync right after changes nothing.
func TestDovecotFolderActions(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	var users [2][2]string
	for i := range users {
		users[i][0], users[i][1] = d.NewUser(t)
	}
	for folder, toks := range map[string][]int{"INBOX": {1}, "Work": {2, 3, 4}, "Old": {5, 6}, "Keep": {7}, "Extra": {8}} {
		d.Seed(t, users[0][0], users[0][1], folder, seedTokens(toks...))
	}
	dir := filepath.Join(t.TempDir(), "state")
	syncDovecotFolders(t, d, users, dir, false)

	a, b := d.Dial(t, users[0][0], users[0][1]), d.Dial(t, users[1][0], users[1][1])
	if err := a.Rename("Work", "Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete("Old").Wait(); err != nil {
		t.Fatal(err)
	}
	res := syncDovecotFolders(t, d, users, dir, false)
	if got := describeDovecot(t, d, users[1][0], users[1][1]); got["Old"] != "5:,6:" || got["Projects"] != "2:,3:,4:" || got["Work"] != "" {
		t.Fatalf("without --remove-folders B holds %v, want Old kept and Work renamed to Projects", got)
	}
	if res.Side[B] != (Counts{FoldersRenamed: 1}) || res.Side[A] != (Counts{}) {
		t.Fatalf("rename: counts %+v, want only B's rename (warnings %q)", res.Side, res.Warnings)
	}

	if err := b.Delete("Keep").Wait(); err != nil {
		t.Fatal(err)
	}
	d.Seed(t, users[0][0], users[0][1], "Keep", seedTokens(9))
	res = syncDovecotFolders(t, d, users, dir, true)
	want := map[string]string{"INBOX": "1:", "Projects": "2:,3:,4:", "Keep": "7:,9:", "Extra": "8:"}
	for _, u := range users {
		if got := describeDovecot(t, d, u[0], u[1]); !reflect.DeepEqual(got, want) {
			t.Fatalf("--remove-folders: %s holds %v, want %v (warnings %q)", u[0], got, want, res.Warnings)
		}
	}
	if w := (Counts{Copied: 2, Deleted: 2, FoldersCreated: 1, FoldersRemoved: 1}); res.Side[B] != w || res.SideConflicts != [2]int{0, 1} {
		t.Errorf("--remove-folders: counts %+v conflicts %v, want B %+v", res.Side, res.SideConflicts, w)
	}
	if res := syncDovecotFolders(t, d, users, dir, true); res.Side != [2]Counts{} {
		t.Fatalf("a sync right after did %+v (warnings %q)", res.Side, res.Warnings)
	}
}

// TestDovecotMaildirRenamedByClient: a mail client renames a folder of the
// Maildir side and its subfolder (their directories): the server's folders
// are renamed (one IMAP RENAME, which takes the subfolder along; the
// second finds it done), no body is transferred, nothing deleted; a
// message new in the renamed folder is copied.
func TestDovecotMaildirRenamedByClient(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", seedTokens(1))
	d.Seed(t, user, pw, "Work", seedTokens(2, 3, 4, 5, 6, 7, 8, 9, 10, 11))
	d.Seed(t, user, pw, "Work/Sub", seedTokens(20, 21))
	base := t.TempDir()
	root, dir := filepath.Join(base, "Maildir"), filepath.Join(base, "state")
	syncOnce := func() *Result {
		t.Helper()
		st, err := state.Open(dir, "imaps://"+user, "maildir:"+root, state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		md, done := maildirSide(t, root, filepath.Join(base, "quarantine"))
		defer done()
		res, err := Run(context.Background(), [2]*Store{dovecotStore(t, d, user, pw), md}, st, RunOptions{})
		if err != nil {
			t.Fatalf("sync: %v (warnings %q)", err, res.Warnings)
		}
		return res
	}
	syncOnce()
	for _, dirs := range [][2]string{{".Work", ".Projects"}, {".Work.Sub", ".Projects.Sub"}} {
		if err := os.Rename(filepath.Join(root, dirs[0]), filepath.Join(root, dirs[1])); err != nil {
			t.Fatal(err)
		}
	}
	writeTok(t, root, "Projects", 12)
	res := syncOnce()
	want := map[string]string{"INBOX": "1:", "Projects": "10:,11:,12:,2:,3:,4:,5:,6:,7:,8:,9:", "Projects/Sub": "20:,21:"}
	if got := describeDovecot(t, d, user, pw); !reflect.DeepEqual(got, want) {
		t.Fatalf("the server holds %v, want %v (warnings %q)", got, want, res.Warnings)
	}
	if w := (Counts{Copied: 1, FoldersRenamed: 2}); res.Side[A] != w || res.Side[B] != (Counts{}) {
		t.Errorf("counts %+v, want A %+v", res.Side, w)
	}
}

// TestDovecotFolderActionsKilled kills, at every durable step, a sync of a
// Dovecot account (A) and a Maildir (B) in which B renamed Work (IMAP
// RENAME on A), deleted Old (IMAP DELETE on A, --remove-folders), and got
// new mail in Keep, which A deleted (recreated on A). The rerun converges:
// nothing lost, nothing twice, nothing held back. make test kills before
// the folder-level steps only (TestRunFolderActionsConvergeAfterKill kills
// at every step, on two Maildirs); MAILFERRY_SOAK=1 at every step here too.
func TestDovecotFolderActionsKilled(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	counts := func(what string) bool {
		return os.Getenv("MAILFERRY_SOAK") == "1" || strings.HasPrefix(what, "rename ") ||
			strings.HasPrefix(what, "remove folder ") || strings.HasPrefix(what, "forget ")
	}
	want := map[string]string{"INBOX": "1:", "Projects": "2:,3:,4:", "Keep": "7:,9:", "Extra": "8:"}
	for k := 0; ; k++ {
		user, pw := d.NewUser(t)
		for folder, toks := range map[string][]int{"INBOX": {1}, "Work": {2, 3, 4}, "Old": {5, 6}, "Keep": {7}, "Extra": {8}} {
			d.Seed(t, user, pw, folder, seedTokens(toks...))
		}
		base := t.TempDir()
		root, dir := filepath.Join(base, "Maildir"), filepath.Join(base, "state")
		var run func(dir string, kill func(string) error) (*Result, error)
		run = func(dir string, kill func(string) error) (*Result, error) {
			t.Helper()
			st, err := state.Open(dir, "imaps://"+user, "maildir:"+root, state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			md, done := maildirSide(t, root, filepath.Join(base, "quarantine"))
			defer done()
			res, err := Run(context.Background(), [2]*Store{dovecotStore(t, d, user, pw), md}, st, RunOptions{Plan: Options{RemoveFolders: true}, step: kill})
			if kill == nil || !errors.Is(err, errStep) {
				_ = st.Close()
				return res, err
			}
			// What a kill leaves: the state's files as they are now.
			after := filepath.Join(t.TempDir(), "state")
			if cerr := os.CopyFS(after, os.DirFS(dir)); cerr != nil {
				t.Fatal(cerr)
			}
			_ = st.Close()
			return run(after, nil)
		}
		if _, err := run(dir, nil); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(root, ".Work"), filepath.Join(root, ".Projects")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(root, ".Old")); err != nil {
			t.Fatal(err)
		}
		writeTok(t, root, "Keep", 9)
		if err := d.Dial(t, user, pw).Delete("Keep").Wait(); err != nil {
			t.Fatal(err)
		}
		steps, crashed := 0, false
		if _, err := run(dir, func(what string) error {
			if !counts(what) {
				return nil
			}
			if steps++; steps > k {
				crashed = true
				return errStep
			}
			return nil
		}); err != nil {
			t.Fatalf("kill at step %d: rerun: %v", k, err)
		}
		for side, got := range []map[string]string{describeDovecot(t, d, user, pw), describeMaildir(t, root)} {
			for mb, msgs := range got {
				if msgs == "" && mb != "INBOX" {
					delete(got, mb) // the special folders Dovecot makes, empty
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("kill at step %d: side %s holds %v, want %v", k, Side(side), got, want)
			}
		}
		if !crashed {
			if k < 3 {
				t.Fatalf("only %d steps: the hook is not called", k)
			}
			t.Logf("killed at each of %d steps", k)
			return
		}
	}
}
