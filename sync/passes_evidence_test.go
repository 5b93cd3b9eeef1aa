package sync

import (
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// TestPassPlanEvidence: a source with change evidence instead of UIDs and
// mod-sequences (Maildir, mbox) is skipped on the same settled evidence,
// flags followed or not (a flag change changes the evidence), and listed
// in full on other evidence or on evidence taken too soon after a change;
// unsettled evidence is not what the pass keeps.
func TestPassPlanEvidence(t *testing.T) {
	kept := mail.FolderStatus{Messages: 7, Evidence: "e1"}
	tests := []struct {
		name       string
		kept, now  mail.FolderStatus
		flagSetter bool
		want       string
	}{
		{"same evidence", kept, mail.FolderStatus{Evidence: "e1"}, false, ListingSkipped},
		{"same evidence, flags followed", kept, mail.FolderStatus{Evidence: "e1"}, true, ListingSkipped},
		{"same evidence, another count", kept, mail.FolderStatus{Messages: 9, Evidence: "e1"}, true, ListingSkipped},
		{"other evidence", kept, mail.FolderStatus{Evidence: "e2"}, true, ListingFull},
		{"other evidence, same count", kept, mail.FolderStatus{Messages: 7, Evidence: "e2"}, false, ListingFull},
		{"same evidence, unsettled", kept, mail.FolderStatus{Evidence: "e1", Unsettled: true}, false, ListingFull},
		{"kept while unsettled", mail.FolderStatus{Messages: 7, Evidence: "e1", Unsettled: true}, mail.FolderStatus{Evidence: "e1"}, false, ListingFull},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := state.Open(t.TempDir(), "a", "b", state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			r := &run{opt: Options{State: st}, srcF: &mail.Features{}, dstF: &mail.Features{}}
			if tc.flagSetter {
				r.dstF.FlagSetter = fakeFlagSetter{}
			}
			if err := st.CompletePass("INBOX", sideStatus(tc.kept), state.SideStatus{Evidence: r.filterKey()}, true); err != nil {
				t.Fatal(err)
			}
			p := r.planPass("INBOX", map[string]mail.FolderStatus{"INBOX": tc.now})
			if p.mode != tc.want {
				t.Fatalf("planned %s (%s), want %s", p.mode, p.reason, tc.want)
			}
			if p.mode == ListingSkipped && p.status.Messages != tc.kept.Messages {
				t.Errorf("skipped with %d messages, want the %d the last listing found", p.status.Messages, tc.kept.Messages)
			}
		})
	}
}
