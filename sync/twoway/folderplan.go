package twoway

import (
	"fmt"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// renameShare is the share of a vanished folder's messages a new folder on
// the same side must hold to be taken for it, renamed.
const renameShare = 0.9

// removeOrRecreate decides, with --remove-folders, what happens to a folder
// the state knows that side missing deleted: the other side's copy is
// deleted when it is unchanged since the last sync; when it changed (new
// mail, flags) the deletion is called off and the folder is recreated on
// side missing with everything in it, so nothing is lost; when that cannot
// be told, it is left alone. It reports whether the folder's messages are
// planned (a recreation).
func (w *folderWork) removeOrRecreate(missing Side, keeps Keeps) bool {
	on := missing.Other()
	why, recreate := changedSince(w.in, on, keeps)
	switch {
	case why == "":
		w.out.Remove[on] = true
		w.out.RemoveMsgs = len(w.in.Side[on].Msgs)
		w.out.Skip = fmt.Sprintf("folder %q vanished from side %s: deleted on side %s too", w.in.Name, missing, on)
		return false
	case recreate:
		w.out.Create[missing], w.out.Recreate[missing], w.recreate = true, true, true
		w.out.Conflicts = append(w.out.Conflicts, fmt.Sprintf(
			"folder %q deleted on side %s while %s on side %s: recreated on side %s with everything in it", w.in.Name, missing, why, on, missing))
		return true
	}
	w.out.Skip = fmt.Sprintf("folder %q vanished from side %s and is not deleted on side %s: %s", w.in.Name, missing, on, why)
	w.out.Warnings = append(w.out.Warnings, w.out.Skip)
	return false
}

// changedSince says how folder f changed on side s since the last sync, ""
// when it did not: recreate is true for a change the other side must get
// (new mail, a flag change), false when the change cannot be told or
// carried (an incomplete listing, renumbered ids, a message out of scope).
// Flags the side cannot keep are not compared.
func changedSince(f *Folder, s Side, keeps Keeps) (why string, recreate bool) {
	l := &f.Side[s]
	switch {
	case l.Untrusted != "":
		return "its listing there is incomplete (" + l.Untrusted + ")", false
	case l.IDsReset:
		return "its ids there changed (UIDVALIDITY)", false
	}
	recs := make(map[mail.ID]state.Message, len(f.Base))
	for _, r := range f.Base {
		if id := sideID(r, s); id != "" && r.Src != "" && r.Dst != "" {
			recs[id] = r
		}
	}
	for i := range l.Msgs {
		m := &l.Msgs[i]
		r, ok := recs[m.ID]
		switch {
		case !ok && m.OutOfScope:
			return "it holds messages outside the sync's scope", false
		case !ok:
			return "it got new mail", true
		case r.FlagsKnown && !m.OutOfScope && !target(parseBase(r.Flags), setOf(m.Flags), keeps).equal(setOf(m.Flags)):
			return "flags changed in it", true
		}
	}
	return "", false
}

// followRenames finds the folders a side renamed: a folder the state knows
// that vanished from side x but is still on side y, and a folder new on
// side x (on neither y nor in the state) with the vanished folder's
// MAILBOXID where the server has them (RFC 8474), else holding at least
// renameShare of the vanished folder's messages, each the only match of
// the other. The
// match is by id where ids survive a rename (a Maildir base name; an IMAP
// UID on servers that keep UIDVALIDITY, as Dovecot does), else by
// (Message-ID, size, date). The two become one folder under the new name,
// with the old one's records and side y's listing of the old name, renamed
// on side y first: nothing is copied or deleted for it. A side that is not
// the store the state knows (SideInfo.Untrusted) renames nothing.
func followRenames(folders []Folder, sides [2]SideInfo) []Folder {
	if sides[A].Untrusted != "" || sides[B].Untrusted != "" {
		return folders
	}
	drop := map[int]bool{}
	for _, x := range []Side{A, B} {
		for g, n := range matchRenames(folders, x, drop) {
			folders[n] = renamed(&folders[g], &folders[n], x)
			drop[g] = true
		}
	}
	if len(drop) == 0 {
		return folders
	}
	out := make([]Folder, 0, len(folders)-len(drop))
	for i := range folders {
		if !drop[i] {
			out = append(out, folders[i])
		}
	}
	return out
}

// matchRenames returns, for side x, the index of each vanished folder with
// the index of the new folder it was renamed to.
func matchRenames(folders []Folder, x Side, drop map[int]bool) map[int]int {
	y := x.Other()
	var gone, fresh []int
	for i := range folders {
		f := &folders[i]
		switch {
		case drop[i] || f.rename != nil || strings.EqualFold(f.Name, "INBOX"):
		case f.Known && !f.Side[x].Exists && f.Side[y].Exists && (len(f.Base) > 0 || f.KnownMailboxIDs[x] != ""):
			gone = append(gone, i)
		case !f.Known && f.Side[x].Exists && !f.Side[y].Exists:
			fresh = append(fresh, i)
		}
	}
	cands := map[int][]int{} // vanished -> new folders holding its messages
	taken := map[int]int{}   // new folder -> how many vanished ones it matches
	for _, g := range gone {
		for _, n := range fresh {
			if sameFolder(&folders[g], &folders[n], x) {
				cands[g] = append(cands[g], n)
				taken[n]++
			}
		}
	}
	out := map[int]int{}
	for g, ns := range cands {
		if len(ns) == 1 && taken[ns[0]] == 1 {
			out[g] = ns[0]
		}
	}
	return dropNested(folders, y, out)
}

// dropNested drops the renames of folders that have subfolders on side y
// not renamed along with them: an IMAP server renames a mailbox's children
// with it (RFC 9051 §6.3.6), which would move a subfolder the other side
// kept in place. Such a folder is left as vanished, and the new one copied.
func dropNested(folders []Folder, y Side, renames map[int]int) map[int]int {
	moved := map[string]string{}
	for g, n := range renames {
		moved[folders[g].Name] = folders[n].Name
	}
	for g, n := range renames {
		from, to := folders[g].Name+"/", folders[n].Name+"/"
		for i := range folders {
			name := folders[i].Name
			if strings.HasPrefix(name, from) && folders[i].Side[y].Exists && moved[name] != to+name[len(from):] {
				delete(renames, g)
				break
			}
		}
	}
	return renames
}

// sameFolder reports whether the new folder n of side x is the vanished
// folder g renamed: by MAILBOXID where side x's server gave one to both
// (RFC 8474: it stays with a folder across RENAME, a new folder gets
// another), so even an empty folder, or one that lost most of its
// messages, is followed and a new folder holding copies of g's messages
// is not taken for it; else by holding most of g's messages.
func sameFolder(g, n *Folder, x Side) bool {
	if was, now := g.KnownMailboxIDs[x], n.MailboxIDs[x]; was != "" && now != "" {
		return was == now
	}
	return holdsMost(g, n, x)
}

// holdsMost reports whether folder n's listing on side x holds at least
// renameShare of the messages the state records in folder g.
func holdsMost(g, n *Folder, x Side) bool {
	byID, byKey, total := renameMatches(g, n, x)
	return total > 0 && float64(byID+byKey) >= renameShare*float64(total)
}

// renameMatches counts the records of folder g (those with both ids) and
// how many of them folder n lists on side x, by id and else by
// (Message-ID, size, date).
func renameMatches(g, n *Folder, x Side) (byID, byKey, total int) {
	ids := map[mail.ID]bool{}
	keys := map[string]int{}
	for i := range n.Side[x].Msgs {
		m := &n.Side[x].Msgs[i]
		ids[m.ID] = true
		if k := m.key(); k != "" {
			keys[k]++
		}
	}
	for _, r := range g.Base {
		if r.Src == "" || r.Dst == "" {
			continue
		}
		total++
		k := msgKey(r.MsgID, r.Size, r.Date)
		switch {
		case ids[sideID(r, x)]:
			byID++
		case k != "" && keys[k] > 0:
			keys[k]--
			byKey++
		}
	}
	return byID, byKey, total
}

// renamed is the folder made of vanished folder g and the folder n side x
// renamed it to. When side x's ids did not survive the rename (a server
// that gives a renamed mailbox a new UIDVALIDITY: the match was by
// Message-ID) the folder is merged as on a first sync: its records would
// make every message look deleted on one side and new on the other.
func renamed(g, n *Folder, x Side) Folder {
	y := x.Other()
	f := Folder{Name: n.Name, Known: true, Base: g.Base, rename: &Rename{On: y, From: g.Name}}
	f.Side[x], f.Side[y] = n.Side[x], g.Side[y]
	byID, byKey, total := renameMatches(g, n, x)
	if g.KnownMailboxIDs[x] != "" && n.MailboxIDs[x] != "" {
		// Found by MAILBOXID, the new name may hold few of the records:
		// the ids survived when they name most of what it holds of them.
		total = byID + byKey
	}
	if float64(byID) < renameShare*float64(total) {
		f.Side[x].IDsReset = true
	}
	return f
}
