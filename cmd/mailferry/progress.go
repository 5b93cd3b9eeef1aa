package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
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
// log line every 10 s otherwise, so cron mail stays short. --quiet and mode
// never show nothing. It polls the engine's Stats: the engine draws nothing.
func startProgress(ctx context.Context, st *mailferry.Stats, env *cliEnv, mode string, quiet bool, log *slog.Logger) (stop func()) {
	if quiet || mode == "never" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	finished := make(chan struct{})
	if mode == "always" || env.isTerminal {
		// progressbar/v3 never checks for a terminal and fsyncs an *os.File
		// writer on every frame (LIBRARIES.md §6): it only ever gets a
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
					bar.Finish()
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
			t := time.NewTicker(10 * time.Second)
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

func drawBar(bar *progressbar.ProgressBar, st *mailferry.Stats, sized *bool) {
	s := st.Snapshot()
	if s.QueuedBytes > 0 {
		if !*sized || bar.GetMax64() != s.QueuedBytes {
			bar.ChangeMax64(max(s.QueuedBytes, s.Bytes))
			*sized = true
		}
	}
	desc := fmt.Sprintf("%d/%d msgs", s.Copied, s.Queued)
	if cur := st.Current(); cur != "" {
		desc += " " + trimName(cur, 20)
	}
	bar.Describe(desc)
	bar.Set64(s.Bytes)
}
