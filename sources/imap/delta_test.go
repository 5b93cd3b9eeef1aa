package imap

import (
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestDeltaFeatures checks that the Source offers the incremental listing
// and that the Gmail preset hides it: the Source's change listing knows
// nothing of Gmail's owner folders.
func TestDeltaFeatures(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want bool
	}{
		{"Source", &Source{}, true},
		{"Gmail", &Gmail{s: &Source{}}, false},
	}
	for _, tt := range tests {
		f := mail.FeaturesOf(tt.v)
		if (f.FolderStatuser != nil) != tt.want || (f.ChangeLister != nil) != tt.want {
			t.Errorf("%s: FolderStatuser %v, ChangeLister %v; want %v", tt.name, f.FolderStatuser != nil, f.ChangeLister != nil, tt.want)
		}
	}
}

func TestStringFlags(t *testing.T) {
	got := stringFlags([]string{`\seen`, `\RECENT`, `\deleted`, "$label1", `\FLAGGED`, "$junk"})
	want := []mail.Flag{"$Junk", "$label1", `\Flagged`, `\Seen`}
	if len(got) != len(want) {
		t.Fatalf("stringFlags = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stringFlags = %v, want %v", got, want)
		}
	}
}
