package mboxfmt

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	gombox "github.com/emersion/go-mbox"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

var testDate = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// bodyCases are the messages whose round trip is usually lossy.
var bodyCases = []struct{ name, body string }{
	{"empty", ""},
	{"one LF", "\n"},
	{"one CRLF", "\r\n"},
	{"lone CR", "\r"},
	{"CRLF message", "Subject: x\r\n\r\nbody\r\n"},
	{"bare LF message", "Subject: x\n\nbody\n"},
	{"no final newline", "Subject: x\r\n\r\nno newline"},
	{"no final newline LF", "Subject: x\n\nlast"},
	{"ends in CR", "Subject: x\r\n\r\nends in CR\r"},
	{"ends CRLF CR", "a\r\n\r"},
	{"ends in blank lines", "Subject: x\n\nbody\n\n\n"},
	{"ends in blank CRLF lines", "Subject: x\r\n\r\nbody\r\n\r\n\r\n"},
	{"From lines", "Subject: x\n\nFrom a\n>From b\n>>From c\n>>>From d\nFromage\n From e\n>From\n"},
	{"From lines CRLF", "Subject: x\r\n\r\nFrom a\r\n>From b\r\n>>From c\r\n"},
	{"starts with From", "From nobody\nSubject: x\n\nbody\n"},
	{"starts with >From", ">From nobody\n"},
	{"last line From no newline", "Subject: x\n\nFrom the end"},
	{"last line >From no newline", "Subject: x\n\n>>From the end"},
	{"only >", ">>>>"},
	{"> run then LF", ">>>\n>>\n>\n"},
	{"mixed endings", "A: 1\r\nB: 2\n\r\nbody\r\nmore\nlone\rcr\r\n"},
	{"NUL bytes", "Subject: x\n\n\x00\x00From \x00\n\x00"},
	{"From_ split over buffer", strings.Repeat("x", bufSize-3) + "\nFrom split\n"},
	{"> run over buffer", "a\n" + strings.Repeat(">", bufSize+10) + "From x\n"},
	{"long line", strings.Repeat("y", 3*bufSize+7)},
	{"CR at buffer edge", strings.Repeat("z", bufSize-1) + "\r\n" + "From q\r\n"},
}

func encode(t testing.TB, bodies ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, b := range bodies {
		n, err := WriteEntry(&buf, "", testDate, strings.NewReader(b))
		if err != nil {
			t.Fatalf("WriteEntry(%q) = %v", b, err)
		}
		if want := int64(len(FromLine("", testDate))); n < want {
			t.Fatalf("WriteEntry wrote %d bytes, less than a From_ line", n)
		}
	}
	return buf.Bytes()
}

// decode reads every entry of data, reading bodies through wrap.
func decode(t testing.TB, data []byte, wrap func(io.Reader) io.Reader) ([]string, []Entry) {
	t.Helper()
	rd := NewReader(bytes.NewReader(data))
	var bodies []string
	var entries []Entry
	for {
		e, err := rd.Next()
		if err == io.EOF {
			return bodies, entries
		}
		if err != nil {
			t.Fatalf("Next() = %v", err)
		}
		var r io.Reader = rd
		if wrap != nil {
			r = wrap(rd)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read entry at %d: %v", e.Offset, err)
		}
		bodies = append(bodies, string(b))
		entries = append(entries, e)
	}
}

func TestRoundTripExact(t *testing.T) {
	for _, c := range bodyCases {
		t.Run(c.name, func(t *testing.T) {
			// Each body alone, then between two others (separator handling).
			for _, bodies := range [][]string{{c.body}, {"x\n", c.body, "y"}, {c.body, c.body}} {
				data := encode(t, bodies...)
				for _, w := range []struct {
					name string
					wrap func(io.Reader) io.Reader
				}{{"plain", nil}, {"OneByte", iotest.OneByteReader}, {"Half", iotest.HalfReader}} {
					got, entries := decode(t, data, w.wrap)
					if len(got) != len(bodies) {
						t.Fatalf("%s: read %d entries from %q, want %d", w.name, len(got), trim(data), len(bodies))
					}
					for i := range got {
						if got[i] != bodies[i] {
							t.Errorf("%s: entry %d = %q, want %q", w.name, i, trim([]byte(got[i])), trim([]byte(bodies[i])))
						}
						if !entries[i].Date.Equal(testDate) || entries[i].Sender != DefaultSender {
							t.Errorf("entry %d: From_ %q %v, want %q %v", i, entries[i].Sender, entries[i].Date, DefaultSender, testDate)
						}
					}
				}
			}
		})
	}
}

// TestWriteEntryBytes pins the encoding: these bytes are the file format.
func TestWriteEntryBytes(t *testing.T) {
	from := "From MAILER-DAEMON Thu Mar  4 05:06:07 2021\n"
	for _, c := range []struct{ body, want string }{
		{"", from + "\n"},
		{"a\n", from + "a\n\n"},
		{"a", from + "a\n"},
		{"a\r\n", from + "a\r\n\n"},
		{"From x\n>From y\nFrom", from + ">From x\n>>From y\nFrom\n"},
		{">>From x\r\n", from + ">>>From x\r\n\n"},
	} {
		if got := string(encode(t, c.body)); got != c.want {
			t.Errorf("WriteEntry(%q) wrote %q, want %q", c.body, got, c.want)
		}
	}
}

func TestWriteEntryBodyError(t *testing.T) {
	boom := errors.New("boom")
	var buf bytes.Buffer
	_, err := WriteEntry(&buf, "", testDate, io.MultiReader(strings.NewReader("From a\npartial"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("WriteEntry with a failing body = %v, want %v", err, boom)
	}
}

func TestFromLine(t *testing.T) {
	for _, c := range []struct {
		sender string
		want   string
	}{
		{"", "From MAILER-DAEMON Thu Mar  4 05:06:07 2021\n"},
		{"a@b.example", "From a@b.example Thu Mar  4 05:06:07 2021\n"},
		{"a b@c", "From MAILER-DAEMON Thu Mar  4 05:06:07 2021\n"},
		{"a\nb", "From MAILER-DAEMON Thu Mar  4 05:06:07 2021\n"},
	} {
		if got := FromLine(c.sender, testDate.In(time.FixedZone("x", 3600))); got != c.want {
			t.Errorf("FromLine(%q) = %q, want %q", c.sender, got, c.want)
		}
	}
}

func TestParseFromLine(t *testing.T) {
	for _, c := range []struct {
		line   string
		sender string
		date   time.Time
	}{
		{"From MAILER-DAEMON Thu Mar  4 05:06:07 2021\n", "MAILER-DAEMON", testDate},
		{"From a@b Thu Mar 4 05:06:07 2021\r\n", "a@b", testDate},
		{"From a@b Thu Mar 4 05:06:07 UTC 2021\n", "a@b", testDate},
		{"From a@b Thu Mar 4 06:06:07 2021 +0100\n", "a@b", testDate},
		{"From a@b garbage\n", "a@b", time.Time{}},
		{"From \n", "", time.Time{}},
	} {
		s, d := parseFromLine([]byte(c.line))
		if s != c.sender || !d.Equal(c.date) {
			t.Errorf("parseFromLine(%q) = %q, %v; want %q, %v", c.line, s, d, c.sender, c.date)
		}
	}
}

// TestReaderForeignFiles reads mbox files written by other tools.
func TestReaderForeignFiles(t *testing.T) {
	for _, c := range []struct {
		name string
		data string
		want []string
	}{
		{"mboxrd", "From a Thu Mar  4 05:06:07 2021\nS: 1\n\n>From x\n>>From y\n\nFrom b Thu Mar  4 05:06:07 2021\nS: 2\n\n", []string{"S: 1\n\nFrom x\n>From y\n", "S: 2\n"}},
		{"leading blank lines", "\n\r\nFrom a Thu Mar  4 05:06:07 2021\nx\n\n", []string{"x\n"}},
		{"no separator line", "From a Thu Mar  4 05:06:07 2021\nx\nFrom b Thu Mar  4 05:06:07 2021\ny\n", []string{"x", "y"}},
		{"CRLF file", "From a Thu Mar  4 05:06:07 2021\r\nS: 1\r\n\r\nbody\r\n\r\nFrom b Thu Mar  4 05:06:07 2021\r\nS: 2\r\n\r\n", []string{"S: 1\r\n\r\nbody\r\n", "S: 2\r\n"}},
		{"empty file", "", nil},
		{"missing final LF", "From a Thu Mar  4 05:06:07 2021\nlast", []string{"last"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rd := NewReader(strings.NewReader(c.data))
			rd.Lenient = true
			var got []string
			for {
				_, err := rd.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("Next() = %v", err)
				}
				b, err := io.ReadAll(rd)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				got = append(got, string(b))
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") || len(got) != len(c.want) {
				t.Errorf("read %q, want %q", got, c.want)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		data string
		want error
	}{
		{"not mbox", "Subject: x\n\nbody\n", ErrFormat},
		{"cut short", "From a Thu Mar  4 05:06:07 2021\nhalf a li", io.ErrUnexpectedEOF},
		{"cut after From_ line", "From a Thu Mar  4 05:06:07 2021", io.ErrUnexpectedEOF},
		{"long From_ line", "From " + strings.Repeat("a", MaxFromLine) + "\n", ErrFormat},
	} {
		t.Run(c.name, func(t *testing.T) {
			rd := NewReader(strings.NewReader(c.data))
			var err error
			for err == nil {
				if _, err = rd.Next(); err == nil {
					_, err = io.ReadAll(rd)
				}
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("reading %q: %v, want %v", c.data, err, c.want)
			}
		})
	}
}

// TestReaderSkipsUnreadEntries checks that Next skips the rest of an entry
// read in part, and that offsets point at From_ lines.
func TestReaderSkipsUnreadEntries(t *testing.T) {
	bodies := []string{"a\nFrom x\n", strings.Repeat("b", 200<<10), "c"}
	data := encode(t, bodies...)
	rd := NewReader(bytes.NewReader(data))
	for i := range bodies {
		e, err := rd.Next()
		if err != nil {
			t.Fatalf("Next() %d = %v", i, err)
		}
		if !bytes.HasPrefix(data[e.Offset:], []byte("From MAILER-DAEMON")) {
			t.Errorf("entry %d offset %d is not a From_ line", i, e.Offset)
		}
		io.CopyN(io.Discard, rd, 3)
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("Next() after the last = %v, want io.EOF", err)
	}
}

// TestGoMboxNotByteExact proves why the sink does not write with go-mbox
// v1.0.4 (docs/library-notes.md §5): its writer is mboxo and rewrites line endings,
// so its own reader gives back other bytes.
func TestGoMboxNotByteExact(t *testing.T) {
	lossy := 0
	for _, c := range bodyCases {
		var buf bytes.Buffer
		w := gombox.NewWriter(&buf)
		mw, err := w.CreateMessage("MAILER-DAEMON", testDate)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(mw, c.body)
		w.Close()
		msg, err := gombox.NewReader(&buf).NextMessage()
		var got []byte
		if err == nil {
			got, err = io.ReadAll(msg)
		}
		if err != nil || string(got) != c.body {
			lossy++
		}
	}
	t.Logf("go-mbox changes %d of %d messages in a round trip; ours changes none (TestRoundTripExact)", lossy, len(bodyCases))
	// The three losses we design around, each shown once.
	for _, c := range []struct{ name, body string }{
		{">From becomes From (mboxo)", "S: x\n\n>From quoted\n"},
		{"CRLF/LF rewritten, newlines added", "S: x\n\nlast line\n"},
		{"final newline added", "S: x\r\n\r\nno newline"},
	} {
		var buf bytes.Buffer
		w := gombox.NewWriter(&buf)
		mw, _ := w.CreateMessage("MAILER-DAEMON", testDate)
		io.WriteString(mw, c.body)
		w.Close()
		msg, err := gombox.NewReader(&buf).NextMessage()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(msg)
		if string(got) == c.body {
			t.Errorf("%s: go-mbox round trip is exact now (%q): revisit docs/library-notes.md §5 and the sink", c.name, got)
		}
	}
}

// TestGoMboxReadsOurFiles checks that a standard reader (go-mbox's) reads
// files we wrote as the same messages, up to what it always changes: it
// unquotes mboxo-style (one level, ">From " only), rewrites every line ending
// as CRLF and adds or drops trailing newlines.
func TestGoMboxReadsOurFiles(t *testing.T) {
	var bodies []string
	for _, c := range bodyCases {
		if strings.Contains(c.body, "\x00") || len(c.body) > bufSize || c.body == "" || strings.Trim(c.body, "\r\n") == "" {
			continue // go-mbox drops empty messages; long lines are tested elsewhere
		}
		bodies = append(bodies, c.body)
	}
	for _, f := range corpus(t) {
		bodies = append(bodies, string(f.Body))
	}
	data := encode(t, bodies...)
	r := gombox.NewReader(bytes.NewReader(data))
	for i, want := range bodies {
		msg, err := r.NextMessage()
		if err != nil {
			t.Fatalf("go-mbox NextMessage() %d = %v", i, err)
		}
		got, err := io.ReadAll(msg)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := normGoMbox(got), normLines([]byte(want)); !bytes.Equal(g, w) {
			t.Errorf("message %d: go-mbox read\n%q\nwant\n%q", i, trim(g), trim(w))
		}
	}
	if _, err := r.NextMessage(); err != io.EOF {
		t.Errorf("go-mbox reads more messages than written: %v", err)
	}
}

// normGoMbox finishes mboxrd unquoting of go-mbox's output (it removed one
// '>' only from ">From " lines) and normalises line endings.
func normGoMbox(b []byte) []byte {
	lines := bytes.Split(normLines(b), []byte("\n"))
	for i, l := range lines {
		if bytes.HasPrefix(bytes.TrimLeft(l, ">"), fromPrefix) && bytes.HasPrefix(l, []byte(">>")) {
			lines[i] = l[1:]
		}
	}
	return bytes.Join(lines, []byte("\n"))
}

// normLines turns CRLF into LF and drops trailing line ends.
func normLines(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.TrimRight(b, "\r\n")
}

// corpus returns the shared fixtures, or nil when testdata/corpus is
// missing (the inline cases cover the same ground).
func corpus(t testing.TB) []mailtest.Fixture {
	if _, err := os.Stat(mailtest.Testdata(t, "corpus", "INDEX")); err != nil {
		t.Logf("no corpus: %v", err)
		return nil
	}
	return mailtest.Corpus(t)
}

func TestCorpusRoundTripExact(t *testing.T) {
	fx := corpus(t)
	if fx == nil {
		t.Skip("no testdata/corpus")
	}
	var bodies []string
	for _, f := range fx {
		bodies = append(bodies, string(f.Body))
	}
	data := encode(t, bodies...)
	got, _ := decode(t, data, nil)
	if len(got) != len(bodies) {
		t.Fatalf("read %d messages, want %d", len(got), len(bodies))
	}
	for i := range got {
		if got[i] != bodies[i] {
			t.Errorf("%s: read back %d bytes, want %d (%q)", fx[i].Name, len(got[i]), len(bodies[i]), trim([]byte(got[i])))
		}
	}
}

func trim(b []byte) []byte {
	if len(b) > 120 {
		return append(append(b[:60:60], "..."...), b[len(b)-57:]...)
	}
	return b
}

// FuzzMboxRoundTrip: any messages written with WriteEntry read back exactly,
// in order, however they are split.
func FuzzMboxRoundTrip(f *testing.F) {
	for _, c := range bodyCases {
		if len(c.body) < 1000 {
			f.Add([]byte(c.body), []byte("From x\n"))
		}
	}
	f.Add([]byte(">From \r\n>>From \n\r"), []byte(""))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		bodies := []string{string(a), string(b), string(a)}
		data := encode(t, bodies...)
		if bytes.Contains(data, []byte("\nFrom ")) && bytes.Count(data, []byte("\nFrom "))+1 != len(bodies) {
			t.Fatalf("encoding has %d From_ lines for %d messages", bytes.Count(data, []byte("\nFrom "))+1, len(bodies))
		}
		got, _ := decode(t, data, nil)
		if len(got) != len(bodies) {
			t.Fatalf("read %d messages, want %d", len(got), len(bodies))
		}
		for i := range got {
			if got[i] != bodies[i] {
				t.Fatalf("message %d = %q, want %q", i, got[i], bodies[i])
			}
		}
	})
}

// FuzzReader: arbitrary input never panics, and whatever it reads as entries
// re-encodes to the same messages.
func FuzzReader(f *testing.F) {
	f.Add([]byte("From a Thu Mar  4 05:06:07 2021\nx\n\n"))
	f.Add([]byte("From a\r\n>From\r\n\r\nFrom b\r\n"))
	f.Add([]byte("\n\nFrom a\nlast"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(bytes.NewReader(data))
		rd.Lenient = true
		var bodies []string
		for {
			_, err := rd.Next()
			if err != nil {
				break
			}
			b, err := io.ReadAll(rd)
			if err != nil {
				break
			}
			bodies = append(bodies, string(b))
		}
		got, _ := decode(t, encode(t, bodies...), nil)
		if strings.Join(got, "\x00|") != strings.Join(bodies, "\x00|") {
			t.Fatalf("re-encoding %q changed it to %q", bodies, got)
		}
	})
}

// BenchmarkReader reads back 16 KiB messages, our reader against go-mbox's:
// typical (base64 lines) and worst case (every line a quoted From_).
func BenchmarkReader(b *testing.B) {
	for _, c := range []struct{ name, line string }{
		{"typical", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"},
		{"quoted", "From quoted line and some text to fill it up\r\n"},
	} {
		body := "Subject: bench\r\n\r\n" + strings.Repeat(c.line, 16<<10/len(c.line))
		data := encode(b, slices.Repeat([]string{body}, 256)...)
		b.Run(c.name+"/mailferry", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				rd := NewReader(bytes.NewReader(data))
				for {
					if _, err := rd.Next(); err != nil {
						break
					}
					io.Copy(io.Discard, rd)
				}
			}
		})
		b.Run(c.name+"/go-mbox", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				rd := gombox.NewReader(bytes.NewReader(data))
				for {
					m, err := rd.NextMessage()
					if err != nil {
						break
					}
					io.Copy(io.Discard, m)
				}
			}
		})
		b.Run(c.name+"/WriteEntry", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for i := 0; i < b.N; i++ {
				WriteEntry(io.Discard, "", testDate, strings.NewReader(body))
			}
		})
	}
}
