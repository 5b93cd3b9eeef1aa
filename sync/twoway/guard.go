package twoway

import (
	"fmt"
)

// guard holds back deletions: all of them with NoDelete (not an error);
// otherwise, unless Force, those of a side that deletes more than MaxDelete
// of a folder's known messages, or more than sideShare of its known
// messages over all folders, in both cases more than minGuard (so a small
// account can delete a few messages), or whose paired folders vanished for
// more than half. A held deletion keeps its record, so the message
// waits on the other side and is not copied back. Folder deletions
// (--remove-folders) count with the messages they hold and are held back
// with the side's deletions; the per-folder share does not apply to them
// (a deleted folder is all of its messages by definition).
func (p *planner) guard() {
	if p.opt.NoDelete {
		for i := range p.out.Folders {
			fp := &p.out.Folders[i]
			holdAll(fp, nil, "--no-delete")
			for _, on := range []Side{A, B} {
				holdRemoval(fp, on, "--no-delete")
			}
		}
		return
	}
	if p.opt.Force {
		return
	}
	known, deletes := p.counts()
	for i := range p.out.Folders {
		fp := &p.out.Folders[i]
		n := len(p.work[i].in.Base) + p.work[i].in.Omitted
		for _, on := range []Side{A, B} {
			d := countOn(fp.Deletes, on)
			if d > minGuard && float64(d) > p.opt.MaxDelete*float64(n) {
				p.hold(fp, on, fmt.Sprintf("side %s deleted %d of the %d messages folder %q held (more than %.0f%% and %d)",
					on.Other(), d, n, fp.Name, 100*p.opt.MaxDelete, minGuard))
			}
		}
	}
	for _, on := range []Side{A, B} {
		by := on.Other()
		var why string
		switch {
		case deletes[on] > minGuard && float64(deletes[on]) > sideShare*float64(known):
			why = fmt.Sprintf("side %s deleted %d of its %d known messages (more than %.0f%%)", by, deletes[on], known, 100*sideShare)
		case p.vanishedMost(by):
			why = fmt.Sprintf("more than half of the paired folders vanished from side %s", by)
		default:
			continue
		}
		for i := range p.out.Folders {
			p.hold(&p.out.Folders[i], on, why)
			if holdRemoval(&p.out.Folders[i], on, why) {
				p.out.HeldBack = true
			}
		}
	}
}

// holdRemoval holds back the deletion of folder fp on side on, if planned,
// and reports whether it did. The folder is then left alone.
func holdRemoval(fp *FolderPlan, on Side, why string) bool {
	if !fp.Remove[on] {
		return false
	}
	fp.Remove[on], fp.RemoveHeld[on] = false, true
	fp.Skip = fmt.Sprintf("folder %q vanished from side %s; its deletion on side %s is held back: %s", fp.Name, on.Other(), on, why)
	if why != "--no-delete" {
		fp.Skip += "; rerun with --force after checking"
	}
	fp.Warnings = append(fp.Warnings, fp.Skip)
	return true
}

// counts returns the known messages (records over all folders, skipped
// ones included) and the deletions planned on each side, the messages of
// deleted folders included.
func (p *planner) counts() (known int, deletes [2]int) {
	known = p.opt.UnlistedKnown
	for i, w := range p.work {
		known += len(w.in.Base) + w.in.Omitted
		fp := &p.out.Folders[i]
		for _, d := range fp.Deletes {
			deletes[d.On]++
		}
		for _, on := range []Side{A, B} {
			if fp.Remove[on] {
				deletes[on] += fp.RemoveMsgs
			}
		}
	}
	return known, deletes
}

// vanishedMost reports whether more than half of the folders the state
// knows are gone from side s while still on the other.
func (p *planner) vanishedMost(s Side) bool {
	known, gone := p.opt.Unlisted, 0 // a skipped pair is on both sides
	for _, w := range p.work {
		if !w.in.Known {
			continue
		}
		known++
		if !w.in.Side[s].Exists && w.in.Side[s.Other()].Exists {
			gone++
		}
	}
	return known > 0 && 2*gone > known
}

// hold moves fp's deletions on side on to Held with reason why.
func (p *planner) hold(fp *FolderPlan, on Side, why string) {
	if countOn(fp.Deletes, on) == 0 {
		return
	}
	s := on
	holdAll(fp, &s, why)
	p.out.HeldBack = true
	p.out.Warnings = append(p.out.Warnings, fmt.Sprintf(
		"folder %q: deletions on side %s held back: %s; rerun with --force after checking", fp.Name, on, why))
}

// holdAll moves fp's deletions (on side *on, or all when nil) to Held.
func holdAll(fp *FolderPlan, on *Side, why string) {
	kept := fp.Deletes[:0]
	for _, d := range fp.Deletes {
		if on != nil && d.On != *on {
			kept = append(kept, d)
			continue
		}
		d.Reason = why
		fp.Held = append(fp.Held, d)
	}
	fp.Deletes = kept
}

func countOn(ds []Delete, on Side) int {
	n := 0
	for _, d := range ds {
		if d.On == on {
			n++
		}
	}
	return n
}
