package mboxfmt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// journalHeader starts every journal file.
const journalHeader = "mfjournal 1"

// ErrJournal is returned (wrapped) when a journal exists but cannot be
// trusted: a bad header or a damaged record before the last one.
var ErrJournal = errors.New("mbox: journal damaged")

// Journal is what the sink's sidecar journal (<file>.mfjournal) says about
// its mailbox file. The journal is a text file of records, one a line, each
// ending in a CRC-32 of the line:
//
//	mfjournal 1 <crc>           header
//	open <length> <crc>         a writer took the file at this committed length;
//	                            bytes past it are uncommitted until "commit"
//	key <offset> <key> <crc>    the entry at offset holds the message with this
//	                            Envelope.Key (valid once a later commit is read)
//	commit <length> <crc>       everything below length is durable
//	close <length> <crc>        the writer closed cleanly at length
//
// A last line without its LF or CRC is a torn append and is ignored.
type Journal struct {
	// Committed is the length of the mailbox file known to be durable.
	Committed int64
	// Dirty is true when a writer opened the file and did not close it: it
	// is still running, or it crashed, and bytes past Committed are not
	// committed (a torn tail to cut).
	Dirty bool
	// Keys maps the Envelope.Key of each committed message to its entry's
	// offset.
	Keys map[string]int64
}

// JournalRecord appends one journal record (fields joined by spaces, then
// the CRC and LF) to b.
func JournalRecord(b []byte, fields ...string) []byte {
	start := len(b)
	for i, f := range fields {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f...)
	}
	sum := crc32.ChecksumIEEE(b[start:])
	b = append(b, ' ')
	b = append(b, fmt.Sprintf("%08x", sum)...)
	return append(b, '\n')
}

// ValidKey reports whether k can be recorded in a journal: printable ASCII
// without spaces, at most 128 bytes.
func ValidKey(k string) bool {
	if k == "" || len(k) > 128 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] > '~' {
			return false
		}
	}
	return true
}

// Compact returns a journal holding j's keys and committed length (and no
// open or close record): what a writer writes before appending its own
// "open" record.
func (j *Journal) Compact() []byte {
	b := JournalRecord(nil, journalHeader)
	for k, off := range j.Keys {
		b = JournalRecord(b, "key", strconv.FormatInt(off, 10), k)
	}
	return JournalRecord(b, "commit", strconv.FormatInt(j.Committed, 10))
}

// ReadJournal reads the journal at path. A missing journal gives (nil, nil).
func ReadJournal(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	j, err := parseJournal(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return j, nil
}

func parseJournal(r io.Reader) (*Journal, error) {
	j := &Journal{Keys: map[string]int64{}}
	br := bufio.NewReaderSize(r, 4096)
	type key struct {
		k   string
		off int64
	}
	var pending []key
	var bad error
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("%w: line %d too long", ErrJournal, n)
		}
		if err == io.EOF {
			break // no line, or a torn one without LF: ignored
		}
		if err != nil {
			return nil, err
		}
		if bad != nil {
			return nil, bad // a damaged line that was not the last
		}
		fields, ok := checkRecord(line)
		if !ok {
			bad = fmt.Errorf("%w: line %d", ErrJournal, n)
			continue
		}
		if n == 1 {
			if strings.Join(fields, " ") != journalHeader {
				return nil, fmt.Errorf("%w: unknown header %q", ErrJournal, strings.Join(fields, " "))
			}
			continue
		}
		var num int64 = -1
		if len(fields) >= 2 {
			num, _ = strconv.ParseInt(fields[1], 10, 64)
		}
		if num < 0 || (fields[0] == "key") != (len(fields) == 3) || (fields[0] != "key" && len(fields) != 2) {
			bad = fmt.Errorf("%w: line %d: bad record", ErrJournal, n)
			continue
		}
		switch fields[0] {
		case "key":
			pending = append(pending, key{fields[2], num})
			continue
		case "open":
			j.Dirty = true
		case "close":
			j.Dirty = false
		case "commit":
		default:
			bad = fmt.Errorf("%w: line %d: unknown record %q", ErrJournal, n, fields[0])
			continue
		}
		j.Committed = num
		for _, k := range pending {
			j.Keys[k.k] = k.off
		}
		pending = pending[:0]
	}
	// bad set by the last line only: a torn append, ignored.
	return j, nil
}

// checkRecord splits a journal line and verifies its CRC.
func checkRecord(line []byte) ([]string, bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	i := bytes.LastIndexByte(line, ' ')
	if i < 0 || len(line)-i-1 != 8 {
		return nil, false
	}
	sum, err := strconv.ParseUint(string(line[i+1:]), 16, 32)
	if err != nil || uint32(sum) != crc32.ChecksumIEEE(line[:i]) {
		return nil, false
	}
	return strings.Split(string(line[:i]), " "), true
}
