package twoway

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// flagRecent is session state (RFC 9051 §2.3.2): never synced.
const flagRecent mail.Flag = `\Recent`

// flagSet is a set of flags.
type flagSet map[mail.Flag]bool

func setOf(flags []mail.Flag) flagSet {
	s := make(flagSet, len(flags))
	for _, f := range flags {
		if f != "" && f != flagRecent {
			s[f] = true
		}
	}
	return s
}

// parseBase reads the space-separated base flags of a state record.
func parseBase(s string) flagSet {
	fields := strings.Fields(s)
	flags := make([]mail.Flag, len(fields))
	for i, f := range fields {
		flags[i] = mail.Flag(f)
	}
	return setOf(flags)
}

func (s flagSet) sorted() []mail.Flag {
	out := make([]mail.Flag, 0, len(s))
	for f := range s {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// String is the form a state record keeps: sorted, space separated.
func (s flagSet) String() string {
	fl := s.sorted()
	parts := make([]string, len(fl))
	for i, f := range fl {
		parts[i] = string(f)
	}
	return strings.Join(parts, " ")
}

// minus returns the flags of s not in t.
func (s flagSet) minus(t flagSet) flagSet {
	out := flagSet{}
	for f := range s {
		if !t[f] {
			out[f] = true
		}
	}
	return out
}

func (s flagSet) equal(t flagSet) bool {
	if len(s) != len(t) {
		return false
	}
	for f := range s {
		if !t[f] {
			return false
		}
	}
	return true
}

// Keeps says which flags a side can store. The zero value (nil) keeps
// every flag; otherwise only the flags it holds (a Maildir keeps the system
// flags and at most 26 keywords; a server without `\*` in PERMANENTFLAGS
// only those it lists).
type Keeps map[mail.Flag]bool

// flagAnyKeyword in Keeps keeps every keyword (PERMANENTFLAGS `\*`).
const flagAnyKeyword mail.Flag = `\*`

// Has reports whether the side stores f.
func (k Keeps) Has(f mail.Flag) bool {
	return k == nil || k[f] || k[flagAnyKeyword] && !strings.HasPrefix(string(f), `\`)
}

// keepsOf is Keeps from a mailbox's permanent flags (mail.FlagKeeper);
// all: every flag.
func keepsOf(flags []mail.Flag, all bool) Keeps {
	if all {
		return nil
	}
	k := Keeps{}
	for _, f := range flags {
		k[f] = true
	}
	return k
}

// merge is the three-way flag merge: result = base + added on A + added on
// B - removed on A - removed on B, where a flag a side cannot store is
// never read as removed on that side. Without a base (first sync, lost
// state, a record without flags) the result is the union.
func merge(base flagSet, baseKnown bool, cur [2]flagSet, keeps [2]Keeps) flagSet {
	if !baseKnown {
		out := flagSet{}
		for _, s := range cur {
			for f := range s {
				out[f] = true
			}
		}
		return out
	}
	out := flagSet{}
	for f := range base {
		out[f] = true
	}
	for side, s := range cur {
		for f := range s.minus(base) { // added on side
			out[f] = true
		}
		for f := range base.minus(s) { // removed on side, if it could keep it
			if keeps[side].Has(f) {
				delete(out, f)
			}
		}
	}
	return out
}

// target is what a side should hold for the merged result: the result's
// flags the side can store, plus any flag it holds but cannot store (it is
// not ours to remove).
func target(result, cur flagSet, keeps Keeps) flagSet {
	out := flagSet{}
	for f := range result {
		if keeps.Has(f) {
			out[f] = true
		}
	}
	for f := range cur {
		if !keeps.Has(f) {
			out[f] = true
		}
	}
	return out
}

// folderSides is sides with the Keeps folder f's listings say (an IMAP
// server's PERMANENTFLAGS are a folder's: one without `\*` keeps fewer
// keywords than another of the same account that has it).
func folderSides(f *Folder, sides [2]SideInfo) [2]SideInfo {
	for s := range sides {
		if k := f.Side[s].Keeps; k != nil {
			sides[s].Keeps = k
		}
	}
	return sides
}

// keepsIn asks the flags the store keeps in mailbox: Keeps when set (a
// Maildir's, or a test's), else PERMANENTFLAGS (KeptFlags, else the Sink's
// mail.FlagKeeper); nil (all) when nothing says, or the folder is not
// there yet.
func (s *Store) keepsIn(ctx context.Context, mailbox string) (Keeps, error) {
	if s.Keeps != nil || s.Maildir != nil {
		return s.Keeps, nil
	}
	fk := s.KeptFlags
	if fk == nil {
		fk = mail.FeaturesOf(s.Sink).FlagKeeper
	}
	if fk == nil {
		return nil, nil
	}
	flags, all, err := fk.KeptFlags(ctx, mailbox)
	if errors.Is(err, mail.ErrMailboxNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("permanent flags of %q: %w", mailbox, err)
	}
	return keepsOf(flags, all), nil
}

// learnKeeps asks, once per run, the flags side s keeps in folder (one
// SELECT on an IMAP server, only for the folders the run lists).
func (r *run) learnKeeps(s Side, folder string) error {
	if _, ok := r.keeps[s][folder]; ok {
		return nil
	}
	k, err := r.stores[s].keepsIn(r.ctx, folder)
	if err != nil {
		return fmt.Errorf("sync: side %s: %w", s, err)
	}
	if r.keeps[s] == nil {
		r.keeps[s] = map[string]Keeps{}
	}
	r.keeps[s][folder] = k
	return nil
}

// keepsIn is what side s keeps in folder: what learnKeeps learned, else
// the side's.
func (r *run) keepsIn(s Side, folder string) Keeps {
	if k := r.keeps[s][folder]; k != nil {
		return k
	}
	return r.opt.Plan.Sides[s].Keeps
}
