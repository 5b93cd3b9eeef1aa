package state

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// The benchmarks measure what chose the format (docs/state-format.md):
//
//	go test -run '^$' -bench . -benchtime 5x ./sync/state/
//
// on an account of 10 folders of 20,000 messages (200,000), each record
// as full as a copy writes it (destination name, flags, size, date,
// Message-ID hash, SHA-256, store time).
const (
	benchFolders = 10
	benchPer     = 20_000
)

var (
	fixtureOnce sync.Once
	fixtureDir  string // holds "st" (a state) and "cp.jsonl" (a checkpoint)
	fixtureErr  error
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("MAILFERRY_STATE_RSS_CHILD"); mode != "" {
		os.Exit(rssChild(mode, os.Getenv("MAILFERRY_STATE_RSS_DIR")))
	}
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

func benchMessage(folder, i int) Message {
	return Message{
		Src: mail.ID(fmt.Sprintf("1700000000.%d", i+1)), Dst: mail.ID(fmt.Sprintf("1700000000.M%dP%d.host.example.org,U=%d,MF=%016x:2,S", i, folder, i, i)),
		Flags: `\Seen`, FlagsKnown: true, Size: 4000 + int64(i), Date: 1700000000 + int64(i),
		MsgID: fmt.Sprintf("%016x", i*7919), SHA256: fmt.Sprintf("%064x", i*104729), Stored: 1800000000,
	}
}

func fixture(b *testing.B) string {
	fixtureOnce.Do(func() {
		if fixtureDir, fixtureErr = os.MkdirTemp("", "state-bench-"); fixtureErr != nil {
			return
		}
		fixtureErr = writeFixture(fixtureDir)
	})
	if fixtureErr != nil {
		b.Fatal(fixtureErr)
	}
	return fixtureDir
}

func writeFixture(dir string) error {
	s, err := Open(filepath.Join(dir, "st"), epA, epB, Options{})
	if err != nil {
		return err
	}
	cp, err := checkpoint.Open(filepath.Join(dir, "cp.jsonl"), epA, epB, false)
	if err != nil {
		return err
	}
	for fo := range benchFolders {
		name := fmt.Sprintf("folder%02d", fo)
		f, err := s.Folder(name)
		if err != nil {
			return err
		}
		for i := range benchPer {
			m := benchMessage(fo, i)
			f.Put(m)
			flags := m.Flags
			cp.Add(checkpoint.Record{Mailbox: name, ID: m.Src, Dst: m.Dst, Size: m.Size, SHA256: m.SHA256, MsgID: m.MsgID, Date: m.Date, Flags: &flags})
		}
		if err := s.CompletePass(name, SideStatus{UIDValidity: 1, UIDNext: benchPer + 1, Messages: benchPer, HighestModSeq: 9}, SideStatus{}, true); err != nil {
			return err
		}
		if err := s.Release(name); err != nil {
			return err
		}
	}
	if err := cp.Close(); err != nil {
		return err
	}
	return s.Close()
}

// BenchmarkOpenSummaries is a no-op run's cost: open the state and read
// every folder's summary (10 folders, 200,000 messages).
func BenchmarkOpenSummaries(b *testing.B) {
	dir := filepath.Join(fixture(b), "st")
	for b.Loop() {
		s, err := Open(dir, epA, epB, Options{})
		if err != nil {
			b.Fatal(err)
		}
		for _, name := range s.Folders() {
			if sum, _ := s.Summary(name); sum.A.UIDNext != benchPer+1 {
				b.Fatal("bad summary")
			}
		}
		s.Close()
	}
}

// BenchmarkLoadFolder reads one moved folder's 20,000 records.
func BenchmarkLoadFolder(b *testing.B) {
	dir := filepath.Join(fixture(b), "st")
	for b.Loop() {
		s := openT(b, dir)
		if f := folderT(b, s, "folder03"); f.Len() != benchPer {
			b.Fatal("bad folder")
		}
		s.Close()
	}
}

// BenchmarkLoadAll reads all 200,000 records (every folder moved).
func BenchmarkLoadAll(b *testing.B) {
	dir := filepath.Join(fixture(b), "st")
	for b.Loop() {
		s := openT(b, dir)
		for _, name := range s.Folders() {
			folderT(b, s, name)
		}
		s.Close()
	}
}

// BenchmarkCheckpointOpen is today's cost of any run, no-op or not: the
// checkpoint of the same 200,000 messages parsed whole.
func BenchmarkCheckpointOpen(b *testing.B) {
	path := filepath.Join(fixture(b), "cp.jsonl")
	for b.Loop() {
		cp, err := checkpoint.Open(path, epA, epB, false)
		if err != nil {
			b.Fatal(err)
		}
		if cp.Len() != benchFolders*benchPer {
			b.Fatal("bad checkpoint")
		}
		cp.Close()
	}
}

// BenchmarkAppend5000 records 5,000 messages into a new folder with the
// engine's durability rule: a flush (write + fsync) every 100 records.
func BenchmarkAppend5000(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		s := openT(b, dir)
		f := folderT(b, s, "INBOX")
		for i := range 5000 {
			f.Put(benchMessage(0, i))
			if i%100 == 99 {
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckpointAppend5000 is the same with today's checkpoint.
func BenchmarkCheckpointAppend5000(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "cp.jsonl")
		b.StartTimer()
		cp, err := checkpoint.Open(path, epA, epB, false)
		if err != nil {
			b.Fatal(err)
		}
		for i := range 5000 {
			m := benchMessage(0, i)
			flags := m.Flags
			cp.Add(checkpoint.Record{Mailbox: "INBOX", ID: m.Src, Dst: m.Dst, Size: m.Size, SHA256: m.SHA256, MsgID: m.MsgID, Date: m.Date, Flags: &flags})
			if i%100 == 99 {
				if err := cp.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := cp.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPeakRSS reports the peak RSS of a fresh process (this test
// binary re-run) that does one thing on the fixture: a no-op run's
// summaries, all 200,000 records loaded, or today's checkpoint opened.
func BenchmarkPeakRSS(b *testing.B) {
	dir := fixture(b)
	for _, mode := range []string{"summaries", "all", "checkpoint", "idle"} {
		b.Run(mode, func(b *testing.B) {
			var kib int64
			for b.Loop() {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), "MAILFERRY_STATE_RSS_CHILD="+mode, "MAILFERRY_STATE_RSS_DIR="+dir)
				out, err := cmd.Output()
				if err != nil {
					b.Fatalf("child %s: %v", mode, err)
				}
				if _, err := fmt.Sscan(string(out), &kib); err != nil {
					b.Fatalf("child %s printed %q", mode, out)
				}
			}
			b.ReportMetric(float64(kib)/1024, "peak-RSS-MiB")
		})
	}
}

// rssChild does one benchmarked thing and prints its peak RSS in KiB
// (VmHWM: getrusage's ru_maxrss would include the parent's, which Linux
// keeps across the vfork and exec that started the child).
func rssChild(mode, dir string) int {
	var err error
	switch mode {
	case "summaries", "all":
		var s *State
		if s, err = Open(filepath.Join(dir, "st"), epA, epB, Options{}); err == nil {
			for _, name := range s.Folders() {
				s.Summary(name)
				if mode == "all" {
					_, err = s.Folder(name) // kept: the worst case holds every folder
				}
			}
			s.Close()
		}
	case "checkpoint":
		var cp *checkpoint.File
		if cp, err = checkpoint.Open(filepath.Join(dir, "cp.jsonl"), epA, epB, false); err == nil {
			cp.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Println(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return 0
		}
	}
	return 1
}
