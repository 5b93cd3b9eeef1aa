package imap

// One login per run where the run needs the raw session anyway (issues 11
// and 12). The change listing (delta.go) runs on a raw session; a run
// that first logged in on imapclient for the folders and their statuses
// paid a second login (a TLS handshake and, on Dovecot, an imap process)
// for it. For such a run (OpenOptions.Incremental) New therefore logs in
// on the raw session first and asks there, in one round trip, the
// personal namespace, the folders and (LIST-STATUS, RFC 5819) their
// statuses; the imapclient control connection is dialled only when work
// needs it (a full listing, a big fetch, a removal). A no-op rerun stays
// at one login and one round trip after it. A first copy, which lists in
// full on the control connection, logs in there first, as before.

import (
	"context"
	"errors"
	"fmt"
	"time"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// rawFirst holds what New learnt on the raw session.
type rawFirst struct {
	on bool // New logged in on the raw session
	// statuses are the LIST-STATUS answers New received, by server name,
	// until FolderStatuses answers from them (statusAt then zero).
	statuses map[string]imapconn.Status
	statusAt time.Time
	condstor bool // the session offered CONDSTORE (HIGHESTMODSEQ asked)
	gmail    bool // the server announced GmailCap after login
}

// newRawFirst logs in on the raw session and learns the account there.
// handled false: the raw path could not be used (a reply it could not
// read), and New goes the imapclient way; a failed login is New's error.
func (s *Source) newRawFirst(ctx context.Context) (handled bool, err error) {
	rc, sess, err := s.dialRaw(ctx)
	if err != nil {
		return true, err
	}
	stop := context.AfterFunc(ctx, func() { _ = rc.Close() })
	acct, err := sess.Account(true, condStoreProbe)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = rc.Close()
		if ctx.Err() != nil {
			return true, fmt.Errorf("imap: namespace %s: %w", s.cfg.Ident(), ctx.Err())
		}
		s.log.Debug("imap: account listing on the raw session failed; using imapclient", "err", err)
		return false, nil
	}
	s.learnAccount(acct, sess.Has("CONDSTORE"))
	s.raw.on = true
	s.raw.gmail = sess.Has(GmailCap)
	if s.pool != nil {
		s.pool.PutSession(sess) // the change listing, the sink's writes take it there
		return true, nil
	}
	s.dl.sess = sess
	s.dl.rc.Store(rc)
	return true, nil
}

// learnAccount keeps what Session.Account said: the prefix (as
// learnPrefix keeps it), the name table and the statuses.
func (s *Source) learnAccount(acct imapconn.Account, condstore bool) {
	if acct.Namespace {
		s.prefix = acct.Prefix
		if s.pool != nil {
			s.pool.SetNamespace(acct.Prefix, acct.Delim) // the sink's too
		}
	}
	if acct.List == nil {
		return // refused: Mailboxes asks again
	}
	s.nameTable(listData(acct.List))
	s.mu.Lock()
	s.listedAt = time.Now()
	if acct.Statuses != nil {
		s.raw.statuses, s.raw.statusAt, s.raw.condstor = acct.Statuses, s.listedAt, condstore
	}
	s.mu.Unlock()
}

// listData converts the raw LIST replies into imapclient's shape, which
// nameTable reads on either path.
func listData(entries []imapconn.ListEntry) []*imap.ListData {
	out := make([]*imap.ListData, len(entries))
	for i, e := range entries {
		d := &imap.ListData{Mailbox: e.Mailbox, Delim: e.Delim}
		for _, a := range e.Attrs {
			d.Attrs = append(d.Attrs, imap.MailboxAttr(a))
		}
		out[i] = d
	}
	return out
}

// prefetchedStatuses returns the statuses of boxes (server names, named
// back by byServer) that New's LIST-STATUS returned, once, while fresh;
// ok false when one of boxes has none there.
func (s *Source) prefetchedStatuses(boxes []string, byServer map[string]string) (map[string]mail.FolderStatus, bool) {
	s.mu.Lock()
	sts, at, condstore := s.raw.statuses, s.raw.statusAt, s.raw.condstor
	s.raw.statuses, s.raw.statusAt = nil, time.Time{}
	s.mu.Unlock()
	if sts == nil || time.Since(at) > prefetchFresh {
		return nil, false
	}
	out := make(map[string]mail.FolderStatus, len(boxes))
	for _, box := range boxes {
		st, ok := sts[box]
		if !ok || st.UIDValidity == 0 {
			return nil, false
		}
		out[byServer[box]] = rawStatus(st, condstore)
	}
	return out, true
}

// rawStatus converts a raw STATUS reply as folderStatus converts
// imapclient's.
func rawStatus(st imapconn.Status, condstore bool) mail.FolderStatus {
	return mail.FolderStatus{
		UIDValidity: st.UIDValidity, UIDNext: st.UIDNext, Messages: st.Messages,
		HighestModSeq: st.HighestModSeq, NoModSeq: condstore && st.HighestModSeq == 0,
		MailboxID: st.MailboxID,
	}
}

// refreshRaw is refresh on the raw session.
func (s *Source) refreshRaw(ctx context.Context) (map[string]string, error) {
	var boxes map[string]string
	err := s.withRaw(ctx, "list", false, func(sess *imapconn.Session) error {
		acct, err := sess.Account(false, "")
		if err != nil {
			return err
		}
		if acct.List == nil {
			return errors.New("LIST refused")
		}
		boxes = s.nameTable(listData(acct.List))
		return nil
	})
	return boxes, err
}
