package mail

import (
	"errors"
	"io"
	"sync"
)

// Share holds what the endpoints of one side of a run may share: an IMAP
// account's logged-in connections, used by its source and its sink alike
// (a two-way sync reads and writes the same account: one login serves
// both roles and every step, instead of one per role and step). The
// caller makes one per side, hands it to both opens in OpenOptions.Share,
// and closes it once it closed both endpoints. It is safe for concurrent
// use.
type Share struct {
	mu     sync.Mutex
	vals   map[string]io.Closer
	order  []string
	closed bool
}

// NewShare returns an empty Share.
func NewShare() *Share { return &Share{vals: map[string]io.Closer{}} }

// Get returns the value kept under key, made by mk on first use (an
// endpoint package names its keys after itself and the account). After
// Close it returns nil: the caller then works alone.
func (s *Share) Get(key string, mk func() io.Closer) io.Closer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	v, ok := s.vals[key]
	if !ok {
		v = mk()
		s.vals[key] = v
		s.order = append(s.order, key)
	}
	return v
}

// Close closes every value, in the order they were made; it is
// idempotent.
func (s *Share) Close() error {
	s.mu.Lock()
	vals, order := s.vals, s.order
	s.vals, s.order, s.closed = nil, nil, true
	s.mu.Unlock()
	var errs []error
	for _, k := range order {
		errs = append(errs, vals[k].Close())
	}
	return errors.Join(errs...)
}
