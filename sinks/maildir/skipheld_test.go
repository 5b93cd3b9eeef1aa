package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	srcmaildir "github.com/mailferry/mailferry/sources/maildir"
	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// TestSkippedFolderEmptiedIsRefused covers the destination check of a
// folder skipped as unchanged (docs/failure-model.md rule 5) through the
// real Maildir sink, whose answer comes from the evidence the state keeps
// (mail.HoldEvidencer) without reading the folder: a destination folder
// emptied or removed after the evidence was taken stops the run, however
// many no-op runs vouched for it before; one left alone (the control)
// keeps being skipped.
func TestSkippedFolderEmptiedIsRefused(t *testing.T) {
	later := func() time.Time { return time.Now().Add(time.Hour) } // every stamp settled
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, dir string)
	}{
		{"untouched", nil},
		{"emptied", func(t *testing.T, dir string) {
			for _, sub := range []string{"cur", "new"} {
				for _, n := range files(t, dir, sub) {
					if err := os.Remove(filepath.Join(dir, sub, n)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}},
		{"removed", func(t *testing.T, dir string) { os.RemoveAll(dir) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			srcRoot, dstRoot, stDir := filepath.Join(base, "src"), filepath.Join(base, "dst"), filepath.Join(base, "state")
			seed := newTestSink(t, srcRoot, nil)
			for i, mb := range []string{"INBOX", "Work", "Work"} {
				put(t, seed, mail.Envelope{Mailbox: mb, Key: "seed" + string(rune('a'+i))}, "Subject: x\r\n\r\nbody\r\n")
			}
			commit(t, seed)
			seed.Close()
			run := func() (state.Summary, error) {
				t.Helper()
				src, err := srcmaildir.New(ctx, srcRoot, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				src.SetClock(later)
				dst := newTestSink(t, dstRoot, nil)
				defer dst.Close()
				dst.SetClock(later)
				st, err := state.Open(stDir, "src", "dst", state.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				store := state.NewStore(st)
				_, err = mailferry.Copy(ctx, src, dst, mailferry.Options{SrcEndpoint: "src", Checkpoint: store, State: st, Backoff: time.Millisecond})
				sum, _ := st.Summary("Work")
				return sum, err
			}
			for i := range 3 { // a full pass, then skips: the second takes evidence, the third uses it
				if sum, err := run(); err != nil {
					t.Fatalf("run %d = %v", i+1, err)
				} else if i == 2 && sum.Held == "" {
					t.Fatalf("run %d kept no evidence of Work's destination", i+1)
				}
			}
			if tc.lose != nil {
				tc.lose(t, filepath.Join(dstRoot, ".Work"))
			}
			_, err := run()
			switch {
			case tc.lose == nil && err != nil:
				t.Fatalf("a no-op run over an untouched destination = %v", err)
			case tc.lose != nil && (!errors.Is(err, checkpoint.ErrUnusable) || !mail.Fatal(err) || !strings.Contains(err.Error(), "Work")):
				t.Fatalf("a no-op run with Work's destination %s = %v; want a fatal ErrUnusable naming Work", tc.name, err)
			}
		})
	}
}
