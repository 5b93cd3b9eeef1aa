package state

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"

	"github.com/mailferry/mailferry/sync/mail"
)

// Folder is one folder's message records, read from its log on first use.
// Its methods lock the State.
type Folder struct {
	s    *State
	name string
	gen  uint64
	recs map[mail.ID]Message
	// lines counts the log's record lines (puts and forgets): more than
	// twice the live records makes CompletePass compact the log.
	lines int
	// end is the offset after the last whole line; a torn tail beyond it
	// is cut before the next append, not at load, so that a run that
	// writes nothing leaves the log alone (even its mtime).
	end     int64
	torn    bool
	buf     []byte   // encoded, not yet written
	fields  []string // reused while parsing
	Dropped string   // a torn last line dropped while loading, for a warning
}

// Folder returns the records of folder name, reading its log the first
// time (and creating it, and its summary entry, for a folder the state
// does not know yet). A log that is missing, garbled in a line other than
// the last, or not the one the summary names is refused (ErrUnusable).
func (s *State) Folder(name string) (*Folder, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.folder(name)
}

func (s *State) folder(name string) (*Folder, error) {
	if s.closed {
		return nil, fmt.Errorf("state: folder %q: %w", name, mail.ErrClosed)
	}
	if f := s.folders[name]; f != nil {
		return f, nil
	}
	it, ok := s.sum.Folders[name]
	if !ok {
		f := &Folder{s: s, name: name, recs: map[mail.ID]Message{}}
		if s.readOnly { // a dry run: the folder reads as empty, and stays unwritten
			s.folders[name] = f
			return f, nil
		}
		if err := s.rewriteFolder(f, nil); err != nil {
			return nil, err
		}
		return f, nil
	}
	f, err := s.loadFolder(name, it.Gen, it.Len)
	if err != nil {
		return nil, err
	}
	delete(s.released, name)
	s.folders[name] = f
	return f, nil
}

// Release writes a folder's buffered records and drops it from memory, for
// a run that is done with it (memory stays bounded by the folders in use).
// A *Folder obtained before takes no more writes (mail.ErrClosed); Folder
// reads it again.
func (s *State) Release(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.folders[name]
	if f == nil {
		return nil
	}
	if err := s.flushFolder(f); err != nil {
		return err
	}
	// Compact here too: a folder released before CompletePass is not
	// read again to be compacted there.
	if !s.readOnly && f.worthCompacting() {
		if err := s.rewriteFolder(f, f.recs); err != nil {
			return err
		}
	}
	s.released[name] = len(f.recs)
	delete(s.folders, name)
	return nil
}

// ResetFolder forgets every record of folder name (an IMAP UIDVALIDITY
// change), and its pass state: the next pass lists it in full.
func (s *State) ResetFolder(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readOnly {
		return ErrReadOnly
	}
	f, err := s.folder(name)
	if err != nil {
		return err
	}
	f.buf = f.buf[:0]
	return s.rewriteFolder(f, nil)
}

// maxSizeHint caps the summary's record count as a size hint: a garbled
// summary must not make loadFolder allocate without bound.
const maxSizeHint = 1 << 20

// loadFolder parses the log of generation gen; size is how many records
// it held at the last complete pass, so the map is made that big once:
// growing it from empty rehashed 50,000 records about a dozen times, a
// third of a change rerun's load.
func (s *State) loadFolder(name string, gen uint64, size int) (*Folder, error) {
	path := s.logPath(gen)
	file, err := s.fs.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s: the log of folder %q is missing (%s)", ErrUnusable, path, name, damagedHint)
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	defer func() { _ = file.Close() }()
	f := &Folder{s: s, name: name, gen: gen, recs: make(map[mail.ID]Message, min(max(size, 0), maxSizeHint))}
	if err := f.parse(bufio.NewReaderSize(file, 64<<10), path); err != nil {
		return nil, err
	}
	if f.Dropped != "" {
		s.log.Warn("state: dropped a torn last line (a crash mid-write; its message will be listed again)",
			"mailbox", name, "file", path, "bytes", len(f.Dropped))
	}
	return f, nil
}

// parse reads the log: the header, then records. A bad last line is torn
// (dropped); a bad line before it is corruption.
func (f *Folder) parse(r *bufio.Reader, path string) error {
	for n := 1; ; n++ {
		line, err := readLine(r)
		if err == io.EOF {
			return f.tail(string(line), n, path)
		}
		if err != nil {
			return fmt.Errorf("state: read %s: %w", path, err)
		}
		if perr := f.parseLine(line[:len(line)-1], n); perr != nil {
			dropped := string(line) // before Peek, which may reuse line's buffer
			if _, peek := r.Peek(1); peek == io.EOF && n > 1 {
				f.Dropped, f.torn = dropped, true
				return nil
			}
			return fmt.Errorf("%w: %s line %d: %v (%s)", ErrUnusable, path, n, perr, damagedHint)
		}
		f.end += int64(len(line))
	}
}

// readLine returns the next line with its newline (without one at EOF).
// It is r's buffer, valid until the next read, unless the line is longer.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	long := append([]byte(nil), line...)
	for err == bufio.ErrBufferFull {
		line, err = r.ReadSlice('\n')
		long = append(long, line...)
	}
	return long, err
}

// tail handles what follows the last newline: nothing, or a torn line.
func (f *Folder) tail(rest string, n int, path string) error {
	if n == 1 { // not even a whole header: the summary names a log it never made
		return fmt.Errorf("%w: %s is empty or torn in its header (%s)", ErrUnusable, path, damagedHint)
	}
	if rest != "" {
		f.Dropped, f.torn = rest, true
	}
	return nil
}

func (f *Folder) parseLine(line []byte, n int) error {
	fields, err := splitLine(line, f.fields)
	if err != nil {
		return err
	}
	f.fields = fields
	if n == 1 {
		return parseHeader(fields, f.gen, f.name)
	}
	if len(fields) == 2 && fields[0] == opVanish && fields[1] != "" {
		f.vanish(mail.ID(fields[1]))
		return nil
	}
	m, forget, err := parseRecord(fields)
	if err != nil {
		return err
	}
	f.apply(m, forget)
	return nil
}

// vanish marks the record of src as Vanished (a V line: only ever written
// after src's P line).
func (f *Folder) vanish(src mail.ID) {
	f.lines++
	if m, ok := f.recs[src]; ok {
		m.Vanished = true
		f.recs[src] = m
	}
}

func (f *Folder) apply(m Message, forget bool) {
	f.lines++
	if forget {
		delete(f.recs, m.Src)
		return
	}
	f.recs[m.Src] = m
}

// rewriteFolder gives f a new log of a new generation holding recs (nil:
// none), then switches the summary to it and removes the old log. A crash
// before the summary is written leaves the old log in force and the new one
// an orphan that nothing reads (its generation is reused, by rename). A
// folder the summary did not know gets its entry here, before any of its
// records can be appended: every log with records is named by the summary.
func (s *State) rewriteFolder(f *Folder, recs map[mail.ID]Message) error {
	gen := s.sum.NextGen
	data := headerLine(nil, gen, f.name)
	for _, src := range sortedIDs(recs) {
		data = putLine(data, recs[src])
	}
	if err := replaceFile(s.fs, s.logPath(gen), data); err != nil {
		return mail.MakeFatal(fmt.Errorf("state: folder %q: %w", f.name, err))
	}
	old, known := s.sum.Folders[f.name]
	it := &folderItem{Gen: gen}
	if known && recs != nil { // compaction keeps the pass state
		it.Summary = old.Summary
	}
	s.sum.Folders[f.name] = it
	s.sum.NextGen = gen + 1
	if err := s.writeSummary(); err != nil {
		if known {
			s.sum.Folders[f.name] = old
		} else {
			delete(s.sum.Folders, f.name)
		}
		return err
	}
	if known {
		_ = s.fs.Remove(s.logPath(old.Gen))
	}
	if recs == nil {
		recs = map[mail.ID]Message{}
	}
	f.gen, f.recs, f.lines, f.end, f.torn, f.Dropped = gen, recs, len(recs), int64(len(data)), false, ""
	s.folders[f.name] = f
	return nil
}

func sortedIDs(recs map[mail.ID]Message) []mail.ID {
	ids := make([]mail.ID, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (f *Folder) worthCompacting() bool {
	return f.lines > 1024 && f.lines > 2*len(f.recs)
}

// flushFolder appends f's buffered lines to its log and fsyncs it.
// Called with mu held.
func (s *State) flushFolder(f *Folder) error {
	if len(f.buf) == 0 {
		return nil
	}
	path := s.logPath(f.gen)
	file, err := s.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return mail.MakeFatal(fmt.Errorf("state: open %s: %w", path, err))
	}
	defer func() { _ = file.Close() }()
	if err := f.appendTo(file); err != nil {
		return mail.MakeFatal(fmt.Errorf("state: write %s: %w", path, err))
	}
	if err := file.Sync(); err != nil {
		return mail.MakeFatal(fmt.Errorf("state: fsync %s: %w", path, err))
	}
	f.end += int64(len(f.buf))
	f.buf = f.buf[:0]
	f.torn, f.Dropped = false, ""
	return nil
}

// appendTo writes the buffer after the last whole line (cutting a torn
// tail); on a failed write (ENOSPC) it cuts the partial line again so the
// next load does not trip over it.
func (f *Folder) appendTo(file interface {
	io.WriteSeeker
	Truncate(int64) error
}) error {
	if f.torn {
		if err := file.Truncate(f.end); err != nil {
			return err
		}
	}
	if _, err := file.Seek(f.end, io.SeekStart); err != nil {
		return err
	}
	if _, err := file.Write(f.buf); err != nil {
		_ = file.Truncate(f.end) // best effort: the write error is what we report
		return err
	}
	return nil
}

// Name returns the folder's name.
func (f *Folder) Name() string { return f.name }

// Len returns the number of message records.
func (f *Folder) Len() int {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return len(f.recs)
}

// Get returns the record of the message whose side-A id is src.
func (f *Folder) Get(src mail.ID) (Message, bool) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	m, ok := f.recs[src]
	return m, ok
}

// Has reports whether the message whose side-A id is src is recorded.
func (f *Folder) Has(src mail.ID) bool {
	_, ok := f.Get(src)
	return ok
}

// Messages returns every record, sorted by Src.
func (f *Folder) Messages() []Message {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	out := make([]Message, 0, len(f.recs))
	for _, id := range sortedIDs(f.recs) {
		out = append(out, f.recs[id])
	}
	return out
}

// Each calls fn with every record, in no order: Messages without its sort
// and copy, for a caller that looks at each record once (two-way sync's
// check of a Maildir folder against its records). fn runs with the
// state's lock held and must not call back into the state.
func (f *Folder) Each(fn func(Message)) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	for _, m := range f.recs {
		fn(m)
	}
}

// Put records m (replacing the record with the same Src); it reaches the
// disk with the next Flush. A zero Stored becomes the current time.
func (f *Folder) Put(m Message) error {
	if m.Src == "" {
		return errors.New("state: put: empty source id")
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if err := f.usable(); err != nil {
		return err
	}
	if m.Stored == 0 {
		m.Stored = f.s.now().Unix()
	}
	f.buf = putLine(f.buf, m)
	f.apply(m, false)
	return nil
}

// Forget drops the record of src (a message deleted on both sides); it
// reaches the disk with the next Flush.
func (f *Folder) Forget(src mail.ID) error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if err := f.usable(); err != nil {
		return err
	}
	if _, ok := f.recs[src]; !ok {
		return nil
	}
	f.buf = forgetLine(f.buf, src)
	f.apply(Message{Src: src}, true)
	return nil
}

// usable refuses a folder of a closed state, or one released or replaced.
func (f *Folder) usable() error {
	if f.s.closed || f.s.folders[f.name] != f {
		return fmt.Errorf("state: folder %q: %w", f.name, mail.ErrClosed)
	}
	if f.s.readOnly {
		return ErrReadOnly
	}
	return nil
}
