package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// The shared pool's raw session (OpenOptions.Share: a two-way sync, whose
// sink writes the same account). A sync after a few changes reads a few
// new bodies and removes a few messages per folder, right where the
// change listing, a flag write or an append left the same session with
// the folder open: doing it there costs a round trip, where an imapclient
// connection of its own costs a login and a SELECT (Dovecot answers one
// for a 50,000-message folder in about 90 ms).

// lendDelta gives the change listing's session back to the shared pool
// after a call, so the flag writes, appends, bodies and removals that
// follow use the same login. Called with s.dl.mu held; a source without a
// pool keeps its session.
func (s *Source) lendDelta() {
	d := &s.dl
	if s.pool == nil || d.sess == nil {
		return
	}
	sess := d.sess
	d.sess = nil
	d.rc.Store(nil)
	s.pool.PutSession(sess)
}

// dialRaw returns the change listing's session: one of the shared pool
// (perhaps with QRESYNC enabled already: EnableQResync then sends
// nothing), else a new one; with the capabilities a test hides hidden.
func (s *Source) dialRaw(ctx context.Context) (*imapconn.RawConn, *imapconn.Session, error) {
	if s.pool == nil {
		rc, err := imapconn.DialRaw(ctx, s.cfg, &s.o)
		if err != nil {
			return nil, nil, err
		}
		return rc, imapconn.NewSession(rc, s.dl.ignore), nil
	}
	sess, err := s.pool.Session(ctx)
	if err != nil {
		return nil, nil, err
	}
	sess.Ignore = s.dl.ignore
	return sess.RawConn(), sess, nil
}

// onPooled runs fn on a session of the shared pool with mailbox name
// (server name box) selected: left so by the last user (read-write when
// fn writes), else SELECTed read-write (with CONDSTORE where offered),
// which the flag writes, appends and removals of the same folder then
// reuse; reading there changes nothing (BODY.PEEK). uidv is the folder's
// UIDVALIDITY. The session goes back to the pool unless the connection
// failed; cancelling ctx breaks it.
func (s *Source) onPooled(ctx context.Context, box string, write bool, fn func(sess *imapconn.Session, uidv uint32) error) error {
	return s.withPooled(ctx, func(sess *imapconn.Session) error {
		cur, rw, sel, ok := sess.Current()
		if !ok || cur != box || write && (!rw || sel.ReadOnly) {
			var err error
			if sel, err = sess.SelectCondStore(box); err != nil {
				return err
			}
		}
		return fn(sess, sel.UIDValidity)
	})
}

// withPooled runs fn on a session of the shared pool: cancelling ctx
// breaks the connection, which then is closed; a session whose commands
// all got a tagged answer (OK, NO or BAD: in step all the same) goes back
// to the pool.
func (s *Source) withPooled(ctx context.Context, fn func(sess *imapconn.Session) error) error {
	sess, err := s.pool.Session(ctx)
	if err != nil {
		return err
	}
	rc := sess.RawConn()
	stop := context.AfterFunc(ctx, func() { _ = rc.Close() })
	err = fn(sess)
	if !stop() && err == nil {
		err = fmt.Errorf("imap: %s: %w", s.cfg.Ident(), ctx.Err())
	}
	var ce *imapconn.CommandError
	if err == nil || errors.As(err, &ce) {
		s.pool.PutSession(sess)
	} else {
		_ = rc.Close()
	}
	return err
}

// fetchPooled fetches the messages of byUID (all of mailbox, at
// UIDVALIDITY uidv) on the shared pool's session when they are few and
// small (smallFetch: the bodies are held in memory), as fetchOnDelta
// does on the change listing's own session. done and err as
// fetchOnDelta: not done, the caller fetches what is left in byUID.
func (s *Source) fetchPooled(ctx context.Context, op, mailbox string, uidv uint32, byUID map[imap.UID]mail.Envelope, fn func(mail.Envelope, io.Reader) error) (done bool, err error) {
	if s.pool == nil || len(byUID) == 0 || !smallFetch(byUID) {
		return false, nil
	}
	box, ok := s.known(mailbox)
	if !ok {
		return false, nil
	}
	var fnErr error
	stale := false
	err = s.onPooledFetch(ctx, box, uidv, byUID, fn, &fnErr, &stale)
	switch {
	case fnErr != nil:
		return true, fnErr
	case ctx.Err() != nil:
		return true, fmt.Errorf("imap: %s: %w", op, ctx.Err())
	case err == nil && !stale:
		return true, nil
	}
	// What was delivered left byUID; the caller fetches the rest (or
	// finds the IDs stale) and reports a real failure itself.
	if err != nil {
		s.log.Debug("imap: fetch on the shared session failed; using the pool", "op", op, "err", err)
	}
	return false, nil
}

// onPooledFetch is onPooled(box, read) running fetchBodiesInto, where the
// SELECT, when the session needs one, goes out with the FETCH in one
// round trip (imapconn.Session.SelectFetchBodies: no body of a mailbox at
// another UIDVALIDITY than uidv reaches fn). stale is set when the
// mailbox's UIDVALIDITY is not uidv: every ID is stale, and Open reports
// each as not found.
func (s *Source) onPooledFetch(ctx context.Context, box string, uidv uint32, byUID map[imap.UID]mail.Envelope, fn func(mail.Envelope, io.Reader) error, fnErr *error, stale *bool) error {
	return s.withPooled(ctx, func(sess *imapconn.Session) error {
		if cur, _, sel, ok := sess.Current(); ok && cur == box {
			if sel.UIDValidity != uidv {
				*stale = true
				return nil
			}
			return fetchBodiesInto(sess, byUID, fn, fnErr)
		}
		var set imapconn.UIDSet
		for uid := range byUID {
			set = set.Add(uint32(uid))
		}
		sel, err := sess.SelectFetchBodies(box, uidv, set, deliverBody(byUID, fn, fnErr))
		if err == nil && sel.UIDValidity != uidv {
			*stale = true
		}
		return err
	})
}

// removePooled is removeOn on the shared pool's session (see Remove for
// what it sends and promises); ok false when it cannot be used (no pool,
// a mailbox this source has not listed), and removeOn runs instead.
func (s *Source) removePooled(ctx context.Context, op, name string, pick func(uidv uint32) (imapconn.UIDSet, int)) (ok bool, err error) {
	box, known := s.known(name)
	if s.pool == nil || !known {
		return false, nil
	}
	var staleErr error
	err = s.onPooled(ctx, box, true, func(sess *imapconn.Session, uidv uint32) error {
		set, stale := pick(uidv)
		if stale > 0 {
			// The UIDs were given under another UIDVALIDITY: they may name
			// other messages now, which were never copied.
			staleErr = fmt.Errorf("imap: %s: %d message ID(s) recorded under another UIDVALIDITY (the mailbox's is now %d); not deleting them: %w", op, stale, uidv, mail.ErrNotFound)
		}
		if len(set) == 0 {
			return nil
		}
		return s.expungeOn(sess, name, box, uidv, set)
	})
	var ce *imapconn.CommandError
	switch {
	case errors.As(err, &ce) && ce.Resp.Kind == "NO" && (ce.Resp.Code == "" || ce.Resp.Code == "NONEXISTENT") && ctx.Err() == nil &&
		strings.HasPrefix(ce.Cmd, "SELECT"):
		s.log.Warn("imap: remove: mailbox no longer exists; nothing to delete", "mailbox", name, "err", ce.Resp.Text)
		return true, nil
	case err != nil && ctx.Err() != nil:
		return true, fmt.Errorf("imap: %s: %w", op, ctx.Err())
	case err != nil && !errors.As(err, &ce) && !isFnError(err):
		return true, mail.Temp(fmt.Errorf("imap: %s: %w", op, err))
	case err != nil:
		return true, fmt.Errorf("imap: %s: %w", op, unwrapFn(err))
	}
	return true, staleErr
}

// expungeOn flags set \Deleted and expunges it on sess, as removeOn does
// on an imapclient connection: UID EXPUNGE with UIDPLUS, a plain EXPUNGE
// only where allowed, else the messages stay flagged (warned once per
// mailbox). The crash tests' hooks run between the two.
// What was removed by UID EXPUNGE is logged in the pool (own-write
// evidence, ownwrites.go); anything else there is logged as unknown.
func (s *Source) expungeOn(sess *imapconn.Session, name, box string, uidv uint32, set imapconn.UIDSet) error {
	uidExpunge := sess.Has("UIDPLUS") || sess.Has("IMAP4REV2")
	if uidExpunge && s.rm.afterStore == nil && s.o.AfterRemoveStore == nil {
		// No hook between the two: one round trip (DeleteExpunge says
		// why that is safe).
		modSeq, err := sess.DeleteExpunge(set)
		if err != nil {
			s.pool.NoteUnknown(box)
			return err
		}
		s.pool.NoteRemoved(box, uidv, set, modSeq)
		s.log.Debug("imap: removed", "mailbox", name, "messages", int(set.Len()))
		return nil
	}
	s.pool.NoteUnknown(box) // a hook between, or no UID EXPUNGE: nothing proved there
	if err := sess.StoreDeleted(set); err != nil {
		return err
	}
	if f := s.rm.afterStore; f != nil {
		if err := f(name); err != nil {
			return fnError{err}
		}
	}
	if f := s.o.AfterRemoveStore; f != nil {
		f(name)
	}
	switch {
	case uidExpunge:
		if err := sess.UIDExpunge(set); err != nil {
			return err
		}
	case s.cfg.AllowUnsafeExpunge:
		s.log.Warn(`imap: server lacks UIDPLUS: plain EXPUNGE as allowed, which also expunges messages other clients marked \Deleted`, "mailbox", name)
		if err := sess.Expunge(); err != nil {
			return err
		}
	default:
		s.warnNoExpunge(name)
	}
	s.log.Debug("imap: removed", "mailbox", name, "messages", int(set.Len()))
	return nil
}
