package maildir

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	gomaildir "github.com/emersion/go-maildir"
)

// TestGoMaildirRenamesPartialFile proves why the sink does not deliver with
// go-maildir (docs/library-notes.md §4): when the body fails midway, the writer's
// Close (what a deferred Close does) renames the partial file into cur/,
// where every reader sees a truncated message. Nothing is fsynced either.
func TestGoMaildirRenamesPartialFile(t *testing.T) {
	d := gomaildir.Dir(t.TempDir())
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	_, w, err := d.Create([]gomaildir.Flag{gomaildir.FlagSeen})
	if err != nil {
		t.Fatal(err)
	}
	broken := io.MultiReader(strings.NewReader("Subject: half\r\n\r\nfirst half"), iotest.ErrReader(errors.New("connection reset")))
	if _, err := io.Copy(w, broken); err == nil {
		t.Fatal("copy of a failing body succeeded")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	cur, err := os.ReadDir(filepath.Join(string(d), "cur"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) != 1 {
		t.Fatalf("cur/ holds %d files; go-maildir no longer publishes partial files, revisit the sink's comment", len(cur))
	}
	b, _ := os.ReadFile(filepath.Join(string(d), "cur", cur[0].Name()))
	if string(b) != "Subject: half\r\n\r\nfirst half" {
		t.Fatalf("cur/%s = %q", cur[0].Name(), b)
	}
	t.Logf("go-maildir published the truncated message as cur/%s", cur[0].Name())
}
