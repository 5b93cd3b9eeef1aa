package maildir

import (
	"context"
	"hash/maphash"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

var (
	_ mail.PutPreparer     = (*Sink)(nil)
	_ mail.PutPreparerFrom = (*Sink)(nil)
)

// PreparePuts implements mail.PutPreparer. A Put of a key this run has not
// seen looks for a stored copy by reading the folder's names (lookupKey):
// 30 to 50 ms in a 50,000-message folder, in series with a nightly rerun's
// one new message. PreparePuts reads them now, on another goroutine while
// the engine lists the folder's changes, keeping a 64-bit hash of every
// stored key (8 bytes a message, where an index of keys and IDs costs about
// 150), so that such a Put finds its key absent without reading the names
// again. A key whose hash is there (stored, or a collision) is still looked
// up by name. Puts into the folder wait for the read, as for lookupKey's:
// none misses another's key. A folder that does not exist is not made.
func (s *Sink) PreparePuts(mailbox string) {
	dir, err := maildirfmt.FolderDir(s.root, mailbox)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.prep.Go(func() {
		if fi, err := s.fs.Lstat(dir); err != nil || !fi.IsDir() {
			return
		}
		f, err := s.folder(context.Background(), mailbox)
		if err != nil {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.indexed || f.stored != nil {
			return
		}
		set := map[uint64]struct{}{}
		err = s.eachKey(f.dir, func(k, _ string) bool {
			set[s.keyHash(k)] = struct{}{}
			return true
		})
		if err != nil {
			s.log.Debug("maildir: prepare puts: the folder's names are looked up by Put", "mailbox", mailbox, "err", err)
			return
		}
		f.stored = set
	})
}

// keyHash is the hash PreparePuts keeps of a stored key.
func (s *Sink) keyHash(key string) uint64 {
	return maphash.String(s.hashSeed, key)
}

// storedNot reports whether a PreparePuts read shows that key is not
// stored in f. Called with f.mu held.
func (s *Sink) storedNot(f *folder, key string) bool {
	if f.stored == nil {
		return false
	}
	_, maybe := f.stored[s.keyHash(key)]
	return !maybe
}

// PreparePutsFrom implements mail.PutPreparerFrom: what PreparePuts keeps,
// taken from the ids the caller read (their unique parts carry the keys)
// instead of a read of the folder's names. A folder that does not exist
// is not made.
func (s *Sink) PreparePutsFrom(mailbox string, ids []mail.ID) {
	dir, err := maildirfmt.FolderDir(s.root, mailbox)
	if err != nil {
		return
	}
	if fi, err := s.fs.Lstat(dir); err != nil || !fi.IsDir() {
		return
	}
	f, err := s.folder(context.Background(), mailbox)
	if err != nil {
		return
	}
	set := make(map[uint64]struct{}, len(ids))
	for _, id := range ids {
		if k := keyOf(string(id)); k != "" {
			set[s.keyHash(k)] = struct{}{}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.indexed && f.stored == nil {
		f.stored = set
	}
}
