package imap

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// endless writes chunk to fc until the client hangs up (or 30 s pass, so
// a client that never does cannot wedge the test).
func endless(fc *fakeConn, chunk string) {
	fc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	b := []byte(chunk)
	for len(b) < 32<<10 {
		b = append(b, chunk...)
	}
	for {
		if _, err := fc.Write(b); err != nil {
			return
		}
	}
}

// TestF8HostileResponses plays docs/failure-model.md F8 against the IMAP
// source with a scripted server: each hostile response is aborted at its
// cap with an error naming it, well before the inactivity timeout, and the heap
// allocated meanwhile stays bounded although the server would send
// gigabytes.
func TestF8HostileResponses(t *testing.T) {
	const maxAlloc = 96 << 20
	for _, tc := range []struct {
		name string
		// reply answers the listing FETCH (list), the body FETCH (open) or
		// LIST (boxes); nil: the fake's default.
		list, open, boxes func(fc *fakeConn, tag string)
		want              string
		// permanent: a message literal over imapconn.MaxBodyLiteral fails that
		// message for good (mail.ErrTooLarge, not temporary: every retry
		// gets the same size); every other cap names a broken or hostile
		// server, a temporary failure.
		permanent bool
	}{
		{
			name: "LiteralMaxUint64",
			open: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (UID 5 BODY[] {18446744073709551615}\r\n")
				endless(fc, "x")
			},
			want: "20-digit size", permanent: true,
		},
		{
			name: "LiteralDigitsForever",
			open: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (UID 5 BODY[] {")
				endless(fc, "9")
			},
			want: "longer than 1 MiB",
		},
		{
			name: "Literal4GBStreamedSlowly",
			open: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (UID 5 BODY[] {4294967296}\r\nFrom: a\r\n")
				io.Copy(io.Discard, fc.r) // then nothing more, ever
			},
			want: "4294967296-byte message literal, over the 1024 MiB cap", permanent: true,
		},
		{
			name: "RFC822SizeLies",
			list: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (UID 5 FLAGS () INTERNALDATE \"02-Jan-2024 03:04:05 +0000\" RFC822.SIZE 1024)\r\n%s OK done\r\n", tag)
			},
			open: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (UID 5 BODY[] {2147483648}\r\n")
				endless(fc, "Subject: lie\r\n")
			},
			want: "2147483648-byte message literal, over the 1024 MiB cap", permanent: true,
		},
		{
			name: "LineWithoutCRLF",
			list: func(fc *fakeConn, tag string) { fc.send("* OK "); endless(fc, "a") },
			want: "longer than 1 MiB",
		},
		{
			name: "FetchLineWithoutCRLF",
			list: func(fc *fakeConn, tag string) {
				fc.send("* 1 FETCH (FLAGS (")
				endless(fc, "$Keyword_with_a_long_name_to_keep_the_count_low ")
			},
			want: "longer than 1 MiB",
		},
		{
			name:  "ListHugeLiteralName",
			boxes: func(fc *fakeConn, tag string) { fc.send("* LIST () \"/\" {1073741824}\r\n"); endless(fc, "n") },
			want:  "1073741824-byte non-message literal, over the 8 MiB cap",
		},
		{
			name: "ListLiteralJustOverCap",
			boxes: func(fc *fakeConn, tag string) {
				fc.send("* LIST () \"/\" {%d}\r\n", imapconn.MaxDataLiteral+1)
				endless(fc, "n")
			},
			want: "non-message literal, over the 8 MiB cap",
		},
		{
			name: "UntaggedOKForever",
			list: func(fc *fakeConn, tag string) { endless(fc, "* OK still here\r\n") },
			want: "more than 10000 untagged status responses",
		},
		{
			name: "UntaggedExistsForever",
			list: func(fc *fakeConn, tag string) { endless(fc, "* 1 EXISTS\r\n* 0 RECENT\r\n") },
			want: "more than 10000 untagged status responses",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, &fakeServer{handle: func(fc *fakeConn, tag, cmd, args string) bool {
				switch {
				case cmd == "LIST" && tc.boxes != nil:
					tc.boxes(fc, tag)
				case (cmd == "FETCH" || cmd == "UID FETCH") && strings.Contains(args, "RFC822.SIZE") && tc.list != nil:
					tc.list(fc, tag)
				case (cmd == "FETCH" || cmd == "UID FETCH") && !strings.Contains(args, "RFC822.SIZE") && tc.open != nil:
					tc.open(fc, tag)
				default:
					return false
				}
				return true
			}})
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			err := f8Session(t, f)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("session error = %v, want one naming the cap: %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			if tooBig, temp := errors.Is(err, mail.ErrTooLarge), mail.Temporary(err); tooBig != tc.permanent || temp == tc.permanent {
				t.Errorf("error %q: ErrTooLarge %v, temporary %v; want %v, %v", err, tooBig, temp, tc.permanent, !tc.permanent)
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("aborted after %v: the cap, not the 5 s inactivity limit, must end it", d)
			}
			a := after.TotalAlloc - before.TotalAlloc
			t.Logf("%v: refused after %v, %d MiB allocated", err, time.Since(start).Round(time.Millisecond), a>>20)
			if a > maxAlloc {
				t.Errorf("allocated %d MiB while refusing, want under %d MiB", a>>20, maxAlloc>>20)
			}
		})
	}
}

// f8Session lists the mailboxes, lists INBOX and reads its message through
// a Source on f, and returns the first error.
func f8Session(t *testing.T, f *fakeServer) error {
	t.Helper()
	ctx := context.Background()
	s, err := New(ctx, addrConfig(t, f.addr, TLSStartTLS), plainOpts())
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Mailboxes(ctx); err != nil {
		return err
	}
	var envs []mail.Envelope
	if err := s.List(ctx, "INBOX", func(e mail.Envelope) error { envs = append(envs, e); return nil }); err != nil {
		return err
	}
	if len(envs) != 1 {
		t.Fatalf("List gave %d messages, want 1", len(envs))
	}
	rc, err := s.Open(ctx, envs[0])
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}
