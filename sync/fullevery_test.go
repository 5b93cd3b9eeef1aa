package sync

import (
	"context"
	"slices"
	"testing"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/state"
)

// TestUnchangedFolderListedInFullEveryNthRun (issue 11: "a full listing
// still happens ... every Nth run, so a server bug cannot hide a change
// forever"): a folder whose status never moves is skipped, without its
// records read, and every FullEvery-th run lists it in full all the same:
// a skipped run counts as a pass. Before skipped runs counted, it was
// skipped forever after its first listing.
func TestUnchangedFolderListedInFullEveryNthRun(t *testing.T) {
	src := &statusSource{MemSource: mailtest.NewMemSource(fixtures(6, "INBOX")), bump: map[string]uint32{}}
	dst := mailtest.NewMemSink()
	dir := t.TempDir()
	var got []string
	for run := range 7 {
		st, err := state.Open(dir, "src", "dst", state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		spy := newSpy(st)
		opt := fastOpts(spy)
		opt.State, opt.FullEvery = st, 3
		res, err := Copy(context.Background(), src, dst, opt)
		if err != nil {
			t.Fatalf("run %d: Copy = %v", run+1, err)
		}
		l := res.Stats.Box("INBOX").Listing()
		got = append(got, l)
		if touched := spy.names(spy.touched); l == ListingSkipped && len(touched) != 0 {
			t.Errorf("run %d skipped INBOX but read the records of %v", run+1, touched)
		}
		if err := spy.Close(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{ListingFull, ListingSkipped, ListingSkipped, ListingFull, ListingSkipped, ListingSkipped, ListingFull}
	if !slices.Equal(got, want) {
		t.Errorf("listings over 7 runs with --full-every 3: %v, want %v", got, want)
	}
	if total(dst) != 6 {
		t.Errorf("destination holds %d, want 6", total(dst))
	}
}
