package mail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
)

// ReadAhead serves a batch through Open, for a source that has one
// connection and no batch request of its own (POP3): a goroutine reads the
// next bodies into memory while the caller's fn stores the current one.
// With one connection, reading (TLS, POP3 dot-unstuffing) and storing (the
// file writes) otherwise take turns in one goroutine; overlapped they use
// two cores, as the combined floor of `make bench` does
// (docs/performance.md).
//
// OpenBatch follows the BatchOpener contract: a message it does not pass to
// fn (a failed Open or read) is left to the caller's one-by-one path, which
// retries and classifies it. Opens stay in the batch's order, so a POP3
// source keeps pipelining its RETRs. Only a source whose server keeps what
// was read may use it: a message read ahead and then not stored (the run
// stopped) is gone from a server that hides what was retrieved.
type ReadAhead struct {
	Open func(ctx context.Context, env Envelope) (io.ReadCloser, error)
	// Depth is how many bodies may wait in memory, each at most MaxBody
	// bytes; a longer body is handed over as a stream (what was buffered,
	// then the rest of the connection) and the reader waits for it.
	// Zero: ReadAheadDepth and ReadAheadMax.
	Depth   int
	MaxBody int
}

// The defaults: 4 bodies of up to 1 MiB, about 5 MiB at the most with the
// one being stored; a typical message is 30 KiB.
const (
	ReadAheadDepth = 4
	ReadAheadMax   = 1 << 20
)

var _ BatchOpener = ReadAhead{}

// aheadBody is one message on its way from the reader to the worker.
type aheadBody struct {
	env  Envelope
	buf  *bytes.Buffer
	rest io.ReadCloser // set: the body continues here; the reader waits for done
}

var aheadBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// OpenBatch calls fn for each message of envs it could read, in order.
// Before it returns, the reader has stopped, so the caller may Open again.
func (ra ReadAhead) OpenBatch(ctx context.Context, envs []Envelope, fn func(Envelope, io.Reader) error) error {
	if ra.Depth <= 0 {
		ra.Depth = ReadAheadDepth
	}
	if ra.MaxBody <= 0 {
		ra.MaxBody = ReadAheadMax
	}
	bodies := make(chan aheadBody, ra.Depth)
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
func (ra ReadAhead) read(ctx context.Context, envs []Envelope, bodies chan<- aheadBody, stop <-chan struct{}, done <-chan struct{}) error {
	for _, env := range envs {
		select {
		case <-stop:
			return nil
		default:
		}
		rc, err := ra.Open(ctx, env)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		buf := aheadBufs.Get().(*bytes.Buffer)
		buf.Reset()
		if env.Size > 0 && env.Size <= int64(ra.MaxBody) {
			buf.Grow(int(env.Size)) // one allocation, not a doubling series
		}
		b := aheadBody{env: env, buf: buf}
		n, err := CopyBody(ctx, buf, io.LimitReader(rc, int64(ra.MaxBody)+1))
		if err == nil && n > int64(ra.MaxBody) {
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
	if b.buf.Cap() <= ReadAheadMax+bytes.MinRead {
		aheadBufs.Put(b.buf)
	}
}
