package mailtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// Testdata returns the path of elems under the repository's testdata folder,
// found by walking up from the working directory to go.mod.
func Testdata(t testing.TB, elems ...string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(append([]string{dir, "testdata"}, elems...)...)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("mailtest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Corpus returns the hostile-but-legal fixture messages of testdata/corpus
// (see its INDEX), all in INBOX, with flags and dates varied so that flag and
// date handling is exercised too.
func Corpus(t testing.TB) []Fixture {
	t.Helper()
	dir := Testdata(t, "corpus")
	names, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatalf("mailtest: no corpus in %s", dir)
	}
	sort.Strings(names)
	flagSets := [][]mail.Flag{nil, {mail.FlagSeen}, {mail.FlagSeen, mail.FlagFlagged}, {mail.FlagAnswered, mail.FlagSeen}, {mail.FlagDraft}}
	var out []Fixture
	for i, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Fixture{
			Name:    filepath.Base(n),
			Mailbox: "INBOX",
			Body:    b,
			Flags:   flagSets[i%len(flagSets)],
			Date:    time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC).Add(time.Duration(i) * 36 * time.Hour),
		})
	}
	return out
}

// Big returns a generated message of about size bytes with a base64-like
// attachment, deterministic, CRLF line endings.
func Big(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 1024)
	fmt.Fprintf(&b, "From: big@example.org\r\nTo: you@example.org\r\nSubject: big %d\r\nMessage-ID: <big-%d@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n", size, size)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	x := uint32(2463534242)
	line := make([]byte, 76)
	for b.Len() < size {
		for i := range line {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			line[i] = alphabet[x%64]
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// Index reads testdata/corpus/INDEX: file name -> what it exercises.
func Index(t testing.TB) map[string]string {
	t.Helper()
	f, err := os.Open(Testdata(t, "corpus", "INDEX"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, what, ok := strings.Cut(sc.Text(), ":"); ok {
			out[strings.TrimSpace(name)] = strings.TrimSpace(what)
		}
	}
	return out
}
