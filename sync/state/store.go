package state

import (
	"errors"
	"fmt"
	stdsync "sync"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// Store is the copy engine's checkpoint (checkpoint.Store) kept in a State:
// a mailbox's records are the records of the folder of the same name, read
// from its log the first time the engine asks for that mailbox. So a run
// that skips every folder (passes.go in package sync) parses no record,
// and one that releases each folder when done (checkpoint.Folders) holds
// only the folders it is working on.
//
// Has cannot return an error: a folder whose log turns out to be damaged
// reads as empty there, and the error is kept and returned by every later
// Add, Flush, Load and Close, so the run stops before it records anything.
// The engine loads each folder before it lists it (Load), which reports
// the damage before any message is copied.
type Store struct {
	s   *State
	mu  stdsync.Mutex
	err error // the first folder that could not be read
}

var (
	_ checkpoint.Store   = (*Store)(nil)
	_ checkpoint.Folders = (*Store)(nil)
)

// NewStore returns the checkpoint kept in s. Closing the store closes s.
func NewStore(s *State) *Store { return &Store{s: s} }

// State returns the state the store keeps its records in.
func (c *Store) State() *State { return c.s }

// folder returns mailbox's folder, keeping a read error for later calls.
func (c *Store) folder(mailbox string) (*Folder, error) {
	f, err := c.s.Folder(mailbox)
	if err != nil && !errors.Is(err, mail.ErrClosed) {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	return f, err
}

// sticky returns the first folder read error, if any.
func (c *Store) sticky() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Load reads mailbox's records now (a no-op when they are in memory),
// reporting a damaged log (ErrUnusable) before the run acts on the folder.
func (c *Store) Load(mailbox string) error {
	if err := c.sticky(); err != nil {
		return err
	}
	_, err := c.folder(mailbox)
	return err
}

// Release writes mailbox's buffered records and drops them from memory:
// the run is done with that folder. A later use reads the log again.
func (c *Store) Release(mailbox string) error {
	return c.s.Release(mailbox)
}

// Len returns the number of records of mailbox, reading them if needed
// (0 when they cannot be read; the error is kept as for Has).
func (c *Store) Len(mailbox string) int {
	f, err := c.folder(mailbox)
	if err != nil {
		return 0
	}
	return f.Len()
}

// Get returns the record of k (false when there is none, or the folder
// cannot be read; the error is kept as for Has).
func (c *Store) Get(k checkpoint.Key) (checkpoint.Record, bool) {
	f, err := c.folder(k.Mailbox)
	if err != nil {
		return checkpoint.Record{}, false
	}
	m, ok := f.Get(k.ID)
	if !ok {
		return checkpoint.Record{}, false
	}
	return recordOf(k.Mailbox, m), true
}

// IDs returns the IDs recorded for mailbox, less those marked Vanished: a
// copy, so the caller may ask the store again while it goes through them.
func (c *Store) IDs(mailbox string) []mail.ID {
	f, err := c.folder(mailbox)
	if err != nil {
		return nil
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	out := make([]mail.ID, 0, len(f.recs))
	for id, m := range f.recs {
		if !m.Vanished {
			out = append(out, id)
		}
	}
	return out
}

// Has reports whether k was recorded.
func (c *Store) Has(k checkpoint.Key) bool {
	f, err := c.folder(k.Mailbox)
	if err != nil {
		return false
	}
	return f.Has(k.ID)
}

// Add records r; it reaches the disk with the next Flush.
func (c *Store) Add(r checkpoint.Record) error {
	if err := c.sticky(); err != nil {
		return err
	}
	f, err := c.folder(r.Mailbox)
	if err != nil {
		return fmt.Errorf("checkpoint: add: %w", err)
	}
	return f.Put(messageOf(r))
}

// Flush writes the buffered records of every folder and fsyncs them.
func (c *Store) Flush() error {
	if err := c.sticky(); err != nil {
		return err
	}
	return c.s.Flush()
}

// Records returns the records of mailbox (in no particular order).
func (c *Store) Records(mailbox string) []checkpoint.Record {
	f, err := c.folder(mailbox)
	if err != nil {
		return nil
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	out := make([]checkpoint.Record, 0, len(f.recs))
	for _, m := range f.recs {
		out = append(out, recordOf(mailbox, m))
	}
	return out
}

// StampStored stamps nothing: every record of a state has a store time
// (Folder.Put gives one, Migrate gives the checkpoint's records one), so
// there is nothing to stamp, and looking would read every folder.
func (c *Store) StampStored(int64) (int, error) { return 0, c.sticky() }

// Close flushes and closes the state. It is idempotent.
func (c *Store) Close() error {
	err := c.s.Close()
	if serr := c.sticky(); serr != nil {
		return serr
	}
	return err
}

// messageOf is r as a folder record.
func messageOf(r checkpoint.Record) Message {
	m := Message{Src: r.ID, Dst: r.Dst, Size: r.Size, Date: r.Date, MsgID: r.MsgID, SHA256: r.SHA256, Stored: r.Stored,
		Vanished: r.Vanished}
	if r.Flags != nil {
		m.Flags, m.FlagsKnown = *r.Flags, true
	}
	return m
}

// recordOf is a folder record as the checkpoint's.
func recordOf(mailbox string, m Message) checkpoint.Record {
	r := checkpoint.Record{Mailbox: mailbox, ID: m.Src, Dst: m.Dst, Size: m.Size, Date: m.Date, MsgID: m.MsgID, SHA256: m.SHA256, Stored: m.Stored,
		Vanished: m.Vanished}
	if m.FlagsKnown {
		flags := m.Flags
		r.Flags = &flags
	}
	return r
}
