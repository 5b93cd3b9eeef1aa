package mailtest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// The incremental listing's capability subtests (FolderStatuser,
// ChangeLister). The harness cannot change a source behind its back, so
// these check what holds for any seeded source: statuses that agree with
// List, a change listing from the current status that finds nothing, and
// a full listing asked for when there is no earlier one. The IMAP source's
// Dovecot tests change the folders from another client.

const deltaMissing = "mailtest no such folder"

func (c sourceCaps) folderStatuser(t *testing.T, src mail.Source) {
	defer func() { _ = src.Close() }()
	ctx := context.Background()
	fs := mail.FeaturesOf(src).FolderStatuser
	boxes, counts := listCounts(t, src)
	st, err := fs.FolderStatuses(ctx, append(slices.Clone(boxes), deltaMissing))
	if err != nil {
		t.Fatalf("FolderStatuses() = %v", err)
	}
	if _, ok := st[deltaMissing]; ok {
		t.Errorf("FolderStatuses reports a folder that does not exist")
	}
	for _, b := range boxes {
		got, ok := st[b]
		if ok && got.Evidence != "" && got.Messages == 0 {
			continue // change evidence of a source that cannot count without reading (mbox)
		}
		if !ok || int(got.Messages) != counts[b] {
			t.Errorf("FolderStatuses()[%q] = %+v, %v; List gives %d messages", b, got, ok, counts[b])
		}
	}
	again, err := fs.FolderStatuses(ctx, boxes)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes {
		if again[b] != st[b] {
			t.Errorf("nothing changed, yet %q went from %+v to %+v", b, st[b], again[b])
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := fs.FolderStatuses(cctx, boxes); !errors.Is(err, context.Canceled) {
		t.Errorf("FolderStatuses(cancelled) = %v, want context.Canceled", err)
	}
}

func (c sourceCaps) changeLister(t *testing.T, src mail.Source) {
	defer func() { _ = src.Close() }()
	ctx := context.Background()
	f := mail.FeaturesOf(src)
	if f.FolderStatuser == nil {
		t.Skip("no FolderStatuser to take the status from")
	}
	boxes, _ := listCounts(t, src)
	st, err := f.FolderStatuser.FolderStatuses(ctx, boxes)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes {
		var known []mail.ID
		flags := map[mail.ID][]mail.Flag{}
		if err := src.List(ctx, b, func(e mail.Envelope) error {
			known, flags[e.ID] = append(known, e.ID), e.Flags
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sum, err := f.ChangeLister.ListChanges(ctx, b, mail.FolderStatus{}, nil, func(ch mail.Change) error {
			if ch.Kind == mail.ChangeVanished {
				t.Errorf("%s: vanished %s with no earlier listing", b, ch.Envelope.ID)
			}
			return nil
		})
		if err != nil || !sum.Full {
			t.Errorf("%s: ListChanges(zero status) = %+v, %v; want Full", b, sum, err)
		}
		sum, err = f.ChangeLister.ListChanges(ctx, b, st[b], slices.Values(known), func(ch mail.Change) error {
			if ch.Kind != mail.ChangeFlags || !slices.Equal(ch.Envelope.Flags, flags[ch.Envelope.ID]) {
				t.Errorf("%s: nothing changed, yet %+v", b, ch)
			}
			return nil
		})
		if err != nil || sum.Full || sum.New+sum.Vanished != 0 || sum.Status != st[b] {
			t.Errorf("%s: ListChanges(current status) = %+v, %v; want no change and status %+v", b, sum, err, st[b])
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.ChangeLister.ListChanges(cctx, boxes[0], st[boxes[0]], nil, func(mail.Change) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("ListChanges(cancelled) = %v, want context.Canceled", err)
	}
}

// listCounts lists every mailbox and counts its messages.
func listCounts(t *testing.T, src mail.Source) ([]string, map[string]int) {
	t.Helper()
	boxes, err := src.Mailboxes(context.Background())
	if err != nil || len(boxes) == 0 {
		t.Fatalf("Mailboxes() = %v, %v", boxes, err)
	}
	counts := map[string]int{}
	for _, b := range boxes {
		if err := src.List(context.Background(), b, func(mail.Envelope) error { counts[b]++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return boxes, counts
}

// writeProver: a source that wrote nothing proves nothing: every folder's
// changes since its status are not its own writes, so none is returned.
func (c sourceCaps) writeProver(t *testing.T, src mail.Source) {
	defer func() { _ = src.Close() }()
	ctx := context.Background()
	boxes, _ := listCounts(t, src)
	since := map[string]mail.FolderStatus{}
	if fs := mail.FeaturesOf(src).FolderStatuser; fs != nil {
		st, err := fs.FolderStatuses(ctx, boxes)
		if err != nil {
			t.Fatalf("FolderStatuses() = %v", err)
		}
		maps.Copy(since, st)
	}
	for _, b := range boxes {
		if _, ok := since[b]; !ok {
			since[b] = mail.FolderStatus{UIDValidity: 1, UIDNext: 1, HighestModSeq: 1}
		}
	}
	got, err := mail.FeaturesOf(src).WriteProver.ProveOwnWrites(ctx, since)
	if err != nil || len(got) != 0 {
		t.Errorf("ProveOwnWrites() without writes = %v, %v; want nothing proved", got, err)
	}
}

// folderWriteProver: a source that wrote nothing proves no folder right
// after its writes either.
func (c sourceCaps) folderWriteProver(t *testing.T, src mail.Source) {
	defer func() { _ = src.Close() }()
	ctx := context.Background()
	boxes, _ := listCounts(t, src)
	for _, b := range boxes {
		since := mail.FolderStatus{UIDValidity: 1, UIDNext: 1, HighestModSeq: 1}
		if fs := mail.FeaturesOf(src).FolderStatuser; fs != nil {
			st, err := fs.FolderStatuses(ctx, []string{b})
			if err != nil {
				t.Fatalf("FolderStatuses() = %v", err)
			}
			if got, ok := st[b]; ok {
				since = got
			}
		}
		got, ok, err := mail.FeaturesOf(src).FolderWriteProver.ProveFolderWrites(ctx, b, since, "")
		if err != nil || ok {
			t.Errorf("ProveFolderWrites(%q) without writes = %v, %v, %v; want nothing proved", b, got, ok, err)
		}
	}
}
