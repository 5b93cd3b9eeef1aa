package pop3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// loadListing runs UIDL and LIST and merges them. The session must be idle.
// UIDLs are checked strictly (docs/failure-model.md rule 6): a malformed,
// invalid or duplicate one is an error naming the message, never a silent
// skip.
//
// A server without UIDL is refused with a *NoUIDLError, unless byContent:
// then every message is retrieved once and identified by a SHA-256 of its
// content (listByContent).
func (ss *session) loadListing(ctx context.Context, byContent bool) error {
	if ss.listed {
		return nil
	}
	lines, ok, text, err := ss.listing(ctx, "uidl", "UIDL")
	if err != nil {
		return err
	}
	if !ok {
		return ss.noUIDL(ctx, byContent, text)
	}
	uidls, err := parseUIDL(lines)
	if err != nil {
		return fmt.Errorf("pop3: uidl %s: %w", ss.cfg.ident(), err)
	}
	sizes, err := ss.scanListing(ctx)
	if err != nil {
		return err
	}
	if len(sizes) != len(uidls) {
		return fmt.Errorf("pop3: list %s: UIDL names %d messages, LIST %d", ss.cfg.ident(), len(uidls), len(sizes))
	}
	ss.list = ss.list[:0]
	for _, u := range uidls {
		size, ok := sizes[u.num]
		if !ok {
			return fmt.Errorf("pop3: list %s: message %d is in UIDL but not in LIST", ss.cfg.ident(), u.num)
		}
		ss.byID[u.uidl] = len(ss.list)
		ss.list = append(ss.list, entry{num: u.num, uidl: u.uidl, size: size})
	}
	ss.listed = true
	return nil
}

// noUIDL handles a -ERR to UIDL (text): a *NoUIDLError, or with byContent
// the listing by content.
func (ss *session) noUIDL(ctx context.Context, byContent bool, text string) error {
	capaNote := "CAPA does not list UIDL"
	if ss.caps == nil {
		capaNote = "no CAPA"
	} else if ss.caps["UIDL"] {
		capaNote = "although CAPA lists UIDL"
	}
	if !byContent {
		return &NoUIDLError{Account: ss.cfg.ident(), Reason: fmt.Sprintf("%s; it says %q", capaNote, clip(text))}
	}
	ss.log.Warn("pop3: server without UIDL: identifying messages by content, which retrieves each one an extra time", "err", capaNote)
	sizes, err := ss.scanListing(ctx)
	if err != nil {
		return err
	}
	return ss.listByContent(ctx, sizes)
}

// scanListing runs LIST (RFC 1939 §5) and returns message number -> size.
func (ss *session) scanListing(ctx context.Context) (map[int]int64, error) {
	lines, ok, text, err := ss.listing(ctx, "list", "LIST")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("pop3: list %s: server says %q", ss.cfg.ident(), clip(text))
	}
	sizes, err := parseLIST(lines)
	if err != nil {
		return nil, fmt.Errorf("pop3: list %s: %w", ss.cfg.ident(), err)
	}
	return sizes, nil
}

// contentIDPrefix starts the IDs of messages listed by content.
const contentIDPrefix = "sha256-"

// listByContent identifies the messages of a server without UIDL by the
// SHA-256 of their content as RETR serves it (un-dot-stuffed), retrieving
// each once, pipelined when the server allows it; memory stays one read
// buffer. The ID is the same in every session for as long as the server
// serves the same bytes, so a message copied and recorded, but not deleted
// because the session broke before QUIT, is recognised and deleted by the
// next run instead of being stored twice. Two different messages never
// share an ID. Byte-identical copies do: they are listed once, as one
// message, and DELE removes them all (their content is the same, so one
// stored copy keeps all of it).
func (ss *session) listByContent(ctx context.Context, sizes map[int]int64) error {
	nums := make([]int, 0, len(sizes))
	for n := range sizes {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	cmds := make([]command, len(nums))
	for i, n := range nums {
		cmds[i] = command{line: "RETR " + strconv.Itoa(n), op: "retr (message " + strconv.Itoa(n) + ")"}
	}
	ss.list = ss.list[:0]
	ss.byContent = true
	err := ss.pipeline(ctx, cmds, maxAhead, func(i int, ok bool, text string) error {
		op := cmds[i].op
		if !ok {
			// The maildrop is locked: a message LIST just named cannot
			// go away. Better stop than mis-number the rest.
			return ss.kill(fmt.Errorf("pop3: %s %s: server says %q", op, ss.cfg.ident(), clip(text)))
		}
		h := sha256.New()
		if _, err := io.Copy(h, newDotReader(ss.br)); err != nil {
			if errors.Is(err, mail.ErrTooLarge) {
				return ss.kill(fmt.Errorf("pop3: %s: %w", op, err))
			}
			return ss.ioErr(ctx, op, err)
		}
		ss.addByContent(entry{num: nums[i], uidl: mail.ID(contentIDPrefix + hex.EncodeToString(h.Sum(nil))), size: sizes[nums[i]]})
		return nil
	})
	if err != nil {
		return err
	}
	ss.listed = true
	return nil
}

// addByContent appends e to the listing, as a twin when an earlier message
// has the same content.
func (ss *session) addByContent(e entry) {
	if _, dup := ss.byID[e.uidl]; dup {
		e.twin = true
		ss.twins[e.uidl] = append(ss.twins[e.uidl], len(ss.list))
	} else {
		ss.byID[e.uidl] = len(ss.list)
	}
	ss.list = append(ss.list, e)
}

// NoUIDLError is what List returns for a server without UIDL (RFC 1939 §7)
// when the messages are to stay on the server: without unique ids a later
// run cannot tell which messages it already copied. It wraps
// mail.ErrUnsupported and mail.ErrConfig (the CLI exits 2: the remedy is
// another command line).
type NoUIDLError struct {
	// Account is user@host.
	Account string
	// Reason says how the server showed it has no UIDL.
	Reason string
}

func (e *NoUIDLError) Error() string {
	return fmt.Sprintf("pop3: uidl %s: the server does not support UIDL (%s): without unique ids (RFC 1939 §7) messages left on the server cannot be told apart from one run to the next, so leaving them there is refused; "+
		"instead copy with --delete-source (each message is then identified by a SHA-256 of its content and deleted once stored), or copy over IMAP if the server offers it", e.Account, e.Reason)
}

// Unwrap returns mail.ErrUnsupported and mail.ErrConfig.
func (e *NoUIDLError) Unwrap() []error { return []error{mail.ErrUnsupported, mail.ErrConfig} }

// parseUIDL parses a unique-id listing (RFC 1939 §7: "msg SP uid" lines),
// sorted by message number, and checks every UIDL: 1-70 characters from
// 0x21 to 0x7E, unique within the maildrop.
func parseUIDL(lines []string) ([]entry, error) {
	var out []entry
	seen := map[mail.ID]int{}
	nums := map[int]bool{}
	for _, line := range lines {
		n, rest, ok := strings.Cut(line, " ")
		num, err := strconv.Atoi(n)
		if !ok || err != nil || num < 1 {
			return nil, fmt.Errorf("line %q is not \"msg uid\" (RFC 1939 §7)", clip(line))
		}
		if nums[num] {
			return nil, fmt.Errorf("message %d listed twice", num)
		}
		nums[num] = true
		if !validUIDL(rest) {
			return nil, fmt.Errorf("message %d has an invalid UIDL %q (RFC 1939 §7 wants 1 to 70 characters from 0x21 to 0x7E)", num, clip(rest))
		}
		id := mail.ID(rest)
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("messages %d and %d share the UIDL %q: the server's unique ids are not unique (RFC 1939 §7), refusing to copy either", prev, num, rest)
		}
		seen[id] = num
		out = append(out, entry{num: num, uidl: id})
	}
	sortEntries(out)
	return out, nil
}

func sortEntries(es []entry) { sort.Slice(es, func(i, j int) bool { return es[i].num < es[j].num }) }

// validUIDL reports whether s is a legal unique-id (RFC 1939 §7).
func validUIDL(s string) bool {
	if len(s) < 1 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// parseLIST parses a scan listing (RFC 1939 §5: "msg SP octets" lines,
// extra fields tolerated) into message number -> size.
func parseLIST(lines []string) (map[int]int64, error) {
	out := map[int]int64{}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %q is not \"msg octets\" (RFC 1939 §5)", clip(line))
		}
		num, err1 := strconv.Atoi(f[0])
		size, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || num < 1 || size < 0 {
			return nil, fmt.Errorf("line %q is not \"msg octets\" (RFC 1939 §5)", clip(line))
		}
		if _, dup := out[num]; dup {
			return nil, fmt.Errorf("message %d listed twice", num)
		}
		out[num] = size
	}
	return out, nil
}

// parseSTAT parses the text after +OK to STAT (RFC 1939 §5: "nn mm").
func parseSTAT(text string) (messages int, size int64, err error) {
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("reply %q is not \"count octets\" (RFC 1939 §5)", clip(text))
	}
	messages, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || messages < 0 || size < 0 {
		return 0, 0, fmt.Errorf("reply %q is not \"count octets\" (RFC 1939 §5)", clip(text))
	}
	return messages, size, nil
}
