package twoway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

func TestLFWriter(t *testing.T) {
	sum := func(parts ...string) string {
		w := &lfWriter{h: sha256.New()}
		for _, p := range parts {
			w.Write([]byte(p))
		}
		w.end()
		return hex.EncodeToString(w.h.Sum(nil))
	}
	lf := sum("a\nb\n")
	for _, c := range []struct {
		name  string
		parts []string
		same  bool
	}{
		{"CRLF", []string{"a\r\nb\r\n"}, true},
		{"CRLF split between writes", []string{"a\r", "\nb\r", "\n"}, true},
		{"mixed", []string{"a\r\nb\n"}, true},
		{"a lone CR is kept", []string{"a\rb\n"}, false},
		{"a CR at the end is kept", []string{"a\nb\n\r"}, false},
		{"a CR before a CR", []string{"a\r\r\nb\n"}, false},
	} {
		if got := sum(c.parts...) == lf; got != c.same {
			t.Errorf("%s: same hash as LF = %v, want %v", c.name, got, c.same)
		}
	}
	// Every split of inputs full of CRs hashes what dropping each CR
	// before an LF, byte by byte, leaves.
	for _, in := range []string{"a\r\nb\r\n", "\r\r\n\r", "\r", "x\r\ry\r\n\r\r", "\n\r\n\r\n", ""} {
		want := sha256.Sum256([]byte(dropCRBeforeLF(in)))
		for cut1 := 0; cut1 <= len(in); cut1++ {
			for cut2 := cut1; cut2 <= len(in); cut2++ {
				if got := sum(in[:cut1], in[cut1:cut2], in[cut2:]); got != hex.EncodeToString(want[:]) {
					t.Errorf("lfWriter(%q cut at %d, %d) differs from the CRs dropped one by one", in, cut1, cut2)
				}
			}
		}
	}
}

// dropCRBeforeLF is lfWriter's rule, one byte at a time.
func dropCRBeforeLF(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

// TestRunLostStatePairsByContent: messages without a Message-ID are paired
// by their content (line ends aside) when the state is lost, not copied
// again.
func TestRunLostStatePairsByContent(t *testing.T) {
	a, b := newMemStore("a", "INBOX"), newMemStore("b", "INBOX")
	date := time.Unix(1e9, 0)
	for i, body := range []string{"Subject: x\r\n\r\none\r\n", "Subject: y\r\n\r\ntwo\r\n", "Subject: z\r\n\r\nthree\r\n"} {
		a.mu.Lock()
		a.addLocked("INBOX", &memMsg{body: []byte(body), date: date.Add(time.Duration(i) * time.Hour)})
		a.mu.Unlock()
	}
	if _, err := syncMem(t, a, b, t.TempDir(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := syncMem(t, a, b, t.TempDir(), RunOptions{}) // a new state
	if err != nil {
		t.Fatal(err)
	}
	if res.Side != [2]Counts{} || len(b.describe()["INBOX"]) != len("x:,y:,z:") {
		t.Fatalf("a lost state with messages without Message-ID did %+v; B holds %v", res.Side, b.describe())
	}
}

// TestReadMessageIDAndContent: one read gives what readMessageID and
// contentHash give from a read each, wherever the Message-ID is (early,
// after a long header, past the scan limit, none) and whatever the line
// ends.
func TestReadMessageIDAndContent(t *testing.T) {
	long := "X-Long: " + strings.Repeat("y", 70<<10) + "\r\n"
	a := newMemStore("a", "INBOX")
	for _, body := range []string{
		"Message-ID: <a@x>\r\nSubject: s\r\n\r\nbody\r\n",
		"Subject: s\nMessage-ID: <b@x>\n\nbody\n" + strings.Repeat("line\r\n", 20000),
		"Subject: s\r\n" + long + "Message-ID: <c@x>\r\n\r\nbody\r\n",
		"Subject: no id\r\n\r\nbody\r",
		"",
	} {
		a.mu.Lock()
		id := a.addLocked("INBOX", &memMsg{body: []byte(body), date: time.Unix(1e9, 0)})
		a.mu.Unlock()
		env := mail.Envelope{Mailbox: "INBOX", ID: id, Size: int64(len(body))}
		ctx := context.Background()
		gotID, gotContent := readMessageIDAndContent(ctx, a, env)
		if wantID, wantContent := readMessageID(ctx, a, env), contentHash(ctx, a, env); gotID != wantID || gotContent != wantContent {
			t.Errorf("readMessageIDAndContent(%.30q) = %q, %q; want %q, %q", body, gotID, gotContent, wantID, wantContent)
		}
	}
}
