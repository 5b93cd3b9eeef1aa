package mailtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// The capability subtests: one per optional capability (sync/mail
// capabilities.go), named as mail.Features.Names names it and skipped by
// that name when the endpoint lacks it, so every endpoint that has a
// capability is checked the same way.

// capTest is one capability's subtest.
type capTest[E any] struct {
	name string
	has  func(*mail.Features) bool
	run  func(t *testing.T, e E)
}

// runCaps runs tests against fresh endpoints from open, skipping those
// whose capability the endpoint lacks.
func runCaps[E any](t *testing.T, open func(t *testing.T) E, tests []capTest[E]) {
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			e := open(t)
			if !c.has(mail.FeaturesOf(e)) {
				t.Skipf("endpoint has no %s", c.name)
			}
			c.run(t, e)
		})
	}
}

// sinkCapTests checks each sink capability against h.
func sinkCapTests(t *testing.T, h SinkHarness) {
	ct := sinkCaps{h: h}
	runCaps(t, func(t *testing.T) mail.Sink { return h.New(t) }, []capTest[mail.Sink]{
		{mail.CapCommitter, func(f *mail.Features) bool { return f.Committer != nil }, ct.committer},
		{mail.CapIDResolver, func(f *mail.Features) bool { return f.IDResolver != nil }, ct.idResolver},
		{mail.CapIndexer, func(f *mail.Features) bool { return f.Indexer != nil }, ct.indexer},
		{mail.CapFlagSetter, func(f *mail.Features) bool { return f.FlagSetter != nil }, ct.flagSetter},
		{mail.CapStoredReader, func(f *mail.Features) bool { return f.StoredReader != nil }, ct.storedReader},
		{mail.CapHolder, func(f *mail.Features) bool { return f.Holder != nil }, ct.holder},
		{mail.CapConditionalFlags, func(f *mail.Features) bool { return f.ConditionalFlagSetter != nil }, ct.conditionalFlags},
		{mail.CapMover, func(f *mail.Features) bool { return f.Mover != nil }, ct.mover},
		{mail.CapFlagKeeper, func(f *mail.Features) bool { return f.FlagKeeper != nil }, ct.flagKeeper},
		{mail.CapRoleLister, func(f *mail.Features) bool { return f.RoleLister != nil }, roleLister[mail.Sink]},
		{mail.CapFolderManager, func(f *mail.Features) bool { return f.FolderManager != nil }, ct.folderManager},
		{mail.CapAnyHolder, func(f *mail.Features) bool { return f.AnyHolder != nil }, ct.anyHolder},
		{mail.CapHoldEvidencer, func(f *mail.Features) bool { return f.HoldEvidencer != nil }, ct.holdEvidencer},
		{mail.CapMailboxReleaser, func(f *mail.Features) bool { return f.MailboxReleaser != nil }, ct.mailboxReleaser},
		{mail.CapPutPreparer, func(f *mail.Features) bool { return f.PutPreparer != nil }, ct.putPreparer},
		{mail.CapPutPreparerFrom, func(f *mail.Features) bool { return f.PutPreparerFrom != nil && f.Indexer != nil }, ct.putPreparerFrom},
	})
}

// sourceCapTests checks each source capability against h with fixtures fx.
func sourceCapTests(t *testing.T, h SourceHarness, fx []Fixture) {
	ct := sourceCaps{h: h, fx: fx}
	runCaps(t, func(t *testing.T) mail.Source { return h.New(t, fx) }, []capTest[mail.Source]{
		{mail.CapBatchOpener, func(f *mail.Features) bool { return f.BatchOpener != nil }, ct.batchOpener},
		{mail.CapRemover, func(f *mail.Features) bool { return f.Remover != nil }, ct.remover},
		{mail.CapDeleteAware, func(f *mail.Features) bool { return f.DeleteAware != nil }, ct.deleteAware},
		{mail.CapUnstoredReporter, func(f *mail.Features) bool { return f.UnstoredReporter != nil }, ct.unstoredReporter},
		{mail.CapHeaderFetcher, func(f *mail.Features) bool { return f.HeaderFetcher != nil }, ct.headerFetcher},
		{mail.CapStatter, func(f *mail.Features) bool { return f.Statter != nil }, ct.statter},
		{mail.CapRoleLister, func(f *mail.Features) bool { return f.RoleLister != nil }, roleLister[mail.Source]},
		{mail.CapFolderStatuser, func(f *mail.Features) bool { return f.FolderStatuser != nil }, ct.folderStatuser},
		{mail.CapChangeLister, func(f *mail.Features) bool { return f.ChangeLister != nil }, ct.changeLister},
		{mail.CapWriteProver, func(f *mail.Features) bool { return f.WriteProver != nil }, ct.writeProver},
		{mail.CapFolderWriteProver, func(f *mail.Features) bool { return f.FolderWriteProver != nil }, ct.folderWriteProver},
	})
}

type sinkCaps struct{ h SinkHarness }

// capFixtures are the few messages the capability subtests store.
func capFixtures() []Fixture {
	date := time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)
	var fx []Fixture
	for i := range 3 {
		fx = append(fx, Fixture{Name: fmt.Sprint("cap", i), Mailbox: "INBOX", Date: date,
			Body: []byte(fmt.Sprintf("Message-ID: <cap%d@mailtest>\r\nSubject: cap %d\r\n\r\n%s\r\n", i, i, bytes.Repeat([]byte{'a' + byte(i)}, 100*(i+1))))})
	}
	return fx
}

// putIDs stores fixtures through s without committing and returns the IDs
// Put gave.
func putIDs(t *testing.T, s mail.Sink, fixtures []Fixture) []mail.ID {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, "INBOX"); err != nil {
		t.Fatalf("CreateMailbox(INBOX) = %v", err)
	}
	var ids []mail.ID
	for i, f := range fixtures {
		id := mail.ID(fmt.Sprint("cap", i))
		env := mail.Envelope{Mailbox: f.Mailbox, ID: id, Size: int64(len(f.Body)), Date: f.Date, Flags: f.Flags, Key: mail.DeliveryKey("mailtest:cap", f.Mailbox, id)}
		got, err := s.Put(ctx, env, bytes.NewReader(f.Body))
		if err != nil {
			t.Fatalf("Put(%s) = %v", f.Name, err)
		}
		ids = append(ids, got)
	}
	return ids
}

// stored stores fixtures through s, commits, and returns the final IDs
// (resolved through IDResolver when s has one).
func stored(t *testing.T, s mail.Sink, fixtures []Fixture) []mail.ID {
	t.Helper()
	ids := putIDs(t, s, fixtures)
	commit(t, s)
	if r := mail.FeaturesOf(s).IDResolver; r != nil {
		for i, id := range ids {
			final, ok := r.FinalID(id)
			if !ok {
				t.Fatalf("FinalID(%s) after Commit = not known", id)
			}
			ids[i] = final
		}
	}
	return ids
}

func (c sinkCaps) committer(t *testing.T, s mail.Sink) {
	ctx := context.Background()
	if err := mail.FeaturesOf(s).Committer.Commit(ctx); err != nil {
		t.Fatalf("Commit with nothing Put = %v", err)
	}
	fx := capFixtures()
	putIDs(t, s, fx)
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if c.h.Reopen == nil {
		return
	}
	src := c.h.Reopen(t, s)
	defer func() { _ = src.Close() }()
	checkHolds(t, src, fx, Caps{Normalize: c.h.Caps.Normalize})
}

func (c sinkCaps) idResolver(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	ids := stored(t, s, capFixtures())
	seen := map[mail.ID]bool{}
	for _, id := range ids {
		if id != "" && seen[id] {
			t.Errorf("FinalID gave %s twice", id)
		}
		seen[id] = true
	}
	if idx := mail.FeaturesOf(s).Indexer; idx != nil {
		c.indexHolds(t, idx, ids)
	}
}

// indexHolds checks that idx lists exactly ids in INBOX ("" IDs, from a
// server that reports none, are not compared).
func (c sinkCaps) indexHolds(t *testing.T, idx mail.Indexer, ids []mail.ID) {
	t.Helper()
	listed := map[mail.ID]int{}
	n := 0
	err := idx.Index(context.Background(), "INBOX", func(e mail.Envelope) error {
		if e.Mailbox != "INBOX" || e.ID == "" {
			return fmt.Errorf("Index(INBOX) gave %q/%q", e.Mailbox, e.ID)
		}
		listed[e.ID]++
		n++
		return nil
	})
	if err != nil {
		t.Fatalf("Index(INBOX) = %v", err)
	}
	if n != len(ids) {
		t.Errorf("Index(INBOX) lists %d messages, want %d", n, len(ids))
	}
	for _, id := range ids {
		if id != "" && listed[id] != 1 {
			t.Errorf("Index(INBOX) lists %s %d times, want once", id, listed[id])
		}
	}
}

func (c sinkCaps) indexer(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	idx := mail.FeaturesOf(s).Indexer
	if err := idx.Index(context.Background(), "INBOX", func(mail.Envelope) error { return nil }); err != nil && !errors.Is(err, mail.ErrMailboxNotFound) {
		t.Fatalf("Index of an empty sink = %v, want nil or ErrMailboxNotFound", err)
	}
	c.indexHolds(t, idx, stored(t, s, capFixtures()))
}

func (c sinkCaps) flagSetter(t *testing.T, s mail.Sink) {
	ctx := context.Background()
	fx := capFixtures()
	ids := stored(t, s, fx)
	want := []mail.Flag{mail.FlagSeen, mail.FlagFlagged}
	fs := mail.FeaturesOf(s).FlagSetter
	for i, id := range ids {
		if id == "" {
			continue // the server reports no IDs: nothing to name the message by
		}
		if err := fs.SetFlags(ctx, "INBOX", id, want); err != nil {
			t.Fatalf("SetFlags(%s) = %v", id, err)
		}
		fx[i].Flags = want
	}
	if err := fs.SetFlags(ctx, "INBOX", "no-such-id-4711", want); err == nil {
		t.Error("SetFlags of an unknown ID = nil, want an error")
	}
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if c.h.Reopen == nil || !c.h.Caps.Flags {
		return
	}
	src := c.h.Reopen(t, s)
	defer func() { _ = src.Close() }()
	checkHolds(t, src, fx, Caps{Flags: true, Normalize: c.h.Caps.Normalize})
}

// holder: every message stored and committed is held (named by the ID
// the sink gave and the key it was stored under); an unknown one, and
// anything in a mailbox that does not exist, is not.
func (c sinkCaps) holder(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	var st []mail.Stored
	for i, id := range stored(t, s, capFixtures()) {
		st = append(st, mail.Stored{ID: id, Key: mail.DeliveryKey("mailtest:cap", "INBOX", mail.ID(fmt.Sprint("cap", i)))})
	}
	st = append(st, mail.Stored{ID: "4711.4711", Key: "no-such-key-4711"})
	h := mail.FeaturesOf(s).Holder
	for _, mb := range []string{"INBOX", "No such folder 4711"} {
		got, err := h.Holds(ctx, mb, st)
		if err != nil || len(got) != len(st) {
			t.Fatalf("Holds(%s) = %v, %v; want %d answers", mb, got, err, len(st))
		}
		for i, held := range got {
			want := mb == "INBOX" && i < len(st)-1
			if held != want && st[i].ID != "" {
				t.Errorf("Holds(%s): %s (key %s) held %v, want %v", mb, st[i].ID, st[i].Key, held, want)
			}
		}
	}
}

// anyHolder: a missing or empty folder holds nothing, one with committed
// messages holds some.
func (c sinkCaps) anyHolder(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	a := mail.FeaturesOf(s).AnyHolder
	if err := s.CreateMailbox(ctx, "Empty 4711"); err != nil {
		t.Fatalf("CreateMailbox = %v", err)
	}
	stored(t, s, capFixtures())
	for mb, want := range map[string]bool{"INBOX": true, "Empty 4711": false, "No such folder 4711": false} {
		if got, err := a.HoldsAny(ctx, mb); got != want || err != nil {
			t.Errorf("HoldsAny(%s) = %v, %v; want %v", mb, got, err, want)
		}
	}
}

// putPreparerFrom: PreparePutsFrom, given the ids the sink's Indexer
// lists, changes nothing Put does: the messages already stored are not
// stored twice, a new one is stored, and a mailbox that does not exist is
// not made.
func (c sinkCaps) putPreparerFrom(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	fx := capFixtures()
	stored(t, s, fx[:2])
	f := mail.FeaturesOf(s)
	if f.MailboxReleaser != nil {
		f.MailboxReleaser.ReleaseMailbox("INBOX")
	}
	var ids []mail.ID
	if err := f.Indexer.Index(context.Background(), "INBOX", func(env mail.Envelope) error { ids = append(ids, env.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	f.PutPreparerFrom.PreparePutsFrom("INBOX", ids)
	f.PutPreparerFrom.PreparePutsFrom("No such folder 4711", nil)
	putAllAfterPrepare(t, s, fx, "PreparePutsFrom")
}

// putPreparer: PreparePuts changes nothing Put does: after it, the
// messages already stored (their keys known to the sink only from the
// destination, past ReleaseMailbox where the sink has it) are not stored
// twice, a new one is stored, and a mailbox that does not exist is not
// made.
func (c sinkCaps) putPreparer(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	fx := capFixtures()
	stored(t, s, fx[:2])
	f := mail.FeaturesOf(s)
	if f.MailboxReleaser != nil {
		f.MailboxReleaser.ReleaseMailbox("INBOX")
	}
	f.PutPreparer.PreparePuts("INBOX")
	f.PutPreparer.PreparePuts("No such folder 4711")
	putAllAfterPrepare(t, s, fx, "PreparePuts")
}

// putAllAfterPrepare is the check putPreparer and putPreparerFrom share,
// after their prepare step (named by what): every fixture Put again, the
// 2 stored before are not stored twice, the third is, and the mailbox
// that does not exist, which the step was told of, was not made.
func putAllAfterPrepare(t *testing.T, s mail.Sink, fx []Fixture, what string) {
	t.Helper()
	ctx := context.Background()
	f := mail.FeaturesOf(s)
	for i, fix := range fx {
		id := mail.ID(fmt.Sprint("cap", i))
		env := mail.Envelope{Mailbox: fix.Mailbox, ID: id, Size: int64(len(fix.Body)), Date: fix.Date, Flags: fix.Flags, Key: mail.DeliveryKey("mailtest:cap", fix.Mailbox, id)}
		var pe *mail.PresentError
		if _, err := s.Put(ctx, env, bytes.NewReader(fix.Body)); err != nil && !errors.As(err, &pe) {
			t.Fatalf("Put(%s) after %s = %v", fix.Name, what, err)
		}
	}
	commit(t, s)
	if f.Indexer != nil {
		n := 0
		if err := f.Indexer.Index(ctx, "INBOX", func(mail.Envelope) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != len(fx) {
			t.Errorf("INBOX holds %d messages after 2 stored, %s, and those 2 and 1 more Put, want %d", n, what, len(fx))
		}
	}
	if a := f.AnyHolder; a != nil {
		if holds, err := a.HoldsAny(ctx, "No such folder 4711"); holds || err != nil {
			t.Errorf("HoldsAny(a folder %s was told of) = %v, %v; want false", what, holds, err)
		}
	}
}

// holdEvidencer: HoldsSince answers as HoldsAny, with no evidence and
// with evidence that does not match (a since from elsewhere), and gives
// evidence only for a mailbox that holds something.
func (c sinkCaps) holdEvidencer(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	h := mail.FeaturesOf(s).HoldEvidencer
	if err := s.CreateMailbox(ctx, "Empty 4711"); err != nil {
		t.Fatalf("CreateMailbox = %v", err)
	}
	stored(t, s, capFixtures())
	for mb, want := range map[string]bool{"INBOX": true, "Empty 4711": false, "No such folder 4711": false} {
		for _, since := range []string{"", "evidence from elsewhere 4711"} {
			got, ev, err := h.HoldsSince(ctx, mb, since)
			if got != want || err != nil || !got && ev != "" {
				t.Errorf("HoldsSince(%s, %q) = %v, %q, %v; want %v (evidence only when held)", mb, since, got, ev, err, want)
			}
		}
	}
}

// mailboxReleaser: after ReleaseMailbox of a committed folder, Putting the
// same messages (same keys) again stores none of them twice.
func (c sinkCaps) mailboxReleaser(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	fx := capFixtures()
	stored(t, s, fx)
	mail.FeaturesOf(s).MailboxReleaser.ReleaseMailbox("INBOX")
	for i, f := range fx {
		id := mail.ID(fmt.Sprint("cap", i))
		env := mail.Envelope{Mailbox: f.Mailbox, ID: id, Size: int64(len(f.Body)), Date: f.Date, Flags: f.Flags, Key: mail.DeliveryKey("mailtest:cap", f.Mailbox, id)}
		var pe *mail.PresentError
		if _, err := s.Put(ctx, env, bytes.NewReader(f.Body)); err != nil && !errors.As(err, &pe) {
			t.Fatalf("Put(%s) after ReleaseMailbox = %v", f.Name, err)
		}
	}
	commit(t, s)
	idx := mail.FeaturesOf(s).Indexer
	if idx == nil {
		return
	}
	n := 0
	if err := idx.Index(ctx, "INBOX", func(mail.Envelope) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != len(fx) {
		t.Errorf("INBOX holds %d messages after the same %d were Put again past ReleaseMailbox, want %d", n, len(fx), len(fx))
	}
}

func (c sinkCaps) storedReader(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	fx := capFixtures()
	sr := mail.FeaturesOf(s).StoredReader
	for i, id := range stored(t, s, fx) {
		rc, err := sr.OpenStored(ctx, "INBOX", id)
		if err != nil {
			t.Fatalf("OpenStored(%s) = %v", id, err)
		}
		b, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatalf("read stored %s: %v", id, err)
		}
		if !bytes.Equal(c.norm(b), c.norm(fx[i].Body)) {
			t.Errorf("OpenStored(%s) gives %d bytes, not the %d Put", id, len(b), len(fx[i].Body))
		}
	}
	if rc, err := sr.OpenStored(ctx, "INBOX", "no-such-id-4711"); err == nil {
		_ = rc.Close()
		t.Error("OpenStored of an unknown ID = nil, want an error")
	}
}

func (c sinkCaps) norm(b []byte) []byte {
	if c.h.Caps.Normalize != nil {
		return c.h.Caps.Normalize(b)
	}
	return b
}

// roleLister checks that MailboxRoles answers with known roles.
func roleLister[E io.Closer](t *testing.T, e E) {
	defer func() { _ = e.Close() }()
	roles, err := mail.FeaturesOf(e).RoleLister.MailboxRoles(context.Background())
	if err != nil {
		t.Fatalf("MailboxRoles() = %v", err)
	}
	known := map[string]bool{mail.RoleAll: true, mail.RoleArchive: true, mail.RoleDrafts: true, mail.RoleFlagged: true, mail.RoleJunk: true, mail.RoleSent: true, mail.RoleTrash: true, `\Important`: true}
	for mb, r := range roles {
		if mb == "" || !known[r] {
			t.Errorf("MailboxRoles: %q has role %q", mb, r)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := mail.FeaturesOf(e).RoleLister.MailboxRoles(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("MailboxRoles with a cancelled context = %v, want nil or context.Canceled", err)
	}
}

type sourceCaps struct {
	h  SourceHarness
	fx []Fixture
}

func (c sourceCaps) batchOpener(t *testing.T, src mail.Source) {
	defer func() { _ = src.Close() }()
	ctx := context.Background()
	bo := mail.FeaturesOf(src).BatchOpener
	envs := listAll(t, src)
	byBox := map[string][]mail.Envelope{}
	for _, e := range envs {
		byBox[e.Mailbox] = append(byBox[e.Mailbox], e)
	}
	// fn does not use the source: a one-connection source (POP3) is busy
	// reading ahead while fn runs. Bodies are compared with Open's after.
	type key struct {
		mailbox string
		id      mail.ID
	}
	got := map[key][]byte{}
	for mb, es := range byBox {
		err := bo.OpenBatch(ctx, es, func(e mail.Envelope, body io.Reader) error {
			b, err := io.ReadAll(body)
			if err != nil {
				return err
			}
			got[key{e.Mailbox, e.ID}] = b
			return nil
		})
		if err != nil {
			t.Fatalf("OpenBatch(%s) = %v", mb, err)
		}
	}
	if len(got) != len(envs) {
		t.Fatalf("OpenBatch served %d of %d messages", len(got), len(envs))
	}
	for _, e := range envs {
		if b, want := got[key{e.Mailbox, e.ID}], readBody(t, src, e); !bytes.Equal(b, want) {
			t.Errorf("%s/%s: batch body (%d bytes) differs from Open's (%d bytes)", e.Mailbox, e.ID, len(b), len(want))
		}
	}
}

// remover removes the first message listed and checks, when the harness
// can reopen the source, that exactly that message is gone.
func (c sourceCaps) remover(t *testing.T, src mail.Source) {
	ctx := context.Background()
	envs := listAll(t, src)
	if len(envs) == 0 {
		t.Fatal("the source lists nothing")
	}
	body := readBody(t, src, envs[0])
	r := mail.FeaturesOf(src).Remover
	if err := r.Remove(ctx, nil); err != nil {
		t.Fatalf("Remove(nothing) = %v", err)
	}
	if err := r.Remove(ctx, envs[:1]); err != nil {
		t.Fatalf("Remove(%s/%s) = %v", envs[0].Mailbox, envs[0].ID, err)
	}
	if err := src.Close(); err != nil { // POP3 deletes at QUIT
		t.Fatalf("Close() after Remove = %v", err)
	}
	if c.h.Reopen == nil {
		return
	}
	left := c.without(envs[0].Mailbox, body)
	again := c.h.Reopen(t, src)
	defer func() { _ = again.Close() }()
	checkHolds(t, again, left, c.h.Caps)
}

// without returns the fixtures but one with body in mailbox.
func (c sourceCaps) without(mailbox string, body []byte) []Fixture {
	norm := func(b []byte) []byte {
		if c.h.Caps.Normalize != nil {
			return c.h.Caps.Normalize(b)
		}
		return b
	}
	var left []Fixture
	dropped := false
	for _, f := range c.fx {
		mb := f.Mailbox
		if mb == "" {
			mb = "INBOX"
		}
		if !dropped && mb == mailbox && bytes.Equal(norm(f.Body), norm(body)) {
			dropped = true
			continue
		}
		left = append(left, f)
	}
	return left
}

// deleteAware checks that a source told it will delete lists and serves
// the same messages.
func (c sourceCaps) deleteAware(t *testing.T, src mail.Source) {
	defer func() { _ = src.Close() }()
	mail.FeaturesOf(src).DeleteAware.DeleteAfterCopy()
	checkHolds(t, src, c.fx, c.h.Caps)
}

// unstoredReporter checks that Unstored names only messages read, and none
// of those reported stored.
func (c sourceCaps) unstoredReporter(t *testing.T, src mail.Source) {
	defer func() { _ = src.Close() }()
	envs := listAll(t, src)
	listed := map[[2]string]bool{}
	for _, e := range envs {
		readBody(t, src, e)
		listed[[2]string{e.Mailbox, string(e.ID)}] = true
	}
	u := mail.FeaturesOf(src).UnstoredReporter
	if got := u.Unstored(func(mail.Envelope) bool { return true }); len(got) != 0 {
		t.Errorf("Unstored with everything stored = %d messages, want none", len(got))
	}
	for _, e := range u.Unstored(func(mail.Envelope) bool { return false }) {
		if !listed[[2]string{e.Mailbox, string(e.ID)}] {
			t.Errorf("Unstored names %s/%s, which was not read", e.Mailbox, e.ID)
		}
	}
}

// headerFetcher checks that MessageIDs finds what a HeaderScanner finds in
// each body, and refuses an unknown ID.
func (c sourceCaps) headerFetcher(t *testing.T, src mail.Source) {
	defer func() { _ = src.Close() }()
	ctx := context.Background()
	hf := mail.FeaturesOf(src).HeaderFetcher
	byBox := map[string][]mail.Envelope{}
	for _, e := range listAll(t, src) {
		byBox[e.Mailbox] = append(byBox[e.Mailbox], e)
	}
	for mb, envs := range byBox {
		ids := make([]mail.ID, len(envs))
		for i, e := range envs {
			ids[i] = e.ID
		}
		got, err := hf.MessageIDs(ctx, mb, ids)
		if errors.Is(err, mail.ErrUnsupported) {
			t.Skipf("MessageIDs: %v", err)
		}
		if err != nil {
			t.Fatalf("MessageIDs(%s) = %v", mb, err)
		}
		for _, e := range envs {
			hs := mail.NewHeaderScanner(bytes.NewReader(readBody(t, src, e)))
			_, _ = io.Copy(io.Discard, hs)
			if want, ok := got[e.ID]; !ok || want != hs.MessageID() {
				t.Errorf("MessageIDs(%s)[%s] = %q (%v), the body has %q", mb, e.ID, want, ok, hs.MessageID())
			}
		}
		if _, err := hf.MessageIDs(ctx, mb, []mail.ID{"no-such-id-4711"}); !errors.Is(err, mail.ErrNotFound) {
			t.Errorf("MessageIDs(%s, unknown) = %v, want ErrNotFound", mb, err)
		}
	}
}

// statter checks that Stat counts what List lists, and refuses a mailbox
// that does not exist.
func (c sourceCaps) statter(t *testing.T, src mail.Source) {
	defer func() { _ = src.Close() }()
	ctx := context.Background()
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatalf("Mailboxes() = %v", err)
	}
	st := mail.FeaturesOf(src).Statter
	for _, mb := range boxes {
		var n int
		var size int64
		if err := src.List(ctx, mb, func(e mail.Envelope) error { n++; size += max(e.Size, 0); return nil }); err != nil {
			t.Fatalf("List(%s) = %v", mb, err)
		}
		gn, gsize, err := st.Stat(ctx, mb)
		if err != nil || gn != n || (size > 0 && gsize != size) {
			t.Errorf("Stat(%s) = %d, %d, %v; List gives %d messages, %d bytes", mb, gn, gsize, err, n, size)
		}
	}
	if _, _, err := st.Stat(ctx, "no-such-mailbox-4711"); !errors.Is(err, mail.ErrMailboxNotFound) {
		t.Errorf("Stat(no such mailbox) = %v, want ErrMailboxNotFound", err)
	}
}

// conditionalFlags: a write conditional on the message's current
// mod-sequence stores and reports it; one on an older mod-sequence stores
// nothing and reports the flags the message holds; an unknown id is an
// error. A store without mod-sequences says ErrUnsupported (skipped).
func (c sinkCaps) conditionalFlags(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	id := stored(t, s, capFixtures())[0]
	if id == "" {
		t.Skip("the sink reports no IDs: nothing to name the message by")
	}
	cf := mail.FeaturesOf(s).ConditionalFlagSetter
	seen := []mail.Flag{mail.FlagSeen}
	st, err := cf.SetFlagsIf(ctx, "INBOX", id, seen, 1<<62)
	if errors.Is(err, mail.ErrUnsupported) {
		t.Skipf("no mod-sequences: %v", err)
	}
	if err != nil || !st.Stored || st.ModSeq == 0 || !sameFlags(dropRecent(st.Flags), seen) {
		t.Fatalf("SetFlagsIf(%s, %v, since the future) = %+v, %v; want stored with a mod-sequence", id, seen, st, err)
	}
	old, err := cf.SetFlagsIf(ctx, "INBOX", id, []mail.Flag{mail.FlagFlagged}, st.ModSeq-1)
	if err != nil || old.Stored || !sameFlags(dropRecent(old.Flags), seen) || old.ModSeq < st.ModSeq {
		t.Fatalf("SetFlagsIf(%s, since before the last change) = %+v, %v; want refused, reporting %v", id, old, err, seen)
	}
	if _, err := cf.SetFlagsIf(ctx, "INBOX", "no-such-id-4711", seen, st.ModSeq); err == nil {
		t.Error("SetFlagsIf of an unknown ID = nil, want an error")
	}
	// SetFlagsIfAll: the same answers, per message, in one call.
	flagged := []mail.Flag{mail.FlagFlagged}
	all, err := cf.SetFlagsIfAll(ctx, "INBOX", []mail.FlagWrite{
		{ID: id, Flags: flagged, Since: old.ModSeq - 1}, {ID: "no-such-id-4711", Flags: seen, Since: old.ModSeq},
	})
	if err != nil || len(all) != 2 || all[0].Err != nil || all[0].Stored || !sameFlags(dropRecent(all[0].Flags), seen) || all[1].Err == nil {
		t.Fatalf("SetFlagsIfAll(stale, unknown) = %+v, %v; want refused reporting %v, and an error", all, err, seen)
	}
	all, err = cf.SetFlagsIfAll(ctx, "INBOX", []mail.FlagWrite{{ID: id, Flags: flagged, Since: all[0].ModSeq}})
	if err != nil || len(all) != 1 || all[0].Err != nil || !all[0].Stored || !sameFlags(dropRecent(all[0].Flags), flagged) {
		t.Fatalf("SetFlagsIfAll(current) = %+v, %v; want stored as %v", all, err, flagged)
	}
}

// dropRecent leaves out \Recent, session state (RFC 9051 §2.3.2).
func dropRecent(flags []mail.Flag) []mail.Flag {
	var out []mail.Flag
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, f)
		}
	}
	return out
}

// mover: a message moved to another mailbox is gone from its own (moving
// it again fails) and can be moved back by the id Move gave; the sink
// then holds what it held before.
func (c sinkCaps) mover(t *testing.T, s mail.Sink) {
	ctx := context.Background()
	fx := capFixtures()
	ids := stored(t, s, fx)
	if ids[0] == "" {
		t.Skip("the sink reports no IDs: nothing to name the message by")
	}
	if err := s.CreateMailbox(ctx, "Moved"); err != nil {
		t.Fatalf("CreateMailbox(Moved) = %v", err)
	}
	mv := mail.FeaturesOf(s).Mover
	moved, err := mv.Move(ctx, "INBOX", ids[0], "Moved")
	if err != nil {
		t.Fatalf("Move(INBOX, %s, Moved) = %v", ids[0], err)
	}
	if _, err := mv.Move(ctx, "INBOX", ids[0], "Moved"); err == nil {
		t.Errorf("Move of a message already moved = nil, want an error")
	}
	if moved == "" {
		fx[0].Mailbox = "Moved"
	} else if _, err := mv.Move(ctx, "Moved", moved, "INBOX"); err != nil {
		t.Fatalf("Move(Moved, %s, INBOX) = %v", moved, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if c.h.Reopen == nil {
		return
	}
	src := c.h.Reopen(t, s)
	defer func() { _ = src.Close() }()
	checkHolds(t, src, fx, Caps{Normalize: c.h.Caps.Normalize})
}

// flagKeeper: INBOX keeps some flags (or says all), and a mailbox that
// does not exist is an error.
func (c sinkCaps) flagKeeper(t *testing.T, s mail.Sink) {
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	fk := mail.FeaturesOf(s).FlagKeeper
	flags, all, err := fk.KeptFlags(ctx, "INBOX")
	if err != nil || !all && len(flags) == 0 {
		t.Fatalf("KeptFlags(INBOX) = %v, %v, %v; want some flags", flags, all, err)
	}
	if _, _, err := fk.KeptFlags(ctx, "No such folder 4711"); err == nil {
		t.Error("KeptFlags of a mailbox that does not exist = nil error")
	}
}

// folderManager: a mailbox is renamed (twice is done, not an error); it is
// not deleted while it holds other messages than the caller names, and is
// deleted when it holds exactly those (twice: no error); neither name is
// left.
func (c sinkCaps) folderManager(t *testing.T, s mail.Sink) {
	ctx := context.Background()
	fx := capFixtures()
	for i := range fx {
		fx[i].Mailbox = "CapOld"
	}
	if err := s.CreateMailbox(ctx, "CapOld"); err != nil {
		t.Fatalf("CreateMailbox(CapOld) = %v", err)
	}
	ids := stored(t, s, fx)
	fm := mail.FeaturesOf(s).FolderManager
	for range 2 {
		if err := fm.RenameMailbox(ctx, "CapOld", "CapNew"); err != nil {
			t.Fatalf("RenameMailbox(CapOld, CapNew) = %v", err)
		}
	}
	if err := fm.DeleteMailbox(ctx, "CapNew", ids[1:]); err == nil {
		t.Fatal("DeleteMailbox of a mailbox holding one message more than named = nil, want an error")
	}
	for range 2 {
		if err := fm.DeleteMailbox(ctx, "CapNew", ids); err != nil {
			t.Fatalf("DeleteMailbox(CapNew) = %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if c.h.Reopen == nil {
		return
	}
	src := c.h.Reopen(t, s)
	defer func() { _ = src.Close() }()
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes {
		if b == "CapOld" || b == "CapNew" {
			t.Errorf("mailbox %q left after the rename and the deletion (mailboxes %q)", b, boxes)
		}
	}
}
