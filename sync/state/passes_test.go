package state

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// copyDir copies the files of dir but the lock into a new directory: the
// state as a crash at that moment leaves it (every write reached the
// disk; a power loss is the power-loss trials').
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	names, _ := (osFS{}).ReadDirNames(dir)
	for _, n := range names {
		if n == lockName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		writeT(t, out, n, string(b))
	}
	return out
}

// passedState is a state whose folders INBOX and Work had a full pass.
func passedState(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s := openT(t, dir)
	for _, f := range []string{"INBOX", "Work"} {
		folderT(t, s, f)
		if err := s.CompletePass(f, SideStatus{UIDNext: 5}, SideStatus{}, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func sinceFull(t *testing.T, dir string) map[string]int {
	t.Helper()
	s := openT(t, dir)
	defer s.Close()
	out := map[string]int{}
	for _, f := range s.Folders() {
		sum, _ := s.Summary(f)
		out[f] = sum.SinceFull
	}
	return out
}

// TestSkipPassesWritesNoSummary: a run that only skips unchanged folders
// leaves summary.json as it was (no fsync, no rename) and writes the
// passes file once; the counts survive a reopen, so the full listing
// still comes every Nth run.
func TestSkipPassesWritesNoSummary(t *testing.T) {
	dir := passedState(t)
	for run := 1; run <= 3; run++ {
		before := snapshot(t, dir)[summaryName]
		s := openT(t, dir)
		if err := s.SkipPasses([]string{"INBOX", "Work"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if after := snapshot(t, dir)[summaryName]; after != before {
			t.Fatalf("run %d: SkipPasses rewrote summary.json", run)
		}
		if got, want := sinceFull(t, dir), map[string]int{"INBOX": run, "Work": run}; !reflect.DeepEqual(got, want) {
			t.Fatalf("run %d: passes since the full listing %v, want %v", run, got, want)
		}
	}
}

// TestPassCounterWithSkips is TestPassCounter for a folder that never
// moves: skipped passes in between, one full listing every seven runs.
func TestPassCounterWithSkips(t *testing.T) {
	dir := t.TempDir()
	var full []bool
	for range 15 {
		s := openT(t, dir)
		sum, _ := s.Summary("INBOX")
		due := sum.FullDue(DefaultFullEvery)
		full = append(full, due)
		var err error
		if due {
			folderT(t, s, "INBOX")
			err = s.CompletePass("INBOX", SideStatus{}, SideStatus{}, true)
		} else {
			err = s.SkipPasses([]string{"INBOX"})
		}
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	want := []bool{true, false, false, false, false, false, false, true, false, false, false, false, false, false, true}
	if !reflect.DeepEqual(full, want) {
		t.Fatalf("full listings %v, want %v", full, want)
	}
}

// TestPassesCrashBetweenWrites: a crash after the passes file was written
// and before, or after, the next summary.json neither loses the skipped
// passes nor counts them twice (the epoch tells a passes file the summary
// already holds).
func TestPassesCrashBetweenWrites(t *testing.T) {
	dir := passedState(t)
	s := openT(t, dir)
	if err := s.SkipPasses([]string{"INBOX", "Work"}); err != nil {
		t.Fatal(err)
	}
	beforeSummary := copyDir(t, dir) // the crash comes before the next summary write
	// The same run lists INBOX (incrementally) and records its pass: a
	// summary write that holds Work's skipped pass too.
	if err := s.CompletePass("INBOX", SideStatus{UIDNext: 6}, SideStatus{}, false); err != nil {
		t.Fatal(err)
	}
	afterSummary := copyDir(t, dir) // ... or after it, the passes file not yet rewritten
	s.Close()
	for _, tc := range []struct {
		name string
		dir  string
		want map[string]int
	}{
		{"before the summary", beforeSummary, map[string]int{"INBOX": 1, "Work": 1}},
		{"after the summary", afterSummary, map[string]int{"INBOX": 2, "Work": 1}},
		{"clean close", dir, map[string]int{"INBOX": 2, "Work": 1}},
	} {
		if got := sinceFull(t, tc.dir); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: passes since the full listing %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestTornPassesListInFull: a passes file a crash tore, zeroed or garbled
// is not a lost state: every folder is listed in full once (FullDue), and
// the state opens. An intact one (the control) keeps its counts.
func TestTornPassesListInFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(data string) string
		due  bool
	}{
		{"intact", func(d string) string { return d }, false},
		{"empty", func(string) string { return "" }, true},
		{"cut", func(d string) string { return d[:len(d)/2] }, true},
		{"zeros", func(d string) string { return string(make([]byte, len(d))) }, true},
		{"bit flipped", func(d string) string { b := []byte(d); b[len(b)/2] ^= 1; return string(b) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := passedState(t)
			s := openT(t, dir)
			if err := s.SkipPasses([]string{"INBOX"}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			data, err := os.ReadFile(filepath.Join(dir, passesName))
			if err != nil {
				t.Fatal(err)
			}
			writeT(t, dir, passesName, tc.edit(string(data)))
			s = openT(t, dir)
			defer s.Close()
			for _, f := range []string{"INBOX", "Work"} {
				sum, _ := s.Summary(f)
				if got := sum.FullDue(DefaultFullEvery); got != tc.due {
					t.Errorf("%s: FullDue = %v (passes %d), want %v", f, got, sum.SinceFull, tc.due)
				}
				if f := folderT(t, s, f); f.Len() != 0 {
					t.Errorf("records changed")
				}
			}
			// The full listings done, the next run is back to normal: the
			// bad file forces them once, not on every run.
			for _, f := range []string{"INBOX", "Work"} {
				if err := s.CompletePass(f, SideStatus{UIDNext: 5}, SideStatus{}, true); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			s = openT(t, dir)
			for _, f := range []string{"INBOX", "Work"} {
				if sum, _ := s.Summary(f); sum.FullDue(DefaultFullEvery) {
					t.Errorf("%s: FullDue again after its full listing (passes %d)", f, sum.SinceFull)
				}
			}
		})
	}
}

// TestHeldEvidenceKept: evidence set by a run reaches the next run, through
// the passes file (no summary write) and through a summary write alike; a
// reset forgets it.
func TestHeldEvidenceKept(t *testing.T) {
	dir := passedState(t)
	s := openT(t, dir)
	s.SetHeldEvidence("INBOX", "ev1")
	before := snapshot(t, dir)[summaryName]
	s.Close()
	if after := snapshot(t, dir)[summaryName]; after != before {
		t.Fatal("evidence alone rewrote summary.json")
	}
	s = openT(t, dir)
	if sum, _ := s.Summary("INBOX"); sum.Held != "ev1" {
		t.Fatalf("Held after reopen = %q, want ev1", sum.Held)
	}
	s.SetHeldEvidence("Work", "ev2")
	if err := s.CompletePass("INBOX", SideStatus{UIDNext: 6}, SideStatus{}, false); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, passesName)) // the summary holds it now
	s.Close()
	s = openT(t, dir)
	if sum, _ := s.Summary("Work"); sum.Held != "ev2" {
		t.Fatalf("Held of Work after a summary write = %q, want ev2", sum.Held)
	}
	s.Close()
	s, err := Open(dir, epA, epB, Options{Reset: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Join(dir, passesName)); !os.IsNotExist(err) {
		t.Errorf("a reset left the passes file: %v", err)
	}
}

// TestHeaderLen: headerLen is the length of the header line it stands for.
func TestHeaderLen(t *testing.T) {
	for _, name := range []string{"INBOX", "Entwürfe", "tab\tand%percent", ""} {
		for _, gen := range []uint64{1, 42, 1 << 40} {
			if got, want := headerLen(gen, name), len(headerLine(nil, gen, name)); got != want {
				t.Errorf("headerLen(%d, %q) = %d, want %d", gen, name, got, want)
			}
		}
	}
}

// TestSetEvidenceKept: side evidence set without a pass reaches the next
// run through the passes file, also after a later SkipPasses rewrote it,
// and through a summary written for another folder's pass; a passes file
// a summary write made stale is not applied (the summary's evidence
// stands).
func TestSetEvidenceKept(t *testing.T) {
	dir := passedState(t)
	s := openT(t, dir)
	s.SetEvidence("INBOX", 1, "evB")
	before := snapshot(t, dir)[summaryName]
	s.Close()
	if after := snapshot(t, dir)[summaryName]; after != before {
		t.Fatal("evidence alone rewrote summary.json")
	}
	s = openT(t, dir)
	if sum, _ := s.Summary("INBOX"); sum.B.Evidence != "evB" {
		t.Fatalf("B's evidence after reopen = %q, want evB", sum.B.Evidence)
	}
	if err := s.SkipPasses([]string{"INBOX"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	if sum, _ := s.Summary("INBOX"); sum.B.Evidence != "evB" {
		t.Fatalf("B's evidence after a skipped pass = %q, want evB", sum.B.Evidence)
	}
	s.SetEvidence("INBOX", 0, "evA")
	s.Close()
	stale := copyDir(t, dir)
	s = openT(t, dir)
	if err := s.CompletePass("Work", SideStatus{UIDNext: 9}, SideStatus{}, false); err != nil {
		t.Fatal(err)
	}
	s.SetEvidence("INBOX", 0, "evA2")
	if err := s.CompletePass("Work", SideStatus{UIDNext: 10}, SideStatus{}, false); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, passesName)) // the summary holds it now
	s.Close()
	s = openT(t, dir)
	if sum, _ := s.Summary("INBOX"); sum.A.Evidence != "evA2" || sum.B.Evidence != "evB" {
		t.Fatalf("evidence after a summary write = %q, %q; want evA2, evB", sum.A.Evidence, sum.B.Evidence)
	}
	s.Close()
	// The stale passes file (it says evA) beside a summary written since.
	if err := os.Rename(filepath.Join(stale, passesName), filepath.Join(dir, passesName)); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	defer s.Close()
	if sum, _ := s.Summary("INBOX"); sum.A.Evidence != "evA2" {
		t.Fatalf("a stale passes file was applied: A's evidence %q, want evA2", sum.A.Evidence)
	}
}
