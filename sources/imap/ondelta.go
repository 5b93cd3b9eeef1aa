package imap

import (
	"bytes"
	"context"
	"io"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// Bodies on the change listing's connection. A nightly rerun's few new
// messages are in the folder the change listing left EXAMINEd: fetching
// them there costs one round trip, where a pooled connection costs a
// second login and a second EXAMINE, which Dovecot answers for a
// 50,000-message folder in about 90 ms. Bodies read there are held whole
// in memory, so only small fetches go this way; the pool takes the rest,
// and anything this path could not deliver.

// Most a fetch may hold to go through the change listing's connection.
const (
	deltaFetchMax   = 16
	deltaFetchBytes = 4 << 20
)

// fetchOnDelta fetches the messages of byUID (all of mailbox, at
// UIDVALIDITY uidv) on the change listing's connection when it is idle and
// still has mailbox EXAMINEd at uidv, calling fn for each one that
// arrives and removing it from byUID. done is false when it did not fetch
// (or the connection failed, or the server refused): the caller then
// fetches what is left in byUID itself. With done true, err is fn's error
// or the context's.
func (s *Source) fetchOnDelta(ctx context.Context, op, mailbox string, uidv uint32, byUID map[imap.UID]mail.Envelope, fn func(mail.Envelope, io.Reader) error) (done bool, err error) {
	if !smallFetch(byUID) || !s.dl.mu.TryLock() {
		return false, nil // busy listing: a pooled connection does not wait for it
	}
	defer s.dl.mu.Unlock()
	d := &s.dl
	if d.sess == nil || s.isClosed() {
		return false, nil
	}
	// A folder the change listing did not leave open (listed in full on
	// the control connection, say) is EXAMINEd here when New logged in on
	// this session (rawfirst.go): one round trip, where the pool would pay
	// a login and the same EXAMINE.
	box, known := s.known(mailbox)
	reopen := d.open != normInbox(mailbox) || d.openUIDV != uidv
	if reopen && (!s.raw.on || !known) {
		return false, nil
	}
	var fnErr error
	stale := false
	err = s.runSession(ctx, op, func(sess *imapconn.Session) error {
		if reopen {
			d.open, d.openUIDV = "", 0
			sel, err := sess.Examine(box, nil)
			if err != nil {
				return err
			}
			if sel.UIDValidity != uidv {
				stale = true // every ID is stale: the caller reports each as not found
				return nil
			}
			d.open, d.openUIDV = normInbox(mailbox), uidv
		}
		return fetchBodiesInto(sess, byUID, fn, &fnErr)
	})
	if err == nil && stale {
		return false, nil
	}
	if err == nil || fnErr != nil || ctx.Err() != nil {
		return true, err
	}
	// What was delivered left byUID; the caller fetches the rest and
	// reports a real failure itself.
	d.open, d.openUIDV = "", 0
	s.log.Debug("imap: fetch on the change listing's connection failed; using the pool", "op", op, "err", err)
	return false, nil
}

// fetchBodiesInto fetches the messages of byUID on sess, calling fn for
// each one that arrives and removing it from byUID. fn's error ends the
// fetch (as fnError) and is kept in *fnErr for the caller to return.
func fetchBodiesInto(sess *imapconn.Session, byUID map[imap.UID]mail.Envelope, fn func(mail.Envelope, io.Reader) error, fnErr *error) error {
	var set imapconn.UIDSet
	for uid := range byUID {
		set = set.Add(uint32(uid))
	}
	return sess.FetchBodies(set, deliverBody(byUID, fn, fnErr))
}

// deliverBody passes each fetched body of byUID to fn once, taking it out
// of byUID; fn's error is kept in fnErr and stops the fetch.
func deliverBody(byUID map[imap.UID]mail.Envelope, fn func(mail.Envelope, io.Reader) error, fnErr *error) func(imapconn.FetchData) error {
	return func(fd imapconn.FetchData) error {
		env, wanted := byUID[imap.UID(fd.UID)]
		if !wanted {
			return nil // sent twice
		}
		delete(byUID, imap.UID(fd.UID))
		if *fnErr = fn(env, bytes.NewReader(fd.Body)); *fnErr != nil {
			return fnError{*fnErr}
		}
		return nil
	}
}

// fetchVia is the shape of fetchOnDelta and fetchPooled: a fetch of a few
// messages on a connection already open, done false when that path could
// not be used.
type fetchVia func(ctx context.Context, op, mailbox string, uidv uint32, byUID map[imap.UID]mail.Envelope, fn func(mail.Envelope, io.Reader) error) (done bool, err error)

// openVia is Open through fetch: the body, held in memory, or ok false
// when fetch did not deliver it (not fetched there, or not found: the next
// path says which).
func openVia(ctx context.Context, fetch fetchVia, op string, env mail.Envelope, uidv uint32, uid imap.UID) (rc io.ReadCloser, ok bool, err error) {
	var got []byte
	done, err := fetch(ctx, op, env.Mailbox, uidv, map[imap.UID]mail.Envelope{uid: env}, func(_ mail.Envelope, r io.Reader) error {
		var rerr error
		got, rerr = io.ReadAll(r)
		return rerr
	})
	switch {
	case done && err != nil:
		return nil, true, err
	case got != nil:
		return io.NopCloser(bytes.NewReader(got)), true, nil
	}
	return nil, false, nil
}

// smallFetch says whether the messages of byUID are few and small enough
// (by their announced sizes) to be held in memory together.
func smallFetch(byUID map[imap.UID]mail.Envelope) bool {
	if len(byUID) > deltaFetchMax {
		return false
	}
	var total int64
	for _, e := range byUID {
		if e.Size < 0 {
			return false
		}
		total += e.Size
	}
	return total <= deltaFetchBytes
}
