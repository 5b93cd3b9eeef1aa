package sync

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/state"
)

// statusSource is a MemSource that tells folder statuses: UIDNEXT is the
// message count + 1 + bump[folder], so a test moves a folder by adding
// mail or bumping it.
type statusSource struct {
	*mailtest.MemSource
	mu   stdsync.Mutex
	bump map[string]uint32
}

func (s *statusSource) FolderStatuses(ctx context.Context, boxes []string) (map[string]mail.FolderStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]mail.FolderStatus{}
	for _, mb := range boxes {
		n := uint32(s.Len(mb))
		out[mb] = mail.FolderStatus{UIDValidity: 1, UIDNext: n + 1 + s.bump[mb], Messages: n, HighestModSeq: 10 + uint64(s.bump[mb])}
	}
	return out, nil
}

// folderSpy is a state store that records which mailboxes a run asks about
// (any method naming one), and which it holds in memory (asked, not yet
// released).
type folderSpy struct {
	*state.Store
	mu      stdsync.Mutex
	touched map[string]bool
	held    map[string]bool
}

func newSpy(st *state.State) *folderSpy {
	return &folderSpy{Store: state.NewStore(st), touched: map[string]bool{}, held: map[string]bool{}}
}

func (s *folderSpy) saw(mb string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.touched[mb], s.held[mb] = true, true
}

func (s *folderSpy) Has(k checkpoint.Key) bool { s.saw(k.Mailbox); return s.Store.Has(k) }
func (s *folderSpy) Add(r checkpoint.Record) error {
	s.saw(r.Mailbox)
	return s.Store.Add(r)
}
func (s *folderSpy) Records(mb string) []checkpoint.Record { s.saw(mb); return s.Store.Records(mb) }
func (s *folderSpy) Len(mb string) int                     { s.saw(mb); return s.Store.Len(mb) }
func (s *folderSpy) Load(mb string) error                  { s.saw(mb); return s.Store.Load(mb) }
func (s *folderSpy) Release(mb string) error {
	s.mu.Lock()
	delete(s.held, mb)
	s.mu.Unlock()
	return s.Store.Release(mb)
}

func (s *folderSpy) names(m map[string]bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for mb := range m {
		out = append(out, mb)
	}
	sort.Strings(out)
	return out
}

// stateRun copies src into dst with the state in dir as checkpoint and
// pass state, as the CLI does, and returns the result and the spy.
func stateRun(t *testing.T, dir string, src mail.Source, dst mail.Sink) (*Result, *folderSpy) {
	t.Helper()
	st, err := state.Open(dir, "src", "dst", state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	spy := newSpy(st)
	opt := fastOpts(spy)
	opt.State = st
	res, err := Copy(context.Background(), src, dst, opt)
	if err != nil {
		t.Fatalf("Copy = %v", err)
	}
	if held := spy.names(spy.held); len(held) != 0 {
		t.Errorf("after the run the records of %v are still held: a folder done with must be released", held)
	}
	if err := spy.Close(); err != nil {
		t.Fatal(err)
	}
	return res, spy
}

// TestStateStoreReadsOnlyFoldersThatMoved (issue 11 item 3): the first run
// lists every folder and records its status; the second run finds nothing
// moved and asks the checkpoint about no folder at all (a skipped folder's
// records are never read: counts come from the pass summary), yet counts
// every message as listed and present; after one folder moves, only that
// folder's records are read, and released when done.
func TestStateStoreReadsOnlyFoldersThatMoved(t *testing.T) {
	boxes := []string{"INBOX", "Archive", "Sent"}
	src := &statusSource{MemSource: mailtest.NewMemSource(fixtures(30, boxes...)), bump: map[string]uint32{}}
	dst := mailtest.NewMemSink()
	dir := t.TempDir()

	res, spy := stateRun(t, dir, src, dst)
	if res.Stats.Copied.Load() != 30 || !slices.Equal(spy.names(spy.touched), []string{"Archive", "INBOX", "Sent"}) {
		t.Fatalf("first run: copied %d, read %v; want 30 and every folder", res.Stats.Copied.Load(), spy.names(spy.touched))
	}

	res, spy = stateRun(t, dir, src, dst)
	if got := spy.names(spy.touched); len(got) != 0 {
		t.Errorf("the second run read the records of %v; nothing moved, so it must read none", got)
	}
	for _, mb := range boxes {
		if l := res.Stats.Box(mb).Listing(); l != ListingSkipped {
			t.Errorf("second run: %s listed %q, want skipped (the first run recorded its status)", mb, l)
		}
	}
	if c := res.Stats.Copied.Load(); c != 0 || res.Stats.Listed.Load() != 30 || res.Stats.Skipped.Load() != 30 {
		t.Errorf("second run: copied %d, listed %d, present %d; want 0, 30, 30", c, res.Stats.Listed.Load(), res.Stats.Skipped.Load())
	}

	src.Add(mailtest.Fixture{Mailbox: "Sent", Body: []byte("Subject: late\r\n\r\nlate\r\n")})
	res, spy = stateRun(t, dir, src, dst)
	if got := spy.names(spy.touched); !slices.Equal(got, []string{"Sent"}) {
		t.Errorf("after Sent moved the run read the records of %v, want only Sent", got)
	}
	if c := res.Stats.Copied.Load(); c != 1 || total(dst) != 31 {
		t.Errorf("after Sent moved: copied %d, destination holds %d; want 1, 31", c, total(dst))
	}
}

// indexSink is a MemSink that lists what it holds with the flags each copy
// has now (mail.Indexer), as the Maildir sink does from its file names.
type indexSink struct{ *mailtest.MemSink }

func (s indexSink) Index(ctx context.Context, mb string, fn func(mail.Envelope) error) error {
	for _, m := range s.Messages(mb) {
		if m.Env.Flags == nil { // MemSink keeps none as nil; a Maildir lists them
			m.Env.Flags = []mail.Flag{}
		}
		if err := fn(m.Env); err != nil {
			return err
		}
	}
	return nil
}

// TestLegacyRecordsLearnFlags (issue 11): records written before the
// destination could change flags know no flags. The next run takes the
// stored copy's flags as the flags last given to it: a message whose
// source flags differ from its copy's gets them (counted), one whose
// flags agree is only recorded, and every record then knows its flags, so
// a later change follows as for any other.
func TestLegacyRecordsLearnFlags(t *testing.T) {
	src := mailtest.NewMemSource(nil)
	for i, fl := range [][]mail.Flag{{mail.FlagSeen}, {}, {mail.FlagAnswered}} {
		src.Add(mailtest.Fixture{Mailbox: "INBOX", Flags: fl, Body: []byte("Subject: m\r\n\r\nbody " + string(rune('a'+i)) + "\r\n")})
	}
	dst := indexSink{mailtest.NewMemSink()}
	dir := t.TempDir()
	stateRun(t, dir, src, dst)

	// Make the records what an older mailferry wrote: no flags.
	st, err := state.Open(dir, "src", "dst", state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := state.NewStore(st)
	for _, r := range store.Records("INBOX") {
		r.Flags = nil
		if err := store.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	src.Mark("INBOX", "1", mail.FlagSeen, mail.FlagFlagged) // changed since the copy
	res, _ := stateRunFull(t, dir, src, dst)
	if n := res.Stats.FlagsUpdated.Load(); n != 1 {
		t.Errorf("flags updated on %d copies, want 1 (the message flagged since)", n)
	}
	for _, m := range dst.Messages("INBOX") {
		if m.Env.ID == "1" && flagString(m.Env.Flags) != flagString([]mail.Flag{mail.FlagSeen, mail.FlagFlagged}) {
			t.Errorf("copy 1 has flags %v, want \\Seen \\Flagged", m.Env.Flags)
		}
	}
	st, err = state.Open(dir, "src", "dst", state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, r := range state.NewStore(st).Records("INBOX") {
		if r.Flags == nil {
			t.Errorf("record %s still knows no flags", r.ID)
		}
	}
}

// stateRunFull is stateRun without pass state: every folder is listed in
// full.
func stateRunFull(t *testing.T, dir string, src mail.Source, dst mail.Sink) (*Result, error) {
	t.Helper()
	st, err := state.Open(dir, "src", "dst", state.Options{Now: func() time.Time { return time.Unix(1700000000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	store := state.NewStore(st)
	defer store.Close()
	res, err := Copy(context.Background(), src, dst, fastOpts(store))
	if err != nil {
		t.Fatalf("Copy = %v", err)
	}
	return res, nil
}

// emptiedSink is an indexSink that can say cheaply whether a folder holds
// anything (mail.AnyHolder), and says "nothing" for the folders in gone,
// as a destination unmounted or emptied behind the run's back.
type emptiedSink struct {
	indexSink
	gone map[string]bool
}

func (s emptiedSink) HoldsAny(ctx context.Context, mb string) (bool, error) {
	return !s.gone[mb] && len(s.Messages(mb)) > 0, nil
}

// TestSkippedFolderDestinationChecked: a folder skipped as unchanged whose
// destination holds nothing any more, while its pass recorded copies
// there, stops the run (docs/failure-model.md rule 5: never read as "all
// copied"), told by mail.AnyHolder without reading the folder's records.
func TestSkippedFolderDestinationChecked(t *testing.T) {
	src := &statusSource{MemSource: mailtest.NewMemSource(fixtures(6, "INBOX", "Work")), bump: map[string]uint32{}}
	dst := emptiedSink{indexSink{mailtest.NewMemSink()}, map[string]bool{}}
	dir := t.TempDir()
	stateRun(t, dir, src, dst)
	dst.gone["Work"] = true
	st, err := state.Open(dir, "src", "dst", state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	spy := newSpy(st)
	defer spy.Close()
	opt := fastOpts(spy)
	opt.State = st
	_, err = Copy(context.Background(), src, dst, opt)
	if !errors.Is(err, checkpoint.ErrUnusable) || !mail.Fatal(err) || !strings.Contains(err.Error(), "Work") {
		t.Fatalf("Copy with Work's destination emptied = %v; want a fatal ErrUnusable naming Work", err)
	}
	if got := spy.names(spy.touched); len(got) != 0 {
		t.Errorf("the check read the records of %v, want none", got)
	}
}
