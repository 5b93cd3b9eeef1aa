package mailtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// bigSize is the generated large message of the round-trip case.
const bigSize = 32 << 20

// unicodeMailboxes are the mailbox names every multi-mailbox endpoint must
// keep apart and round-trip.
var unicodeMailboxes = []string{"Archive", "Archive/2024/Q1", "Übersicht", "Gesendete Objekte", "Tom & Jerry", "日本語/メール"}

// TestSink runs the sink conformance suite against h.
func TestSink(t *testing.T, h SinkHarness) {
	t.Run("RoundTripCorpus", func(t *testing.T) { sinkRoundTrip(t, h, withBig(t, h.Caps, Corpus(t))) })
	t.Run("SlowBodies", func(t *testing.T) { sinkSlowBodies(t, h) })
	t.Run("FailingBodyLeavesNothing", func(t *testing.T) { sinkFailingBody(t, h, false) })
	t.Run("CancelMidBodyLeavesNothing", func(t *testing.T) { sinkFailingBody(t, h, true) })
	t.Run("ConcurrentPuts", func(t *testing.T) { sinkConcurrent(t, h) })
	t.Run("MailboxNames", func(t *testing.T) {
		if !h.Caps.Mailboxes {
			t.Skip("endpoint has a single mailbox")
		}
		var fx []Fixture
		for i, mb := range unicodeMailboxes {
			fx = append(fx, Fixture{Name: mb, Mailbox: mb, Body: []byte(fmt.Sprintf("Subject: %d\r\n\r\nin %s\r\n", i, mb)), Date: time.Date(2022, 1, 2, 3, 4, 5, 0, time.UTC)})
		}
		sinkRoundTrip(t, h, fx)
	})
	t.Run("CloseTwice", func(t *testing.T) {
		s := h.New(t)
		if err := s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		if err := s.Close(); err != nil && !errors.Is(err, mail.ErrClosed) {
			t.Fatalf("second Close() = %v, want nil or ErrClosed", err)
		}
	})
	t.Run("PutAfterClose", func(t *testing.T) {
		s := h.New(t)
		_ = s.Close()
		_, err := s.Put(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: "1", Size: 3}, strings.NewReader("a\r\n"))
		if !errors.Is(err, mail.ErrClosed) {
			t.Fatalf("Put after Close = %v, want ErrClosed", err)
		}
	})
	sinkCapTests(t, h)
}

func withBig(t *testing.T, c Caps, fx []Fixture) []Fixture {
	if c.NoBig || testing.Short() {
		return fx
	}
	return append(fx, Fixture{Name: "big-32MiB", Mailbox: "INBOX", Body: Big(bigSize), Flags: []mail.Flag{mail.FlagSeen}, Date: time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)})
}

// put stores fixtures through s (with body readers wrapped by wrap), commits
// and closes it.
func put(t *testing.T, s mail.Sink, fixtures []Fixture, wrap func(io.Reader) io.Reader) {
	t.Helper()
	ctx := context.Background()
	made := map[string]bool{}
	for i, f := range fixtures {
		if !made[f.Mailbox] {
			if err := s.CreateMailbox(ctx, f.Mailbox); err != nil {
				t.Fatalf("CreateMailbox(%q) = %v", f.Mailbox, err)
			}
			made[f.Mailbox] = true
		}
		env := mail.Envelope{Mailbox: f.Mailbox, ID: mail.ID(fmt.Sprint(i + 1)), Size: int64(len(f.Body)), Date: f.Date, Flags: f.Flags,
			Key: mail.DeliveryKey("mailtest:", f.Mailbox, mail.ID(fmt.Sprint(i+1)))}
		var r io.Reader = bytes.NewReader(f.Body)
		if wrap != nil {
			r = wrap(r)
		}
		if _, err := s.Put(ctx, env, r); err != nil {
			t.Fatalf("Put(%s) = %v", f.Name, err)
		}
	}
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
}

func commit(t *testing.T, s mail.Sink) {
	t.Helper()
	if c := mail.FeaturesOf(s).Committer; c != nil {
		if err := c.Commit(context.Background()); err != nil {
			t.Fatalf("Commit() = %v", err)
		}
	}
}

func sinkRoundTrip(t *testing.T, h SinkHarness, fixtures []Fixture) {
	s := h.New(t)
	put(t, s, fixtures, nil)
	if h.Reopen == nil {
		t.Skip("sink cannot be read back")
	}
	src := h.Reopen(t, s)
	defer func() { _ = src.Close() }()
	checkHolds(t, src, fixtures, h.Caps)
}

func sinkSlowBodies(t *testing.T, h SinkHarness) {
	fx := Corpus(t)
	if len(fx) > 4 {
		fx = fx[:4]
	}
	for _, w := range []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{{"OneByte", iotest.OneByteReader}, {"Half", iotest.HalfReader}, {"DataErr", iotest.DataErrReader}} {
		t.Run(w.name, func(t *testing.T) {
			s := h.New(t)
			put(t, s, fx, w.wrap)
			if h.Reopen == nil {
				return
			}
			src := h.Reopen(t, s)
			defer func() { _ = src.Close() }()
			checkHolds(t, src, fx, h.Caps)
		})
	}
}

// failingReader returns part of a body, then fails (or cancels its context).
type failingReader struct {
	r      io.Reader
	left   int
	cancel context.CancelFunc
}

var errInjected = errors.New("mailtest: injected body failure")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		if f.cancel != nil {
			f.cancel()
			return 0, context.Canceled
		}
		return 0, errInjected
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= n
	return n, err
}

func sinkFailingBody(t *testing.T, h SinkHarness, cancel bool) {
	s := h.New(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := s.CreateMailbox(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	body := Big(256 << 10)
	fr := &failingReader{r: bytes.NewReader(body), left: 100 << 10}
	if cancel {
		fr.cancel = stop
	}
	env := mail.Envelope{Mailbox: "INBOX", ID: "1", Size: int64(len(body)), Key: mail.DeliveryKey("mailtest:", "INBOX", "1")}
	_, err := s.Put(ctx, env, fr)
	switch {
	case err == nil:
		t.Fatal("Put with a failing body = nil, want an error")
	case cancel && !errors.Is(err, context.Canceled):
		t.Fatalf("Put cancelled mid-body = %v, want context.Canceled", err)
	case !cancel && !errors.Is(err, errInjected):
		t.Fatalf("Put with failing body = %v, want the body's error", err)
	}
	// A good message after the failure must still work and be the only one.
	good := Fixture{Name: "after", Mailbox: "INBOX", Body: []byte("Subject: after\r\n\r\nok\r\n")}
	genv := mail.Envelope{Mailbox: "INBOX", ID: "2", Size: int64(len(good.Body)), Key: mail.DeliveryKey("mailtest:", "INBOX", "2")}
	if _, err := s.Put(context.Background(), genv, bytes.NewReader(good.Body)); err != nil {
		t.Fatalf("Put after a failed Put = %v", err)
	}
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if h.Reopen == nil {
		return
	}
	src := h.Reopen(t, s)
	defer func() { _ = src.Close() }()
	checkHolds(t, src, []Fixture{good}, Caps{Normalize: h.Caps.Normalize})
}

func sinkConcurrent(t *testing.T, h SinkHarness) {
	s := h.New(t)
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 5
	var fx []Fixture
	for i := 0; i < workers*each; i++ {
		fx = append(fx, Fixture{Name: fmt.Sprint(i), Mailbox: "INBOX", Body: []byte(fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, strings.Repeat("x", i*97)))})
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(fx))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w * each; i < (w+1)*each; i++ {
				env := mail.Envelope{Mailbox: "INBOX", ID: mail.ID(fmt.Sprint(i)), Size: int64(len(fx[i].Body)), Key: mail.DeliveryKey("mailtest:", "INBOX", mail.ID(fmt.Sprint(i)))}
				if _, err := s.Put(ctx, env, bytes.NewReader(fx[i].Body)); err != nil {
					errs <- err
				}
				if i%2 == 0 {
					if c := mail.FeaturesOf(s).Committer; c != nil {
						if err := c.Commit(ctx); err != nil {
							errs <- err
						}
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Put/Commit: %v", err)
	}
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if h.Reopen == nil {
		return
	}
	src := h.Reopen(t, s)
	defer func() { _ = src.Close() }()
	checkHolds(t, src, fx, Caps{Normalize: h.Caps.Normalize})
}

// TestSource runs the source conformance suite against h.
func TestSource(t *testing.T, h SourceHarness) {
	fx := Corpus(t)
	if h.Caps.Mailboxes {
		for i := range fx {
			if i%3 == 1 {
				fx[i].Mailbox = unicodeMailboxes[i%len(unicodeMailboxes)]
			}
		}
	}
	ctx := context.Background()
	t.Run("ListingMatchesSeed", func(t *testing.T) {
		src := h.New(t, fx)
		defer func() { _ = src.Close() }()
		checkHolds(t, src, fx, h.Caps)
	})
	t.Run("IDsStableAndSizes", func(t *testing.T) {
		src := h.New(t, fx)
		defer func() { _ = src.Close() }()
		a, b := listAll(t, src), listAll(t, src)
		if len(a) != len(b) || len(a) != len(fx) {
			t.Fatalf("two listings have %d and %d messages, want %d", len(a), len(b), len(fx))
		}
		for i := range a {
			if a[i].Mailbox != b[i].Mailbox || a[i].ID != b[i].ID {
				t.Errorf("listing %d: %s/%s then %s/%s", i, a[i].Mailbox, a[i].ID, b[i].Mailbox, b[i].ID)
			}
		}
		for _, e := range a {
			body := readBody(t, src, e)
			n := int64(len(body))
			if e.Size != -1 && (e.Size < n-n/100-2 || e.Size > n+n/100+2) {
				t.Errorf("%s/%s: Size = %d, body has %d bytes", e.Mailbox, e.ID, e.Size, n)
			}
		}
	})
	t.Run("UnknownIDNotFound", func(t *testing.T) {
		src := h.New(t, fx)
		defer func() { _ = src.Close() }()
		rc, err := src.Open(ctx, mail.Envelope{Mailbox: "INBOX", ID: "no-such-id-4711", Size: -1})
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			_ = rc.Close()
		}
		if !errors.Is(err, mail.ErrNotFound) {
			t.Fatalf("Open(unknown) = %v, want ErrNotFound", err)
		}
	})
	t.Run("PartialReadThenClose", func(t *testing.T) {
		src := h.New(t, fx)
		defer func() { _ = src.Close() }()
		envs := listAll(t, src)
		for i, e := range envs {
			rc, err := src.Open(ctx, e)
			if err != nil {
				t.Fatalf("Open(%s) = %v", e.ID, err)
			}
			_, _ = io.CopyN(io.Discard, rc, int64(i%3)*7)
			if err := rc.Close(); err != nil {
				t.Fatalf("Close after partial read of %s = %v", e.ID, err)
			}
		}
		checkHolds(t, src, fx, h.Caps)
	})
	t.Run("CancelBeforeList", func(t *testing.T) {
		src := h.New(t, fx)
		defer func() { _ = src.Close() }()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := src.List(cctx, "INBOX", func(mail.Envelope) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("List with a cancelled context = %v, want context.Canceled", err)
		}
	})
	t.Run("CancelDuringList", func(t *testing.T) {
		src := h.New(t, fx)
		defer func() { _ = src.Close() }()
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		calls := 0
		err := src.List(cctx, "INBOX", func(mail.Envelope) error { calls++; cancel(); return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("List cancelled in fn = %v after %d calls, want context.Canceled", err, calls)
		}
	})
	t.Run("ErrorFromFnStopsList", func(t *testing.T) {
		src := h.New(t, fx)
		defer func() { _ = src.Close() }()
		stop := errors.New("stop here")
		calls := 0
		err := src.List(ctx, "INBOX", func(mail.Envelope) error { calls++; return stop })
		if err != stop || calls != 1 {
			t.Fatalf("List with failing fn = %v after %d calls, want the fn's error after 1", err, calls)
		}
	})
	t.Run("EmptySource", func(t *testing.T) {
		src := h.New(t, nil)
		defer func() { _ = src.Close() }()
		if got := listAll(t, src); len(got) != 0 {
			t.Fatalf("empty source lists %d messages", len(got))
		}
	})
	sourceCapTests(t, h, fx)
}

// listAll lists every message of every mailbox of src.
func listAll(t *testing.T, src mail.Source) []mail.Envelope {
	t.Helper()
	ctx := context.Background()
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatalf("Mailboxes() = %v", err)
	}
	var out []mail.Envelope
	for _, mb := range boxes {
		err := src.List(ctx, mb, func(e mail.Envelope) error {
			if e.Mailbox != mb {
				return fmt.Errorf("List(%q) gave an envelope for %q", mb, e.Mailbox)
			}
			out = append(out, e)
			return nil
		})
		if err != nil {
			t.Fatalf("List(%q) = %v", mb, err)
		}
	}
	return out
}

func readBody(t *testing.T, src mail.Source, e mail.Envelope) []byte {
	t.Helper()
	rc, err := src.Open(context.Background(), e)
	if err != nil {
		t.Fatalf("Open(%s/%s) = %v", e.Mailbox, e.ID, err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s/%s: %v", e.Mailbox, e.ID, err)
	}
	return b
}

type held struct {
	mailbox string
	sum     [32]byte
}

// checkHolds asserts that src holds exactly fixtures: the same multiset of
// (mailbox, body) pairs, and flags and dates when c says they survive.
func checkHolds(t *testing.T, src mail.Source, fixtures []Fixture, c Caps) {
	t.Helper()
	norm := func(b []byte) []byte {
		if c.Normalize != nil {
			return c.Normalize(b)
		}
		return b
	}
	want := map[held][]Fixture{}
	for _, f := range fixtures {
		k := held{f.Mailbox, sha256.Sum256(norm(f.Body))}
		want[k] = append(want[k], f)
	}
	for _, e := range listAll(t, src) {
		body := readBody(t, src, e)
		k := held{e.Mailbox, sha256.Sum256(norm(body))}
		fs := want[k]
		if len(fs) == 0 {
			t.Errorf("%s/%s: unexpected or duplicate message (%d bytes, starts %q)", e.Mailbox, e.ID, len(body), head(body))
			continue
		}
		f := fs[0]
		want[k] = fs[1:]
		if c.Flags && !sameFlags(e.Flags, f.Flags) {
			t.Errorf("%s (%s/%s): flags %v, want %v", f.Name, e.Mailbox, e.ID, e.Flags, f.Flags)
		}
		if c.Date && !f.Date.IsZero() && !e.Date.Equal(f.Date.Truncate(time.Second)) {
			t.Errorf("%s (%s/%s): date %v, want %v", f.Name, e.Mailbox, e.ID, e.Date, f.Date)
		}
	}
	for k, fs := range want {
		for _, f := range fs {
			t.Errorf("%s: missing from %q (or its bytes changed)", f.Name, k.mailbox)
		}
	}
}

func sameFlags(a, b []mail.Flag) bool {
	norm := func(fs []mail.Flag) string {
		var s []string
		for _, f := range fs {
			s = append(s, strings.ToLower(string(f)))
		}
		sort.Strings(s)
		return strings.Join(s, " ")
	}
	return norm(a) == norm(b)
}

func head(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}
