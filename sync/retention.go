package sync

import (
	"context"
	"errors"
	"fmt"
	stdsync "sync"
	"time"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// Retention (Options.DeleteAfter, --delete-after): mail stays on the
// source and each run deletes there the messages earlier runs recorded as
// stored at least DeleteAfter ago, by the store time in their checkpoint
// record (not the message's date). The stage has three steps:
//
//   - select, while listing a folder: messages the source still lists and
//     the checkpoint held before this run, stored at or before the cutoff.
//     Only what earlier runs recorded is chosen, so a zero DeleteAfter
//     deletes all they stored and nothing this run stores. A record
//     without a store time (written before they were kept) is never old:
//     the end of the run stamps it with the run's time (StampStored);
//   - confirm, after the copy's last commit: the destination must still
//     hold the stored copy (mail.Holder); one it lost is reported, not
//     deleted;
//   - delete: mail.Remover, as delete mode does (POP3 DELE committed at
//     QUIT when Run closes the source; IMAP \Deleted + UID EXPUNGE of
//     exactly those UIDs). A dry run lists instead.
//
// A kill at any point deletes nothing that was not stored DeleteAfter ago:
// selection reads only durable records, and a message whose deletion did
// not complete is still listed, so the next run selects it again.

// expired is a message selected for deletion, with its record.
type expired struct {
	env mail.Envelope
	rec checkpoint.Record
}

// retention is the stage's state: the cutoff and the selected messages,
// by folder in listing order.
type retention struct {
	cutoff int64 // Unix seconds: records stored at or before it are old enough
	mu     stdsync.Mutex
	order  []string
	byBox  map[string][]expired
}

// now is the run's clock (Options.Now).
func (r *run) now() time.Time {
	if r.opt.Now != nil {
		return r.opt.Now()
	}
	return time.Now()
}

// prepareRetention checks that retention can work and fixes the cutoff.
func (r *run) prepareRetention() error {
	if r.opt.DeleteAfter == nil {
		return nil
	}
	hint := "drop --delete-after"
	switch {
	case r.opt.DeleteSource:
		return &mail.ConfigError{Msg: "--delete-after and --delete-source cannot be combined", Hint: "keep one of them"}
	case *r.opt.DeleteAfter < 0:
		return &mail.ConfigError{Msg: "--delete-after must not be negative", Hint: hint}
	case r.cp == nil:
		return &mail.ConfigError{Msg: "--delete-after needs a checkpoint: it deletes by the store times recorded there", Hint: hint}
	case r.srcF.Remover == nil:
		return &mail.ConfigError{Msg: "the source cannot delete messages", Hint: hint}
	case r.dstF.Holder == nil && !r.opt.DryRun:
		return &mail.ConfigError{Msg: "the destination cannot confirm that it still holds the messages it stored", Hint: hint}
	}
	r.ret = &retention{cutoff: r.now().Add(-*r.opt.DeleteAfter).Unix(), byBox: map[string][]expired{}}
	return nil
}

// selectExpired keeps, of the messages of l the checkpoint held before this
// run, those stored at or before the cutoff.
func (r *run) selectExpired(l *listing) {
	if r.ret == nil || len(l.stored) == 0 {
		return
	}
	recs := map[mail.ID]checkpoint.Record{}
	for _, rec := range r.cp.Records(l.mb) {
		recs[rec.ID] = rec
	}
	var sel []expired
	for _, env := range l.stored {
		rec, ok := recs[env.ID]
		if !ok || rec.Stored == 0 || rec.Stored > r.ret.cutoff {
			continue
		}
		if rec.Size > 0 && env.Size > 0 && rec.Size != env.Size {
			// The same ID for another message (identifiers reused): never
			// delete on the strength of an ID alone.
			r.log.Warn("not deleted: the source lists it with another size than the one recorded", "mailbox", l.mb, "id", env.ID, "size", env.Size, "recorded", rec.Size)
			continue
		}
		sel = append(sel, expired{env: env, rec: rec})
	}
	if len(sel) == 0 {
		return
	}
	r.ret.mu.Lock()
	defer r.ret.mu.Unlock()
	if _, seen := r.ret.byBox[l.mb]; !seen {
		r.ret.order = append(r.ret.order, l.mb)
	}
	r.ret.byBox[l.mb] = append(r.ret.byBox[l.mb], sel...)
}

// retain confirms and deletes what selectExpired chose, folder by folder.
// It runs after the copy's last commit.
func (r *run) retain(ctx context.Context) error {
	if r.ret == nil {
		return nil
	}
	for _, mb := range r.ret.order {
		held, err := r.confirmHeld(ctx, mb, r.ret.byBox[mb])
		if err != nil {
			return err
		}
		if err := r.expire(ctx, mb, held); err != nil {
			return err
		}
	}
	return nil
}

// confirmHeld returns the messages of sel whose stored copy the
// destination still holds, and reports the others. A dry run without a
// mail.Holder destination confirms nothing and keeps all.
func (r *run) confirmHeld(ctx context.Context, mb string, sel []expired) ([]expired, error) {
	h := r.dstF.Holder
	if h == nil {
		return sel, nil
	}
	stored := make([]mail.Stored, len(sel))
	for i, e := range sel {
		stored[i] = mail.Stored{ID: e.rec.Dst, Key: mail.DeliveryKey(r.opt.SrcEndpoint, mb, e.env.ID)}
	}
	to := r.opt.dstName(mb)
	held, err := retry(ctx, r, func() ([]bool, error) { return h.Holds(ctx, to, stored) })
	if err != nil {
		return nil, fmt.Errorf("--delete-after: check destination folder %q: %w", to, err)
	}
	kept := sel[:0]
	for i, e := range sel {
		if held[i] && e.rec.Dst != "" {
			kept = append(kept, e)
			continue
		}
		r.fail(&r.res.NotHeld, e.env, errors.New("its stored copy is no longer in the destination: not deleted from the source"))
		r.log.Warn("not deleted from the source: its stored copy is no longer in the destination", "mailbox", mb, "id", e.env.ID, "stored", e.rec.Dst)
	}
	return kept, nil
}

// expire deletes sel on the source in batches of the commit's size (one
// Remove call and one "expire" step each), or lists it in a dry run.
func (r *run) expire(ctx context.Context, mb string, sel []expired) error {
	for len(sel) > 0 {
		n := min(len(sel), r.opt.BatchSize)
		if err := r.expireBatch(ctx, mb, sel[:n]); err != nil {
			return err
		}
		sel = sel[n:]
	}
	return nil
}

// expireBatch deletes one batch and counts it.
func (r *run) expireBatch(ctx context.Context, mb string, batch []expired) error {
	envs := make([]mail.Envelope, len(batch))
	for i, e := range batch {
		envs[i] = e.env
	}
	if !r.opt.DryRun {
		if err := r.srcF.Remover.Remove(ctx, envs); err != nil {
			return mail.MakeFatal(fmt.Errorf("--delete-after: delete on source: %w", err))
		}
		r.st.Deleted.Add(int64(len(envs)))
		r.st.Box(mb).Deleted.Add(int64(len(envs)))
		r.opt.Step("expire")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range batch {
		r.res.Expired = append(r.res.Expired, Expired{Mailbox: mb, ID: e.env.ID, Size: e.env.Size, Stored: time.Unix(e.rec.Stored, 0).UTC()})
		r.log.Debug("deleted from the source: stored long enough ago", "mailbox", mb, "id", e.env.ID, "stored", e.rec.Stored, "dry_run", r.opt.DryRun)
	}
	return nil
}

// Expired is a message DeleteAfter deleted from the source (in a dry run:
// would delete).
type Expired struct {
	Mailbox string    `json:"mailbox"`
	ID      mail.ID   `json:"id"`
	Size    int64     `json:"size"`
	Stored  time.Time `json:"stored"`
}

// stampLegacy gives the records written before store times were kept this
// run's time, once (checkpoint.File.StampStored), so --delete-after counts
// them as stored now, never as old.
func (r *run) stampLegacy() error {
	if r.cp == nil || r.opt.DryRun {
		return nil
	}
	n, err := r.cp.StampStored(r.now().Unix())
	if err == nil && n > 0 {
		err = r.cp.Flush()
		r.log.Info("records without a store time (written by an older mailferry) count as stored now for --delete-after", "records", n)
	}
	if err != nil {
		return mail.MakeFatal(err)
	}
	return nil
}
