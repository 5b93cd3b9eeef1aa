package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	stdsync "sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	mailferry "github.com/mailferry/mailferry/sync"
)

// isTerminal reports whether w is a terminal (bars only go there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
}

// startProgress shows the run's progress until the returned stop is called:
// a bytes bar with rate and ETA on a terminal (mode auto or always), or one
// log line every interval otherwise, so cron mail stays short. --quiet and
// mode never show nothing. It polls the engine's Stats: the engine draws
// nothing.
func startProgress(ctx context.Context, st *mailferry.Stats, env *cliEnv, mode string, interval time.Duration, quiet bool, log *slog.Logger) (stop func()) {
	if quiet || mode == "never" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	finished := make(chan struct{})
	if showBars(mode, quiet, env) {
		// progressbar/v3 never checks for a terminal and fsyncs an *os.File
		// writer on every frame (docs/library-notes.md §6): it only ever gets a
		// terminal or "always", and a throttle.
		bar := progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(env.stderr),
			progressbar.OptionSetDescription("listing"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionSetRenderBlankState(true),
		)
		go func() {
			defer close(finished)
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			sized := false
			for {
				select {
				case <-ctx.Done():
					drawBar(bar, st, &sized)
					_ = bar.Finish()
					fmt.Fprintln(env.stderr)
					return
				case <-t.C:
					drawBar(bar, st, &sized)
				}
			}
		}()
	} else {
		go func() {
			defer close(finished)
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s := st.Snapshot()
					log.Info("progress", "copied", s.Copied, "queued", s.Queued, "skipped", s.Skipped, "failed", s.Failed,
						"bytes", s.Bytes, "mailbox", st.Current(), "elapsed", time.Since(st.Start).Round(time.Second))
				}
			}
		}()
	}
	return func() {
		cancel()
		<-finished
	}
}

// showBars reports whether a run draws progress bars.
func showBars(mode string, quiet bool, env *cliEnv) bool {
	return !quiet && (mode == "always" || (mode == "auto" && env.isTerminal))
}

// termShare lets the bar and log records share the terminal: a record first
// clears the bar's unfinished line, and the bar redraws below the record on
// its next tick, so the screen holds one bar line, not a smear of both.
type termShare struct {
	mu    stdsync.Mutex
	w     io.Writer
	dirty bool // the bar's line is on screen, unfinished
}

// barSide is the bar's writer.
type barSide struct{ t *termShare }

func (b barSide) Write(p []byte) (int, error) {
	b.t.mu.Lock()
	defer b.t.mu.Unlock()
	if len(p) > 0 {
		b.t.dirty = p[len(p)-1] != '\n'
	}
	return b.t.w.Write(p)
}

// logSide is the log records' writer (slog writes one record per Write).
type logSide struct{ t *termShare }

func (l logSide) Write(p []byte) (int, error) {
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	if l.t.dirty {
		_, _ = io.WriteString(l.t.w, "\r\x1b[K")
		l.t.dirty = false
	}
	return l.t.w.Write(p)
}

func drawBar(bar *progressbar.ProgressBar, st *mailferry.Stats, sized *bool) {
	s := st.Snapshot()
	if s.QueuedBytes > 0 {
		if !*sized || bar.GetMax64() != s.QueuedBytes {
			bar.ChangeMax64(max(s.QueuedBytes, s.Bytes))
			*sized = true
		}
	}
	desc := fmt.Sprintf("%d/%d msgs", s.Copied+s.Present+s.Remapped, s.Queued) // queued ones end in one of the three
	if cur := st.Current(); cur != "" {
		desc += " " + trimName(cur, 20)
	}
	bar.Describe(desc)
	_ = bar.Set64(s.Bytes)
}
