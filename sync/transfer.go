package sync

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// doneKind says what became of a message on its way to the committer, so
// that it is counted once and right.
type doneKind int

const (
	doneCopied   doneKind = iota // Put into the sink by this run
	donePresent                  // the sink found it already there (mail.PresentError)
	doneRemapped                 // the same message under a new ID: recorded, not Put
	doneRecorded                 // recorded by an earlier run; only still to be deleted
)

// done is a message ready for the committer.
type done struct {
	env  mail.Envelope
	rec  checkpoint.Record
	kind doneKind
}

// transfer is one worker: it takes batches from the lister and hands what
// it stored to the committer.
func (r *run) transfer(ctx context.Context) error {
	for b := range r.jobs {
		if len(b) == 1 && b[0].probe != nil {
			if err := r.probeOne(ctx, b[0]); err != nil {
				return err
			}
			continue
		}
		if err := r.transferBatch(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// transferBatch handles one batch: ready messages pass straight on, the
// rest goes through one BatchOpener request when the source has one, and
// whatever that did not finish one by one, with retries.
func (r *run) transferBatch(ctx context.Context, b []job) error {
	handled := make([]bool, len(b))
	todo := 0
	for i, j := range b {
		if j.ready != nil {
			handled[i] = true
			if err := r.settle(ctx, j, *j.ready, nil); err != nil {
				return err
			}
			continue
		}
		todo++
	}
	if r.srcF.BatchOpener != nil && todo > 1 {
		if err := r.copyBatch(ctx, b, handled); err != nil {
			return err
		}
	}
	for i, j := range b {
		if handled[i] {
			continue
		}
		d, err := r.copyOne(ctx, j)
		if err := r.settle(ctx, j, d, err); err != nil {
			return err
		}
	}
	return nil
}

// settle hands a stored message to the committer, or classifies why it was
// not stored. Only a fatal error or cancellation is returned.
func (r *run) settle(ctx context.Context, j job, d done, err error) error {
	box := r.st.Box(j.env.Mailbox)
	switch {
	case err == nil:
		// Stored: hand it to the committer even when the run is being
		// cancelled; it drains until the end, so this cannot block for
		// good, and the message gets recorded instead of re-copied. The
		// committer settles it (release.go).
		if d.kind == doneRemapped {
			r.remapFlags(ctx, &d)
		}
		r.dones <- d
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case mail.Fatal(err):
		return fmt.Errorf("%s %s: %w", j.env.Mailbox, j.env.ID, err)
	case errors.Is(err, mail.ErrNotFound):
		r.st.Vanished.Add(1)
		box.Vanished.Add(1)
		r.log.Warn("message vanished from the source before it was copied", "mailbox", j.env.Mailbox, "id", j.env.ID)
	default:
		r.failMessage(j.env, err)
	}
	return r.settled(j.env.Mailbox, 1)
}

// copyOne copies one message, retrying temporary failures.
func (r *run) copyOne(ctx context.Context, j job) (done, error) {
	return retry(ctx, r, func() (d done, err error) {
		// A panic (in an endpoint, or a hook) fails this message alone (G2).
		defer catchPanic(&err, r.log)
		if j.orphans != nil {
			if rec, ok, err := r.rematch(ctx, j); err != nil || ok {
				return done{env: j.env, rec: rec, kind: doneRemapped}, err
			}
		}
		rc, err := r.src.Open(ctx, j.env)
		if err != nil {
			return done{}, fmt.Errorf("open: %w", err)
		}
		defer func() { _ = rc.Close() }()
		return r.putOne(ctx, j.env, rc)
	})
}

// putOne stores one message body into the sink, counting and hashing it.
// A sink that finds the message already there (mail.PresentError) has
// stored nothing: the message is recorded under the ID it names and
// counted as present, not copied.
func (r *run) putOne(ctx context.Context, env mail.Envelope, body io.Reader) (done, error) {
	if err := r.budget.take(env.Size); err != nil {
		return done{}, err
	}
	if err := r.msgLimit.wait(ctx, 1); err != nil {
		r.budget.settle(env.Size, -1)
		return done{}, err
	}
	if r.byteLimit != nil {
		body = &limitedReader{ctx: ctx, r: body, l: r.byteLimit}
	}
	// A listing without Message-IDs (POP3) leaves the record without one;
	// the header is read on its way to the sink instead, so that a later
	// identifier reset can match the message by Message-ID (reset.go)
	// without a download.
	var scan *mail.HeaderScanner
	if env.MessageID == "" {
		scan = mail.NewHeaderScanner(body)
		body = scan
	}
	hr := mail.NewHashReader(body)
	put := env
	put.Mailbox = r.opt.dstName(env.Mailbox)
	id, err := r.dst.Put(ctx, put, hr)
	kind := doneCopied
	var pe *mail.PresentError
	if errors.As(err, &pe) {
		id, kind, err = pe.ID, donePresent, nil
	}
	if err != nil {
		// What was read counts, stored or not: a provider's quota (B5)
		// counts every byte it sent, and a retry reads them again.
		r.budget.settle(env.Size, hr.Digest().Bytes)
		return done{}, fmt.Errorf("put: %w", err)
	}
	r.opt.Step("put")
	dg := hr.Digest()
	r.budget.settle(env.Size, dg.Bytes)
	r.st.Fetched.Add(1)
	r.st.Box(env.Mailbox).Fetched.Add(1)
	r.st.Bytes.Add(dg.Bytes)
	r.st.Box(env.Mailbox).Bytes.Add(dg.Bytes)
	rec := checkpoint.Record{Mailbox: env.Mailbox, ID: env.ID, Dst: id, Size: env.Size, SHA256: hex.EncodeToString(dg.SHA256[:]),
		MsgID: checkpoint.MsgIDSum(scannedMessageID(env, scan)), Date: checkpoint.UnixDate(env.Date)}
	if r.dstF.FlagSetter != nil && env.Flags != nil {
		f := flagString(env.Flags)
		rec.Flags = &f
	}
	return done{env: env, rec: rec, kind: kind}, nil
}

// copyBatch streams the unhandled jobs of a batch through one BatchOpener
// request, marking what it stored in handled. Anything it did not finish
// (a failed Put, a dropped connection, a message the server did not
// return) is left unmarked for the one-by-one path, which retries and
// classifies it. Only a fatal error or cancellation is returned.
func (r *run) copyBatch(ctx context.Context, b []job, handled []bool) error {
	index := make(map[mail.ID]int, len(b))
	var envs []mail.Envelope
	for i, j := range b {
		if !handled[i] {
			index[j.env.ID] = i
			envs = append(envs, j.env)
		}
	}
	var settleErr error
	err := func() (err error) {
		// A panic in the source's own code ends the batch early; the
		// one-by-one path then meets it again and fails that message alone.
		defer catchPanic(&err, r.log)
		return r.srcF.BatchOpener.OpenBatch(ctx, envs, func(env mail.Envelope, body io.Reader) error {
			i, ok := index[env.ID]
			if !ok || handled[i] {
				return fmt.Errorf("batch: source returned %s %s twice or unasked", env.Mailbox, env.ID)
			}
			stop, err := r.batchPut(ctx, b[i], body, &handled[i])
			if stop {
				settleErr = err
			}
			return err
		})
	}()
	switch {
	case settleErr != nil:
		return settleErr
	case err == nil:
	case ctx.Err() != nil:
		return ctx.Err()
	case mail.Fatal(err):
		return err
	default:
		r.log.Debug("batch fetch ended early; finishing one by one", "err", err)
	}
	return nil
}

// batchPut stores one message of a batch. stop reports that the error
// came from settling (fatal, or cancellation) and must end the run; any
// other error ends only the batch.
func (r *run) batchPut(ctx context.Context, j job, body io.Reader, handled *bool) (stop bool, err error) {
	d, err := func() (d done, err error) {
		// A panic while storing must not unwind through the source's
		// OpenBatch, which would skip its clean-up (an IMAP connection left
		// mid-FETCH hangs the next Open). It fails this message alone and
		// the batch goes on; a body left unread is the source's to report.
		defer catchPanic(&err, r.log)
		return r.putOne(ctx, j.env, body)
	}()
	var pe *PanicError
	if err != nil && !errors.As(err, &pe) {
		return false, err
	}
	*handled = true
	if serr := r.settle(ctx, j, d, err); serr != nil {
		return true, serr
	}
	return false, nil
}

// rematch hashes the message and reports whether it is one of the orphaned
// records (already stored under an old ID), claiming that record.
func (r *run) rematch(ctx context.Context, j job) (checkpoint.Record, bool, error) {
	rc, err := r.src.Open(ctx, j.env)
	if err != nil {
		return checkpoint.Record{}, false, fmt.Errorf("open: %w", err)
	}
	defer func() { _ = rc.Close() }()
	var body io.Reader = rc
	var scan *mail.HeaderScanner
	if j.env.MessageID == "" {
		scan = mail.NewHeaderScanner(rc)
		body = scan
	}
	hr := mail.NewHashReader(body)
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return checkpoint.Record{}, false, fmt.Errorf("read: %w", err)
	}
	sum := hr.Digest().Hex()
	old, ok := j.orphans.claim(j.env.Size, sum)
	if !ok {
		return checkpoint.Record{}, false, nil
	}
	// Flags: the stored copy's, which remapFlags compares with the source's.
	return checkpoint.Record{Mailbox: j.env.Mailbox, ID: j.env.ID, Dst: old.Dst, Size: j.env.Size, SHA256: sum,
		MsgID: checkpoint.MsgIDSum(scannedMessageID(j.env, scan)), Date: checkpoint.UnixDate(j.env.Date), Flags: old.Flags}, true, nil
}

// remapFlags gives the stored copy of a re-mapped message the source's
// flags now, before its record says so: the copy still has the flags of
// its old record (nil: not known, so they are set whatever they are), and
// the listing compared flags (syncFlags) before the renumbering was known,
// so nothing else would, and a folder skipped as unchanged on the next run
// never compares them again. A failure keeps the old flags recorded and
// leaves the folder's pass unfinished, so the next run lists it and tries
// again. Only a known change counts as a flag update.
func (r *run) remapFlags(ctx context.Context, d *done) {
	fs := r.dstF.FlagSetter
	if fs == nil || r.opt.DryRun || d.env.Flags == nil || d.rec.Dst == "" {
		return
	}
	now := flagString(d.env.Flags)
	if d.rec.Flags != nil && now == *d.rec.Flags {
		return
	}
	if err := fs.SetFlags(ctx, r.opt.dstName(d.env.Mailbox), d.rec.Dst, d.env.Flags); err != nil {
		r.log.Warn("flags not updated on the destination; the next run tries again", "mailbox", d.env.Mailbox, "id", d.env.ID, "err", err)
		r.unfinished(d.env.Mailbox)
		return
	}
	if d.rec.Flags != nil {
		r.st.FlagsUpdated.Add(1)
	}
	d.rec.Flags = &now
}

// scannedMessageID is env's Message-ID: the listing's, or else what scan
// found in the body (nil scan: none).
func scannedMessageID(env mail.Envelope, scan *mail.HeaderScanner) string {
	if env.MessageID != "" || scan == nil {
		return env.MessageID
	}
	return scan.MessageID()
}
