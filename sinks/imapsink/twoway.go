package imapsink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// What two-way sync asks of an IMAP side beyond Put and SetFlags: flag
// writes that lose no other client's change (UNCHANGEDSINCE), moves on the
// server, and the flags a mailbox keeps.

var (
	_ mail.ConditionalFlagSetter = (*Sink)(nil)
	_ mail.Mover                 = (*Sink)(nil)
	_ mail.FlagKeeper            = (*Sink)(nil)
)

// condConn is the raw-path connection of SetFlagsIf: go-imap v2 beta.8
// discards the [MODIFIED] response code (docs/library-notes.md), so the
// conditional STORE is driven by hand. It stays in the mailbox it selected
// last, as a sync writes one folder's flags together.
type condConn struct {
	mu   sync.Mutex
	rc   *imapconn.RawConn
	sess *imapconn.Session
	box  string // server name selected, "" none
	sel  imapconn.Selected
}

func (cc *condConn) drop() {
	if cc.rc != nil {
		_ = cc.rc.Close()
	}
	cc.rc, cc.sess, cc.box = nil, nil, ""
}

// close drops the connection (Sink.Close).
func (cc *condConn) close() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.drop()
}

// SetFlagsIf implements mail.ConditionalFlagSetter: UID STORE uid
// (UNCHANGEDSINCE since) FLAGS.SILENT (flags), then the message's FLAGS
// and MODSEQ read back in the same round trip (RFC 7162 §3.1.3). A server
// without CONDSTORE, or a mailbox without mod-sequences (NOMODSEQ), gives
// mail.ErrUnsupported.
func (s *Sink) SetFlagsIf(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag, since uint64) (mail.FlagState, error) {
	op := fmt.Sprintf("set flags %s %s if unchanged since %d", mailbox, id, since)
	if err := s.begin(ctx, op); err != nil {
		return mail.FlagState{}, err
	}
	uidv, uid, ok := parseID(id)
	if !ok {
		return mail.FlagState{}, fmt.Errorf("imapsink: %s: not an IMAP message ID: %w", op, mail.ErrNotFound)
	}
	box := s.boxName(mailbox)
	cc := &s.cond
	cc.mu.Lock()
	defer cc.mu.Unlock()
	defer s.condDone()
	if err := s.condSelect(ctx, box); err != nil {
		return mail.FlagState{}, fmt.Errorf("imapsink: %s: %w", op, err)
	}
	switch {
	case cc.sel.NoModSeq || cc.sel.HighestModSeq == 0:
		return mail.FlagState{}, fmt.Errorf("imapsink: %s: no mod-sequences: %w", op, mail.ErrUnsupported)
	case cc.sel.UIDValidity != uidv:
		return mail.FlagState{}, fmt.Errorf("imapsink: %s: mailbox UIDVALIDITY is now %d: %w", op, cc.sel.UIDValidity, mail.ErrNotFound)
	}
	stop := context.AfterFunc(ctx, func() { _ = cc.rc.Close() })
	res, err := cc.sess.StoreIf(uid, since, sanitize(flags))
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		s.noteUnknown(cc.box)
		return mail.FlagState{}, s.condErr(ctx, op, err)
	}
	if !res.Found {
		return mail.FlagState{}, fmt.Errorf("imapsink: %s: %w", op, mail.ErrNotFound)
	}
	if res.Stored && s.pool != nil {
		s.pool.NoteStored(box, cc.sel.UIDValidity, uid, res.Flags, res.ModSeq)
	}
	out := mail.FlagState{ModSeq: res.ModSeq, Stored: res.Stored, Flags: make([]mail.Flag, len(res.Flags))}
	for i, f := range res.Flags {
		out.Flags[i] = mail.Flag(f)
	}
	return out, nil
}

// SetFlagsIfAll implements mail.ConditionalFlagSetter: SetFlagsIf for
// many messages of mailbox in one round trip (imapconn StoreIfAll).
func (s *Sink) SetFlagsIfAll(ctx context.Context, mailbox string, ws []mail.FlagWrite) ([]mail.FlagResult, error) {
	op := fmt.Sprintf("set flags of %d messages in %s if unchanged", len(ws), mailbox)
	if err := s.begin(ctx, op); err != nil {
		return nil, err
	}
	out := make([]mail.FlagResult, len(ws))
	cc := &s.cond
	cc.mu.Lock()
	defer cc.mu.Unlock()
	defer s.condDone()
	if err := s.condSelect(ctx, s.boxName(mailbox)); err != nil {
		return nil, fmt.Errorf("imapsink: %s: %w", op, err)
	}
	if cc.sel.NoModSeq || cc.sel.HighestModSeq == 0 {
		return nil, fmt.Errorf("imapsink: %s: no mod-sequences: %w", op, mail.ErrUnsupported)
	}
	var raw []imapconn.FlagWrite
	var at []int // index in ws of each raw write
	for i, w := range ws {
		uidv, uid, ok := parseID(w.ID)
		switch {
		case !ok:
			out[i].Err = fmt.Errorf("imapsink: %s: %s is not an IMAP message ID: %w", op, w.ID, mail.ErrNotFound)
		case uidv != cc.sel.UIDValidity:
			out[i].Err = fmt.Errorf("imapsink: %s: %s: mailbox UIDVALIDITY is now %d: %w", op, w.ID, cc.sel.UIDValidity, mail.ErrNotFound)
		default:
			raw = append(raw, imapconn.FlagWrite{UID: uid, Since: w.Since, Flags: sanitize(w.Flags)})
			at = append(at, i)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = cc.rc.Close() })
	res, err := cc.sess.StoreIfAll(raw)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		s.noteUnknown(cc.box)
		return nil, s.condErr(ctx, op, err)
	}
	for j, r := range res {
		i := at[j]
		if !r.Found {
			out[i].Err = fmt.Errorf("imapsink: %s: %s: %w", op, ws[i].ID, mail.ErrNotFound)
			continue
		}
		if r.Stored && s.pool != nil {
			s.pool.NoteStored(cc.box, cc.sel.UIDValidity, raw[j].UID, raw[j].Flags, r.ModSeq)
		}
		st := mail.FlagState{ModSeq: r.ModSeq, Stored: r.Stored, Flags: make([]mail.Flag, len(r.Flags))}
		for k, f := range r.Flags {
			st.Flags[k] = mail.Flag(f)
		}
		out[i].FlagState = st
	}
	return out, nil
}

// noteUnknown logs, in the shared pool, a write to box whose outcome is
// unknown: no own-write evidence is trusted there (mail.WriteProver).
func (s *Sink) noteUnknown(box string) {
	if s.pool != nil && box != "" {
		s.pool.NoteUnknown(box)
	}
}

// condSelect dials the raw connection when needed and selects box in it.
// Called with cc.mu held.
func (s *Sink) condSelect(ctx context.Context, box string) error {
	cc := &s.cond
	if cc.rc == nil {
		if err := s.condDial(ctx); err != nil {
			return err
		}
	}
	if !cc.sess.Has("CONDSTORE") {
		return mail.ErrUnsupported // and SELECT would refuse the parameter
	}
	if b, sel, ok := cc.sess.SelectedCondStore(); ok && b == box {
		// Still selected (by this sink, or by an earlier taker of the
		// shared session): no SELECT of its own.
		cc.box, cc.sel = box, sel
		return nil
	}
	stop := context.AfterFunc(ctx, func() { _ = cc.rc.Close() })
	sel, err := cc.sess.SelectCondStore(box)
	if !stop() {
		err = ctx.Err()
	}
	var ce *imapconn.CommandError
	switch {
	case errors.As(err, &ce) && ce.Resp.Kind == "NO":
		cc.box = "" // a failed SELECT leaves no mailbox selected
		return fmt.Errorf("%v: %w", err, mail.ErrMailboxNotFound)
	case err != nil:
		cc.drop()
		return mail.Temp(err)
	}
	cc.box, cc.sel = box, sel
	return nil
}

// condDial opens the raw connection: a session of the shared pool, or
// one of its own. Called with cc.mu held.
func (s *Sink) condDial(ctx context.Context) error {
	cc := &s.cond
	if s.pool != nil {
		sess, err := s.pool.Session(ctx)
		if err != nil {
			return err
		}
		cc.rc, cc.sess = sess.RawConn(), sess
		return nil
	}
	rc, err := imapconn.DialRaw(ctx, &s.cfg.Config, &s.o)
	if err != nil {
		return err
	}
	cc.rc, cc.sess = rc, imapconn.NewSession(rc, nil)
	return nil
}

// condDone gives a shared session back to the pool after a call (one
// that failed was dropped already); a session of the sink's own stays.
// Called with cc.mu held.
func (s *Sink) condDone() {
	cc := &s.cond
	if s.pool == nil || cc.sess == nil {
		return
	}
	s.pool.PutSession(cc.sess)
	cc.rc, cc.sess, cc.box = nil, nil, ""
}

// condErr classifies an error of the raw connection, which is dropped: it
// may be out of step with the server.
func (s *Sink) condErr(ctx context.Context, op string, err error) error {
	var ce *imapconn.CommandError
	if errors.As(err, &ce) {
		return fmt.Errorf("imapsink: %s: %w", op, err) // a NO or BAD: the connection is fine
	}
	s.cond.drop()
	if ctx.Err() != nil {
		return fmt.Errorf("imapsink: %s: %w", op, ctx.Err())
	}
	return mail.Temp(fmt.Errorf("imapsink: %s: %w", op, err))
}

// Move implements mail.Mover on the control connection: UID MOVE where
// the server offers MOVE; else UID COPY, and only once that succeeded,
// \Deleted and UID EXPUNGE of that UID (never go-imap's Client.Move
// fallback, which pipelines all three, so a refused COPY still expunges,
// and expunges everything flagged \Deleted without UIDPLUS:
// docs/library-notes.md). Without UIDPLUS the original stays \Deleted.
func (s *Sink) Move(ctx context.Context, mailbox string, id mail.ID, to string) (mail.ID, error) {
	op := fmt.Sprintf("move %s %s to %s", mailbox, id, to)
	if err := s.begin(ctx, op); err != nil {
		return "", err
	}
	uidv, uid, ok := parseID(id)
	if !ok {
		return "", fmt.Errorf("imapsink: %s: not an IMAP message ID: %w", op, mail.ErrNotFound)
	}
	c, done, err := s.control(ctx)
	if err != nil {
		return "", err
	}
	if err := s.selectUID(ctx, c, s.boxName(mailbox), uidv, uid, op); err != nil {
		done(errors.Is(err, mail.ErrNotFound) || errors.Is(err, mail.ErrMailboxNotFound))
		return "", err
	}
	set, dest := imapv2.UIDSetNum(imapv2.UID(uid)), s.boxName(to)
	var newID mail.ID
	if c.Caps().Has(imapv2.CapMove) {
		md, err := c.Move(set, dest).Wait()
		if err != nil {
			done(isNo(err))
			return "", s.ctlErr(ctx, op, err)
		}
		newID = destID(md.UIDValidity, md.DestUIDs)
	} else {
		if newID, err = s.copyExpunge(c, set, dest, mailbox); err != nil {
			done(isNo(err))
			return "", s.ctlErr(ctx, op, err)
		}
	}
	done(true)
	s.moved(mailbox, to, uid)
	return newID, nil
}

// moved keeps the dedupe index true after a move of uid from mailbox to
// to: the original is no longer in mailbox (a later Put of the same
// message there must store it, not find it), and to holds a message the
// index did not read (a later Put of it there must find it, not store it
// twice), so to's index reads its tail before the next claim (unless the
// sink recognises nothing: OpenOptions.NoDedupe).
func (s *Sink) moved(mailbox, to string, uid uint32) {
	if fo := s.knownFolder(s.boxName(mailbox)); fo != nil {
		fo.lock <- struct{}{}
		fo.drop(uid)
		<-fo.lock
	}
	if fo := s.knownFolder(s.boxName(to)); fo != nil && !s.o.NoDedupe {
		fo.lock <- struct{}{}
		fo.stale = true
		<-fo.lock
	}
}

// copyExpunge is Move without MOVE: each command waits for the one before.
func (s *Sink) copyExpunge(c *imapclient.Client, set imapv2.UIDSet, dest, mailbox string) (mail.ID, error) {
	cd, err := c.Copy(set, dest).Wait()
	if err != nil {
		return "", err
	}
	del := &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd, Silent: true, Flags: []imapv2.Flag{imapv2.FlagDeleted}}
	if err := c.Store(set, del, nil).Close(); err != nil {
		return "", err
	}
	if c.Caps().Has(imapv2.CapUIDPlus) {
		if err := c.UIDExpunge(set).Close(); err != nil {
			return "", err
		}
	} else {
		s.log.Warn(`imapsink: server lacks MOVE and UIDPLUS: the moved message's original is left flagged \Deleted (a plain EXPUNGE would also remove messages other clients marked \Deleted)`, "mailbox", mailbox)
	}
	return destID(cd.UIDValidity, cd.DestUIDs), nil
}

// selectUID selects box read-write and checks that it holds uid under
// uidv (UID MOVE of a UID that is gone answers OK and moves nothing).
func (s *Sink) selectUID(ctx context.Context, c *imapclient.Client, box string, uidv, uid uint32, op string) error {
	sel, err := c.Select(box, nil).Wait()
	if err != nil {
		if isNo(err) && ctx.Err() == nil {
			return fmt.Errorf("imapsink: %s: %v: %w", op, err, mail.ErrMailboxNotFound)
		}
		return s.ctlErr(ctx, op, err)
	}
	if sel.UIDValidity != uidv {
		return fmt.Errorf("imapsink: %s: mailbox UIDVALIDITY is now %d: %w", op, sel.UIDValidity, mail.ErrNotFound)
	}
	sd, err := c.UIDSearch(&imapv2.SearchCriteria{UID: []imapv2.UIDSet{imapv2.UIDSetNum(imapv2.UID(uid))}}, nil).Wait()
	if err != nil {
		return s.ctlErr(ctx, op, err)
	}
	if found := sd.AllUIDs(); len(found) != 1 || uint32(found[0]) != uid {
		return fmt.Errorf("imapsink: %s: %w", op, mail.ErrNotFound)
	}
	return nil
}

// destID is the id COPYUID or MOVE's COPYUID gave the one message moved
// ("" when the server did not say).
func destID(uidValidity uint32, dest imapv2.NumSet) mail.ID {
	us, ok := dest.(imapv2.UIDSet)
	if !ok || uidValidity == 0 {
		return ""
	}
	uids, ok := us.Nums()
	if !ok || len(uids) != 1 {
		return ""
	}
	return mail.ID(strconv.FormatUint(uint64(uidValidity), 10) + "." + strconv.FormatUint(uint64(uids[0]), 10))
}

// KeptFlags implements mail.FlagKeeper: the PERMANENTFLAGS of mailbox,
// selected read-write (EXAMINE answers an empty list: RFC 9051 §6.3.3).
func (s *Sink) KeptFlags(ctx context.Context, mailbox string) ([]mail.Flag, bool, error) {
	op := "permanent flags of " + mailbox
	if err := s.begin(ctx, op); err != nil {
		return nil, false, err
	}
	c, done, err := s.control(ctx)
	if err != nil {
		return nil, false, err
	}
	sel, err := c.Select(s.boxName(mailbox), nil).Wait()
	if err != nil {
		done(isNo(err))
		if isNo(err) && ctx.Err() == nil {
			return nil, false, fmt.Errorf("imapsink: %s: %v: %w", op, err, mail.ErrMailboxNotFound)
		}
		return nil, false, s.ctlErr(ctx, op, err)
	}
	done(true)
	if sel.PermanentFlags == nil {
		return nil, true, nil // not said: every flag is permanent (RFC 9051 §7.1)
	}
	out := make([]mail.Flag, len(sel.PermanentFlags))
	for i, f := range sel.PermanentFlags {
		out[i] = mail.Flag(f)
	}
	return out, false, nil
}
