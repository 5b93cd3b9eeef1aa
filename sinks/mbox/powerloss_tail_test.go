package mbox

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestA12ShortTornTail: a power cut can keep any prefix of an unsynced
// append, down to a few bytes of the next From_ line ("F", "Fro"). The
// rerun must recognise such a stub as its own torn append and cut it, not
// keep it glued to the last committed message.
func TestA12ShortTornTail(t *testing.T) {
	third := encoded(t, 2)
	for _, n := range []int{1, 2, 4, 5, 6, 12, len(third) - 1, len(third)} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, "INBOX.mbox")
			s1 := newSink(t, root, nil)
			put(t, s1, "INBOX", 0)
			put(t, s1, "INBOX", 1)
			commit(t, s1)
			s1.abandon()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(third[:n]) // what the cut kept of an uncommitted append
			f.Close()

			s2 := newSink(t, root, nil)
			put(t, s2, "INBOX", 3)
			commit(t, s2)
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			wantFile(t, path, encoded(t, 0, 1, 3))
		})
	}
}
