package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mailferry/mailferry/sync/mail"
)

func TestDotReader(t *testing.T) {
	const after = "+OK next response\r\n"
	tests := []struct {
		name, wire, want string
		wantErr          error // nil: the body ends cleanly and `after` stays unread
	}{
		{name: "plain", wire: "a\r\nb\r\n.\r\n", want: "a\r\nb\r\n"},
		{name: "empty", wire: ".\r\n", want: ""},
		{name: "DotLines", wire: "..\r\n...\r\n..hidden\r\n...double\r\n.\r\n", want: ".\r\n..\r\n.hidden\r\n..double\r\n"},
		{name: "UnstuffedDotLine", wire: ".hidden\r\n.\r\n", want: "hidden\r\n"},
		{name: "BareLFTerminator", wire: "a\n.\n", want: "a\n"},
		{name: "BareLFKept", wire: "a\nb\r\n.\r\n", want: "a\nb\r\n"},
		{name: "BareCRKept", wire: "a\rb\r\n.\r\n", want: "a\rb\r\n"},
		{name: "DotCRNotTerminator", wire: ".\rx\r\n.\r\n", want: "\rx\r\n"},
		{name: "NUL", wire: "a\x00b\r\n.\r\n", want: "a\x00b\r\n"},
		{name: "LongLine", wire: strings.Repeat("x", 200<<10) + "\r\n.\r\n", want: strings.Repeat("x", 200<<10) + "\r\n"},
		{name: "B1CutMidLine", wire: "a\r\nbc", want: "a\r\nbc", wantErr: io.ErrUnexpectedEOF},
		{name: "B1CutAtLineStart", wire: "a\r\n", want: "a\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "B1CutAfterDot", wire: "a\r\n.", want: "a\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "B1CutAfterDotCR", wire: "a\r\n.\r", want: "a\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "B1Nothing", wire: "", want: "", wantErr: io.ErrUnexpectedEOF},
		{name: "F8EndlessLine", wire: strings.Repeat("y", MaxLine+10), wantErr: mail.ErrTooLarge},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{{"Whole", func(r io.Reader) io.Reader { return r }}, {"B3OneByte", iotest.OneByteReader}, {"B3Half", iotest.HalfReader}}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				wire := tt.wire
				if tt.wantErr == nil {
					wire += after
				}
				br := bufio.NewReaderSize(rd.wrap(strings.NewReader(wire)), 4096)
				got, err := io.ReadAll(newDotReader(br))
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("read = %v, want %v", err, tt.wantErr)
					}
					if tt.want != "" && string(got) != tt.want {
						t.Fatalf("read before the error %q, want %q", got, tt.want)
					}
					return
				}
				if err != nil {
					t.Fatalf("read = %v", err)
				}
				if string(got) != tt.want {
					t.Fatalf("body = %q, want %q", clip(string(got)), clip(tt.want))
				}
				rest, _ := io.ReadAll(br)
				if string(rest) != after {
					t.Fatalf("left after the body %q, want %q", rest, after)
				}
			})
		}
	}
}

// FuzzDotReader: any body stuffed by the server's rule comes back byte for
// byte (with a final CRLF added when missing), the bytes after the
// terminator stay unread, and arbitrary input never panics (F10).
func FuzzDotReader(f *testing.F) {
	for _, s := range []string{"", ".", "..\r\n.\r\n", "a\r\n.b\n..\r\n", "\r\n.\r\n", ".\n", "x"} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		wrap := func(r io.Reader) io.Reader { return r }
		if chunk%2 == 1 {
			wrap = iotest.OneByteReader
		}
		// Arbitrary wire bytes: never a panic, never more bytes than sent.
		out, _ := io.ReadAll(newDotReader(bufio.NewReaderSize(wrap(bytes.NewReader(body)), 16)))
		if len(out) > len(body) {
			t.Fatalf("read %d bytes from %d on the wire", len(out), len(body))
		}
		// A stuffed body round-trips.
		wire := append(stuffed(body), "TAIL"...)
		br := bufio.NewReaderSize(wrap(bytes.NewReader(wire)), 16)
		got, err := io.ReadAll(newDotReader(br))
		if err != nil {
			t.Fatalf("read of a stuffed body = %v", err)
		}
		want := body
		if len(want) > 0 && want[len(want)-1] != '\n' {
			want = append(append([]byte(nil), want...), '\r', '\n')
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("body %q came back as %q", want, got)
		}
		if rest, _ := io.ReadAll(br); string(rest) != "TAIL" {
			t.Fatalf("left %q after the body, want TAIL", rest)
		}
	})
}
