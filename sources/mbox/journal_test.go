package mbox

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

func journalOf(recs ...[]string) string {
	var b []byte
	for _, r := range recs {
		b = JournalRecord(b, r...)
	}
	return string(b)
}

func TestParseJournal(t *testing.T) {
	hdr := []string{"mfjournal", "1"}
	base := journalOf(hdr, []string{"open", "0"}, []string{"key", "0", "k1"}, []string{"commit", "100"})
	for _, c := range []struct {
		name      string
		data      string
		committed int64
		dirty     bool
		keys      string
		bad       bool
	}{
		{name: "empty", data: ""},
		{name: "open and commit", data: base, committed: 100, dirty: true, keys: "k1"},
		{name: "closed", data: base + journalOf([]string{"close", "100"}), committed: 100, keys: "k1"},
		{name: "key without commit ignored", data: base + journalOf([]string{"key", "100", "k2"}), committed: 100, dirty: true, keys: "k1"},
		{name: "torn last line ignored", data: base + "commit 2", committed: 100, dirty: true, keys: "k1"},
		{name: "bad CRC on the last line ignored", data: base + "commit 200 00000000\n", committed: 100, dirty: true, keys: "k1"},
		{name: "reopened after close", data: base + journalOf([]string{"close", "100"}, []string{"open", "100"}), committed: 100, dirty: true, keys: "k1"},
		{name: "damaged line before others", data: journalOf(hdr) + "commit 200 00000000\n" + journalOf([]string{"commit", "5"}), bad: true},
		{name: "unknown header", data: journalOf([]string{"mfjournal", "2"}), bad: true},
		{name: "bad record", data: journalOf(hdr, []string{"commit", "-1"}, []string{"commit", "1"}), bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			j, err := parseJournal(strings.NewReader(c.data))
			if c.bad {
				if !errors.Is(err, ErrJournal) {
					t.Fatalf("parseJournal = %+v, %v; want ErrJournal", j, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range j.Keys {
				keys = append(keys, k)
			}
			if j.Committed != c.committed || j.Dirty != c.dirty || strings.Join(keys, ",") != c.keys {
				t.Fatalf("parseJournal = %+v, want committed %d dirty %v keys %q", j, c.committed, c.dirty, c.keys)
			}
		})
	}
}

func TestJournalCompactRoundTrip(t *testing.T) {
	j := &Journal{Committed: 4711, Keys: map[string]int64{"a": 0, "b": 100}}
	got, err := parseJournal(strings.NewReader(string(j.Compact())))
	if err != nil || got.Committed != j.Committed || got.Dirty || len(got.Keys) != 2 || got.Keys["b"] != 100 {
		t.Fatalf("Compact round trip = %+v, %v", got, err)
	}
}

func TestReadJournalMissing(t *testing.T) {
	j, err := ReadJournal(filepath.Join(t.TempDir(), "x.mbox.mfjournal"))
	if j != nil || err != nil {
		t.Fatalf("ReadJournal(missing) = %v, %v; want nil, nil", j, err)
	}
}

func TestValidKey(t *testing.T) {
	for k, want := range map[string]bool{"0123abcdef": true, "": false, "a b": false, "a\n": false, strings.Repeat("a", 129): false, "é": false} {
		if ValidKey(k) != want {
			t.Errorf("ValidKey(%q) = %v", k, !want)
		}
	}
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
		os.WriteFile(path+JournalSuffix, []byte(c.journal), 0o600)
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
