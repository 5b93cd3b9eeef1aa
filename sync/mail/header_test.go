package mail

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// scan runs a HeaderScanner over r to EOF and returns what it found; the
// bytes must pass through unchanged.
func scan(t *testing.T, r io.Reader, want []byte) string {
	t.Helper()
	sc := NewHeaderScanner(r)
	got, err := io.ReadAll(sc)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read through the scanner: %d bytes, %v; want the %d bytes unchanged", len(got), err, len(want))
	}
	return sc.MessageID()
}

// TestHeaderScannerMessageID: the Message-ID field is found by a
// case-insensitive name, unfolded and trimmed, only in the header section,
// and the same whether the scanner sees the whole message (the body on its
// way to the sink) or only its header section and blank line (POP3 TOP msg
// 0), in one read or one byte at a time (docs/failure-model.md C3).
func TestHeaderScannerMessageID(t *testing.T) {
	long := "X-Pad: " + strings.Repeat("p", 200) + "\r\n"
	pad := strings.Repeat(long, HeaderScanLimit/len(long)+1) // a header longer than the limit
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"Plain", "Subject: a\r\nMessage-ID: <a@x>\r\n\r\nbody\r\n", "<a@x>"},
		{"LowerCase", "message-id:<b@x>\r\n\r\nbody\r\n", "<b@x>"},
		{"SpaceBeforeColon", "Message-ID : <c@x>\r\n\r\n", "<c@x>"},
		{"Folded", "Message-ID:\r\n\t<d@x>\r\nSubject: d\r\n\r\n", "<d@x>"},
		{"FoldedTwice", "Message-ID: <e\r\n @x>\r\n (comment)\r\n\r\n", "<e @x> (comment)"},
		{"FirstOfTwo", "Message-ID: <f1@x>\r\nMessage-ID: <f2@x>\r\n\r\n", "<f1@x>"},
		{"BareLF", "Subject: g\nMessage-ID: <g@x>\n\nbody\n", "<g@x>"},
		{"LastLineNoBody", "Subject: h\r\nMessage-ID: <h@x>\r\n", "<h@x>"},
		{"NoFinalNewline", "Message-ID: <i@x>", "<i@x>"},
		{"OtherName", "Message-IDs: <j@x>\r\nX-Message-ID: <j@x>\r\n\r\n", ""},
		{"InBodyOnly", "Subject: k\r\n\r\nMessage-ID: <k@x>\r\n", ""},
		{"EmptyHeader", "\r\nMessage-ID: <l@x>\r\n", ""},
		{"None", "Subject: m\r\n\r\nbody\r\n", ""},
		{"Empty", "", ""},
		{"AfterLimit", pad + "Message-ID: <n@x>\r\n\r\nbody\r\n", ""},
		{"BeforeLimit", "Message-ID: <o@x>\r\n" + pad + "\r\nbody\r\n", "<o@x>"},
		{"BigBody", "Message-ID: <p@x>\r\n\r\n" + pad, "<p@x>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte(tc.msg)
			if got := scan(t, bytes.NewReader(msg), msg); got != tc.want {
				t.Errorf("whole message: MessageID() = %q, want %q", got, tc.want)
			}
			if got := scan(t, iotest.OneByteReader(bytes.NewReader(msg)), msg); got != tc.want {
				t.Errorf("one byte at a time: MessageID() = %q, want %q", got, tc.want)
			}
			// What TOP msg 0 serves: the header section and the blank line.
			head := msg
			if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
				head = msg[:i+4]
			} else if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
				head = msg[:i+2]
			}
			if got := scan(t, bytes.NewReader(head), head); got != tc.want {
				t.Errorf("header only: MessageID() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestHeaderScannerUnfinished: before the reader has passed the header
// section, the scanner does not guess: a field that may go on is not
// reported.
func TestHeaderScannerUnfinished(t *testing.T) {
	sc := NewHeaderScanner(strings.NewReader("Message-ID: <a@x>\r\n\tmore\r\n\r\n"))
	buf := make([]byte, 20) // up to the end of the first line only
	if _, err := io.ReadFull(sc, buf); err != nil {
		t.Fatal(err)
	}
	if got := sc.MessageID(); got != "" {
		t.Errorf("after %q: MessageID() = %q, want \"\" (the field may be folded)", buf, got)
	}
	io.Copy(io.Discard, sc)
	if got := sc.MessageID(); got != "<a@x> more" {
		t.Errorf("at EOF: MessageID() = %q, want %q", got, "<a@x> more")
	}
}
