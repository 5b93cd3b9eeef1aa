package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoredTime: a file written before records carried a store time loads
// with Stored 0; StampStored gives those records (and only those) one time,
// once, and the stamp survives a reopen. New records keep their own time.
func TestStoredTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.jsonl")
	legacy := `{"mailferry":"checkpoint","v":1,"src":"` + src + `","dst":"` + dst + `"}
{"m":"INBOX","id":"1","d":"a","n":10}
{"m":"INBOX","id":"2","d":"b","n":10}
`
	if err := os.WriteFile(path, []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	c := openT(t, path)
	if err := c.Add(Record{Mailbox: "Sent", ID: "3", Dst: "c", Stored: 500}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   int64
		want int
	}{{1000, 2}, {2000, 0}} {
		n, err := c.StampStored(tc.at)
		if err != nil || n != tc.want {
			t.Fatalf("StampStored(%d) = %d, %v; want %d", tc.at, n, err, tc.want)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openT(t, path)
	defer c.Close()
	want := map[string]int64{"1": 1000, "2": 1000, "3": 500}
	for _, mb := range []string{"INBOX", "Sent"} {
		for _, r := range c.Records(mb) {
			if r.Stored != want[string(r.ID)] {
				t.Errorf("%s/%s: Stored %d, want %d", mb, r.ID, r.Stored, want[string(r.ID)])
			}
		}
	}
	data, _ := os.ReadFile(path)
	if got := strings.Count(string(data), `"s":1000`); got != 2 {
		t.Errorf("file has %d stamped lines, want 2 (stamped once):\n%s", got, data)
	}
}
