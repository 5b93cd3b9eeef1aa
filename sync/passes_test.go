package sync

import (
	"context"
	"iter"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// TestPassPlan: how a folder is listed from its status now and the
// summary of its last complete pass.
func TestPassPlan(t *testing.T) {
	base := mail.FolderStatus{UIDValidity: 7, UIDNext: 11, Messages: 10, HighestModSeq: 40}
	moved := func(f func(*mail.FolderStatus)) mail.FolderStatus { s := base; f(&s); return s }
	tests := []struct {
		name       string
		now        mail.FolderStatus
		passes     int  // complete passes recorded before
		lister     bool // the source lists changes
		flagSetter bool
		want       string
	}{
		{"never passed", base, 0, true, false, ListingFull},
		{"unchanged", base, 1, true, false, ListingSkipped},
		{"new mail", moved(func(s *mail.FolderStatus) { s.UIDNext, s.Messages, s.HighestModSeq = 12, 11, 41 }), 1, true, false, ListingIncremental},
		{"new mail, no change listing", moved(func(s *mail.FolderStatus) { s.UIDNext = 12 }), 1, false, false, ListingFull},
		{"flag change", moved(func(s *mail.FolderStatus) { s.HighestModSeq = 45 }), 1, true, true, ListingIncremental},
		{"uidvalidity", moved(func(s *mail.FolderStatus) { s.UIDValidity = 8 }), 1, true, false, ListingFull},
		{"modseq backwards", moved(func(s *mail.FolderStatus) { s.HighestModSeq = 39 }), 1, true, false, ListingFull},
		{"nomodseq", moved(func(s *mail.FolderStatus) { s.HighestModSeq, s.NoModSeq = 0, true }), 1, true, false, ListingFull},
		{"counts disagree", moved(func(s *mail.FolderStatus) { s.Messages = 12 }), 1, true, false, ListingFull},
		{"full due", base, state.DefaultFullEvery, true, false, ListingFull},
		{"status unknown", mail.FolderStatus{}, 1, true, false, ListingFull},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := state.Open(t.TempDir(), "a", "b", state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			r := &run{opt: Options{State: st}, srcF: &mail.Features{}, dstF: &mail.Features{}}
			if tc.lister {
				r.srcF.ChangeLister = fakeLister{}
			}
			if tc.flagSetter {
				r.dstF.FlagSetter = fakeFlagSetter{}
			}
			for i := range tc.passes {
				if err := st.CompletePass("INBOX", sideStatus(base), state.SideStatus{Evidence: r.filterKey()}, i == 0); err != nil {
					t.Fatal(err)
				}
			}
			sts := map[string]mail.FolderStatus{"INBOX": tc.now}
			if tc.now == (mail.FolderStatus{}) {
				sts = nil
			}
			if p := r.planPass("INBOX", sts); p.mode != tc.want {
				t.Errorf("planned %s (%s), want %s", p.mode, p.reason, tc.want)
			}
		})
	}
}

// TestPassPlanWithoutModSeq: without mod-sequences an unchanged status
// hides flag changes, so a folder is skipped only when flags do not follow.
func TestPassPlanWithoutModSeq(t *testing.T) {
	for _, follow := range []bool{false, true} {
		st, err := state.Open(t.TempDir(), "a", "b", state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r := &run{opt: Options{State: st}, srcF: &mail.Features{ChangeLister: fakeLister{}}, dstF: &mail.Features{}}
		if follow {
			r.dstF.FlagSetter = fakeFlagSetter{}
		}
		now := mail.FolderStatus{UIDValidity: 3, UIDNext: 5, Messages: 4}
		if err := st.CompletePass("INBOX", sideStatus(now), state.SideStatus{Evidence: r.filterKey()}, true); err != nil {
			t.Fatal(err)
		}
		want := map[bool]string{false: ListingSkipped, true: ListingIncremental}[follow]
		if p := r.planPass("INBOX", map[string]mail.FolderStatus{"INBOX": now}); p.mode != want {
			t.Errorf("flags follow %v: planned %s, want %s", follow, p.mode, want)
		}
		st.Close()
	}
}

type fakeLister struct{}

func (fakeLister) ListChanges(context.Context, string, mail.FolderStatus, iter.Seq[mail.ID], func(mail.Change) error) (mail.ChangeSummary, error) {
	return mail.ChangeSummary{}, nil
}

type fakeFlagSetter struct{}

func (fakeFlagSetter) SetFlags(context.Context, string, mail.ID, []mail.Flag) error { return nil }
