package sync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// committer is the commit stage's state, carried from batch to batch.
type committer struct {
	*run
	committer mail.Committer
	resolver  mail.IDResolver
	// failed remembers IDs a Commit gave up: a message Put before that Commit
	// may reach the committer only with a later batch.
	failed map[mail.ID]error
}

// commitLoop batches finished messages: sink commit, checkpoint record and
// fsync, then deletion on the source. On failure it reports through abort and
// keeps draining so workers never block.
func (r *run) commitLoop(ctx context.Context, abort func(error)) error {
	c := &committer{run: r, failed: map[mail.ID]error{}}
	c.committer, c.resolver = r.dstF.Committer, r.dstF.IDResolver
	var batch []done
	var failed error
	timer := time.NewTimer(r.opt.BatchDelay)
	defer timer.Stop()
	flush := func() {
		if len(batch) == 0 || failed != nil {
			batch = batch[:0]
			return
		}
		// An interrupt must not stop the commit of messages already Put:
		// committing is local and short.
		boxes := c.boxesOf(batch) // before commit, which filters batch in place
		err := c.safeCommit(context.WithoutCancel(ctx), batch)
		if err == nil {
			err = c.settleBoxes(boxes)
		}
		if err != nil {
			failed = err
			abort(err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case d, ok := <-r.dones:
			if !ok {
				flush()
				return failed
			}
			batch = append(batch, d)
			if len(batch) >= r.opt.BatchSize {
				flush()
			}
		case <-timer.C:
			flush()
			timer.Reset(r.opt.BatchDelay)
		}
	}
}

// boxesOf counts the messages of batch by folder.
func (c *committer) boxesOf(batch []done) map[string]int {
	if c.folders == nil {
		return nil
	}
	n := map[string]int{}
	for _, d := range batch {
		n[d.env.Mailbox]++
	}
	return n
}

// settleBoxes counts a committed batch's messages as settled (release.go).
func (c *committer) settleBoxes(boxes map[string]int) error {
	for mb, n := range boxes {
		if err := c.settled(mb, n); err != nil {
			return err
		}
	}
	return nil
}

// safeCommit is commit with a panic turned into a fatal error: the state of
// the sink and the checkpoint is unknown after it, so the run stops, but the
// committer goes on draining so that no worker blocks.
func (c *committer) safeCommit(ctx context.Context, batch []done) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = mail.MakeFatal(fmt.Errorf("commit: %w", recovered(p, c.log)))
		}
	}()
	return c.commit(ctx, batch)
}

// commit makes a batch durable, records it, then deletes it on the source:
// in that order, and each step only for what the one before secured.
func (c *committer) commit(ctx context.Context, batch []done) error {
	if c.opt.Fence != nil {
		if err := c.opt.Fence(); err != nil {
			return mail.MakeFatal(fmt.Errorf("commit: %w", err))
		}
	}
	if err := c.commitSink(ctx); err != nil {
		return err
	}
	batch = c.confirmed(batch)
	if err := c.record(batch); err != nil {
		return err
	}
	c.count(batch)
	return c.remove(ctx, batch)
}

// commitSink makes what was Put durable (mail.Committer), remembering the
// messages the sink gave up.
func (c *committer) commitSink(ctx context.Context) error {
	if c.committer == nil {
		return nil
	}
	err := c.committer.Commit(ctx)
	var ce *mail.CommitError
	switch {
	case err == nil:
	case errors.As(err, &ce) && !mail.Fatal(err):
		for id, e := range ce.Failed {
			c.failed[id] = e
		}
	default:
		return mail.MakeFatal(fmt.Errorf("commit: %w", err))
	}
	c.opt.Step("commit")
	return nil
}

// confirmed keeps the messages of batch the sink made durable, with their
// final IDs (mail.IDResolver), and fails the others.
func (c *committer) confirmed(batch []done) []done {
	kept := batch[:0]
	for _, d := range batch {
		if d.kind == doneRecorded {
			kept = append(kept, d)
			continue
		}
		if err, bad := c.failed[d.rec.Dst]; bad && d.rec.Dst != "" {
			delete(c.failed, d.rec.Dst)
			c.failMessage(d.env, fmt.Errorf("commit: %w", err))
			continue
		}
		if c.resolver != nil {
			final, ok := c.resolver.FinalID(d.rec.Dst)
			if !ok {
				c.failMessage(d.env, fmt.Errorf("commit: the destination did not confirm message %s", d.rec.Dst))
				continue
			}
			d.rec.Dst = final
		}
		kept = append(kept, d)
	}
	return kept
}

// record adds the batch to the checkpoint and fsyncs it.
func (c *committer) record(batch []done) error {
	if c.cp == nil {
		return nil
	}
	now := c.now().Unix()
	for _, d := range batch {
		if d.kind == doneRecorded {
			continue
		}
		if d.rec.Stored == 0 { // a re-mapped record keeps its copy's time
			d.rec.Stored = now
		}
		if err := c.cp.Add(d.rec); err != nil {
			return mail.MakeFatal(err)
		}
	}
	if err := c.cp.Flush(); err != nil {
		return mail.MakeFatal(err)
	}
	c.opt.Step("record")
	return nil
}

// count counts each recorded message once: copied, found present in the
// destination, or re-mapped.
func (c *committer) count(batch []done) {
	for _, d := range batch {
		box := c.st.Box(d.env.Mailbox)
		switch d.kind {
		case doneCopied:
			c.st.Copied.Add(1)
			box.Copied.Add(1)
			c.log.Debug("copied", "mailbox", d.env.Mailbox, "id", d.env.ID, "size", d.env.Size)
		case donePresent:
			c.st.Present.Add(1)
			box.Present.Add(1)
			c.log.Debug("already in the destination: recorded, not copied", "mailbox", d.env.Mailbox, "id", d.env.ID)
		case doneRemapped:
			c.st.Remapped.Add(1)
			box.Remapped.Add(1)
			c.log.Debug("re-mapped: recorded under its new id, not copied", "mailbox", d.env.Mailbox, "id", d.env.ID)
		}
	}
}

// remove deletes the batch on the source, in delete mode.
func (c *committer) remove(ctx context.Context, batch []done) error {
	if c.remover == nil || len(batch) == 0 {
		return nil
	}
	envs := make([]mail.Envelope, len(batch))
	for i, d := range batch {
		envs[i] = d.env
	}
	if err := c.remover.Remove(ctx, envs); err != nil {
		return mail.MakeFatal(fmt.Errorf("delete on source: %w", err))
	}
	c.st.Deleted.Add(int64(len(envs)))
	c.opt.Step("remove")
	return nil
}
