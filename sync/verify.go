package sync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"sort"

	"github.com/mailferry/mailferry/sync/mail"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Mailboxes, if set, selects the source mailboxes to check.
	Mailboxes func(name string) bool
	// MapMailbox, if set, names the destination mailbox of a source one.
	MapMailbox func(name string) string
}

// MailboxReport compares one mailbox on both sides.
type MailboxReport struct {
	Mailbox string `json:"mailbox"`
	// DstMailbox is the destination mailbox compared with Mailbox, when
	// MapMailbox gave it another name.
	DstMailbox string          `json:"dst_mailbox,omitempty"`
	SrcCount   int             `json:"src_messages"`
	SrcBytes   int64           `json:"src_bytes"`
	DstCount   int             `json:"dst_messages"`
	DstBytes   int64           `json:"dst_bytes"`
	Missing    []mail.Envelope `json:"missing,omitempty"`
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Mailboxes []MailboxReport `json:"mailboxes"`
	Missing   int             `json:"missing"`
}

// Verify checks that every message of src is in dst, in the mailbox of the
// same name, by content: a SHA-256 of the body with line endings normalised
// to LF (so a store that keeps LF, or a POP3 server that serves CRLF, does
// not count as a difference). Messages are matched as multisets, so a
// source holding two identical copies needs two in dst.
func Verify(ctx context.Context, src, dst mail.Source, opt VerifyOptions) (*VerifyReport, error) {
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		return nil, fmt.Errorf("source: list mailboxes: %w", err)
	}
	dstBoxes, err := dst.Mailboxes(ctx)
	if err != nil {
		return nil, fmt.Errorf("destination: list mailboxes: %w", err)
	}
	inDst := map[string]bool{}
	for _, mb := range dstBoxes {
		inDst[mb] = true
	}
	rep := &VerifyReport{}
	for _, mb := range boxes {
		if opt.Mailboxes != nil && !opt.Mailboxes(mb) {
			continue
		}
		r := MailboxReport{Mailbox: mb}
		have := map[[32]byte]int{}
		to := mb
		if opt.MapMailbox != nil {
			to = opt.MapMailbox(mb)
		}
		if to != mb {
			r.DstMailbox = to
		}
		if inDst[to] {
			err := eachBody(ctx, dst, to, func(e mail.Envelope, sum [32]byte, n int64) {
				have[sum]++
				r.DstCount++
				r.DstBytes += n
			})
			if err != nil {
				return nil, fmt.Errorf("destination: %w", err)
			}
		}
		err := eachBody(ctx, src, mb, func(e mail.Envelope, sum [32]byte, n int64) {
			r.SrcCount++
			r.SrcBytes += n
			if have[sum] > 0 {
				have[sum]--
				return
			}
			r.Missing = append(r.Missing, e)
		})
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		rep.Missing += len(r.Missing)
		rep.Mailboxes = append(rep.Mailboxes, r)
	}
	sort.Slice(rep.Mailboxes, func(i, j int) bool { return rep.Mailboxes[i].Mailbox < rep.Mailboxes[j].Mailbox })
	return rep, nil
}

// eachBody lists mailbox and hashes every message in it.
func eachBody(ctx context.Context, s mail.Source, mailbox string, fn func(mail.Envelope, [32]byte, int64)) error {
	var envs []mail.Envelope
	if err := s.List(ctx, mailbox, func(e mail.Envelope) error { envs = append(envs, e); return nil }); err != nil {
		return fmt.Errorf("list %q: %w", mailbox, err)
	}
	for _, e := range envs {
		rc, err := s.Open(ctx, e)
		if err != nil {
			return fmt.Errorf("open %s %s: %w", mailbox, e.ID, err)
		}
		h := sha256.New()
		n, err := io.Copy(&lfWriter{w: h}, rc)
		_ = rc.Close()
		if err != nil {
			return fmt.Errorf("read %s %s: %w", mailbox, e.ID, err)
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		fn(e, sum, n)
	}
	return nil
}

// lfWriter passes bytes on with every CR that precedes an LF dropped, and a
// trailing newline made optional, so CRLF and LF copies of a message and a
// copy with an added final newline hash alike.
type lfWriter struct {
	w       io.Writer
	cr      bool // a CR is held back: it is dropped if an LF follows
	pending int  // trailing LFs held back
}

func (l *lfWriter) Write(p []byte) (int, error) {
	var out bytes.Buffer
	for _, b := range p {
		if l.cr {
			l.cr = false
			if b != '\n' {
				l.flushLF(&out)
				out.WriteByte('\r')
			}
		}
		switch b {
		case '\r':
			l.cr = true
		case '\n':
			l.pending++
		default:
			l.flushLF(&out)
			out.WriteByte(b)
		}
	}
	if _, err := l.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (l *lfWriter) flushLF(out *bytes.Buffer) {
	for ; l.pending > 0; l.pending-- {
		out.WriteByte('\n')
	}
}
