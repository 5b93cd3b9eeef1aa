package imapsink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// slot is one append connection with the messages Put through it that are
// not settled yet: batch (in its open MULTIAPPEND command) and retry
// (their command failed; Commit re-sends them). Its lock is held by the
// Put or Commit using it.
type slot struct {
	lock chan struct{}
	busy bool // reserved by a Put (guarded by Sink.mu)
	// hint is the mailbox the connection last worked on and hintOpen
	// whether a MULTIAPPEND is open there: a copy for takeSlot, which may
	// not look at the connection itself (guarded by Sink.mu).
	hint     string
	hintOpen bool
	// hintLoad is the bytes in the open command (0 when none). Puts go to
	// the least loaded slot on their mailbox, so that every server session
	// saves in parallel: when one session got most messages (59-65% with
	// "first free slot" on Dovecot), its per-message fsync set the pace.
	hintLoad int64
	c        *rconn
	batch    []*item
	bytes    int64
	retry    []*item
	rerr     error // why the retry messages' command failed
	// lendNext: the commit under way gives the connection back to the
	// shared pool once its MULTIAPPEND answered OK (lend), so the reader
	// stops after that answer.
	lendNext bool
}

// takeSlot reserves an append slot for a Put into box, preferring one
// whose open command or selected mailbox is box already.
func (s *Sink) takeSlot(ctx context.Context, box string) (*slot, error) {
	if err := lock(ctx, s.avail); err != nil {
		return nil, err
	}
	s.mu.Lock()
	var best *slot
	score := -1
	var load int64
	for _, sl := range s.slots {
		if sl.busy {
			continue
		}
		sc := 1
		switch {
		case sl.hint == box:
			// Open on box, or box selected: the least loaded of these
			// wins, on a tie the one with a command open (fewer commands).
			// A lone caller keeps one command: the other slots have no
			// connection on box until concurrent Puts needed them.
			sc = 3
		case !sl.hintOpen:
			sc = 2
		case sl.hint != "":
			sc = 0
		}
		if sc > score || sc == 3 && score == 3 && (sl.hintLoad < load || sl.hintLoad == load && sl.hintOpen && !best.hintOpen) {
			best, score, load = sl, sc, sl.hintLoad
		}
	}
	best.busy = true
	s.mu.Unlock()
	if err := lock(ctx, best.lock); err != nil {
		s.giveSlot(best, false)
		return nil, err
	}
	return best, nil
}

// giveSlot returns a slot taken by takeSlot; locked says whether its lock
// is still held.
func (s *Sink) giveSlot(sl *slot, locked bool) {
	hint, open, load := "", false, int64(0)
	if locked && sl.c != nil && !sl.c.dead() {
		hint, open = sl.c.box, sl.c.open != ""
		if open {
			hint, load = sl.c.openBox, sl.bytes
		}
	}
	s.mu.Lock()
	closed := s.closed
	sl.busy = false
	if locked {
		sl.hint, sl.hintOpen, sl.hintLoad = hint, open, load
	}
	s.mu.Unlock()
	if closed && locked && sl.c != nil {
		sl.c.close() // Close found the slot in use and left it to us
	}
	if locked {
		<-sl.lock
	}
	<-s.avail
}

// failBatch moves the messages of the slot's (ended or lost) command to
// retry. ambiguous says the server may have stored them after all.
func (sl *slot) failBatch(ambiguous bool, err error) {
	for _, it := range sl.batch {
		it.ambiguous = it.ambiguous || ambiguous
	}
	sl.retry = append(sl.retry, sl.batch...)
	sl.batch, sl.bytes = nil, 0
	if err != nil {
		sl.rerr = err
	}
}

// ready returns the slot's connection, dialing it if needed, with box
// selected unless a MULTIAPPEND command is open on it.
func (s *Sink) ready(ctx context.Context, sl *slot, box string) (*rconn, error) {
	if sl.c != nil {
		sl.c.poll() // notice a BYE that arrived while idle (scenario B5)
		if sl.c.dead() {
			sl.c.close()
			sl.c = nil
		}
	}
	if sl.c == nil && len(sl.batch) > 0 {
		// RFC 3502 says a command that never ended stored nothing; the
		// retry checks anyway (rule 4).
		sl.failBatch(true, mail.Temp(errors.New("connection lost with a MULTIAPPEND open")))
	}
	if sl.c == nil {
		rc, sess, err := s.appendConn(ctx)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, mail.ErrUnreachable) {
				// The control connection worked: a passing network problem.
				err = mail.Temp(fmt.Errorf("imapsink: reconnect: %s", err.Error()))
			}
			return nil, err
		}
		sl.c = newRconn(rc)
		if sess != nil {
			sl.c.adopt(sess)
		}
		if s.multi && !sl.c.multi {
			sl.c.close()
			sl.c = nil
			return nil, fmt.Errorf("imapsink: connect: server no longer offers MULTIAPPEND: %w", mail.ErrUnsupported)
		}
	}
	c := sl.c
	if c.open != "" {
		return c, nil
	}
	for attempt := 0; ; attempt++ {
		stop := c.guard(ctx)
		r, err := c.selectBox(ctx, box)
		if !stop() {
			err = ctx.Err()
		}
		if err != nil {
			c.close()
			return nil, s.connErr(ctx, fmt.Sprintf("select %q", box), err)
		}
		if r.Kind == "OK" {
			return c, nil
		}
		if attempt == 0 && r.Kind == "NO" && (r.Code == "TRYCREATE" || r.Code == "NONEXISTENT" || r.Code == "") {
			// Gone (deleted meanwhile) or never there: make it, retry.
			s.forgetBox(box)
			if err := s.ensureBox(ctx, box); err != nil {
				return nil, err
			}
			continue
		}
		if r.Kind == "BAD" {
			c.close()
		}
		if verr := verdict(fmt.Sprintf("select %q", box), r); mail.Temporary(verr) {
			return nil, verr
		}
		return nil, fmt.Errorf("imapsink: select %q: %s", box, r)
	}
}

func (s *Sink) forgetBox(box string) {
	s.mu.Lock()
	delete(s.boxes, box)
	s.mu.Unlock()
}

// connErr classifies a transport error on an append connection.
func (s *Sink) connErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("imapsink: %s: %w", op, ctx.Err())
	}
	if mail.Fatal(err) || errors.Is(err, mail.ErrClosed) || mail.Temporary(err) {
		return err
	}
	return mail.Temp(fmt.Errorf("imapsink: %s: %w", op, err))
}

// putPlain APPENDs one message and waits for the server's answer.
func (s *Sink) putPlain(ctx context.Context, op string, it *item, fo *folder) (mail.ID, error) {
	for attempt := 0; ; attempt++ {
		sl, err := s.takeSlot(ctx, it.box)
		if err != nil {
			return "", fmt.Errorf("imapsink: %s: %w", op, err)
		}
		c, err := s.ready(ctx, sl, it.box)
		if err != nil {
			s.giveSlot(sl, true)
			return "", err
		}
		r, err := s.appendOnce(ctx, c, op, it, fo)
		s.giveSlot(sl, true)
		if err == nil {
			return r, nil
		}
		if errors.Is(err, errTryCreate) && attempt == 0 {
			s.forgetBox(it.box)
			if err := s.ensureBox(ctx, it.box); err != nil {
				return "", err
			}
			continue
		}
		return "", err
	}
}

// appendOnce runs one plain APPEND of it on c and classifies the outcome.
func (s *Sink) appendOnce(ctx context.Context, c *rconn, op string, it *item, fo *folder) (mail.ID, error) {
	stop := c.guard(ctx)
	r, sent, err := c.appendOne(ctx, it.box, &it.msg)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		c.close()
		if sent {
			// Stored or not: nobody knows (scenario A6). The retry reads
			// the folder's tail and pairs the message with the copy if the
			// server kept it.
			s.markStale(fo, &it.id)
			s.noteUnknown(it.box)
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("imapsink: %s: %w", op, ctx.Err())
		}
		return "", mail.Temp(fmt.Errorf("imapsink: %s: connection lost during APPEND: %w", op, err))
	}
	if r.Kind == "OK" {
		uidv, uids := imapconn.AppendUIDs(r)
		var uid uint32
		if len(uids) == 1 {
			uid = uids[0]
		}
		s.noteAppended(fo, &it.id, uidv, uid)
		if s.pool != nil {
			s.pool.NoteAppended(it.box, uidv, uid, it.msg.flags)
		}
		return makeID(uidv, uid), nil
	}
	if r.Kind == "BAD" {
		c.close() // the server may have read the literal as commands
	}
	verr := verdict(op, r)
	if d := backoff(r); d > 0 && mail.Temporary(verr) {
		s.log.Warn(fmt.Sprintf("imapsink: server asks to back off %v", d), "mailbox", it.name)
		if err := sleep(ctx, d); err != nil {
			return "", fmt.Errorf("imapsink: %s: %w", op, err)
		}
	}
	return "", verr
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// markStale notes that fo may hold a message this run does not know of:
// id, whose APPEND's outcome is unknown. The folder lock is taken without
// ctx: its holders do short work or read the index under their own context.
func (s *Sink) markStale(fo *folder, id *identity) {
	fo.lock <- struct{}{}
	fo.stale = true
	fo.sentUnsure(id)
	<-fo.lock
}

func (s *Sink) noteAppended(fo *folder, id *identity, uidv, uid uint32) {
	fo.lock <- struct{}{}
	fo.appended(id, uidv, uid)
	<-fo.lock
}

// putMulti adds the message to the MULTIAPPEND command open on a slot and
// returns its provisional ID; Commit ends the command.
func (s *Sink) putMulti(ctx context.Context, op string, it *item) (mail.ID, error) {
	sl, err := s.takeSlot(ctx, it.box)
	if err != nil {
		return "", fmt.Errorf("imapsink: %s: %w", op, err)
	}
	defer s.giveSlot(sl, true)
	if c := sl.c; c != nil && c.open != "" && (c.openBox != it.box || len(sl.batch) >= batchMax || sl.bytes >= batchBytes) {
		// Another mailbox, or a full batch: end that command first. A
		// failure leaves its messages to Commit.
		if err := s.finish(ctx, sl); err != nil && mail.Fatal(err) {
			return "", err
		}
	}
	c, err := s.ready(ctx, sl, it.box)
	if err != nil {
		return "", err
	}
	stop := c.guard(ctx)
	early, err := c.multiAdd(ctx, it.box, &it.msg)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		// This message is not part of anything; the command's others go
		// to Commit.
		c.close()
		sl.failBatch(true, mail.Temp(fmt.Errorf("connection lost during MULTIAPPEND: %w", err)))
		if ctx.Err() != nil {
			return "", fmt.Errorf("imapsink: %s: %w", op, ctx.Err())
		}
		return "", mail.Temp(fmt.Errorf("imapsink: %s: connection lost during MULTIAPPEND: %w", op, err))
	}
	if early != nil {
		// The server ended the command before we did: it stored none of
		// it. Over quota is fatal now; otherwise Commit re-sends the
		// batch, this message included (one by one if refused again).
		// Bytes we sent after the server gave up on the command (non-
		// synchronising literals) may have been read as commands: this
		// connection's state is unknown.
		c.close()
		verr := verdict(op, *early)
		if mail.Fatal(verr) {
			sl.failBatch(false, verr)
			return "", verr
		}
		s.log.Warn("imapsink: server ended a MULTIAPPEND early; Commit re-sends its messages", "mailbox", it.name, "err", verr)
		sl.batch = append(sl.batch, it)
		sl.failBatch(false, verr)
	} else {
		sl.batch = append(sl.batch, it)
		sl.bytes += it.msg.size
	}
	s.mu.Lock()
	s.prov++
	it.prov = mail.ID("pending." + strconv.FormatUint(s.prov, 10))
	s.mu.Unlock()
	return it.prov, nil
}

// finish ends the slot's open MULTIAPPEND command and settles its
// messages. On failure they move to retry and the error says why.
func (s *Sink) finish(ctx context.Context, sl *slot) error {
	c := sl.c
	if c == nil || c.open == "" {
		if len(sl.batch) > 0 {
			sl.failBatch(true, mail.Temp(errors.New("connection lost with a MULTIAPPEND open")))
		}
		return nil
	}
	box, n := c.openBox, len(sl.batch)
	op := fmt.Sprintf("multiappend of %d messages to %q", n, box)
	stop := c.guard(ctx)
	r, err := c.multiEnd(ctx, sl.lendNext && len(sl.retry) == 0)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		c.close()
		err = s.connErr(ctx, op, err)
		sl.failBatch(true, err)
		return err
	}
	if r.Kind != "OK" {
		if r.Kind == "BAD" || c.stopped.Load() {
			c.close() // out of step, or nobody reads it any more
		}
		err := verdict(op, r)
		sl.failBatch(false, err)
		return err
	}
	uidv, uids := imapconn.AppendUIDs(r)
	if len(uids) != n {
		uids = nil // no UIDPLUS, or a set we cannot pair: IDs stay unknown
	}
	s.settle(sl.batch, uidv, uids)
	sl.batch, sl.bytes = nil, 0
	return nil
}

// settle records committed messages: final IDs for FinalID, the folder
// index, and the spool files back to the pool.
func (s *Sink) settle(items []*item, uidv uint32, uids []uint32) {
	for i, it := range items {
		var uid uint32
		if uids != nil {
			uid = uids[i]
		}
		if fo := s.knownFolder(it.box); fo != nil {
			s.noteAppended(fo, &it.id, uidv, uid)
		}
		if s.pool != nil {
			s.pool.NoteAppended(it.box, uidv, uid, it.msg.flags)
		}
		s.resolve(it.prov, makeID(uidv, uid))
		s.release(it)
	}
}

func (s *Sink) resolve(prov, final mail.ID) {
	if prov == "" {
		return
	}
	s.mu.Lock()
	s.resolved[prov] = final
	s.mu.Unlock()
}

// FinalID maps the provisional ID a MULTIAPPEND Put returned ("pending.N")
// to the message's ID once committed: "uidvalidity.uid", or "" when the
// server does not report UIDs. It answers once per provisional ID (the
// engine asks after the Commit that covers the message, to record exact
// IDs in the checkpoint); an ID that is not provisional is returned
// unchanged.
func (s *Sink) FinalID(id mail.ID) (mail.ID, bool) {
	f, ok := s.lookupFinal(id, true)
	return f, ok
}

// lookupFinal maps a provisional ID; forget drops the entry, as the engine
// asks once per message (FinalID).
func (s *Sink) lookupFinal(id mail.ID, forget bool) (mail.ID, bool) {
	if !strings.HasPrefix(string(id), "pending.") {
		return id, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.resolved[id]
	if ok && forget {
		delete(s.resolved, id)
	}
	return f, ok
}

// Commit makes every message Put before it durable: it ends each open
// MULTIAPPEND command and waits for the server's OK. A command that failed
// is settled here. When its outcome is unknown (connection lost after the
// last literal, scenario A6) the folder's tail is read first, and messages
// already there are not sent again. The rest are re-sent as one command,
// or one APPEND each after a refusal, so a single bad message cannot keep
// its batch out. Temporary failures are retried a few times with a pause.
// Commit returns an error only when a message Put before it is not
// stored: over quota (fatal), a message the server refuses, retries used
// up. Those messages are given up; nothing Commit reports as stored is
// lost. Without MULTIAPPEND, Put is already durable and Commit does
// nothing.
func (s *Sink) Commit(ctx context.Context) error {
	if s.isClosed() {
		return s.errClosed("commit")
	}
	s.mu.Lock()
	slots := s.slots
	s.mu.Unlock()
	// The slots are committed at the same time: each server session ends
	// its command (Dovecot renames the files and writes its index then)
	// while the others do, instead of one after another.
	var (
		mu      gosync.Mutex
		wg      gosync.WaitGroup
		errs    []error
		pending []mail.ID // provisional IDs this Commit must settle
	)
	for _, sl := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids, err := s.commitLocked(ctx, sl)
			mu.Lock()
			pending = append(pending, ids...)
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil || mail.Fatal(err) || ctx.Err() != nil {
		return err
	}
	// Some messages were given up, the rest are stored: say which, so the
	// engine records the stored ones instead of stopping the run.
	failed := map[mail.ID]error{}
	for _, id := range pending {
		if _, ok := s.lookupFinal(id, false); !ok {
			failed[id] = err
		}
	}
	return &mail.CommitError{Failed: failed, Err: err}
}

// commitLocked commits one slot under its lock and returns the provisional
// IDs of the messages it had to settle.
func (s *Sink) commitLocked(ctx context.Context, sl *slot) ([]mail.ID, error) {
	if err := lock(ctx, sl.lock); err != nil {
		return nil, fmt.Errorf("imapsink: commit: %w", err)
	}
	defer func() { <-sl.lock }()
	var pending []mail.ID
	for _, it := range append(append([]*item(nil), sl.batch...), sl.retry...) {
		if it.prov != "" {
			pending = append(pending, it.prov)
		}
	}
	few := len(sl.batch)+len(sl.retry) <= lendMax
	sl.lendNext = few && s.pool != nil
	err := s.commitSlot(ctx, sl)
	if err == nil && few {
		s.lend(ctx, sl)
	}
	s.mu.Lock()
	sl.hintOpen, sl.hintLoad = false, 0 // every command is ended now
	if sl.c == nil {
		sl.hint = ""
	}
	s.mu.Unlock()
	return pending, err
}

// appendConn returns an append connection: the session of the shared
// pool (its connection driven by the rconn until lend gives it back), else
// one of the sink's own.
func (s *Sink) appendConn(ctx context.Context) (*imapconn.RawConn, *imapconn.Session, error) {
	if s.pool == nil {
		rc, err := imapconn.DialRaw(ctx, &s.cfg.Config, &s.o)
		return rc, nil, err
	}
	sess, err := s.pool.Session(ctx)
	if err != nil {
		return nil, nil, err
	}
	return sess.RawConn(), sess, nil
}

// lendMax is the most messages a commit may have settled on a slot for
// lend to give its connection back: a sync after a few changes appends a
// few messages, then writes flags and removes in the same folder on the
// same session; a big transfer keeps its append connections (each lend
// costs a NOOP, and the next Put a SELECT).
const lendMax = 16

// lend gives a committed slot's pooled connection back to the shared
// pool, where the flag writes, removals and fetches of the same folder
// find it with the folder selected. The caller holds the slot's lock and
// everything the slot held is settled.
func (s *Sink) lend(ctx context.Context, sl *slot) {
	c := sl.c
	if c == nil || c.sess == nil || len(sl.batch) > 0 || len(sl.retry) > 0 {
		return
	}
	sl.c = nil
	if sess := c.detach(ctx); sess != nil {
		s.pool.PutSession(sess)
		return
	}
	c.close()
}

func (s *Sink) commitSlot(ctx context.Context, sl *slot) error {
	_ = s.finish(ctx, sl) // a failure leaves the batch in retry, handled below
	sl.lendNext = false   // a retry's commands need the reader
	if len(sl.retry) == 0 {
		return nil
	}
	err := sl.rerr
	wait := 500 * time.Millisecond
	oneByOne := false
	for attempt := 1; ; attempt++ {
		switch {
		case mail.Fatal(err):
			s.dropRetry(sl)
			return err
		case errors.Is(err, errTryCreate):
			if cerr := s.ensureBoxes(ctx, sl.retry); cerr != nil {
				s.dropRetry(sl)
				return cerr
			}
		case !mail.Temporary(err):
			oneByOne = true // refused: find which message, store the others
		}
		if attempt > commitAttempts {
			n := len(sl.retry)
			s.dropRetry(sl)
			return fmt.Errorf("imapsink: commit: %d messages not stored after %d attempts: %w", n, commitAttempts, err)
		}
		if mail.Temporary(err) {
			s.log.Warn("imapsink: commit: sending a batch again", "attempt", attempt, "err", err)
			if serr := sleep(ctx, wait); serr != nil {
				return fmt.Errorf("imapsink: commit: %w", serr)
			}
			wait *= 2
		}
		if err = s.reconcile(ctx, sl); err != nil {
			continue
		}
		if len(sl.retry) == 0 {
			return nil
		}
		if oneByOne {
			return s.sendOneByOne(ctx, sl)
		}
		s.resend(ctx, sl)
		if len(sl.retry) == 0 {
			return nil
		}
		err = sl.rerr
	}
}

// dropRetry gives up the slot's unsettled messages.
func (s *Sink) dropRetry(sl *slot) {
	for _, it := range sl.retry {
		s.release(it)
	}
	sl.retry, sl.rerr = nil, nil
}

func (s *Sink) ensureBoxes(ctx context.Context, items []*item) error {
	seen := map[string]bool{}
	for _, it := range items {
		if !seen[it.box] {
			seen[it.box] = true
			s.forgetBox(it.box)
			if err := s.ensureBox(ctx, it.box); err != nil {
				return err
			}
		}
	}
	return nil
}

// reconcile pairs retry messages whose outcome is unknown with what their
// folder's tail now holds, and settles those it finds.
func (s *Sink) reconcile(ctx context.Context, sl *slot) error {
	var rest []*item
	for i, it := range sl.retry {
		if !it.ambiguous {
			rest = append(rest, it)
			continue
		}
		uid, uidv, found, err := s.lookup(ctx, it)
		if err != nil {
			sl.retry = append(rest, sl.retry[i:]...)
			return err
		}
		if found {
			s.log.Info("imapsink: a message whose APPEND outcome was unknown is on the server; not sending it again", "mailbox", it.name, "id", string(it.env.ID))
			s.resolve(it.prov, makeID(uidv, uid))
			s.release(it)
			continue
		}
		it.ambiguous = false
		rest = append(rest, it)
	}
	sl.retry = rest
	return nil
}

// lookup reads the tail of it's folder and claims a copy of it there.
func (s *Sink) lookup(ctx context.Context, it *item) (uid, uidv uint32, found bool, err error) {
	fo, err := s.folder(ctx, it.box)
	if err != nil {
		return 0, 0, false, err
	}
	if err := lock(ctx, fo.lock); err != nil {
		return 0, 0, false, err
	}
	defer func() { <-fo.lock }()
	fo.stale = true
	if err := s.readTail(ctx, fo); err != nil {
		return 0, 0, false, err
	}
	uid, found = fo.claim(&it.id)
	return uid, fo.uidv, found, nil
}

// resend sends the retry messages again in MULTIAPPEND commands (one per
// run of messages to the same mailbox). What fails goes back to retry.
func (s *Sink) resend(ctx context.Context, sl *slot) {
	items := sl.retry
	sl.retry, sl.rerr = nil, nil
	for i, it := range items {
		if sl.c != nil && sl.c.open != "" && sl.c.openBox != it.box {
			if err := s.finish(ctx, sl); err != nil {
				sl.retry = append(sl.retry, items[i:]...)
				return
			}
		}
		c, err := s.ready(ctx, sl, it.box)
		if err != nil {
			sl.retry = append(sl.retry, items[i:]...)
			sl.rerr = err
			return
		}
		stop := c.guard(ctx)
		early, err := c.multiAdd(ctx, it.box, &it.msg)
		if !stop() {
			err = ctx.Err()
		}
		sl.batch = append(sl.batch, it)
		sl.bytes += it.msg.size
		if err != nil {
			c.close()
			sl.failBatch(true, s.connErr(ctx, "multiappend", err))
			sl.retry = append(sl.retry, items[i+1:]...)
			return
		}
		if early != nil {
			c.close() // as in putMulti
			sl.failBatch(false, verdict("multiappend", *early))
			sl.retry = append(sl.retry, items[i+1:]...)
			return
		}
	}
	_ = s.finish(ctx, sl) // as in commitSlot: a failure is recorded on the slot's batch
}

// sendOneByOne stores the retry messages with one APPEND each, so a
// refused message does not keep the others out, and reports the refusals.
func (s *Sink) sendOneByOne(ctx context.Context, sl *slot) error {
	items := sl.retry
	sl.retry, sl.rerr = nil, nil
	var errs []error
	for _, it := range items {
		op := fmt.Sprintf("append %s %s", it.name, it.env.ID)
		fo, err := s.folder(ctx, it.box)
		if err == nil {
			var c *rconn
			if c, err = s.ready(ctx, sl, it.box); err == nil {
				var id mail.ID
				if id, err = s.appendOnce(ctx, c, op, it, fo); err == nil {
					s.resolve(it.prov, id)
				}
			}
		}
		if err != nil {
			errs = append(errs, err)
			s.log.Error("imapsink: message not stored", "mailbox", it.name, "id", string(it.env.ID), "err", err)
		}
		s.release(it)
	}
	if len(errs) > 0 {
		return fmt.Errorf("imapsink: commit: %d of %d messages not stored (with ?multiappend=off in the destination URL each fails alone): %w", len(errs), len(items), errors.Join(errs...))
	}
	return nil
}
