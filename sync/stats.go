package sync

import (
	"sort"
	stdsync "sync"
	"sync/atomic"
	"time"
)

// Counters are the per-run or per-mailbox numbers the engine keeps. They are
// updated atomically while a run goes on, so progress displays can poll them.
type Counters struct {
	Listed       atomic.Int64 // messages seen on the source
	Skipped      atomic.Int64 // already in the checkpoint (or filtered out)
	Queued       atomic.Int64 // to be copied
	Fetched      atomic.Int64 // read whole from the source and handed to the sink
	Copied       atomic.Int64 // stored and recorded
	Present      atomic.Int64 // found already in the destination by the sink (mail.PresentError) and recorded
	Remapped     atomic.Int64 // the same message under a new ID (a renumbering): recorded, not stored again
	Failed       atomic.Int64 // given up after retries
	Vanished     atomic.Int64 // gone from the source between listing and fetch
	Deleted      atomic.Int64 // deleted from the source (delete mode)
	FlagsUpdated atomic.Int64 // copied earlier; flags changed on the destination to follow the source
	Bytes        atomic.Int64 // bytes read from the source for copied messages
	QueuedBytes  atomic.Int64 // size hints of the queued messages
}

// Stats are a run's counters, overall and per mailbox. The zero value is
// ready to use.
type Stats struct {
	Counters
	Start   time.Time
	mu      stdsync.Mutex
	boxes   map[string]*Counters
	current atomic.Value // string: the mailbox being listed
}

// Box returns the counters of mailbox, creating them.
func (s *Stats) Box(mailbox string) *Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.boxes == nil {
		s.boxes = map[string]*Counters{}
	}
	c := s.boxes[mailbox]
	if c == nil {
		c = &Counters{}
		s.boxes[mailbox] = c
	}
	return c
}

// Mailboxes returns the names with counters, sorted.
func (s *Stats) Mailboxes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.boxes))
	for mb := range s.boxes {
		out = append(out, mb)
	}
	sort.Strings(out)
	return out
}

// Current returns the mailbox being listed, or "".
func (s *Stats) Current() string {
	v, _ := s.current.Load().(string)
	return v
}

// Snapshot is a plain copy of Counters, for reports and JSON.
type Snapshot struct {
	Listed       int64 `json:"listed"`
	Skipped      int64 `json:"skipped"`
	Queued       int64 `json:"queued"`
	Fetched      int64 `json:"fetched"`
	Copied       int64 `json:"copied"`
	Present      int64 `json:"present"`
	Remapped     int64 `json:"remapped"`
	Failed       int64 `json:"failed"`
	Vanished     int64 `json:"vanished"`
	Bytes        int64 `json:"bytes"`
	QueuedBytes  int64 `json:"queued_bytes"`
	Deleted      int64 `json:"deleted,omitempty"`
	FlagsUpdated int64 `json:"flags_updated,omitempty"`
}

// Snapshot copies c.
func (c *Counters) Snapshot() Snapshot {
	return Snapshot{Listed: c.Listed.Load(), Skipped: c.Skipped.Load(), Queued: c.Queued.Load(), Fetched: c.Fetched.Load(),
		Copied: c.Copied.Load(), Present: c.Present.Load(), Remapped: c.Remapped.Load(), Failed: c.Failed.Load(),
		Vanished: c.Vanished.Load(), Bytes: c.Bytes.Load(), QueuedBytes: c.QueuedBytes.Load(), Deleted: c.Deleted.Load(),
		FlagsUpdated: c.FlagsUpdated.Load()}
}
