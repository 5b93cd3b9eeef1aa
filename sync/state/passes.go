package state

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// This file keeps what a no-op run learns beside summary.json, so that a
// run which only skips unchanged folders writes no durable file at all
// (issue 11: a no-op rerun should cost about its login): the passes over
// unchanged folders (SkipPasses) and the destination evidence
// (SetHeldEvidence). Both live in the in-memory summary, so any later write
// of summary.json (a listed folder's pass, a new folder) makes them durable
// with it; until then they are in "passes", a small file replaced in place
// without fsync. Why that is safe:
//
//   - The file is stamped with the summary's epoch (bumped by every write of
//     summary.json) and read only while they match: once a summary holding
//     its counts is written, the file is stale and ignored, so a count is
//     never applied twice, and a crash between the two writes leaves the
//     old summary and the file that goes with it.
//   - A file a crash tore, zeroed or garbled (its CRC fails) makes every
//     folder list in full once (FullDue): a lost count can only bring the
//     full listing sooner. A power loss that brings back an older version
//     of the file (its last few counts lost) delays the full listing by
//     those few runs; it still comes (docs/state-format.md).
//   - Evidence vouches for itself: it is a stamp of the destination's
//     directories that the sink compares with the directories as they are
//     now (mail.HoldEvidencer); a stale stamp only costs a read.
const passesName = "passes"

// forcedFull is the SinceFull a torn passes file leaves every folder with:
// as many passes as any --full-every, so each is listed in full once.
const forcedFull = 1 << 30

// passesFile is the content of the passes file after its CRC.
type passesFile struct {
	Epoch   uint64                `json:"ep"`
	Folders map[string]passesItem `json:"f"`
}

type passesItem struct {
	SinceFull int    `json:"s,omitempty"`
	Held      string `json:"h,omitempty"`
	// A and B are side evidence SetEvidence replaced ("" none).
	A string `json:"a,omitempty"`
	B string `json:"b,omitempty"`
}

// readPasses applies the passes file to the summary just read: its counts
// and evidence where its epoch is the summary's, nothing where it is stale
// or missing, a full listing of every folder where it is torn.
func (s *State) readPasses() {
	data, err := s.readPassesFile()
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var pf passesFile
	if err == nil {
		err = decodePasses(data, &pf)
	}
	if err != nil {
		s.log.Warn("state: the pass counters are unreadable (a crash while writing them?): every folder is listed in full once",
			"file", filepath.Join(s.dir, passesName), "err", err)
		for _, it := range s.sum.Folders {
			it.SinceFull = max(it.SinceFull, forcedFull)
		}
		if !s.readOnly {
			// Replace the bad file now: left as it is, it would force the
			// full listings again on every run, after they were done. A
			// failure leaves it bad, which only forces them again.
			_ = s.writePasses()
		}
		return
	}
	if pf.Epoch != s.sum.Epoch {
		return // summary.json was written since: it holds these counts
	}
	for name, p := range pf.Folders {
		if it := s.sum.Folders[name]; it != nil {
			it.SinceFull = max(it.SinceFull, p.SinceFull)
			it.Held = p.Held
			if p.A != "" || p.B != "" {
				it.A.Evidence, it.B.Evidence, it.evSet = cmp.Or(p.A, it.A.Evidence), cmp.Or(p.B, it.B.Evidence), true
			}
		}
	}
}

func (s *State) readPassesFile() ([]byte, error) {
	f, err := s.fs.OpenFile(filepath.Join(s.dir, passesName), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(f)
}

// decodePasses checks the CRC framing ("CCCCCCCC\t" JSON "\n") and
// decodes the JSON. The CRC is IEEE's, not the logs' Castagnoli: a no-op
// run reads no log, and Castagnoli's tables cost more to set up (record.go)
// than the whole file takes to check.
func decodePasses(data []byte, pf *passesFile) error {
	if len(data) < 10 || data[8] != '\t' || data[len(data)-1] != '\n' {
		return errors.New("torn")
	}
	body := data[9 : len(data)-1]
	want, err := strconv.ParseUint(string(data[:8]), 16, 32)
	if err != nil || uint32(want) != crc32.ChecksumIEEE(body) {
		return errors.New("bad CRC")
	}
	return json.Unmarshal(body, pf)
}

// writePasses replaces the passes file in place, without fsync (see the
// top of this file): the skipped passes' counts and the evidence of every
// folder, stamped with the summary's epoch. Called with mu held.
func (s *State) writePasses() error {
	pf := passesFile{Epoch: s.sum.Epoch, Folders: make(map[string]passesItem, len(s.sum.Folders))}
	for name, it := range s.sum.Folders {
		if it.SinceFull != 0 || it.Held != "" || it.evSet {
			pi := passesItem{SinceFull: it.SinceFull, Held: it.Held}
			if it.evSet {
				pi.A, pi.B = it.A.Evidence, it.B.Evidence
			}
			pf.Folders[name] = pi
		}
	}
	body, err := json.Marshal(&pf)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	data := fmt.Appendf(nil, "%08x\t%s\n", crc32.ChecksumIEEE(body), body)
	path := filepath.Join(s.dir, passesName)
	f, err := s.fs.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("state: write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state: write %s: %w", path, err)
	}
	s.passesDirty = false
	return nil
}

// removePasses drops the passes file of a state being created afresh
// (a reset), before its new summary is written: the new summary's epoch
// starts over from the old one's, but a garbled old summary has none.
func (s *State) removePasses() error {
	err := s.fs.Remove(filepath.Join(s.dir, passesName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// SetHeldEvidence keeps ev as the evidence that folder name's destination
// held a message (mail.HoldEvidencer; "" forgets it). It reaches the disk
// with the next write of the passes or the summary, or at Close.
func (s *State) SetHeldEvidence(name, ev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.sum.Folders[name]
	if it == nil || it.Held == ev || s.readOnly {
		return
	}
	it.Held = ev
	s.passesDirty = true
}

// SetEvidence replaces side's (0 A, 1 B) change evidence of folder name,
// whose last pass is complete, by ev, without a pass: two-way sync trades
// a Maildir folder's racy evidence, which costs a read of its names on
// every run, for its stamps alone once they are old enough to trust. It
// reaches the disk as SetHeldEvidence's does; evidence vouches for itself
// (a side compares it with its folder as it is now), so losing it only
// costs that read again.
func (s *State) SetEvidence(name string, side int, ev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.sum.Folders[name]
	if it == nil || it.Complete == 0 || s.readOnly || ev == "" {
		return
	}
	st := &it.A
	if side == 1 {
		st = &it.B
	}
	if st.Evidence == ev {
		return
	}
	st.Evidence, it.evSet = ev, true
	s.passesDirty = true
}
