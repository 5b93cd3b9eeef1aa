package imap

import (
	"context"
	"errors"
	"sync"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.ChangePrefetcher = (*Source)(nil)

// prefetch holds what PrefetchChanges fetched, by mailbox (normInbox), for
// ListChanges to take.
type prefetch struct {
	mu   sync.Mutex
	byMB map[string]prefetchedListing
}

type prefetchedListing struct {
	since mail.FolderStatus
	p     imapconn.Prefetched
}

// PrefetchChanges implements mail.ChangePrefetcher: the EXAMINE (QRESYNC)
// of every folder, each with its FETCH of new messages when the status now
// shows some (no more than one listing chunk), in one round trip on the
// change listing's session (imapconn.Session.PrefetchChanges). Only with
// QRESYNC, and for two folders or more: one costs ListChanges the same.
// folders come in the order the caller lists them.
func (s *Source) PrefetchChanges(ctx context.Context, folders []mail.ChangeMark) {
	s.pre.mu.Lock()
	s.pre.byMB = nil // an earlier run's, never taken: stale now
	s.pre.mu.Unlock()
	var reqs []imapconn.ChangeReq
	var marks []mail.ChangeMark
	for _, f := range folders {
		box, ok := s.known(f.Mailbox)
		if !ok || f.Since.UIDValidity == 0 || f.Since.UIDNext == 0 || f.Since.HighestModSeq == 0 {
			continue
		}
		r := imapconn.ChangeReq{Box: box, Mark: imapconn.Mark{UIDValidity: f.Since.UIDValidity, UIDNext: f.Since.UIDNext, HighestModSeq: f.Since.HighestModSeq}}
		if now := f.Now; now.UIDValidity == f.Since.UIDValidity && now.UIDNext > f.Since.UIDNext && uint64(now.UIDNext-f.Since.UIDNext) <= listChunk {
			r.NewFrom = f.Since.UIDNext
		}
		reqs, marks = append(reqs, r), append(marks, f)
	}
	if len(reqs) < 2 {
		return
	}
	// The first folder is the first a sync applies (it lists and applies
	// in the same order): last in the pipeline, SELECTed read-write, it is
	// still open when the sync writes there, which then needs no SELECT.
	reqs, marks = append(reqs[1:], reqs[0]), append(marks[1:], marks[0])
	reqs[len(reqs)-1].Select = true
	var got []imapconn.Prefetched
	err := s.withSession(ctx, "list changes", func(sess *imapconn.Session) error {
		var err error
		got, err = sess.PrefetchChanges(reqs)
		if errors.Is(err, imapconn.ErrNoQResync) {
			return nil // listed one by one, as before
		}
		return err
	})
	if err != nil || got == nil {
		if err != nil {
			s.log.Debug("imap: change listings not started together; listing one by one", "err", err)
		}
		return
	}
	s.pre.mu.Lock()
	defer s.pre.mu.Unlock()
	s.pre.byMB = map[string]prefetchedListing{}
	for i, p := range got {
		if p.Err == nil {
			s.pre.byMB[normInbox(marks[i].Mailbox)] = prefetchedListing{since: marks[i].Since, p: p}
		}
	}
}

// takePrefetched returns, once, what PrefetchChanges fetched for mailbox
// (normInbox) since the same status; nil when nothing.
func (s *Source) takePrefetched(mailbox string, since mail.FolderStatus) *imapconn.Prefetched {
	s.pre.mu.Lock()
	defer s.pre.mu.Unlock()
	pl, ok := s.pre.byMB[mailbox]
	if !ok {
		return nil
	}
	delete(s.pre.byMB, mailbox)
	if pl.since.UIDValidity != since.UIDValidity || pl.since.UIDNext != since.UIDNext || pl.since.HighestModSeq != since.HighestModSeq ||
		pl.since.Messages != since.Messages {
		return nil
	}
	return &pl.p
}

// usable reports whether the listing can be made from p alone, with no
// more commands: QRESYNC's report covers the flags and expunges, and the
// new messages were fetched if there are any. If not, ListChanges lists
// the folder on the session as before (having passed nothing yet).
func (cl *changeListing) usable(p *imapconn.Prefetched) bool {
	since, sel := cl.since, p.Sel
	if sel.UIDValidity != since.UIDValidity || sel.NoModSeq || sel.HighestModSeq == 0 {
		return true // fullBefore says why the folder is listed in full
	}
	noNew := sel.Exists == 0 || (sel.UIDNext != 0 && sel.UIDNext <= since.UIDNext)
	return noNew || p.NewAsked
}

// listingView is what a change listing reads of the server's view of the
// mailbox after its EXAMINE: the session's, or a prefetched one.
type listingView interface {
	QResync() bool
	Exists() uint32
	Expunged() bool
	TakeVanished() imapconn.UIDSet
}

// prefetchedView is a Prefetched answer as a listingView: QRESYNC was
// enabled (PrefetchChanges answers only then).
type prefetchedView struct{ p *imapconn.Prefetched }

func (v prefetchedView) QResync() bool                 { return true }
func (v prefetchedView) Exists() uint32                { return v.p.Exists }
func (v prefetchedView) Expunged() bool                { return v.p.Expunged }
func (v prefetchedView) TakeVanished() imapconn.UIDSet { return v.p.Vanished }
