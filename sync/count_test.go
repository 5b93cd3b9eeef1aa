package sync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// presentSink is a MemSink whose destination already holds some bodies
// (put there by another tool): Put finds them and answers as the IMAP
// sink's dedupe does, with mail.PresentError and the existing ID.
type presentSink struct {
	*mailtest.MemSink
	there map[string]mail.ID // body -> existing ID
}

func (s *presentSink) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, body); err != nil {
		return "", err
	}
	if id, ok := s.there[buf.String()]; ok {
		return id, mail.Present(id)
	}
	return s.MemSink.Put(ctx, env, &buf)
}

// TestPresentAndRemappedCounted: a message the sink finds already in the
// destination counts as present, a message re-mapped by content as
// remapped, and neither as copied (issue 10); both are recorded, present
// ones under the ID the sink named, so a rerun does nothing.
func TestPresentAndRemappedCounted(t *testing.T) {
	fx := fixtures(6, "INBOX")
	for _, tc := range []struct {
		name                      string
		there                     int // of fx, already in the destination
		deleteSource              bool
		copied, present, recorded int64
	}{
		{name: "NonePresent", there: 0, copied: 6, recorded: 6},
		{name: "SomePresent", there: 4, copied: 2, present: 4, recorded: 6},
		{name: "AllPresent", there: 6, present: 6, recorded: 6},
		{name: "DeleteMode", there: 4, deleteSource: true, copied: 2, present: 4, recorded: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &presentSink{MemSink: mailtest.NewMemSink(), there: map[string]mail.ID{}}
			for i := range tc.there {
				sink.there[string(fx[i].Body)] = mail.ID("old." + string(rune('a'+i)))
			}
			src := mailtest.NewMemSource(fx)
			bodies := map[mail.ID]string{}
			for i := range fx {
				id := mail.ID(strconv.Itoa(i + 1))
				bodies[id] = bodyOf(src, id)
			}
			cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
			opt := fastOpts(cp)
			opt.DeleteSource = tc.deleteSource
			res, err := Copy(context.Background(), src, sink, opt)
			st := res.Stats
			if err != nil || st.Copied.Load() != tc.copied || st.Present.Load() != tc.present || st.Remapped.Load() != 0 ||
				st.Box("INBOX").Present.Load() != tc.present || int64(len(cp.Records("INBOX"))) != tc.recorded {
				t.Fatalf("Copy = %v: copied %d, present %d (INBOX %d), remapped %d, recorded %d; want %d, %d, 0, %d",
					err, st.Copied.Load(), st.Present.Load(), st.Box("INBOX").Present.Load(), st.Remapped.Load(), len(cp.Records("INBOX")), tc.copied, tc.present, tc.recorded)
			}
			if snap := st.Snapshot(); snap.Present != tc.present || snap.Copied != tc.copied {
				t.Errorf("snapshot %+v: want present %d, copied %d", snap, tc.present, tc.copied)
			}
			for _, r := range cp.Records("INBOX") {
				if strings.HasPrefix(string(r.Dst), "old.") != (sink.there[bodies[r.ID]] != "") {
					t.Errorf("record %s -> %s: a present message must be recorded under the existing id", r.ID, r.Dst)
				}
			}
			if tc.deleteSource && (st.Deleted.Load() != 6 || src.Len("INBOX") != 0) {
				t.Errorf("delete mode: %d deleted, %d left; want present messages deleted too", st.Deleted.Load(), src.Len("INBOX"))
			}
			if tc.deleteSource {
				return
			}
			res, err = Copy(context.Background(), src, sink, opt)
			if err != nil || res.Stats.Copied.Load() != 0 || res.Stats.Present.Load() != 0 || res.Stats.Skipped.Load() != 6 {
				t.Errorf("rerun = %v: copied %d, present %d, skipped %d; want only 6 skipped", err, res.Stats.Copied.Load(), res.Stats.Present.Load(), res.Stats.Skipped.Load())
			}
		})
	}
}

// bodyOf is the body of src's message id in INBOX, or "".
func bodyOf(src *mailtest.MemSource, id mail.ID) string {
	rc, err := src.Open(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: id})
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// TestPresentErrorMatches: mail.PresentError is found through wrapping,
// and is neither temporary nor fatal.
func TestPresentErrorMatches(t *testing.T) {
	err := errors.Join(errors.New("other"), mail.Present("7.1"))
	var pe *mail.PresentError
	if !errors.As(err, &pe) || pe.ID != "7.1" || mail.Temporary(pe) || mail.Fatal(pe) {
		t.Errorf("errors.As = %v, %+v; temporary %v, fatal %v", errors.As(err, &pe), pe, mail.Temporary(pe), mail.Fatal(pe))
	}
}

// closeLog records the order in which Run closes things.
type closeLog struct {
	mu    stdsync.Mutex
	order []string
}

func (l *closeLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.order = append(l.order, s)
}

type closingSource struct {
	*mailtest.MemSource
	log *closeLog
	err error
}

func (s *closingSource) Close() error { s.log.add("source"); return s.err }

type closingSink struct {
	*mailtest.MemSink
	log *closeLog
}

func (s *closingSink) Close() error { s.log.add("sink"); return s.MemSink.Close() }

type closingStore struct {
	checkpoint.Store
	log *closeLog
}

func (s *closingStore) Close() error { s.log.add("checkpoint"); return s.Store.Close() }

// TestRunClosesInOrder: Run closes the source (which commits POP3
// deletions), then the checkpoint, then the sink, whatever happened; a
// source that fails to close fails a delete-mode run only.
func TestRunClosesInOrder(t *testing.T) {
	for _, tc := range []struct {
		name         string
		deleteSource bool
		closeErr     error
		wantErr      bool
	}{
		{name: "Copy"},
		{name: "CopyCloseFails", closeErr: errors.New("quit lost")},
		{name: "DeleteCloseFails", deleteSource: true, closeErr: errors.New("quit lost"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &closeLog{}
			src := &closingSource{MemSource: mailtest.NewMemSource(fixtures(3, "INBOX")), log: log, err: tc.closeErr}
			sink := &closingSink{MemSink: mailtest.NewMemSink(), log: log}
			opt := fastOpts(&closingStore{Store: openCP(t, filepath.Join(t.TempDir(), "cp.jsonl")), log: log})
			opt.DeleteSource = tc.deleteSource
			res, err := Run(context.Background(), src, sink, opt)
			if (err != nil) != tc.wantErr || res.Stats.Copied.Load() != 3 {
				t.Errorf("Run = %v (copied %d), want error %v", err, res.Stats.Copied.Load(), tc.wantErr)
			}
			if got := strings.Join(log.order, ","); got != "source,checkpoint,sink" {
				t.Errorf("closed %s, want source,checkpoint,sink", got)
			}
		})
	}
}

// alteringSink is a presentSink that says how many of the copies it found
// its server had changed (mail.AlterationCounter), as the IMAP sink does.
type alteringSink struct {
	*presentSink
	altered int64
}

func (s *alteringSink) AlteredOnAppend() int64 { return s.altered }

// TestAlteredOnAppendReported: the run's Result carries the sink's count of
// copies its server changed when storing them, so the summary can say so
// once; a sink without the capability reports none.
func TestAlteredOnAppendReported(t *testing.T) {
	for _, tc := range []struct {
		name    string
		counter bool
		want    int64
	}{
		{name: "Counter", counter: true, want: 3},
		{name: "NoCounter", counter: false, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := fixtures(3, "INBOX")
			ps := &presentSink{MemSink: mailtest.NewMemSink(), there: map[string]mail.ID{}}
			var sink mail.Sink = ps
			if tc.counter {
				sink = &alteringSink{presentSink: ps, altered: 3}
			}
			cp := openCP(t, filepath.Join(t.TempDir(), "cp.jsonl"))
			res, err := Copy(context.Background(), mailtest.NewMemSource(fx), sink, fastOpts(cp))
			if err != nil || res.AlteredOnAppend != tc.want {
				t.Fatalf("Copy = %v, AlteredOnAppend %d; want nil, %d", err, res.AlteredOnAppend, tc.want)
			}
		})
	}
}
