package pop3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

var _ mail.HeaderFetcher = (*Source)(nil)

// maxHeader bounds one TOP response: a header section longer than 1 MiB is
// a hostile server's (docs/failure-model.md rule 7). Only its first
// mail.HeaderScanLimit bytes are kept.
const maxHeader = 1 << 20

// topBatch is the most TOP commands written at once when pipelining.
const topBatch = 64

// MessageIDs reads the header section of each message ids names, without
// its body (RFC 1939 §7 TOP msg 0), pipelined when the server allows it, and
// returns each message's Message-ID as mail.HeaderScanner finds it ("" for
// none): the same value the engine finds in the body when it copies the
// message. The engine uses it once when the server regenerated its UIDLs
// (docs/failure-model.md C3), to match the maildrop with what it copied before
// by Message-ID and size instead of retrieving every message again.
//
// A UIDL not in the maildrop, or passed to Remove, gives mail.ErrNotFound
// and nothing is sent. A server whose CAPA does not list TOP, or that
// refuses TOP for every message, gives mail.ErrUnsupported; one that
// refuses only some gives an error naming them. A header longer than 1 MiB
// or with a line over MaxLine ends the session with an error wrapping
// mail.ErrTooLarge. Like Open, it makes a body still being read fail.
// On a server that hides what was retrieved (see Unstored) a message whose
// header was read counts as retrieved.
func (s *Source) MessageIDs(ctx context.Context, mailbox string, ids []mail.ID) (map[mail.ID]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pop3: top: %w", err)
	}
	if !isInbox(mailbox) {
		return nil, fmt.Errorf("pop3: top %q: a maildrop has only INBOX: %w", mailbox, mail.ErrMailboxNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("pop3: top: %w", mail.ErrClosed)
	}
	ss, err := s.session(ctx)
	if err != nil {
		return nil, err
	}
	if ss.caps != nil && !ss.caps["TOP"] {
		return nil, fmt.Errorf("pop3: top %s: CAPA does not list TOP: %w", s.cfg.ident(), mail.ErrUnsupported)
	}
	stop := ss.watch(ctx)
	defer stop()
	if err := s.settle(ctx, ss); err != nil {
		return nil, err
	}
	if err := s.load(ctx, ss); err != nil {
		return nil, err
	}
	cmds := make([]command, len(ids))
	for i, id := range ids {
		idx, ok := ss.byID[id]
		if !ok || s.removals[id] {
			return nil, fmt.Errorf("pop3: top %s: not in the maildrop: %w", id, mail.ErrNotFound)
		}
		cmds[i] = command{line: "TOP " + strconv.Itoa(ss.list[idx].num) + " 0", op: "top " + string(id), sent: func() { s.noteRetr(id) }}
	}
	out := make(map[mail.ID]string, len(ids))
	var refused []string
	temp := false
	err = ss.pipeline(ctx, cmds, topBatch, func(i int, ok bool, text string) error {
		if !ok {
			refused = append(refused, fmt.Sprintf("%s: %s", ids[i], clip(text)))
			temp = temp || strings.Contains(strings.ToUpper(text), "[SYS/TEMP]") // RFC 3206 §4
			return nil
		}
		id, err := readMessageID(ss)
		if errors.Is(err, mail.ErrTooLarge) {
			return ss.kill(fmt.Errorf("pop3: %s: %w", cmds[i].op, err))
		} else if err != nil {
			return ss.ioErr(ctx, cmds[i].op, err)
		}
		out[ids[i]] = id
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.topResult(out, refused, len(ids), temp)
}

// readMessageID reads a TOP response's header section and returns its
// Message-ID.
func readMessageID(ss *session) (string, error) {
	sc := mail.NewHeaderScanner(&headerCap{r: newDotReader(ss.br)})
	_, err := io.Copy(io.Discard, sc)
	return sc.MessageID(), err
}

// topResult is MessageIDs' answer once every response was read: out, or an
// error naming the refused messages.
func (s *Source) topResult(out map[mail.ID]string, refused []string, asked int, temp bool) (map[mail.ID]string, error) {
	switch {
	case len(refused) == 0:
		s.log.Debug("pop3: read headers", "size", len(out))
		return out, nil
	case temp:
		return nil, mail.Temp(fmt.Errorf("pop3: top %s: server refused %d of %d: %s", s.cfg.ident(), len(refused), asked, strings.Join(refused, "; ")))
	case len(out) == 0:
		return nil, fmt.Errorf("pop3: top %s: server refused every TOP (%s): %w", s.cfg.ident(), refused[0], mail.ErrUnsupported)
	}
	return nil, fmt.Errorf("pop3: top %s: server refused %d of %d: %s", s.cfg.ident(), len(refused), asked, strings.Join(refused, "; "))
}

// headerCap fails a TOP response longer than maxHeader.
type headerCap struct {
	r io.Reader
	n int64
}

func (h *headerCap) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += int64(n)
	if h.n > maxHeader {
		return n, fmt.Errorf("header longer than %d bytes: %w", maxHeader, mail.ErrTooLarge)
	}
	return n, err
}
