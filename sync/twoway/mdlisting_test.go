package twoway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestRunMaildirEvidenceAfterOwnWrites: a sync that copies into a Maildir
// folder records the stamps its own writes left (evidenceAfter), so the
// next sync skips the folder instead of listing it again; a change another
// client makes is still listed: after the sync (the stamps move), after it
// in the same clock tick (the stamps put back: the names' hash finds it),
// or during it (the readdir at the end finds a name the records do not
// have, so the stamps before the listing are kept: the negative control of
// that proof).
func TestRunMaildirEvidenceAfterOwnWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		when   string // when a client flags token 1: "", "after", "same tick", "during"
		listed string // how the sync after the copying one lists INBOX
	}{
		{"nothing else", "", ListingSkipped},
		{"a client's flag after", "after", ListingFull},
		{"a client's flag after, same tick", "same tick", ListingFull},
		{"a client's flag during", "during", ListingFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
			a := newMemStore("a", "INBOX")
			a.add("INBOX", 1)
			a.add("INBOX", 2)
			da := newDeltaStore(a)
			syncMaildirStore(t, da, root, dir)
			ageMaildir(t, root)
			syncMaildirStore(t, da, root, dir)
			flag := func() {
				p := maildirFile(t, root, 1)
				base, _, _ := strings.Cut(filepath.Base(p), ":")
				mustDo(t, os.Rename(p, filepath.Join(root, "cur", base+":2,F")))
			}
			a.add("INBOX", 3)
			opt := RunOptions{}
			if tc.when == "during" {
				opt.step = func(string) error {
					if p := maildirFile(t, root, 1); !strings.HasSuffix(p, ",F") {
						flag()
					}
					return nil
				}
			}
			res := syncMaildirStoreOpt(t, da, root, dir, opt)
			if res.Side[B].Copied != 1 || res.Listing["INBOX"] != ListingIncremental {
				t.Fatalf("the copying sync: listed %v, did %+v", res.Listing, res.Side)
			}
			switch tc.when {
			case "after":
				flag()
			case "same tick":
				var times [2]time.Time
				for i, d := range []string{"cur", "new"} {
					fi, err := os.Stat(filepath.Join(root, d))
					mustDo(t, err)
					times[i] = fi.ModTime()
				}
				flag()
				for i, d := range []string{"cur", "new"} {
					mustDo(t, os.Chtimes(filepath.Join(root, d), times[i], times[i]))
				}
			}
			res = syncMaildirStore(t, da, root, dir)
			if got := res.Listing["INBOX"]; got != tc.listed {
				t.Fatalf("the sync after listed INBOX %q, want %q", got, tc.listed)
			}
			want := `1:,2:,3:`
			if tc.when != "" {
				want = `1:\Flagged,2:,3:`
			}
			if got := a.describe()["INBOX"]; got != want {
				t.Fatalf("A's INBOX holds %s, want %s", got, want)
			}
		})
	}
}

// syncMaildirStoreOpt is syncMaildirStore with options.
func syncMaildirStoreOpt(t *testing.T, a *deltaStore, root, dir string, opt RunOptions) *Result {
	t.Helper()
	b, done := maildirSide(t, root, filepath.Join(dir, "quarantine"))
	defer done()
	st := openState(t, filepath.Join(dir, "state"), false)
	defer st.Close()
	res, err := Run(context.Background(), [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, b}, st, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestMaildirEvidenceSettles: racy evidence kept with its names' hash is
// taken again while its stamps stay the same; once they are old enough,
// and the hash is the recorded one, it offers the stamps alone (settled)
// for the run to keep, so later runs read no names. A rename in the same
// tick as the stamps (times put back) changes the hash: no settling, and
// the folder is listed (the negative control).
func TestMaildirEvidenceSettles(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cur", "new", "tmp"} {
		mustDo(t, os.Mkdir(filepath.Join(root, d), 0o700))
	}
	p := filepath.Join(root, "cur", "1700000000.a.host:2,")
	mustDo(t, os.WriteFile(p, tokenBody(1), 0o600))
	now := time.Now()
	tick := now.Add(time.Hour) // racy at now however slow the machine
	back := func() {
		for _, d := range []string{"cur", "new"} {
			mustDo(t, os.Chtimes(filepath.Join(root, d), tick, tick))
		}
	}
	back()
	pending, _ := maildirEvidence(root, "INBOX", now, "")
	if _, ok := pendingHash(pending); !ok {
		t.Fatalf("racy evidence %q waits for no hash", pending)
	}
	h, err := nameHash(context.Background(), root)
	mustDo(t, err)
	recorded := pending + h
	stamps, _, _ := strings.Cut(recorded, "#")
	for _, tc := range []struct {
		name    string
		at      time.Time
		rename  bool
		same    bool   // the evidence is the recorded one
		settled string // the stamps alone, when they settled
	}{
		{"still racy", now, false, true, ""},
		{"settled", tick.Add(time.Hour), false, true, stamps},
		{"renamed in the same tick", tick.Add(time.Hour), true, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rename {
				mustDo(t, os.Rename(p, p+"F"))
				back()
			}
			ev, settled := maildirEvidence(root, "INBOX", tc.at, recorded)
			if (ev == recorded) != tc.same || settled != tc.settled {
				t.Fatalf("maildirEvidence = %q, %q; want the recorded one %v, settled %q", ev, settled, tc.same, tc.settled)
			}
		})
	}
}

// TestRunMaildirEvidenceAfterMoveOut: a move applied in one folder's pass
// (into INBOX) takes a file out of a folder applied before it (Archive):
// the proof at the end of the run checks Archive against its records after
// the move, not those its own apply left, so the sync after skips both.
func TestRunMaildirEvidenceAfterMoveOut(t *testing.T) {
	root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	a := newMemStore("a", "Archive", "INBOX")
	a.add("Archive", 1)
	a.add("Archive", 2)
	a.add("INBOX", 3)
	da := newDeltaStore(a)
	syncMaildirStore(t, da, root, dir)
	ageMaildir(t, root)
	syncMaildirStore(t, da, root, dir)
	a.moveTo("Archive", a.find("Archive", 1), "INBOX")
	if res := syncMaildirStore(t, da, root, dir); res.Side[B].Moved != 1 {
		t.Fatalf("the moving sync did %+v", res.Side)
	}
	res := syncMaildirStore(t, da, root, dir)
	for _, f := range []string{"Archive", "INBOX"} {
		if got := res.Listing[f]; got != ListingSkipped {
			t.Errorf("the sync after listed %s %q, want %q", f, got, ListingSkipped)
		}
	}
}
