package imap

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// trickle writes s to fc in pieces of step bytes, one every tick, until it
// is all sent, the client hangs up, or 10 s pass (so a client that never
// gives up cannot wedge the test). Pacing a fake server is what the test
// is about; nothing waits on it for synchronisation.
func trickle(fc *fakeConn, s string, step int, tick time.Duration) {
	deadline := time.Now().Add(10 * time.Second)
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for len(s) > 0 && time.Now().Before(deadline) {
		k := min(step, len(s))
		fc.SetWriteDeadline(deadline)
		if _, err := io.WriteString(fc, s[:k]); err != nil {
			return
		}
		s = s[k:]
		<-tk.C
	}
}

// slowReader reads r in pieces of at most n bytes, pausing before each:
// a consumer (a slow sink) that is not the server's fault.
type slowReader struct {
	r     io.Reader
	n     int
	pause time.Duration
}

func (s *slowReader) Read(b []byte) (int, error) {
	<-time.After(s.pause)
	return s.r.Read(b[:min(len(b), s.n)])
}

// TestF8SlowLiteralMinRate: a response that has begun must keep arriving
// at MinRate per --timeout of waiting (docs/failure-model.md F8, "a literal
// declared and then streamed slowly"). A body literal within every size
// cap that trickles one byte every 50 ms (each read well inside the 500 ms
// inactivity limit, so that limit alone would wait 100 000 × 50 ms, about
// 80 minutes) is aborted after about one window, with an error naming the
// rule; so is a response line that trickles. A server that pauses before
// answering, a burst-then-pause literal above the rate, and a consumer
// reading a fast literal slowly all pass: only the server's slowness
// mid-response counts.
func TestF8SlowLiteralMinRate(t *testing.T) {
	const window = 500 * time.Millisecond
	body := "Subject: slow\r\n\r\n" + strings.Repeat("0123456789abcdef", 2048) // 32 KiB
	for _, tc := range []struct {
		name       string
		list, open func(fc *fakeConn, tag string)
		consumer   func(io.Reader) io.Reader
		want       string // "" = the whole body arrives
	}{
		{
			name: "LiteralOneBytePer50ms",
			open: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (UID 5 BODY[] {100000}\r\n")
				trickle(fc, strings.Repeat("x", 100000), 1, 50*time.Millisecond)
			},
			want: "of a literal in",
		},
		{
			name: "ListingLineOneBytePer50ms",
			list: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (UID 5 FLAGS (")
				trickle(fc, strings.Repeat("k", 100000), 1, 50*time.Millisecond)
			},
			want: "of a response in",
		},
		{
			name: "PauseBeforeEachAnswer",
			list: func(fc *fakeConn, tag string) {
				<-time.After(3 * window / 4) // thinking, not streaming
				fc.send("* 1 FETCH (UID 5 FLAGS (\\Seen) INTERNALDATE \"02-Jan-2024 03:04:05 +0000\" RFC822.SIZE %d)\r\n%s OK done\r\n", len(body), tag)
			},
			open: func(fc *fakeConn, tag string) {
				<-time.After(3 * window / 4)
				fc.send("* 1 FETCH (UID 5 BODY[] {%d}\r\n%s)\r\n%s OK done\r\n", len(body), body, tag)
			},
		},
		{
			name: "BurstsAboveTheRate",
			open: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (UID 5 BODY[] {%d}\r\n", len(body))
				// 8 KiB every 200 ms: 40 KiB/s, with pauses over a third of
				// the window mid-literal.
				trickle(fc, body, 8<<10, 200*time.Millisecond)
				fc.send(")\r\n%s OK done\r\n", tag)
			},
		},
		{
			name: "SlowConsumer",
			open: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (UID 5 BODY[] {%d}\r\n%s)\r\n%s OK done\r\n", len(body), body, tag)
			},
			// 8 reads of 4 KiB, 100 ms apart: 0.8 s, over one window.
			consumer: func(r io.Reader) io.Reader { return &slowReader{r: r, n: 4 << 10, pause: 100 * time.Millisecond} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, &fakeServer{handle: func(fc *fakeConn, tag, cmd, args string) bool {
				isFetch := cmd == "FETCH" || cmd == "UID FETCH"
				switch {
				case isFetch && strings.Contains(args, "RFC822.SIZE") && tc.list != nil:
					tc.list(fc, tag)
				case isFetch && !strings.Contains(args, "RFC822.SIZE") && tc.open != nil:
					tc.open(fc, tag)
				default:
					return false
				}
				return true
			}})
			o := plainOpts()
			o.Timeout = window
			start := time.Now()
			got, err := rateSession(t, f, o, tc.consumer)
			d := time.Since(start)
			if tc.want == "" {
				if err != nil || got != len(body) {
					t.Fatalf("session = %d bytes, %v; want the %d-byte body", got, err, len(body))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "minimum rate of 1 KiB/s") {
				t.Fatalf("session error = %v, want one naming the minimum rate (%q)", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			t.Logf("%v: aborted after %v", err, d.Round(time.Millisecond))
			if d > 4*window+2*time.Second {
				t.Errorf("aborted after %v, want about one %v window", d, window)
			}
		})
	}
}

// rateSession lists INBOX on f and reads its message through consumer
// (when not nil), returning the body's length and the first error.
func rateSession(t *testing.T, f *fakeServer, o *mail.OpenOptions, consumer func(io.Reader) io.Reader) (int, error) {
	t.Helper()
	ctx := context.Background()
	s, err := New(ctx, addrConfig(t, f.addr, TLSStartTLS), o)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var envs []mail.Envelope
	if err := s.List(ctx, "INBOX", func(e mail.Envelope) error { envs = append(envs, e); return nil }); err != nil {
		return 0, err
	}
	if len(envs) != 1 {
		t.Fatalf("List gave %d messages, want 1", len(envs))
	}
	rc, err := s.Open(ctx, envs[0])
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	var r io.Reader = rc
	if consumer != nil {
		r = consumer(rc)
	}
	n, err := io.Copy(io.Discard, r)
	return int(n), err
}
