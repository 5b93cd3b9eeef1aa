package imapsink

import (
	"context"
	"fmt"
	"slices"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.FolderManager = (*Sink)(nil)

// RenameMailbox implements mail.FolderManager: RENAME from to (the server
// renames the mailboxes below from too, RFC 9051 §6.3.6). A refused RENAME
// is no error when from is gone and to exists: done before (a crash between
// the rename and its record) or along with a parent.
func (s *Sink) RenameMailbox(ctx context.Context, from, to string) error {
	op := fmt.Sprintf("rename %q to %q", from, to)
	if err := s.begin(ctx, op); err != nil {
		return err
	}
	sf, st := s.boxName(from), s.boxName(to)
	c, done, err := s.control(ctx)
	if err != nil {
		return err
	}
	err = c.Rename(sf, st, nil).Wait()
	if err != nil && (!isNo(err) || ctx.Err() != nil) {
		done(false)
		return s.ctlErr(ctx, op, err)
	}
	if err != nil && !renamedAlready(c, sf, st) {
		done(true)
		return fmt.Errorf("imapsink: %s: server refused: %w", op, err)
	}
	done(true)
	s.forget(sf, st)
	return s.listBoxes(ctx, true)
}

// renamedAlready reports whether from does not exist and to does.
func renamedAlready(c *imapclient.Client, from, to string) bool {
	exists := func(box string) bool {
		l, err := c.List("", box, nil).Collect()
		return err == nil && len(l) == 1 && !hasAttr(l[0].Attrs, imapv2.MailboxAttrNonExistent)
	}
	return !exists(from) && exists(to)
}

// DeleteMailbox implements mail.FolderManager: DELETE name, only while it
// holds exactly the messages holds names (same UIDVALIDITY, same UIDs), so
// that mail delivered after the caller listed it is not deleted with it.
// A mailbox already gone is no error.
func (s *Sink) DeleteMailbox(ctx context.Context, name string, holds []mail.ID) error {
	op := fmt.Sprintf("delete %q", name)
	if err := s.begin(ctx, op); err != nil {
		return err
	}
	box := s.boxName(name)
	c, done, err := s.control(ctx)
	if err != nil {
		return err
	}
	sel, err := c.Select(box, nil).Wait()
	if err != nil {
		if isNo(err) && ctx.Err() == nil {
			done(true)
			return nil // gone already
		}
		done(false)
		return s.ctlErr(ctx, op, err)
	}
	sd, err := c.UIDSearch(&imapv2.SearchCriteria{}, nil).Wait()
	if err != nil {
		done(isNo(err))
		return s.ctlErr(ctx, op, err)
	}
	if why := sameUIDs(sel.UIDValidity, sd.AllUIDs(), holds); why != "" {
		done(true)
		return fmt.Errorf("imapsink: %s: not deleted: %s", op, why)
	}
	_ = c.Unselect().Wait() // a server may refuse to delete the selected mailbox
	if err := c.Delete(box).Wait(); err != nil {
		done(isNo(err))
		return s.ctlErr(ctx, op, err)
	}
	done(true)
	s.forget(box)
	return s.listBoxes(ctx, true)
}

// sameUIDs says how the mailbox's UIDs differ from the ids the caller
// expects ("" when they match).
func sameUIDs(uidv uint32, have []imapv2.UID, want []mail.ID) string {
	got := make([]uint32, 0, len(have))
	for _, u := range have {
		got = append(got, uint32(u))
	}
	exp := make([]uint32, 0, len(want))
	for _, id := range want {
		v, uid, ok := parseID(id)
		if !ok || v != uidv {
			return fmt.Sprintf("message %s is not of the mailbox's UIDVALIDITY %d", id, uidv)
		}
		exp = append(exp, uid)
	}
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) { // same count, other UIDs: still changed
		return fmt.Sprintf("it holds %d messages, not the %d listed: it changed since the listing", len(got), len(exp))
	}
	return ""
}

// forget drops the sink's index of server mailboxes that were renamed or
// deleted.
func (s *Sink) forget(boxes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range boxes {
		delete(s.folders, b)
	}
}
