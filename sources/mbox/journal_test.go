package mbox

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// encode writes bodies as entries of one mbox file.
func encode(t testing.TB, bodies ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	date := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC) // the format tests' testDate
	for _, b := range bodies {
		if _, err := mboxfmt.WriteEntry(&buf, "", date, strings.NewReader(b)); err != nil {
			t.Fatalf("WriteEntry(%q) = %v", b, err)
		}
	}
	return buf.Bytes()
}

// journalOf is a journal of the records recs.
func journalOf(recs ...[]string) string {
	var b []byte
	for _, r := range recs {
		b = mboxfmt.JournalRecord(b, r...)
	}
	return string(b)
}

// TestSourceReadsCommittedPart: while the journal is dirty only the
// committed length is read (the rest may be a torn append).
func TestSourceReadsCommittedPart(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "INBOX.mbox")
	data := encode(t, "a\n", "b\n", "c")
	committed := len(encode(t, "a\n", "b\n"))
	os.WriteFile(path, data[:len(data)-2], 0o600) // c is torn
	for _, c := range []struct {
		journal string
		want    []string
		fails   bool
	}{
		{journalOf([]string{"mfjournal", "1"}, []string{"open", "0"}, []string{"commit", strconv.Itoa(committed)}), []string{"a\n", "b\n"}, false},
		// The file is shorter than committed (cut by another program): the
		// cut entry fails, never reads as complete.
		{journalOf([]string{"mfjournal", "1"}, []string{"close", strconv.Itoa(len(data))}), nil, true},
	} {
		os.WriteFile(path+mboxfmt.JournalSuffix, []byte(c.journal), 0o600)
		src := seed(t, nil).(*Source)
		src.root = root
		var got []string
		err := src.List(t.Context(), "INBOX", func(e mail.Envelope) error {
			got = append(got, string(e.ID))
			return nil
		})
		if c.fails {
			if err == nil {
				t.Errorf("List with a torn entry and a clean journal = nil, want an error")
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("List = %v, %v; want %d entries", got, err, len(c.want))
		}
	}
}
