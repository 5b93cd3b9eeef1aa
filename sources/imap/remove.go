package imap

import (
	"context"
	"errors"
	"fmt"
	"sync"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.Remover = (*Source)(nil)

// remover is the state of Remove: its own connection, which SELECTs
// read-write while every other connection only EXAMINEs, and the mailboxes
// already warned about a skipped expunge.
//
// Remove never borrows the control connection or a pooled one: the engine
// calls it from its commit loop, which the workers (holding pooled
// connections) and the lister (holding the control connection while it
// waits for them) may be waiting on, so waiting for either could deadlock.
type remover struct {
	mu     sync.Mutex
	cn     *conn           // nil until the first Remove, or after it broke
	warned map[string]bool // mailboxes told "expunge skipped: no UIDPLUS"
	// afterStore, set by tests only, runs between UID STORE and the
	// expunge: a crash there leaves the messages flagged \Deleted.
	afterStore func(mailbox string) error
}

// Remove deletes envs from the server, mailbox by mailbox, on a connection
// of its own: UID STORE uids +FLAGS.SILENT (\Deleted), then UID EXPUNGE
// uids (RFC 4315 UIDPLUS, part of IMAP4rev2, RFC 9051 §6.4.9), which
// expunges exactly those messages and never one another client marked
// \Deleted. It returns once the server confirmed the expunge.
//
// An ID whose UIDVALIDITY is not the mailbox's any more names another
// message, or none: such messages are left alone and Remove returns an
// error wrapping mail.ErrNotFound, after removing the others of the call.
// UIDs the server no longer has (already expunged by an earlier run killed
// before it could record that) are no error. A mailbox gone from the server
// holds nothing to delete and is skipped with a warning.
//
// Without UIDPLUS a plain EXPUNGE would also expunge messages other clients
// marked \Deleted, so by default the messages are only flagged \Deleted
// (a mail client or the next EXPUNGE removes them) and a warning
// "expunge skipped: no UIDPLUS" is logged once per mailbox. With
// Config.AllowUnsafeExpunge, plain EXPUNGE is sent instead.
//
// Everything Remove sends is idempotent, so a temporary failure is retried
// once on a new connection; cancelling ctx breaks the connection and
// returns an error wrapping ctx.Err(). It is safe for concurrent use.
func (s *Source) Remove(ctx context.Context, envs []mail.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("imap: remove: %w", err)
	}
	var order []string
	byBox := map[string][]mail.Envelope{}
	for _, e := range envs {
		name := normInbox(e.Mailbox)
		if _, ok := byBox[name]; !ok {
			order = append(order, name)
		}
		byBox[name] = append(byBox[name], e)
	}
	s.rm.mu.Lock()
	defer s.rm.mu.Unlock()
	var stale error
	for _, name := range order {
		var err error
		for attempt := 1; attempt <= 2; attempt++ {
			if err = s.removeBox(ctx, name, byBox[name]); err == nil || !mail.Temporary(err) || ctx.Err() != nil {
				break
			}
			s.log.Warn("imap: remove: retrying on a new connection", "mailbox", name, "attempt", attempt, "err", err)
		}
		switch {
		case err == nil:
		case errors.Is(err, mail.ErrNotFound) && stale == nil:
			stale = err // the other mailboxes still get their removals
		case errors.Is(err, mail.ErrNotFound):
		default:
			return err
		}
	}
	return stale
}

// removeBox removes envs, all of mailbox name, and whether it could keep the
// connection. It holds s.rm.mu.
func (s *Source) removeBox(ctx context.Context, name string, envs []mail.Envelope) error {
	op := fmt.Sprintf("remove %d message(s) from %q", len(envs), name)
	type target struct {
		uidv uint32
		uid  imap.UID
	}
	targets := make([]target, 0, len(envs))
	for _, e := range envs {
		uidv, uid, ok := parseID(e.ID)
		if !ok {
			return fmt.Errorf("imap: %s: %q is not an IMAP message ID: %w", op, e.ID, mail.ErrNotFound)
		}
		targets = append(targets, target{uidv, uid})
	}
	if ok, err := s.removePooled(ctx, op, name, func(uidv uint32) (imapconn.UIDSet, int) {
		var set imapconn.UIDSet
		stale := 0
		for _, t := range targets {
			if t.uidv != uidv {
				stale++
				continue
			}
			set = set.Add(uint32(t.uid))
		}
		return set, stale
	}); ok {
		return err
	}
	cn, err := s.removeConn(ctx)
	if err != nil {
		return fmt.Errorf("imap: %s: %w", op, err)
	}
	stop := watch(ctx, cn)
	keep, err := s.removeOn(ctx, cn, op, name, func(uidv uint32) (imap.UIDSet, int) {
		var set imap.UIDSet
		stale := 0
		for _, t := range targets {
			if t.uidv != uidv {
				stale++
				continue
			}
			set.AddNum(t.uid)
		}
		return set, stale
	})
	if !stop() {
		keep = false
	}
	switch {
	case !keep || cn.dead() || s.isClosed():
		s.drop(cn)
		s.rm.cn = nil
	case cn.pooled:
		// Shared: the next removal takes an idle one again (taking never
		// waits, so the deadlock remover's comment fears cannot happen).
		s.rm.cn = nil
		s.giveBack(cn)
	default:
		cn.dc.SetIdle(true)
	}
	return err
}

// removeOn runs the removal on cn: SELECT, UIDVALIDITY check, UID STORE,
// expunge. pick returns the UIDs to remove under the mailbox's current
// UIDVALIDITY and how many IDs were recorded under another one.
func (s *Source) removeOn(ctx context.Context, cn *conn, op, name string, pick func(uidv uint32) (imap.UIDSet, int)) (bool, error) {
	box, ok := s.known(name)
	if !ok {
		// Not listed by this source yet (a resumed run removes what an
		// earlier one recorded): LIST here, never on the control
		// connection (see remover).
		boxes, keep, err := s.listBoxes(ctx, cn)
		if err == nil {
			box, err = s.lookup(boxes, name)
		}
		if errors.Is(err, mail.ErrMailboxNotFound) {
			s.log.Warn("imap: remove: mailbox no longer exists; nothing to delete", "mailbox", name)
			return keep, nil
		}
		if err != nil {
			return keep, err
		}
	}
	// SELECT afresh each time: the UIDVALIDITY it reports is the one the
	// UIDs below are checked against.
	cn.box = ""
	data, err := cn.c.Select(box, nil).Wait()
	if err != nil {
		var ie *imap.Error
		if ctx.Err() == nil && errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo &&
			(ie.Code == imap.ResponseCodeNonExistent || ie.Code == "") {
			s.log.Warn("imap: remove: mailbox no longer exists; nothing to delete", "mailbox", name, "err", ie.Text)
			return true, nil
		}
		return s.wrap(ctx, op+": select", err)
	}
	cn.box, cn.uidv, cn.num = box, data.UIDValidity, data.NumMessages
	set, stale := pick(data.UIDValidity)
	var staleErr error
	if stale > 0 {
		// The UIDs were given under another UIDVALIDITY: they may name
		// other messages now, which were never copied.
		staleErr = fmt.Errorf("imap: %s: %d message ID(s) recorded under another UIDVALIDITY (the mailbox's is now %d); not deleting them: %w", op, stale, data.UIDValidity, mail.ErrNotFound)
	}
	if len(set) == 0 {
		return true, staleErr
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	caps := cn.c.Caps()
	uidExpunge := caps.Has(imap.CapUIDPlus) || caps.Has(imap.CapIMAP4rev2)
	if uidExpunge && s.rm.afterStore == nil && s.o.AfterRemoveStore == nil {
		return s.deleteExpunge(ctx, op, cn, name, set, staleErr)
	}
	if err := cn.c.Store(set, store, nil).Close(); err != nil {
		return s.wrap(ctx, op+": store \\Deleted", err)
	}
	if f := s.rm.afterStore; f != nil {
		if err := f(name); err != nil {
			return false, err
		}
	}
	if f := s.o.AfterRemoveStore; f != nil {
		f(name)
	}
	switch {
	case uidExpunge:
		if err := cn.c.UIDExpunge(set).Close(); err != nil {
			return s.wrap(ctx, op+": uid expunge", err)
		}
	case s.cfg.AllowUnsafeExpunge:
		s.log.Warn(`imap: server lacks UIDPLUS: plain EXPUNGE as allowed, which also expunges messages other clients marked \Deleted`, "mailbox", name)
		if err := cn.c.Expunge().Close(); err != nil {
			return s.wrap(ctx, op+": expunge", err)
		}
	default:
		s.warnNoExpunge(name)
	}
	s.log.Debug("imap: removed", "mailbox", name, "messages", len(set))
	return true, staleErr
}

// deleteExpunge is the STORE \\Deleted and UID EXPUNGE of removeOn in one
// round trip, where no hook runs between them: imapclient sends the
// second before the first is answered (imapconn.Session.DeleteExpunge
// says why that is safe); the removal counts only once both answered OK.
func (s *Source) deleteExpunge(ctx context.Context, op string, cn *conn, name string, set imap.UIDSet, staleErr error) (bool, error) {
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	st := cn.c.Store(set, store, nil)
	ex := cn.c.UIDExpunge(set)
	serr, xerr := st.Close(), ex.Close()
	if serr != nil {
		return s.wrap(ctx, op+": store \\Deleted", serr)
	}
	if xerr != nil {
		return s.wrap(ctx, op+": uid expunge", xerr)
	}
	s.log.Debug("imap: removed", "mailbox", name, "messages", len(set))
	return true, staleErr
}

// warnNoExpunge says once per mailbox that the removed messages stay
// flagged \Deleted. It holds s.rm.mu.
func (s *Source) warnNoExpunge(name string) {
	if s.rm.warned[name] {
		return
	}
	if s.rm.warned == nil {
		s.rm.warned = map[string]bool{}
	}
	s.rm.warned[name] = true
	s.log.Warn(`imap: expunge skipped: no UIDPLUS; copied messages are left flagged \Deleted (a plain EXPUNGE would also remove messages other clients marked \Deleted)`, "mailbox", name)
}

// removeConn returns the removal connection, dialling it if needed. The
// caller holds s.rm.mu.
func (s *Source) removeConn(ctx context.Context) (*conn, error) {
	if cn := s.rm.cn; cn != nil {
		if !cn.dead() {
			cn.dc.SetIdle(false)
			return cn, nil
		}
		s.drop(cn)
		s.rm.cn = nil
	}
	if s.isClosed() {
		return nil, mail.ErrClosed
	}
	cn, err := s.newConn(ctx)
	if err != nil {
		return nil, err
	}
	s.rm.cn = cn
	return cn, nil
}
