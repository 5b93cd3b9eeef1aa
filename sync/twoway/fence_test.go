package twoway

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// errFenced is a batch worker's fence saying the account is no longer its.
var errFenced = errors.New("the account's lease lapsed")

// dirFiles reads every file of the state under dir: name -> content.
// The lock file is not the state (its pid is cleared on release).
func dirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "lock" {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestRunFenceStopsEveryChange: a fence that says no at the k-th durable
// step (for every k) stops the run there: from that moment neither side
// changes and, the state abandoned (state.Abandon, as the batch worker
// does), no state file is written, not even what the run recorded before.
// Closing it instead (the negative control) writes the state for some k:
// the comparison can fail.
func TestRunFenceStopsEveryChange(t *testing.T) {
	closeWrites := 0
	for k := 0; ; k++ {
		tripped := false
		for _, abandon := range []bool{true, false} {
			a, b := firstSyncStores()
			dir := t.TempDir()
			if _, err := syncMem(t, a, b, dir, RunOptions{}); err != nil {
				t.Fatal(err)
			}
			changeBothSides(a, b)
			var atTrip [2]map[string]string
			var filesAtTrip map[string]string
			calls := 0
			fence := func() error {
				if calls++; calls <= k {
					return nil
				}
				if atTrip[0] == nil {
					atTrip = [2]map[string]string{a.describe(), b.describe()}
					filesAtTrip = dirFiles(t, dir)
				}
				return errFenced
			}
			st := openState(t, dir, false)
			_, err := Run(context.Background(), memStores(a, b), st, RunOptions{Fence: fence})
			if atTrip[0] == nil {
				if err != nil {
					t.Fatalf("fence never said no (k=%d): %v", k, err)
				}
				st.Close()
				if k < 8 {
					t.Fatalf("only %d durable steps: the fence is not asked", k)
				}
				t.Logf("fenced at each of %d steps", k)
				if closeWrites == 0 {
					t.Fatal("Close after a fenced stop never wrote the state: the test cannot tell Abandon from Close")
				}
				return
			}
			tripped = true
			if !errors.Is(err, errFenced) {
				t.Fatalf("k=%d: Run = %v; want the fence's error", k, err)
			}
			if abandon {
				_ = st.Abandon()
			} else {
				_ = st.Close()
			}
			if got := [2]map[string]string{a.describe(), b.describe()}; !reflect.DeepEqual(got, atTrip) {
				t.Errorf("k=%d: the stores changed after the fence said no:\n%v\nthen\n%v", k, atTrip, got)
			}
			same := reflect.DeepEqual(dirFiles(t, dir), filesAtTrip)
			switch {
			case abandon && !same:
				t.Errorf("k=%d: the state was written after the fence said no", k)
			case !abandon && !same:
				closeWrites++
			}
		}
		if !tripped {
			return
		}
	}
}
