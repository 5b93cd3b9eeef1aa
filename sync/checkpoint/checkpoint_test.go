package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

const src, dst = "imaps://alice@example.org", "maildir:/tmp/x"

func openT(t *testing.T, path string) *File {
	t.Helper()
	c, err := Open(path, src, dst, false)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	return c
}

func TestRecordsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "c.jsonl")
	c := openT(t, path)
	for _, id := range []mail.ID{"7.1", "7.2", "7.3"} {
		if err := c.Add(Record{Mailbox: "INBOX", ID: id, Dst: "d" + id, Size: 10, SHA256: "ab"}); err != nil {
			t.Fatal(err)
		}
	}
	c.Add(Record{Mailbox: "Sent", ID: "9.1"})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openT(t, path)
	defer c.Close()
	if c.Len() != 4 || !c.Has(Key{"INBOX", "7.2"}) || c.Has(Key{"Sent", "7.2"}) {
		t.Fatalf("reopened store: len %d, has INBOX/7.2 %v, has Sent/7.2 %v", c.Len(), c.Has(Key{"INBOX", "7.2"}), c.Has(Key{"Sent", "7.2"}))
	}
	if got := c.Records("INBOX"); len(got) != 3 || got[1].Dst != "d7.2" {
		t.Fatalf("Records(INBOX) = %+v", got)
	}
}

// TestA9TornAndCorrupt covers scenario A9: a torn last line (crash mid-append)
// is dropped, a corrupt line in the middle or a foreign file is refused.
func TestA9TornAndCorrupt(t *testing.T) {
	good := `{"mailferry":"checkpoint","v":1,"src":"` + src + `","dst":"` + dst + `"}` + "\n" + `{"m":"INBOX","id":"1.1","n":3}` + "\n"
	tests := []struct {
		name    string
		content string
		wantErr error
		wantLen int
	}{
		{"empty file", "", nil, 0},
		{"good", good, nil, 1},
		{"torn last line", good + `{"m":"INBOX","id":"1.`, nil, 1},
		{"torn last line with newline", good + `{"m":"INB` + "\n", nil, 1},
		{"corrupt middle line", good + "garbage\n" + `{"m":"INBOX","id":"1.2","n":3}` + "\n", ErrUnusable, 0},
		{"not a checkpoint", "hello\n", ErrUnusable, 0},
		{"other endpoints", strings.Replace(good, "alice", "bob", 1), ErrUnusable, 0},
		{"future version", strings.Replace(good, `"v":1`, `"v":9`, 1), ErrUnusable, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.jsonl")
			os.WriteFile(path, []byte(tc.content), 0o600)
			c, err := Open(path, src, dst, false)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				after, _ := os.ReadFile(path)
				if string(after) != tc.content {
					t.Fatalf("a refused checkpoint was modified")
				}
				return
			}
			if c.Len() != tc.wantLen {
				t.Fatalf("Len = %d, want %d", c.Len(), tc.wantLen)
			}
			c.Add(Record{Mailbox: "INBOX", ID: "2.1"})
			c.Close()
			c = openT(t, path) // the torn tail was cut, so appending left a valid file
			if c.Len() != tc.wantLen+1 {
				t.Fatalf("after append and reopen Len = %d, want %d", c.Len(), tc.wantLen+1)
			}
			c.Close()
		})
	}
}

func TestResetStartsAfresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.jsonl")
	c, _ := Open(path, "other", dst, false)
	c.Add(Record{Mailbox: "INBOX", ID: "1"})
	c.Close()
	c, err := Open(path, src, dst, true)
	if err != nil {
		t.Fatalf("Open with reset = %v", err)
	}
	defer c.Close()
	if c.Len() != 0 {
		t.Fatalf("reset store has %d records", c.Len())
	}
}

// TestE3SecondRunLocked covers scenario E3: two instances on one checkpoint.
func TestE3SecondRunLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.jsonl")
	c := openT(t, path)
	defer c.Close()
	if _, err := Open(path, src, dst, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestUnflushedRecordsAreNotDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.jsonl")
	c := openT(t, path)
	c.Add(Record{Mailbox: "INBOX", ID: "1"})
	// Simulate kill -9: read the file as another process would, without Close.
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), `"id":"1"`) {
		t.Fatal("record reached the file before Flush")
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if !strings.Contains(string(b), `"id":"1"`) {
		t.Fatal("record not in the file after Flush")
	}
	c.Close()
}

func TestDefaultPathDependsOnPair(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/state")
	a, _ := DefaultPath(src, dst)
	b, _ := DefaultPath(src, "maildir:/other")
	if a == b || !strings.HasPrefix(a, "/state/mailferry/") {
		t.Fatalf("DefaultPath = %q and %q", a, b)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"mailferry":"checkpoint","v":1,"src":"s","dst":"d"}` + "\n" + `{"m":"INBOX","id":"1.1","n":3}` + "\n"))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "c.jsonl")
		os.WriteFile(path, data, 0o600)
		c, err := Open(path, "s", "d", false)
		if err != nil {
			if !errors.Is(err, ErrUnusable) {
				t.Fatalf("Open = %v, want nil or ErrUnusable", err)
			}
			return
		}
		c.Add(Record{Mailbox: "x", ID: "y"})
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c2, err := Open(path, "s", "d", false)
		if err != nil {
			t.Fatalf("reopen after append = %v", err)
		}
		if !c2.Has(Key{"x", "y"}) {
			t.Fatal("record lost")
		}
		c2.Close()
	})
}

// TestE3ConcurrentCreateOneWins: openers racing on a new checkpoint (whose
// creation replaces the file by rename) never both get it.
func TestE3ConcurrentCreateOneWins(t *testing.T) {
	for trial := 0; trial < 100; trial++ {
		path := filepath.Join(t.TempDir(), "c.jsonl")
		const n = 4
		got := make(chan *File, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			go func() {
				<-start
				c, err := Open(path, src, dst, false)
				if err != nil && !errors.Is(err, ErrLocked) {
					t.Errorf("Open = %v", err)
				}
				got <- c
			}()
		}
		close(start)
		winners := 0
		for i := 0; i < n; i++ {
			if c := <-got; c != nil {
				winners++
				defer c.Close()
			}
		}
		if winners != 1 {
			t.Fatalf("trial %d: %d openers hold the checkpoint, want 1", trial, winners)
		}
	}
}
