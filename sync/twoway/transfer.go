package twoway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/state"
)

// The copy pipeline's sizes, as the copy engine's (package sync): a worker
// fetches fetchBatch bodies in one request, up to copyWorkers of them at
// once, and the sink commits (and the state flushes) every commitBatch
// messages put, or every mail.Limits.Batch the sink asks for (an IMAP
// sink's MULTIAPPEND: 256).
const (
	copyWorkers = 4
	fetchBatch  = 32
	commitBatch = 64
)

// copies puts each copy of the folder plan on the other side: from side A
// first, then from side B. Then each sink may drop what it keeps in memory
// about the folder (mail.MailboxReleaser: the Maildir sink's index of the
// keys stored there), so the run's memory follows the folder in work, not
// the account.
func (r *run) copies(fo *state.Folder, fp *FolderPlan) error {
	defer func() {
		for _, st := range r.stores {
			if rel := mail.FeaturesOf(st.Sink).MailboxReleaser; rel != nil {
				rel.ReleaseMailbox(fp.Name)
			}
		}
	}()
	var from [2][]Copy
	for _, c := range fp.Copies {
		from[c.From] = append(from[c.From], c)
	}
	if fewCopies(from[A]) && fewCopies(from[B]) {
		return r.copiesAtOnce(fo, fp.Name, from)
	}
	// The two directions in turn, not at once (bothSides): each reads one
	// side and writes the other, so at once they would need a second
	// connection, a second login, on each IMAP side.
	for _, s := range []Side{A, B} {
		if len(from[s]) == 0 {
			continue
		}
		if err := r.transfer(fo, fp.Name, s, from[s]); err != nil {
			return err
		}
	}
	return nil
}

// pendingCopy is a copy put but not yet committed and recorded.
type pendingCopy struct {
	c  Copy
	id mail.ID
}

// copyFailure is a copy that failed for its own reason (counted, the run
// goes on).
type copyFailure struct {
	c   Copy
	err error
}

// putResult is what a worker did with one fetch batch.
type putResult struct {
	put    []pendingCopy
	failed []copyFailure
}

// transfer copies cs, the copies from side from in folder, as the copy
// engine does: workers fetch batches of bodies at once (one pipelined
// request each where the source has mail.BatchOpener) and put them on the
// other side, while this goroutine, the committer, makes what they put
// durable every commitBatch messages and records it in the state. Fetching,
// storing and committing overlap instead of taking turns (the two-way
// sync issue: a first sync as fast as a copy). The order the durability
// rule needs holds for each message: journaled (by the caller) before its
// put, put before the commit that covers it, committed before its record.
func (r *run) transfer(fo *state.Folder, folder string, from Side, cs []Copy) error {
	to := from.Other()
	src, sink := r.stores[from].Source, r.stores[to].Sink
	every := commitBatch
	if b := sink.Limits().Batch; b > 0 {
		every = b
	}
	// The test hook (RunOptions.step) counts steps: run.step takes its
	// calls one at a time, from the workers and the committer alike.
	step := r.step
	wctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(wctx)
	jobs := make(chan []Copy)
	results := make(chan putResult, copyWorkers)
	g.Go(func() error {
		defer close(jobs)
		for len(cs) > 0 {
			n := min(len(cs), fetchBatch)
			select {
			case jobs <- cs[:n]:
			case <-ctx.Done():
				return nil
			}
			cs = cs[n:]
		}
		return nil
	})
	for range workersFor(src.Limits(), sink.Limits()) {
		g.Go(func() error {
			for b := range jobs {
				res, err := r.putBatch(ctx, step, folder, from, b)
				if err != nil {
					return err
				}
				select {
				case results <- res:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	}
	done := make(chan error, 1)
	go func() {
		done <- g.Wait()
		close(results)
	}()
	c := &copyCommitter{run: r, fo: fo, folder: folder, to: to, step: step, failed: map[mail.ID]error{}}
	cerr := c.loop(results, every)
	if cerr != nil {
		cancel() // the workers stop; what they put is never recorded
	}
	for range results { // until the workers have ended
		continue
	}
	werr := <-done
	if werr != nil && !errors.Is(werr, context.Canceled) || cerr == nil {
		return werr
	}
	return cerr
}

// workersFor is copyWorkers capped by both sides' connection limits.
func workersFor(limits ...mail.Limits) int {
	n := copyWorkers
	for _, l := range limits {
		if l.Conns > 0 && l.Conns < n {
			n = l.Conns
		}
	}
	return n
}

// loop takes the workers' results until they end, counts their failures,
// and commits and records every every messages put, then what is left
// (unless the run was cancelled). It stops at the first error.
func (c *copyCommitter) loop(results <-chan putResult, every int) error {
	var batch []pendingCopy
	for res := range results {
		for _, f := range res.failed {
			c.fail(c.to, fmt.Sprintf("copy %s of %q to side %s", f.c.Msg.ID, c.folder, c.to), f.err)
		}
		batch = append(batch, res.put...)
		if len(batch) >= every {
			if err := c.commit(batch, true); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := c.ctx.Err(); err != nil {
		return err
	}
	// The last batch's records wait for the folder's flush (applyFolder):
	// the journal holds these copies until the state does, so a kill
	// before that flush is settled by finding them stored (settle.go),
	// and a folder's records cost one fsync of its log, not one more per
	// side copied to.
	return c.commit(batch, false)
}

// copyCommitter is the commit side of one transfer.
type copyCommitter struct {
	*run
	fo     *state.Folder
	folder string
	to     Side
	step   func(string) error
	// failed remembers the messages a Commit gave up: a message put
	// before that Commit may reach the committer only with a later batch.
	failed map[mail.ID]error
}

// commit makes everything put so far on side to durable (a Commit covers
// every Put that returned before it, the batch's and any other worker's
// since), records the batch's copies, and flushes the state if flush (a
// full batch of a long transfer: what a kill makes the next run settle
// stays bounded).
func (c *copyCommitter) commit(batch []pendingCopy, flush bool) error {
	if len(batch) == 0 {
		return nil
	}
	if err := c.step("commit"); err != nil {
		return err
	}
	f := mail.FeaturesOf(c.stores[c.to].Sink)
	if f.Committer != nil {
		// A cancel must not stop the commit of messages already put:
		// committing is short, and the record follows it.
		err := f.Committer.Commit(context.WithoutCancel(c.ctx))
		var ce *mail.CommitError
		switch {
		case errors.As(err, &ce):
			for id, e := range ce.Failed {
				c.failed[id] = e
			}
		case err != nil:
			return fmt.Errorf("sync: side %s: commit: %w", c.to, err)
		}
	}
	for _, p := range batch {
		if err := c.recordCopy(p, f); err != nil {
			return err
		}
	}
	if !flush {
		return nil
	}
	return c.st.Flush()
}

func (c *copyCommitter) recordCopy(p pendingCopy, f *mail.Features) error {
	if err, bad := c.failed[p.id]; bad {
		delete(c.failed, p.id)
		c.fail(c.to, fmt.Sprintf("copy %s to side %s", p.c.Msg.ID, c.to), err)
		return nil
	}
	id := p.id
	if f.IDResolver != nil {
		if final, ok := f.IDResolver.FinalID(id); ok {
			id = final
		}
	}
	c.res.Side[c.to].Copied++
	if id == "" { // the store does not say: the next run pairs the message
		return nil
	}
	rec := p.c.Record()
	setSideID(&rec, c.to, id)
	return c.fo.Put(c.stamped(c.fo.Name(), rec))
}

// forgetFiles drops what the Maildir sides' trees know of where files are
// (run.applyOne: once a folder is applied), so the run's memory follows
// the folder in work: about 275 bytes a message otherwise, for the life
// of the run.
func (r *run) forgetFiles() {
	for _, st := range r.stores {
		if st.Maildir != nil {
			st.Maildir.files().Forget()
		}
	}
}

// putBatch stores cs, copies from side from in folder, on the other side
// and returns those put, in order, and those that failed. Where the source
// streams many messages in one request (mail.BatchOpener: one pipelined
// UID FETCH), the batch costs one round trip instead of one per message; a
// message it does not serve, or all of them when the request fails, falls
// back to one Open each. A fatal error stops the run.
func (r *run) putBatch(ctx context.Context, step func(string) error, folder string, from Side, cs []Copy) (putResult, error) {
	return r.readBatch(ctx, folder, from, cs, func(c Copy, env mail.Envelope, body io.Reader) (mail.ID, error) {
		return r.putCopy(ctx, step, folder, c, env, body)
	})
}

// readBatch reads cs, copies from side from in folder, as putBatch says,
// and hands each body to put, which returns what putBatch notes.
func (r *run) readBatch(ctx context.Context, folder string, from Side, cs []Copy, put func(Copy, mail.Envelope, io.Reader) (mail.ID, error)) (putResult, error) {
	done := make([]bool, len(cs))
	var out putResult
	if bo := mail.FeaturesOf(r.stores[from].Source).BatchOpener; bo != nil && len(cs) > 1 {
		at := make(map[mail.ID]int, len(cs))
		envs := make([]mail.Envelope, len(cs))
		for i, c := range cs {
			envs[i], at[c.Msg.ID] = r.env(from, folder, c.Msg.ID), i
		}
		err := bo.OpenBatch(ctx, envs, func(env mail.Envelope, body io.Reader) error {
			i, ok := at[env.ID]
			if !ok || done[i] {
				return nil
			}
			done[i] = true
			id, err := put(cs[i], env, body)
			return out.note(cs[i], id, err)
		})
		if fatal(err) {
			return out, err
		}
		// Any other failure of the request: the rest go one by one.
	}
	for i, c := range cs {
		if done[i] {
			continue
		}
		id, err := r.copyOne(ctx, folder, c, put)
		if err := out.note(c, id, err); err != nil {
			return out, err
		}
	}
	return out, nil
}

// note notes a put: put, failed, or fatal (returned).
func (p *putResult) note(c Copy, id mail.ID, err error) error {
	switch {
	case err == nil:
		p.put = append(p.put, pendingCopy{c, id})
	case fatal(err):
		return err
	default:
		p.failed = append(p.failed, copyFailure{c, err})
	}
	return nil
}

func (r *run) copyOne(ctx context.Context, folder string, c Copy, put func(Copy, mail.Envelope, io.Reader) (mail.ID, error)) (mail.ID, error) {
	env := r.env(c.From, folder, c.Msg.ID)
	rc, err := r.stores[c.From].Source.Open(ctx, env)
	if err != nil {
		return "", err
	}
	defer func() { _ = rc.Close() }()
	return put(c, env, rc)
}

// putCopy puts body, copy c's message as env gives it, on the other side.
func (r *run) putCopy(ctx context.Context, step func(string) error, folder string, c Copy, env mail.Envelope, body io.Reader) (mail.ID, error) {
	out := env
	out.Mailbox, out.Flags = folder, c.Flags()
	out.Key = putKey("copy", c.From, folder, c.Msg.ID)
	if err := step("put " + string(c.Msg.ID)); err != nil {
		return "", err
	}
	return r.stores[c.From.Other()].Sink.Put(ctx, out, body)
}

// A sync after a few changes copies a few messages each way in a folder.
// In turn, the directions wait on each other: on an IMAP side the FETCH
// of one direction's bodies and the APPEND of the other's share the one
// session, and each server's APPEND (an fsync per message) waits for the
// other's. copiesAtOnce reads both directions' bodies first, at once, into
// spool files (each side's session does its FETCH), then puts both at
// once (each side's session does its APPEND, the two servers, or the
// server and the Maildir's fsyncs, working together): one session per
// side all the same, and the order durability needs holds for each
// message (journaled before any of this, put before the commit that
// covers it, committed before its record).

// Bounds of a direction copied at once: its bodies wait in spool files
// between the two steps.
const (
	atOnceMax   = fetchBatch
	atOnceBytes = 4 << 20
)

// fewCopies reports whether cs, one direction's copies, are few and small
// enough for copiesAtOnce: sizes known, at most atOnceMax messages and
// atOnceBytes in all.
func fewCopies(cs []Copy) bool {
	if len(cs) == 0 || len(cs) > atOnceMax {
		return false
	}
	var n int64
	for _, c := range cs {
		if c.Msg.Size <= 0 {
			return false
		}
		n += c.Msg.Size
	}
	return n <= atOnceBytes
}

// spooledCopy is a copy whose body waits in a spool file.
type spooledCopy struct {
	c   Copy
	env mail.Envelope
	f   *os.File
}

// copiesAtOnce copies from[A] to side B and from[B] to side A in two
// steps, each on both directions at once (bothSides): read and spool,
// then put, commit and record.
func (r *run) copiesAtOnce(fo *state.Folder, folder string, from [2][]Copy) error {
	var sp [2][]spooledCopy
	var read [2]putResult
	defer func() {
		for _, l := range sp {
			for _, x := range l {
				_ = x.f.Close()
			}
		}
	}()
	err := r.bothSides(func(s Side) error {
		var err error
		read[s], err = r.readBatch(r.ctx, folder, s, from[s], func(c Copy, env mail.Envelope, body io.Reader) (mail.ID, error) {
			f, _, err := mail.Spool(r.ctx, "", body)
			if err != nil {
				return "", err
			}
			sp[s] = append(sp[s], spooledCopy{c: c, env: env, f: f})
			return "", nil
		})
		return err
	})
	if err != nil {
		return err
	}
	return r.bothSides(func(s Side) error {
		return r.putSpooled(fo, folder, s, sp[s], read[s].failed)
	})
}

// putSpooled puts the spooled copies from side from on the other side,
// then commits and records them as transfer does; failed are the copies
// whose bodies could not be read.
func (r *run) putSpooled(fo *state.Folder, folder string, from Side, sp []spooledCopy, failed []copyFailure) error {
	res := putResult{failed: failed}
	for _, x := range sp {
		if _, err := x.f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("sync: spool of %s: %w", x.c.Msg.ID, err)
		}
		id, err := r.putCopy(r.ctx, r.step, folder, x.c, x.env, x.f)
		if err := res.note(x.c, id, err); err != nil {
			return err
		}
	}
	to := from.Other()
	every := commitBatch
	if b := r.stores[to].Sink.Limits().Batch; b > 0 {
		every = b
	}
	results := make(chan putResult, 1)
	results <- res
	close(results)
	c := &copyCommitter{run: r, fo: fo, folder: folder, to: to, step: r.step, failed: map[mail.ID]error{}}
	return c.loop(results, every)
}
