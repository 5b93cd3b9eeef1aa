package twoway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// JournalName is the file, in the state's directory (under its lock), where
// a run writes each change it is about to make (the two-way sync issue,
// rule 1): the next run settles what a kill -9 or a power loss left half
// done (settle.go) before it plans anything.
const JournalName = "twoway.journal"

// The journaled operations.
const (
	opCopy   = "copy"
	opMove   = "move"
	opFlags  = "flags"
	opDelete = "delete"
)

// intent is one change as journaled before it is made.
type intent struct {
	Op string `json:"op"`
	// Folder is where the change lands (a move's destination).
	Folder string `json:"folder"`
	// On is the side changed (a copy's destination).
	On Side `json:"on"`
	// ID is the message: a copy's original on the other side, a move's
	// message on On in From, a deletion's or flag write's message on On.
	ID   mail.ID `json:"id"`
	From string  `json:"from,omitempty"`
	// Rec is the record a copy or a move puts once done, On's id not yet
	// known; a deletion's record to forget. Old is a move's record in From.
	Rec state.Message  `json:"rec"`
	Old *state.Message `json:"old,omitempty"`
	// Flags are the flags a flag write stores.
	Flags []mail.Flag `json:"flags,omitempty"`
}

// journal is the intent file. Each line is "CCCCCCCC\t" (the CRC-32C of
// the rest, in hex) and one intent in JSON: a line cut by a crash fails its
// CRC or lacks its newline and is dropped; a bad line before the last is
// corruption (state.ErrUnusable, exit 6), never silently ignored.
type journal struct {
	path  string
	f     *os.File
	dirty bool // something was written since the last clear
}

// journalCRC is made on first use: a no-op run finds the journal empty and
// need not pay for the Castagnoli tables (sync/state's crcTable).
var journalCRC = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// openJournal opens the journal of the state in dir and returns what an
// earlier run left in it (nil when it finished).
func openJournal(dir string) (*journal, []intent, error) {
	j := &journal{path: filepath.Join(dir, JournalName)}
	pending, err := readJournal(j.path)
	if err != nil {
		return nil, nil, err
	}
	j.dirty = len(pending) > 0
	return j, pending, nil
}

// readJournal parses the journal at path (none: nothing pending).
func readJournal(path string) ([]intent, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sync: journal: %w", err)
	}
	var out []intent
	r := bufio.NewReader(bytes.NewReader(data))
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return out, nil // a last line without its newline is torn: dropped
		}
		in, perr := parseIntent(line[:len(line)-1])
		if perr != nil {
			if _, err := r.Peek(1); err == io.EOF {
				return out, nil // a torn last line (zeros a crash left)
			}
			return nil, fmt.Errorf("%w: %s line %d: %v", state.ErrUnusable, path, n, perr)
		}
		out = append(out, in)
	}
}

func parseIntent(line []byte) (intent, error) {
	var in intent
	if len(line) < 9 || line[8] != '\t' {
		return in, errors.New("bad line")
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil || uint32(want) != crc32.Checksum(line[9:], journalCRC()) {
		return in, errors.New("bad checksum")
	}
	if err := json.Unmarshal(line[9:], &in); err != nil {
		return in, err
	}
	switch in.Op {
	case opCopy, opMove, opFlags, opDelete:
		return in, nil
	}
	return in, fmt.Errorf("unknown operation %q", in.Op)
}

// write appends intents and makes them durable (one fsync) before the
// caller makes any of the changes.
func (j *journal) write(intents []intent) error {
	if len(intents) == 0 {
		return nil
	}
	var buf []byte
	for _, in := range intents {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("sync: journal: %w", err)
		}
		buf = fmt.Appendf(buf, "%08x\t", crc32.Checksum(b, journalCRC()))
		buf = append(append(buf, b...), '\n')
	}
	if err := j.open(); err != nil {
		return err
	}
	if _, err := j.f.Write(buf); err != nil {
		return fmt.Errorf("sync: journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync: journal: %w", err)
	}
	j.dirty = true
	return nil
}

// open creates the file on first use, its directory entry made durable
// before any intent counts on it.
func (j *journal) open() error {
	if j.f != nil {
		return nil
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("sync: journal: %w", err)
	}
	j.f = f
	if err := mail.SyncDir(filepath.Dir(j.path)); err != nil {
		return fmt.Errorf("sync: journal: %w", err)
	}
	return nil
}

// clear empties the journal once the state holds the outcome of every
// intent in it (the caller flushed the state first).
func (j *journal) clear() error {
	if j == nil || !j.dirty {
		return nil
	}
	if err := j.open(); err != nil {
		return err
	}
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("sync: journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync: journal: %w", err)
	}
	j.dirty = false
	return nil
}

func (j *journal) close() {
	if j != nil && j.f != nil {
		_ = j.f.Close()
		j.f = nil
	}
}
