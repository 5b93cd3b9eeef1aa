package twoway

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// describeFolders is describePlan plus the folder-level actions.
func describeFolders(p *Plan) []string {
	var out []string
	for _, fp := range p.Folders {
		if fp.Rename != nil {
			out = append(out, fmt.Sprintf("%s: rename on %s from %s", fp.Name, fp.Rename.On, fp.Rename.From))
		}
		for s := range fp.Remove {
			if fp.Remove[s] {
				out = append(out, fmt.Sprintf("%s: remove on %s (%d messages)", fp.Name, Side(s), fp.RemoveMsgs))
			}
			if fp.RemoveHeld[s] {
				out = append(out, fmt.Sprintf("%s: hold removal on %s", fp.Name, Side(s)))
			}
		}
		for _, c := range fp.Conflicts {
			out = append(out, fp.Name+": conflict: "+c)
		}
	}
	return append(out, describePlan(p)...)
}

// vanishedFromA is folder name known with n messages (tokens from tok),
// gone from side A, still on B as the state knows it.
func vanishedFromA(name string, tok, n int) Folder {
	f := Folder{Name: name, Known: true, Side: [2]Listing{{}, {Exists: true}}}
	for i := tok; i < tok+n; i++ {
		f.Base = append(f.Base, tr(fmt.Sprintf("%s-a%d", name, i), fmt.Sprintf("%s-b%d", name, i), i, ``))
		f.Side[B].Msgs = append(f.Side[B].Msgs, tm(fmt.Sprintf("%s-b%d", name, i), i))
	}
	return f
}

func TestPlanFolderRemovals(t *testing.T) {
	rf := Options{RemoveFolders: true}
	changed := func(f Folder, change func(*Folder)) Folder {
		f.Side[B].Msgs = append([]Msg(nil), f.Side[B].Msgs...)
		change(&f)
		return f
	}
	work := vanishedFromA("Work", 1, 2)
	for _, c := range []struct {
		name    string
		folders []Folder
		opt     Options
		want    []string
		heldBk  bool
	}{
		{name: "default: a warning, nothing deleted", folders: []Folder{work},
			want: []string{`Work: skip`}},
		{name: "--remove-folders, unchanged on B: deleted on B", folders: []Folder{work, guardFolder("INBOX", 3, 0)}, opt: rf,
			want: []string{`Work: remove on B (2 messages)`, `Work: skip`}},
		{name: "--remove-folders, new mail on B: recreated on A with everything",
			folders: []Folder{changed(work, func(f *Folder) { f.Side[B].Msgs = append(f.Side[B].Msgs, tm("Work-b9", 9)) })}, opt: rf,
			want: []string{`Work: conflict: folder "Work" deleted on side A while it got new mail on side B: recreated on side A with everything in it`,
				`Work: create on A`, `Work: forget Work-a1`, `Work: forget Work-a2`,
				`Work: copy Work-b1 B>A []`, `Work: copy Work-b2 B>A []`, `Work: copy Work-b9 B>A []`}},
		{name: "--remove-folders, a flag changed on B: recreated on A",
			folders: []Folder{changed(work, func(f *Folder) { f.Side[B].Msgs[0].Flags = []mail.Flag{mail.FlagFlagged} })}, opt: rf,
			want: []string{`Work: conflict: folder "Work" deleted on side A while flags changed in it on side B: recreated on side A with everything in it`,
				`Work: create on A`, `Work: forget Work-a1`, `Work: forget Work-a2`,
				`Work: copy Work-b1 B>A [\Flagged]`, `Work: copy Work-b2 B>A []`}},
		{name: "--remove-folders, a keyword B cannot keep differs: unchanged, deleted",
			folders: []Folder{changed(work, func(f *Folder) { f.Side[B].Msgs[0].Flags = []mail.Flag{"$Junk"} }), guardFolder("INBOX", 3, 0)},
			opt:     Options{RemoveFolders: true, Sides: [2]SideInfo{{}, {Keeps: Keeps{mail.FlagSeen: true}}}},
			want:    []string{`Work: remove on B (2 messages)`, `Work: skip`}},
		{name: "--remove-folders, B's listing incomplete: left alone",
			folders: []Folder{changed(work, func(f *Folder) { f.Side[B].Untrusted = "cut" })}, opt: rf,
			want: []string{`Work: skip`}},
		{name: "--remove-folders, B holds a message out of scope: left alone",
			folders: []Folder{changed(work, func(f *Folder) {
				m := tm("Work-b9", 9)
				m.OutOfScope = true
				f.Side[B].Msgs = append(f.Side[B].Msgs, m)
			})}, opt: rf,
			want: []string{`Work: skip`}},
		{name: "--remove-folders, most paired folders vanished from A: held back, exit 10",
			folders: []Folder{vanishedFromA("F1", 1, 2), vanishedFromA("F2", 10, 2), guardFolder("INBOX", 3, 0)}, opt: rf, heldBk: true,
			want: []string{`F1: hold removal on B`, `F2: hold removal on B`, `F1: skip`, `F2: skip`, `held back`}},
		{name: "--remove-folders --force: most vanished, deleted",
			folders: []Folder{vanishedFromA("F1", 1, 2), vanishedFromA("F2", 10, 2), guardFolder("INBOX", 3, 0)},
			opt:     Options{RemoveFolders: true, Force: true},
			want:    []string{`F1: remove on B (2 messages)`, `F2: remove on B (2 messages)`, `F1: skip`, `F2: skip`}},
		{name: "--remove-folders, a folder of more than a quarter of the side's mail: held back",
			folders: []Folder{vanishedFromA("Big", 1, 30), guardFolder("INBOX", 40, 0), guardFolder("Sent", 40, 0)}, opt: rf, heldBk: true,
			want: []string{`Big: hold removal on B`, `Big: skip`, `held back`}},
		{name: "--remove-folders --no-delete: held, no exit 10",
			folders: []Folder{work}, opt: Options{RemoveFolders: true, NoDelete: true},
			want: []string{`Work: hold removal on B`, `Work: skip`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := MakePlan(c.folders, c.opt)
			got := describeFolders(p)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if p.HeldBack != c.heldBk {
				t.Errorf("HeldBack = %v, want %v", p.HeldBack, c.heldBk)
			}
		})
	}
}

// renamedOnA is folder from, known with n messages, renamed on side A to
// to: on A the new name lists keep of them (ids kept when sameIDs), on B
// the old name lists all.
func renamedOnA(from, to string, n, keep int, sameIDs bool) []Folder {
	old := Folder{Name: from, Known: true, Side: [2]Listing{{}, {Exists: true}}}
	nu := Folder{Name: to, Side: [2]Listing{{Exists: true}, {}}}
	for i := 1; i <= n; i++ {
		a, b := fmt.Sprintf("7.%d", i), fmt.Sprintf("b%d", i)
		old.Base = append(old.Base, tr(a, b, i, ``))
		old.Side[B].Msgs = append(old.Side[B].Msgs, tm(b, i))
		if i <= keep {
			if !sameIDs {
				a = fmt.Sprintf("8.%d", i)
			}
			nu.Side[A].Msgs = append(nu.Side[A].Msgs, tm(a, i))
		}
	}
	return []Folder{nu, old}
}

func TestPlanRenames(t *testing.T) {
	withFlag := renamedOnA("Old", "New", 10, 10, true)
	withFlag[0].Side[A].Msgs[0].Flags = []mail.Flag{mail.FlagSeen}
	withNew := renamedOnA("Old", "New", 10, 9, true)
	withNew[0].Side[A].Msgs = append(withNew[0].Side[A].Msgs, tm("7.99", 99))
	twice := append(renamedOnA("Old", "New", 10, 10, true), Folder{Name: "Copy", Side: [2]Listing{{Exists: true, Msgs: renamedOnA("Old", "New", 10, 10, true)[0].Side[A].Msgs}, {}}})
	inbox := renamedOnA("INBOX", "New", 10, 10, true)
	// Old/Sub stays Old/Sub on A while Old becomes New: renaming Old on an
	// IMAP B would take Old/Sub along.
	nested := append(renamedOnA("Old", "New", 2, 2, true), Folder{Name: "Old/Sub", Known: true, Side: both(nil, nil)})
	// Old/Sub renamed to New/Sub too: both renames are followed.
	nestedToo := append(renamedOnA("Old", "New", 2, 2, true), renamedOnA("Old/Sub", "New/Sub", 2, 2, true)...)
	for _, f := range nestedToo[2:] { // other messages than Old's
		for j := range f.Base {
			f.Base[j].Src, f.Base[j].MsgID = "9"+f.Base[j].Src, "sub"+f.Base[j].MsgID
		}
		for j := range f.Side[A].Msgs {
			f.Side[A].Msgs[j].ID, f.Side[A].Msgs[j].MsgID = "9"+f.Side[A].Msgs[j].ID, "sub"+f.Side[A].Msgs[j].MsgID
		}
		for j := range f.Side[B].Msgs {
			f.Side[B].Msgs[j].ID = "sub" + f.Side[B].Msgs[j].ID
		}
		for j := range f.Base {
			f.Base[j].Dst = "sub" + f.Base[j].Dst
		}
	}
	for _, c := range []struct {
		name    string
		folders []Folder
		opt     Options
		want    []string
	}{
		{name: "renamed on A, ids kept: renamed on B, nothing copied or deleted",
			folders: renamedOnA("Old", "New", 10, 10, true),
			want:    []string{`New: rename on B from Old`}},
		{name: "renamed on A and a flag set there: renamed, then the flag synced",
			folders: withFlag,
			want:    []string{`New: rename on B from Old`, `New: flags 7.1=b1 base [\Seen] A[]-[] B[\Seen]-[]`}},
		{name: "renamed on A, 9 of 10 kept and one new: renamed, one deleted, one copied",
			folders: withNew,
			want:    []string{`New: rename on B from Old`, `New: copy 7.99 A>B []`, `New: delete on B b10 conflict=false`}},
		{name: "renamed on A with new ids (matched by Message-ID): renamed and merged, nothing copied or deleted",
			folders: renamedOnA("Old", "New", 10, 10, false),
			want: []string{`New: rename on B from Old`, `New: forget 7.1`, `New: forget 7.10`, `New: forget 7.2`, `New: forget 7.3`, `New: forget 7.4`,
				`New: forget 7.5`, `New: forget 7.6`, `New: forget 7.7`, `New: forget 7.8`, `New: forget 7.9`,
				`New: pair 8.1=b1 []`, `New: pair 8.2=b2 []`, `New: pair 8.3=b3 []`, `New: pair 8.4=b4 []`, `New: pair 8.5=b5 []`,
				`New: pair 8.6=b6 []`, `New: pair 8.7=b7 []`, `New: pair 8.8=b8 []`, `New: pair 8.9=b9 []`, `New: pair 8.10=b10 []`}},
		{name: "8 of 10 (under 90 %): not a rename: the old one left alone, the new one created and copied",
			folders: renamedOnA("Old", "New", 10, 8, true),
			want: []string{`New: create on B`, `New: copy 7.1 A>B []`, `New: copy 7.2 A>B []`, `New: copy 7.3 A>B []`, `New: copy 7.4 A>B []`,
				`New: copy 7.5 A>B []`, `New: copy 7.6 A>B []`, `New: copy 7.7 A>B []`, `New: copy 7.8 A>B []`, `Old: skip`}},
		{name: "two new folders hold the messages: not a rename",
			folders: twice,
			want: []string{`New: create on B`, `New: copy 7.1 A>B []`, `New: copy 7.2 A>B []`, `New: copy 7.3 A>B []`,
				`New: copy 7.4 A>B []`, `New: copy 7.5 A>B []`, `New: copy 7.6 A>B []`, `New: copy 7.7 A>B []`, `New: copy 7.8 A>B []`, `New: copy 7.9 A>B []`, `New: copy 7.10 A>B []`,
				`Old: skip`, `Copy: create on B`, `Copy: copy 7.1 A>B []`, `Copy: copy 7.2 A>B []`, `Copy: copy 7.3 A>B []`,
				`Copy: copy 7.4 A>B []`, `Copy: copy 7.5 A>B []`, `Copy: copy 7.6 A>B []`, `Copy: copy 7.7 A>B []`, `Copy: copy 7.8 A>B []`, `Copy: copy 7.9 A>B []`, `Copy: copy 7.10 A>B []`}},
		{name: "INBOX is never taken for renamed",
			folders: inbox,
			want: []string{`New: create on B`, `New: copy 7.1 A>B []`, `New: copy 7.2 A>B []`, `New: copy 7.3 A>B []`,
				`New: copy 7.4 A>B []`, `New: copy 7.5 A>B []`, `New: copy 7.6 A>B []`, `New: copy 7.7 A>B []`, `New: copy 7.8 A>B []`, `New: copy 7.9 A>B []`, `New: copy 7.10 A>B []`, `INBOX: skip`}},
		{name: "a subfolder left in place: the parent's rename is not followed",
			folders: nested,
			want:    []string{`New: create on B`, `New: copy 7.1 A>B []`, `New: copy 7.2 A>B []`, `Old: skip`}},
		{name: "a parent renamed with its subfolder: both followed",
			folders: nestedToo,
			want:    []string{`New: rename on B from Old`, `New/Sub: rename on B from Old/Sub`}},
		{name: "a side that is not the store the state knows renames nothing",
			folders: renamedOnA("Old", "New", 2, 2, true), opt: Options{Sides: [2]SideInfo{{Untrusted: "another store"}, {}}},
			want: []string{`New: create on B`, `New: copy 7.1 A>B []`, `New: copy 7.2 A>B []`, `Old: create on A`, `Old: forget 7.1`, `Old: forget 7.2`,
				`Old: copy b1 B>A []`, `Old: copy b2 B>A []`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := describeFolders(MakePlan(c.folders, c.opt))
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// TestPlanRenamesByMailboxID: where side A's server has MAILBOXIDs (RFC
// 8474 OBJECTID), a folder's rename is followed by its MAILBOXID, whatever
// share of its messages the new name holds, and a new folder with another
// MAILBOXID is not taken for it; without them the >= 90 % rule decides
// (TestPlanRenames: 8 of 10 is no rename, 10 of 10 is).
func TestPlanRenamesByMailboxID(t *testing.T) {
	ids := func(folders []Folder, was, now string) []Folder {
		folders[0].MailboxIDs[A], folders[1].KnownMailboxIDs[A] = now, was
		return folders
	}
	empty := []Folder{{Name: "New", MailboxIDs: [2]string{"F1", ""}, Side: [2]Listing{{Exists: true}, {}}},
		{Name: "Old", Known: true, KnownMailboxIDs: [2]string{"F1", ""}, Side: [2]Listing{{}, {Exists: true}}}}
	for _, c := range []struct {
		name    string
		folders []Folder
		want    []string
	}{
		{"8 of 10 under the same MAILBOXID: renamed, the 2 others deleted",
			ids(renamedOnA("Old", "New", 10, 8, true), "F1", "F1"),
			[]string{`New: rename on B from Old`, `New: delete on B b10 conflict=false`, `New: delete on B b9 conflict=false`}},
		{"10 of 10 under another MAILBOXID: a new folder, the old one left alone",
			ids(renamedOnA("Old", "New", 2, 2, true), "F1", "F2"),
			[]string{`New: create on B`, `New: copy 7.1 A>B []`, `New: copy 7.2 A>B []`, `Old: skip`}},
		{"an empty folder renamed: followed",
			empty,
			[]string{`New: rename on B from Old`}},
		{"only the old MAILBOXID known (the server stopped saying): the share decides",
			ids(renamedOnA("Old", "New", 2, 2, true), "F1", ""),
			[]string{`New: rename on B from Old`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := describeFolders(MakePlan(c.folders, Options{}))
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}
