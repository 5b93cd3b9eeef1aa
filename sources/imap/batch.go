package imap

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.BatchOpener = (*Source)(nil)

// OpenBatch streams the bodies of envs (all of one mailbox) with a single
// UID FETCH uid,uid,... (UID BODY.PEEK[]) on one pooled connection, calling
// fn for each message as its literal arrives. One command per batch instead
// of one per message is what lets the server (and the round trips) keep up:
// docs/performance.md measured per-message FETCHes at about 2x the server CPU.
//
// Only messages whose UID the server sends before the body, with exactly
// the announced number of bytes, reach fn; anything else (expunged, a server
// that puts the UID after the literal, docs/library-notes.md §0.1) is left for the
// caller to Open one by one. A body cut short fails its Read with a
// temporary error wrapping io.ErrUnexpectedEOF, never a silent EOF. After
// any error the connection is discarded, not reused.
func (s *Source) OpenBatch(ctx context.Context, envs []mail.Envelope, fn func(mail.Envelope, io.Reader) error) error {
	if len(envs) == 0 {
		return nil
	}
	mbName := envs[0].Mailbox
	op := fmt.Sprintf("fetch %d messages of %s", len(envs), mbName)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("imap: %s: %w", op, err)
	}
	if s.seqFetch.Load() {
		return nil // this server needs the one-by-one path
	}
	uidv, byUID, set := batchUIDs(envs)
	if len(byUID) == 0 {
		return nil
	}
	if done, err := s.fetchOnDelta(ctx, op, mbName, uidv, byUID, fn); done || len(byUID) == 0 {
		return err
	}
	if done, err := s.fetchPooled(ctx, op, mbName, uidv, byUID, fn); done || len(byUID) == 0 {
		return err
	}
	cn, err := s.get(ctx)
	if err != nil {
		return fmt.Errorf("imap: %s: %w", op, err)
	}
	stop := watch(ctx, cn)
	keep := false
	var cmd *imapclient.FetchCommand
	var lr *checkedLiteral // the body handed to fn last
	defer func() {
		if !stop() {
			keep = false
		}
		if cmd != nil && !keep {
			s.abandon(cn, cmd, lr)
		}
		s.put(cn, keep, nil)
	}()
	if k, err := s.examineBatch(ctx, cn, op, mbName); err != nil {
		keep = k
		return err
	}
	if cn.uidv != uidv {
		keep = true
		return nil // every ID is stale: Open reports each as not found
	}
	cmd = cn.c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var uid imap.UID
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataBodySection:
				env, wanted := byUID[uid]
				if it.Literal == nil || !wanted {
					continue // imapclient discards an unread literal itself
				}
				delete(byUID, uid)
				lr = &checkedLiteral{lit: it.Literal, op: fmt.Sprintf("fetch %s %s", mbName, env.ID)}
				if ferr := lr.deliver(env, fn); ferr != nil {
					if ctx.Err() != nil {
						ferr = fmt.Errorf("imap: %s: %w", op, ctx.Err())
					}
					return ferr // the deferred func discards the connection (abandon)
				}
			}
		}
	}
	if err := cmd.Close(); err != nil {
		k, err := s.wrap(ctx, op, err)
		keep = k
		return err
	}
	keep = true
	return nil
}

// batchUIDs returns the UIDs of envs that one UID FETCH can get: those of
// the first one's mailbox and UIDVALIDITY, by UID. The others are left
// for the caller to open alone.
func batchUIDs(envs []mail.Envelope) (uint32, map[imap.UID]mail.Envelope, imap.UIDSet) {
	uidv, _, ok := parseID(envs[0].ID)
	if !ok {
		return 0, nil, nil
	}
	byUID := make(map[imap.UID]mail.Envelope, len(envs))
	var set imap.UIDSet
	for _, e := range envs {
		v, uid, ok := parseID(e.ID)
		if !ok || v != uidv || e.Mailbox != envs[0].Mailbox {
			continue // not batchable: the caller opens it alone
		}
		byUID[uid] = e
		set.AddNum(uid)
	}
	return uidv, byUID, set
}

// examineBatch EXAMINEs mailbox on cn for a batch fetch; keep says whether
// cn is still usable after an error.
func (s *Source) examineBatch(ctx context.Context, cn *conn, op, mailbox string) (keep bool, err error) {
	box, ok := s.known(mailbox)
	if !ok {
		boxes, k, err := s.listBoxes(ctx, cn)
		if err == nil {
			box, err = s.lookup(boxes, mailbox)
		}
		if err != nil {
			return k, err
		}
	}
	if err := s.examine(ctx, cn, normInbox(mailbox), box, false); err != nil {
		if errors.Is(err, mail.ErrMailboxNotFound) {
			return true, err
		}
		return s.wrap(ctx, op, err)
	}
	return true, nil
}

// abandon ends a batch fetch that stopped early (an error from fn, a
// failed body, a panic in fn) so that Client.Close cannot hang and no one
// races imapclient's reader. It breaks the connection first: every read
// now fails at once.
//
// While the body handed out last is open, the reader is parked until it
// is read, and so maybe for the next message's: draining the command
// (cmd.Close) releases it. Once that body failed, the reader has moved on
// by itself and fails on the broken stream, but cmd.Close would read the
// body again (imapclient discards a message's items) on the buffer the
// reader now uses: a data race (docs/library-notes.md §0.16). Then the
// command is left undrained; Client.Close (put) waits for the reader.
func (s *Source) abandon(cn *conn, cmd *imapclient.FetchCommand, last *checkedLiteral) {
	cn.kill()
	if last != nil && last.failed != nil {
		return
	}
	_ = cmd.Close()
}

// checkedLiteral passes a FETCH literal on and turns an early EOF (how
// imapclient reports a dropped connection, docs/library-notes.md §0.2) into an error.
type checkedLiteral struct {
	lit   imap.LiteralReader
	op    string
	n     int64
	ended bool
	// failed: lit returned an error or an early EOF. imapclient's reader
	// then owns the connection's buffer again, and lit must never be read
	// again (docs/library-notes.md §0.16).
	failed error
}

// deliver hands the body to fn and says what stops the batch: fn's error,
// the body's failure (even if fn swallowed it), or a body not read to the
// end.
func (c *checkedLiteral) deliver(env mail.Envelope, fn func(mail.Envelope, io.Reader) error) error {
	err := fn(env, c)
	switch {
	case err != nil:
		return err
	case c.failed != nil:
		return c.failed
	case !c.ended:
		return fmt.Errorf("imap: %s: body not read to the end", c.op)
	}
	return nil
}

func (c *checkedLiteral) Read(p []byte) (int, error) {
	if c.failed != nil {
		return 0, c.failed
	}
	if c.ended {
		return 0, io.EOF
	}
	n, err := c.lit.Read(p)
	c.n += int64(n)
	switch {
	case err == io.EOF && c.n == c.lit.Size():
		c.ended = true
		return n, io.EOF
	case err == io.EOF:
		c.ended = true
		c.failed = mail.Temp(fmt.Errorf("imap: %s: body cut short after %d of %d bytes: %w", c.op, c.n, c.lit.Size(), io.ErrUnexpectedEOF))
		return n, c.failed
	case err != nil:
		c.ended = true
		c.failed = mail.Temp(fmt.Errorf("imap: %s: after %d of %d bytes: %w", c.op, c.n, c.lit.Size(), err))
		return n, c.failed
	}
	return n, nil
}
