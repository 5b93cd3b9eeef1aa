package twoway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunMaildirDeletionWaitsOnEditCheck: a Maildir file edited in place
// whose copy on A was deleted is copied again, never deleted (rule 4),
// whether the Maildir folder is rebuilt from the records (its directories'
// stamps did not move: an edit in place moves none) or listed by names
// (another file was renamed): neither stats every file, so statDoomed
// stats the one about to be deleted. The control: the same deletion of a
// file nobody edited reaches the Maildir.
func TestRunMaildirDeletionWaitsOnEditCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    bool
		rename  bool   // a flag change of token 1 moves cur/'s stamps
		listing string // how the Maildir's INBOX is listed
	}{
		{"edited, stamps unchanged", true, false, ListingIncremental},
		{"edited, listed by names", true, true, ListingFull},
		{"not edited, stamps unchanged (control)", false, false, ListingIncremental},
		{"not edited, listed by names (control)", false, true, ListingFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
			a := newMemStore("a", "INBOX")
			a.add("INBOX", 1)
			a.add("INBOX", 2)
			da := newDeltaStore(a) // listed by its changes: the listing mode is the Maildir's
			syncMaildirStore(t, da, root, dir)
			ageMaildir(t, root)
			syncMaildirStore(t, da, root, dir) // records the aged stamps
			p := maildirFile(t, root, 2)
			edited := append(tokenBody(2), "an edit by a mail client\r\n"...)
			if tc.edit {
				mustDo(t, os.WriteFile(p, edited, 0o600)) // in place: no directory changes
			}
			if tc.rename {
				q := maildirFile(t, root, 1)
				base, _, _ := strings.Cut(filepath.Base(q), ":")
				mustDo(t, os.Rename(q, filepath.Join(root, "cur", base+":2,S")))
			}
			a.removeTok("INBOX", 2)
			res := syncMaildirStore(t, da, root, dir)
			if got := res.Listing["INBOX"]; got != tc.listing {
				t.Fatalf("INBOX listed %q, want %q", got, tc.listing)
			}
			_, err := os.Stat(p)
			if tc.edit {
				if err != nil || res.Side[B].Deleted != 0 || res.Side[A].Copied != 1 {
					t.Fatalf("the edited file: stat %v, counts %+v; want it kept and copied to A", err, res.Side)
				}
				if got, _ := os.ReadFile(p); string(got) != string(edited) {
					t.Fatalf("the Maildir file holds %q", got)
				}
				return
			}
			if err == nil || res.Side[B].Deleted != 1 || res.Side[A].Copied != 0 {
				t.Fatalf("the file nobody edited: stat %v, counts %+v; want it deleted", err, res.Side)
			}
		})
	}
}

// TestRunMaildirListedByNames: a Maildir folder changed since its last
// pass is read by names, and only new files and those a judgement needs
// are stat'ed: an edit in place of a file nothing deletes waits for the
// next full listing (RunOptions.FullEvery), where it is copied again. The
// negative control of the narrowing is the full listing finding it.
func TestRunMaildirListedByNames(t *testing.T) {
	root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	a := newMemStore("a", "INBOX")
	a.add("INBOX", 1)
	a.add("INBOX", 2)
	syncMaildir(t, a, root, dir, RunOptions{})
	ageMaildir(t, root)
	syncMaildir(t, a, root, dir, RunOptions{})
	edited := append(tokenBody(2), "an edit by a mail client\r\n"...)
	mustDo(t, os.WriteFile(maildirFile(t, root, 2), edited, 0o600))
	q := maildirFile(t, root, 1)
	base, _, _ := strings.Cut(filepath.Base(q), ":")
	mustDo(t, os.Rename(q, filepath.Join(root, "cur", base+":2,F")))
	mustDo(t, os.WriteFile(filepath.Join(root, "new", "1700000000.client.host"), tokenBody(3), 0o600))
	res := syncMaildir(t, a, root, dir, RunOptions{})
	if res.Side[A].Copied != 1 || res.Side[A].Flagged != 1 || res.Side[B] != (Counts{}) {
		t.Fatalf("by names: counts %+v, want the new file copied and the flag set on A", res.Side)
	}
	res = syncMaildir(t, a, root, dir, RunOptions{FullEvery: 1})
	if res.Side[A].Copied != 1 || res.Side[A].Deleted != 1 {
		t.Fatalf("full: counts %+v, want the edited file copied again (its old copy deleted on A)", res.Side)
	}
	if got := a.describe()["INBOX"]; strings.Count(got, ",")+1 != 3 {
		t.Fatalf("A's INBOX holds %s, want 3 messages", got)
	}
}
