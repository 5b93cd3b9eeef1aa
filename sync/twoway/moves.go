package twoway

import (
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// moveEnd is one end of a candidate move on one side: a record gone from
// a folder, or a message new in another.
type goneAt struct {
	w *folderWork
	g *goneRec
}

type freshAt struct {
	w *folderWork
	f *freshMsg
}

// pairMoves finds the messages side x moved between folders: gone from
// one folder and new in another, with the same id where ids survive a move
// (a Maildir base name), else the same (Message-ID, size, date), unique
// among both the gone and the new of side x. Each becomes a move on the
// other side instead of a deletion there and a copy of the new one.
func (p *planner) pairMoves(x Side) {
	var gone []goneAt
	var fresh []freshAt
	for _, w := range p.work {
		for _, g := range w.gone[x] {
			gone = append(gone, goneAt{w, g})
		}
		for _, f := range w.fresh[x] {
			fresh = append(fresh, freshAt{w, f})
		}
	}
	if len(gone) == 0 || len(fresh) == 0 {
		return
	}
	if p.opt.Sides[x].StableIDs {
		p.movesByID(x, gone, fresh)
	}
	p.movesByKey(x, gone, fresh)
}

func (p *planner) movesByID(x Side, gone []goneAt, fresh []freshAt) {
	byID := map[mail.ID][]freshAt{}
	for _, f := range fresh {
		byID[f.f.m.ID] = append(byID[f.f.m.ID], f)
	}
	for _, g := range gone {
		cands := byID[sideID(g.g.rec, x)]
		if len(cands) == 1 && !cands[0].f.used && cands[0].w != g.w {
			p.addMove(x, g, cands[0])
		}
	}
}

func (p *planner) movesByKey(x Side, gone []goneAt, fresh []freshAt) {
	goneBy := map[string][]goneAt{}
	for _, g := range gone {
		if k := msgKey(g.g.rec.MsgID, g.g.rec.Size, g.g.rec.Date); k != "" && !g.g.used {
			goneBy[k] = append(goneBy[k], g)
		}
	}
	freshBy := map[string][]freshAt{}
	for _, f := range fresh {
		if k := f.f.m.key(); k != "" && !f.f.used {
			freshBy[k] = append(freshBy[k], f)
		}
	}
	for _, g := range gone {
		k := msgKey(g.g.rec.MsgID, g.g.rec.Size, g.g.rec.Date)
		gs, fs := goneBy[k], freshBy[k]
		if k == "" || g.g.used || len(gs) != 1 || len(fs) != 1 || fs[0].w == g.w {
			continue
		}
		p.addMove(x, g, fs[0])
	}
}

// addMove plans moving, on the side other than x, the copy of g's message
// into f's folder, with the flags merged as for any message.
func (p *planner) addMove(x Side, g goneAt, f freshAt) {
	g.g.used, f.f.used = true, true
	y := x.Other()
	var pair [2]*Msg
	pair[x], pair[y] = f.f.m, g.g.other
	fs, _ := flagSync(g.g.rec, pair, f.w.sides) // the message's folder now
	rec := fs.Record
	rec.Src, rec.Dst = "", ""
	setSideID(&rec, x, f.f.m.ID)
	rec.Size, rec.Date, rec.MsgID = f.f.m.Size, f.f.m.Date, f.f.m.MsgID
	mv := Move{On: y, From: g.w.in.Name, ID: g.g.other.ID, Moved: *f.f.m, Record: rec, Old: g.g.rec}
	for _, s := range []Side{A, B} {
		if fs.Changes(s) {
			mv.Set[s] = fs.Set[s]
		}
	}
	f.w.out.Moves = append(f.w.out.Moves, mv)
}

// sideID returns a record's id on side s.
func sideID(r state.Message, s Side) mail.ID {
	if s == A {
		return r.Src
	}
	return r.Dst
}

func setSideID(r *state.Message, s Side, id mail.ID) {
	if s == A {
		r.Src = id
	} else {
		r.Dst = id
	}
}
