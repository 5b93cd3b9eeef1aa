package imapsink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// knownFolder returns the folder state for box if there is one.
func (s *Sink) knownFolder(box string) *folder {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.folders[box]
}

// folder returns box's state, reading its index on first use (creating
// the mailbox when it does not exist).
func (s *Sink) folder(ctx context.Context, box string) (*folder, error) {
	s.mu.Lock()
	fo := s.folders[box]
	if fo == nil {
		fo = newFolder(box, &s.alt)
		s.folders[box] = fo
	}
	s.mu.Unlock()
	if err := lock(ctx, fo.lock); err != nil {
		return nil, err
	}
	defer func() { <-fo.lock }()
	if fo.loaded {
		return fo, nil
	}
	if s.o.NoDedupe {
		// Nothing to recognise: the index starts empty and holds what this
		// run appends (a retry of an APPEND whose outcome was unknown
		// still reads the folder, readTail). A missing mailbox is created
		// when the APPEND says TRYCREATE (ensureBoxes).
		fo.loaded = true
		return fo, nil
	}
	if err := s.readIndex(ctx, fo, true); err != nil {
		if !errors.Is(err, mail.ErrMailboxNotFound) {
			return nil, err
		}
		if err := s.ensureBox(ctx, box); err != nil {
			return nil, err
		}
		fo.next = 1
	}
	fo.loaded = true
	return fo, nil
}

// readTail brings a stale folder's index up to date: every message from
// the last known UIDNEXT on that this run did not append itself. The
// caller holds fo.lock.
func (s *Sink) readTail(ctx context.Context, fo *folder) error {
	if err := s.readIndex(ctx, fo, false); err != nil && !errors.Is(err, mail.ErrMailboxNotFound) {
		return err
	}
	fo.stale = false
	return nil
}

// indexItems is what the index fetches per message: one small FETCH per
// folder, a few hundred bytes a message.
var indexItems = &imapv2.FetchOptions{
	UID: true, RFC822Size: true, InternalDate: true,
	BodySection: []*imapv2.FetchItemBodySection{
		{Specifier: imapv2.PartSpecifierHeader, HeaderFields: identityFields, Peek: true},
		{Specifier: imapv2.PartSpecifierText, Partial: &imapv2.SectionPartial{Offset: 0, Size: textPrefix}, Peek: true},
	},
}

// readIndex EXAMINEs fo's mailbox on the control connection and adds its
// messages to the index: all of them (whole), or those from fo.next on.
func (s *Sink) readIndex(ctx context.Context, fo *folder, whole bool) error {
	start := time.Now()
	op := fmt.Sprintf("index %q", fo.server)
	c, done, err := s.control(ctx)
	if err != nil {
		return err
	}
	sel, err := c.Select(fo.server, &imapv2.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		var ie *imapv2.Error
		if ctx.Err() == nil && errors.As(err, &ie) && ie.Type == imapv2.StatusResponseTypeNo {
			done(true)
			return fmt.Errorf("imapsink: %s: %s: %w", op, ie.Text, mail.ErrMailboxNotFound)
		}
		done(false)
		return s.ctlErr(ctx, op, err)
	}
	if fo.uidv != 0 && sel.UIDValidity != fo.uidv {
		// Recreated under us: what we knew names other messages now.
		s.log.Warn("imapsink: destination mailbox UIDVALIDITY changed; reading it again", "mailbox", fo.server)
		*fo = *newFolderLike(fo)
		whole = true
	}
	fo.uidv = sel.UIDValidity
	if sel.NumMessages == 0 {
		if uint32(sel.UIDNext) > fo.next {
			fo.next = uint32(sel.UIDNext)
		}
		done(true)
		return nil
	}
	var cmd *imapclient.FetchCommand
	from := uint32(1)
	if whole {
		// By sequence number: imapclient routes these replies even when a
		// server sends the UID after the literals (docs/library-notes.md §0.1).
		var set imapv2.SeqSet
		set.AddRange(1, 0)
		cmd = c.Fetch(set, indexItems)
	} else {
		from = max(fo.next, 1)
		var set imapv2.UIDSet
		set.AddRange(imapv2.UID(from), 0)
		cmd = c.Fetch(set, indexItems)
	}
	n := fo.addFetched(cmd, from)
	if err := cmd.Close(); err != nil {
		keep := isNo(err)
		done(keep)
		return s.ctlErr(ctx, op, err)
	}
	done(true)
	if uint32(sel.UIDNext) > fo.next {
		fo.next = uint32(sel.UIDNext)
	}
	if whole && uint32(n) < sel.NumMessages {
		s.log.Warn(fmt.Sprintf("imapsink: index of %q has %d of %d messages; the rest may be duplicated", fo.server, n, sel.NumMessages), "mailbox", fo.server)
	}
	s.log.Debug(fmt.Sprintf("imapsink: indexed %d messages", n), "mailbox", fo.server, "elapsed", time.Since(start))
	return nil
}

// addFetched adds the messages of the index FETCH cmd to fo, those with
// a UID from on, and returns how many it added.
func (fo *folder) addFetched(cmd *imapclient.FetchCommand, from uint32) int {
	n := 0
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var (
			uid       uint32
			size      int64
			date      time.Time
			hdr, text []byte
		)
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = uint32(it.UID)
			case imapclient.FetchItemDataRFC822Size:
				size = it.Size
			case imapclient.FetchItemDataInternalDate:
				date = it.Time
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					continue
				}
				b, _ := io.ReadAll(io.LimitReader(it.Literal, headerMax)) // bounded
				if it.Section != nil && it.Section.Specifier == imapv2.PartSpecifierText {
					text = b
				} else {
					hdr = b
				}
			}
		}
		if uid == 0 || uid < from {
			continue // "n:*" also matches the last message when n is past it
		}
		n++
		key, e := entryFrom(uid, size, date, hdr, text)
		fo.add(key, e)
	}
	return n
}

func newFolderLike(fo *folder) *folder {
	nf := newFolder(fo.server, fo.alt)
	nf.lock = fo.lock
	nf.loaded = fo.loaded
	return nf
}

// control locks and returns the control connection, redialling it if it
// died. done(ok) unlocks; ok=false drops the connection. The connection is
// closed if ctx ends while it is held.
func (s *Sink) control(ctx context.Context) (*imapclient.Client, func(ok bool), error) {
	if err := lock(ctx, s.ctlMu); err != nil {
		return nil, nil, fmt.Errorf("imapsink: %w", err)
	}
	if s.isClosed() {
		<-s.ctlMu
		return nil, nil, s.errClosed("control")
	}
	if s.ctl != nil {
		select {
		case <-s.ctl.Closed():
			s.ctl, s.pooled = nil, nil
		default:
		}
	}
	if s.ctl == nil {
		c, err := s.dialControl(ctx)
		if err != nil {
			<-s.ctlMu
			if ctx.Err() == nil && errors.Is(err, mail.ErrUnreachable) {
				err = mail.Temp(fmt.Errorf("imapsink: reconnect: %s", err.Error()))
			}
			return nil, nil, err
		}
		s.ctl = c
	}
	c := s.ctl
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	return c, func(ok bool) {
		switch {
		case !stop() || !ok || s.isClosed():
			_ = c.Close()
			s.ctl, s.pooled = nil, nil
		case s.pool != nil:
			// Shared: it waits in the pool for the source, or for the
			// sink's next control command, whichever comes first.
			s.pool.PutClient(s.pooled)
			s.ctl, s.pooled = nil, nil
		}
		<-s.ctlMu
	}, nil
}

// dialControl returns a control connection: an idle one of the shared
// pool, or a new one. The caller holds ctlMu.
func (s *Sink) dialControl(ctx context.Context) (*imapclient.Client, error) {
	if s.pool == nil {
		return imapconn.Dial(ctx, &s.cfg.Config, &s.o)
	}
	pc, err := s.pool.Client(ctx)
	if err != nil {
		return nil, err
	}
	s.pooled = pc
	return pc.C, nil
}

// ctlErr classifies an error from the control connection: cancellation,
// server verdicts (NO: temporary when the server says so), and transport
// failures (temporary).
func (s *Sink) ctlErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("imapsink: %s: %w", op, ctx.Err())
	}
	var ie *imapv2.Error
	if errors.As(err, &ie) {
		switch ie.Code {
		case imapv2.ResponseCodeUnavailable, imapv2.ResponseCodeInUse, imapv2.ResponseCodeLimit, imapv2.ResponseCodeServerBug:
			return mail.Temp(fmt.Errorf("imapsink: %s: %w", op, err))
		}
		return fmt.Errorf("imapsink: %s: %w", op, err)
	}
	if mail.Temporary(err) || mail.Fatal(err) || errors.Is(err, mail.ErrClosed) {
		return err
	}
	return mail.Temp(fmt.Errorf("imapsink: %s: %w", op, err))
}

func isNo(err error) bool {
	var ie *imapv2.Error
	return errors.As(err, &ie) && ie.Type == imapv2.StatusResponseTypeNo
}

// SetFlags implements mail.FlagSetter: it replaces the flags of the message
// id in mailbox (UID STORE uid FLAGS.SILENT, RFC 9051 §6.4.6), sanitised as
// for Put. An ID whose UIDVALIDITY is no longer the mailbox's, or whose
// message is gone, gives mail.ErrNotFound.
func (s *Sink) SetFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	op := fmt.Sprintf("set flags %s %s", mailbox, id)
	if err := s.begin(ctx, op); err != nil {
		return err
	}
	uidv, uid, ok := parseID(id)
	if !ok {
		return fmt.Errorf("imapsink: %s: not an IMAP message ID: %w", op, mail.ErrNotFound)
	}
	box := s.boxName(mailbox)
	c, done, err := s.control(ctx)
	if err != nil {
		return err
	}
	sel, err := c.Select(box, nil).Wait()
	if err != nil {
		if isNo(err) && ctx.Err() == nil {
			done(true)
			return fmt.Errorf("imapsink: %s: %v: %w", op, err, mail.ErrMailboxNotFound)
		}
		done(false)
		return s.ctlErr(ctx, op, err)
	}
	if sel.UIDValidity != uidv {
		done(true)
		return fmt.Errorf("imapsink: %s: mailbox UIDVALIDITY is now %d: %w", op, sel.UIDValidity, mail.ErrNotFound)
	}
	sd, err := c.UIDSearch(&imapv2.SearchCriteria{UID: []imapv2.UIDSet{imapv2.UIDSetNum(imapv2.UID(uid))}}, nil).Wait()
	if err != nil {
		done(isNo(err))
		return s.ctlErr(ctx, op, err)
	}
	if found := sd.AllUIDs(); len(found) != 1 || uint32(found[0]) != uid {
		done(true)
		return fmt.Errorf("imapsink: %s: %w", op, mail.ErrNotFound)
	}
	// Keywords only where PERMANENTFLAGS allows them (none listed: all).
	anyKw := sel.PermanentFlags == nil
	perm := map[string]bool{}
	for _, f := range sel.PermanentFlags {
		anyKw = anyKw || f == imapv2.FlagWildcard
		perm[strings.ToLower(string(f))] = true
	}
	fl := []imapv2.Flag{}
	for _, f := range sanitize(flags) {
		if strings.HasPrefix(f, `\`) || anyKw || perm[strings.ToLower(f)] {
			fl = append(fl, imapv2.Flag(f))
		}
	}
	err = c.Store(imapv2.UIDSetNum(imapv2.UID(uid)), &imapv2.StoreFlags{Op: imapv2.StoreFlagsSet, Silent: true, Flags: fl}, nil).Close()
	if err != nil {
		done(isNo(err))
		return s.ctlErr(ctx, op, err)
	}
	done(true)
	return nil
}
