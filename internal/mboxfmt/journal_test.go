package mboxfmt

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
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
