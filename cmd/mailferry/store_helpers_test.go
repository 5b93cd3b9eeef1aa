package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/state"
)

// checkpointRecords returns every record of the checkpoint at cp (its
// state, cp.state/), read without the run's lock; none when there is no
// state.
func checkpointRecords(t *testing.T, cp string) []checkpoint.Record {
	t.Helper()
	dir := statePath(cp)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	ends := readSummaryEnds(t, cp)
	st, err := state.Open(dir, ends.A, ends.B, state.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open the checkpoint's state: %v", err)
	}
	defer func() { _ = st.Close() }()
	store := state.NewStore(st)
	var out []checkpoint.Record
	for _, mb := range st.Folders() {
		out = append(out, store.Records(mb)...)
	}
	if err := store.Flush(); err != nil && !errors.Is(err, state.ErrReadOnly) {
		t.Fatalf("read the checkpoint's state: %v", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Mailbox != out[j].Mailbox {
			return out[i].Mailbox < out[j].Mailbox
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// checkpointBytes is the content of the checkpoint's files (the state's,
// but the lock, whose pid every run writes, and the old file's), for a
// comparison before and after a run that must not write.
func checkpointBytes(t *testing.T, cp string) string {
	t.Helper()
	var b bytes.Buffer
	for _, p := range []string{cp, statePath(cp)} {
		err := filepath.WalkDir(p, func(path string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() || de.Name() == "lock" {
				return err
			}
			data, err := os.ReadFile(path)
			b.WriteString(path + "\n")
			b.Write(data)
			return err
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return b.String()
}

// damageCheckpoint damages the checkpoint at cp as an accident would:
// "deleted" (the state is gone), "emptied" (its directory emptied),
// "garbage" (its summary overwritten), "torn-summary" (its summary cut),
// "corrupt-record" (a record in the middle of a folder log garbled).
func damageCheckpoint(t *testing.T, cp, how string) {
	t.Helper()
	dir := statePath(cp)
	sum := filepath.Join(dir, "summary.json")
	var err error
	switch how {
	case "deleted":
		err = os.RemoveAll(dir)
	case "emptied":
		var ents []os.DirEntry
		ents, err = os.ReadDir(dir)
		for _, e := range ents {
			if err == nil && e.Name() != "lock" {
				err = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	case "garbage":
		err = os.WriteFile(sum, []byte("\x00\x01garbage\n{\"m\":1}\n"), 0o600)
	case "torn-summary":
		var b []byte
		if b, err = os.ReadFile(sum); err == nil {
			err = os.WriteFile(sum, b[:len(b)/3], 0o600)
		}
	case "corrupt-record":
		err = corruptRecord(dir)
	default:
		t.Fatalf("damageCheckpoint: unknown damage %q", how)
	}
	if err != nil {
		t.Fatalf("damage the checkpoint (%s): %v", how, err)
	}
}

// corruptRecord garbles the second record of the largest folder log.
func corruptRecord(dir string) error {
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		return errors.New("no folder log")
	}
	var best []byte
	var path string
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if len(b) > len(best) {
			best, path = b, p
		}
	}
	lines := strings.SplitAfter(string(best), "\n")
	if len(lines) < 4 {
		return errors.New("the folder log has fewer than 2 records")
	}
	lines[2] = "{not a record\n"
	return os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600)
}

// summaryEnds are the endpoints a checkpoint's state was written for.
type summaryEnds struct{ A, B string }

// readSummaryEnds reads the endpoints from the state's summary.
func readSummaryEnds(t *testing.T, cp string) summaryEnds {
	t.Helper()
	var ends summaryEnds
	if b, err := os.ReadFile(filepath.Join(statePath(cp), "summary.json")); err != nil || json.Unmarshal(b, &ends) != nil {
		t.Fatalf("read the checkpoint's state summary: %v", err)
	}
	return ends
}
