package sync

import (
	"bytes"
	"context"
	"errors"
	"io"
	stdsync "sync"

	"github.com/mailferry/mailferry/sync/mail"
)

// readahead serves a batch through Open for a source that has one
// connection (Limits().Conns == 1) and no batch request of its own (POP3):
// a goroutine reads the next bodies into memory while the worker stores the
// current one. With its one worker, reading (TLS, POP3 dot-unstuffing) and storing (the file writes)
// otherwise take turns in one goroutine; overlapped they use both cores,
// as the combined floor of `make bench` does (docs/performance.md).
//
// It follows the BatchOpener contract: a message it does not pass to fn
// (a failed Open or read) falls back to the engine's one-by-one path, which
// retries and classifies it. Opens stay in the batch's order, so a POP3
// source keeps pipelining its RETRs.
type readahead struct {
	src mail.Source
	// depth is how many bodies may wait in memory, each at most maxBody
	// bytes; a longer body is handed over as a stream (what was buffered,
	// then the rest of the connection) and the reader waits for it.
	depth   int
	maxBody int
}

const (
	readaheadDepth = 4
	readaheadMax   = 1 << 20
)

var _ mail.BatchOpener = (*readahead)(nil)

// aheadBody is one message on its way from the reader to the worker.
type aheadBody struct {
	env  mail.Envelope
	buf  *bytes.Buffer
	rest io.ReadCloser // set: the body continues here; the reader waits for done
}

var aheadBufs = stdsync.Pool{New: func() any { return new(bytes.Buffer) }}

// OpenBatch calls fn for each message of envs it could read, in order.
// Before it returns, the reader has stopped, so the caller may Open again.
func (ra *readahead) OpenBatch(ctx context.Context, envs []mail.Envelope, fn func(mail.Envelope, io.Reader) error) error {
	bodies := make(chan aheadBody, ra.depth)
	stop := make(chan struct{})
	done := make(chan struct{}, 1) // a streamed body was consumed
	var readErr error
	go func() {
		defer close(bodies)
		readErr = ra.read(ctx, envs, bodies, stop, done)
	}()
	var fnErr error
	for b := range bodies {
		if fnErr == nil {
			fnErr = fn(b.env, b.reader())
			if fnErr != nil {
				close(stop)
			}
		}
		b.release(done)
	}
	if fnErr != nil {
		return fnErr
	}
	return readErr
}

// read opens and buffers envs in order until it is stopped or a message
// cannot be read. A message that vanished is skipped: the one-by-one path
// meets it again and counts it.
func (ra *readahead) read(ctx context.Context, envs []mail.Envelope, bodies chan<- aheadBody, stop <-chan struct{}, done <-chan struct{}) error {
	for _, env := range envs {
		select {
		case <-stop:
			return nil
		default:
		}
		rc, err := ra.src.Open(ctx, env)
		if errors.Is(err, mail.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		buf := aheadBufs.Get().(*bytes.Buffer)
		buf.Reset()
		if env.Size > 0 && env.Size <= int64(ra.maxBody) {
			buf.Grow(int(env.Size)) // one allocation, not a doubling series
		}
		b := aheadBody{env: env, buf: buf}
		n, err := mail.CopyBody(ctx, buf, io.LimitReader(rc, int64(ra.maxBody)+1))
		if err == nil && n > int64(ra.maxBody) {
			b.rest = rc
		} else {
			_ = rc.Close() // read to its end, or failed: nothing more to learn from Close
		}
		if err != nil {
			aheadBufs.Put(buf)
			return err
		}
		select {
		case bodies <- b:
		case <-stop:
			b.release(nil)
			return nil
		}
		if b.rest != nil {
			select {
			case <-done: // the worker is through with this connection
			case <-stop:
				return nil
			}
		}
	}
	return nil
}

// reader is the whole body as fn reads it.
func (b aheadBody) reader() io.Reader {
	if b.rest == nil {
		return bytes.NewReader(b.buf.Bytes())
	}
	return io.MultiReader(bytes.NewReader(b.buf.Bytes()), b.rest)
}

// release returns the buffer and, for a streamed body, closes the rest (a
// POP3 body reads itself to its end, keeping the session in step) and tells
// the reader it may go on.
func (b aheadBody) release(done chan<- struct{}) {
	if b.rest != nil {
		_ = b.rest.Close() // the source reports a broken body on its next Open
		if done != nil {
			done <- struct{}{}
		}
	}
	if b.buf.Cap() <= readaheadMax+bytes.MinRead {
		aheadBufs.Put(b.buf)
	}
}
