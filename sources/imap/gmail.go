package imap

// This file is the Gmail preset (issue 4). Gmail shows each label as a
// folder, so a message labelled INBOX and Work is listed in INBOX, in Work
// and in "[Gmail]/All Mail" (\All), three times over. Gmail's IMAP extension
// X-GM-EXT-1 gives every message an X-GM-MSGID, the same in every folder:
// Gmail wraps the Source so that each X-GM-MSGID is listed in one folder
// only, its owner.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sync/mail"
)

// GmailCap is the capability of Gmail's IMAP extensions (X-GM-MSGID,
// X-GM-LABELS, X-GM-THRID).
const GmailCap = "X-GM-EXT-1"

// PresetGmail names the Gmail preset among the scheme's presets
// (mail.Factory.Presets): see GmailPreset.
const PresetGmail = "gmail"

// DetectGmail reports whether src is a source of this package on a server
// that announces GmailCap; any other source, or a failure to ask, is not.
func DetectGmail(ctx context.Context, src mail.Source) bool {
	s, ok := src.(*Source)
	if !ok {
		return false
	}
	gm, err := s.IsGmail(ctx)
	return err == nil && gm
}

// ErrNotIMAP is what GmailPreset returns for a source this package did not
// open.
var ErrNotIMAP = errors.New("imap: not an IMAP source")

// GmailPreset wraps src, a source this package opened, in a Gmail (see
// NewGmail); any other source gives ErrNotIMAP.
func GmailPreset(ctx context.Context, src mail.Source, o *GmailOptions) (*Gmail, error) {
	s, ok := src.(*Source)
	if !ok {
		return nil, ErrNotIMAP
	}
	return NewGmail(ctx, s, o)
}

// IsGmail reports whether the server announces GmailCap.
func (s *Source) IsGmail(ctx context.Context) (bool, error) {
	if s.raw.on { // New's raw login read the capabilities: no control connection for them
		return s.raw.gmail, nil
	}
	cn, done, err := s.control(ctx)
	if err != nil {
		return false, err
	}
	stop := watch(ctx, cn)
	has := cn.c.Caps().Has(imap.Cap(GmailCap))
	done(stop())
	if ctx.Err() != nil {
		return false, fmt.Errorf("imap: capability %s: %w", s.cfg.Ident(), ctx.Err())
	}
	return has, nil
}

// GmailOptions tune the Gmail preset. The zero value (or nil) considers
// every folder and keeps no state between runs.
type GmailOptions struct {
	// Folders, when set, is the run's folder selection (--include,
	// --exclude): only folders it accepts compete for a message, so a
	// message is never left out of a selected folder on account of one
	// that is not copied.
	Folders func(name string) bool
	// Keep, when set, says which Spam (\Junk) and Trash (\Trash) folders are
	// copied anyway; by default they are left out.
	Keep func(name string) bool
	// Copied, when set, reports whether an earlier run copied message id of
	// mailbox (the checkpoint): that folder stays the message's owner even
	// after its labels changed, so a label added later copies nothing.
	Copied func(mailbox string, id mail.ID) bool
}

// Gmail is the Gmail preset: a mail.Source over a Gmail account that lists
// each message (by X-GM-MSGID) in exactly one folder, its owner. The owner
// is the first folder holding the message in this order:
//
//  1. INBOX;
//  2. user labels, by name;
//  3. Sent (\Sent), then Drafts (\Drafts);
//  4. All Mail (\All), which so keeps only archived mail without labels;
//  5. Spam (\Junk) and Trash (\Trash), when kept (GmailOptions.Keep). Gmail
//     keeps their messages out of All Mail and labels, so they never compete.
//
// A folder that an earlier run copied the message from (GmailOptions.Copied)
// comes before all of these. Starred (\Flagged) and Important (\Important)
// are views of All Mail: they are not listed (a starred message keeps its
// \Flagged flag). The order depends only on folder names and roles, so
// reruns list the same messages under the same IDs and copy nothing twice.
//
// Messages are identified by X-GM-MSGID alone, never by Message-ID, so
// different messages sharing a Message-ID are all listed. A message whose
// X-GM-MSGID is unknown (it arrived during the run) is listed wherever it
// is: at worst copied twice, never left out.
//
// Gmail is safe for concurrent use. It is not a mail.Remover: on Gmail,
// expunging from a label folder only drops the label.
type Gmail struct {
	s   *Source
	opt GmailOptions

	// raw is the connection for X-GM-MSGID; Close may break it at any
	// time, which fails the command in flight.
	raw atomic.Pointer[imapconn.RawConn]

	mu     sync.Mutex // guards what follows and serialises the use of raw
	tag    int
	order  []string          // competing folders, owner order
	rank   map[string]int    // index in order
	roles  map[string]string // every listed folder's special-use role
	owners gmailOwners       // nil until the first List scans
}

// ownerSticky marks an owner found in the checkpoint.
const ownerSticky = 1 << 31

var (
	_ mail.Source      = (*Gmail)(nil)
	_ mail.Featurer    = (*Gmail)(nil)
	_ mail.BatchOpener = (*Gmail)(nil)
	_ mail.RoleLister  = (*Gmail)(nil)
)

// Features passes the Source's capabilities through, but for those that
// Gmail changes: it is no Remover (expunging from a label folder only
// drops the label), no Statter (a folder's count would include the
// messages Gmail lists in another folder), and no FolderStatuser or
// ChangeLister (the Source's change listing knows nothing of the owner
// folders, so it would pass messages Gmail's List leaves out).
func (g *Gmail) Features() *mail.Features {
	f := mail.Wrap(g, g.s)
	f.Remover, f.Statter, f.FolderStatuser, f.ChangeLister = nil, nil, nil, nil
	return f
}

// NewGmail wraps s, which must be a Gmail account: a server without
// GmailCap gives an error wrapping mail.ErrConfig. o may be nil. Closing
// the Gmail closes s.
func NewGmail(ctx context.Context, s *Source, o *GmailOptions) (*Gmail, error) {
	ok, err := s.IsGmail(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("imap: %s: the server does not announce %s, so it is not Gmail", s.cfg.Ident(), GmailCap),
			Hint: "drop --gmail"}
	}
	g := &Gmail{s: s}
	if o != nil {
		g.opt = *o
	}
	return g, nil
}

// gmailRank orders the competing folders (see Gmail); -1 leaves a folder
// out, and a large rank keeps a folder out of the competition.
func gmailRank(name, role string, keep bool) int {
	switch {
	case name == "INBOX":
		return 0
	case role == "":
		return 1
	case role == mail.RoleSent:
		return 2
	case role == mail.RoleDrafts:
		return 3
	case role == mail.RoleAll || role == mail.RoleArchive:
		return 4
	case (role == mail.RoleJunk || role == mail.RoleTrash) && keep:
		return 5
	default: // \Flagged, \Important, an unkept Spam or Trash
		return -1
	}
}

// Mailboxes lists the folders the preset copies, sorted: the source's,
// without Starred, Important, and Spam and Trash unless kept.
func (g *Gmail) Mailboxes(ctx context.Context) ([]string, error) {
	boxes, err := g.s.Mailboxes(ctx)
	if err != nil {
		return nil, err
	}
	roles, err := g.attrs(ctx)
	if err != nil {
		return nil, err
	}
	type ranked struct {
		name string
		rank int
	}
	var rs []ranked
	var out []string
	for _, name := range boxes {
		keep := g.opt.Keep != nil && g.opt.Keep(name)
		r := gmailRank(name, roles[name], keep)
		if r < 0 {
			g.s.log.Info("gmail: folder left out: it is a view of All Mail, or Spam or Trash (see mailferry help gmail)", "mailbox", name)
			continue
		}
		out = append(out, name)
		if g.opt.Folders == nil || g.opt.Folders(name) {
			rs = append(rs, ranked{name, r})
		}
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].rank < rs[j].rank })
	order := make([]string, len(rs))
	rank := make(map[string]int, len(rs))
	for i, r := range rs {
		order[i], rank[r.name] = r.name, i
	}
	g.mu.Lock()
	if g.owners == nil || !equalStrings(order, g.order) {
		g.order, g.rank, g.roles, g.owners = order, rank, roles, nil
	}
	g.mu.Unlock()
	g.s.log.Info("gmail: each message is copied once, from the first of these folders holding it", "order", strings.Join(order, ", "))
	return out, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// attrs returns the special-use role of each folder, including
// \Important, which MailboxRoles does not report (it is RFC 8457's, not a
// destination role).
func (g *Gmail) attrs(ctx context.Context) (map[string]string, error) {
	roles, err := g.s.MailboxRoles(ctx)
	if err != nil {
		return nil, err
	}
	cn, done, err := g.s.control(ctx)
	if err != nil {
		return nil, err
	}
	stop := watch(ctx, cn)
	lc := cn.c.List("", "*", nil)
	for d := lc.Next(); d != nil; d = lc.Next() {
		if hasAttr(d.Attrs, imap.MailboxAttrImportant) {
			name, _ := utf8Name(d.Mailbox, d.Delim)
			roles[normInbox(name)] = string(imap.MailboxAttrImportant)
		}
	}
	err = lc.Close()
	ok := stop()
	if err != nil || !ok {
		if err == nil {
			err = errors.New("connection closed")
		}
		keep, err := g.s.wrap(ctx, "list "+g.s.cfg.Ident(), err)
		done(keep && ok)
		return nil, err
	}
	done(true)
	return roles, nil
}

// List lists the messages of mailbox that it owns (see Gmail).
func (g *Gmail) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	mailbox = normInbox(mailbox)
	g.mu.Lock()
	ready := g.order != nil
	g.mu.Unlock()
	if !ready {
		if _, err := g.Mailboxes(ctx); err != nil {
			return err
		}
	}
	g.mu.Lock()
	rank, competes := g.rank[mailbox]
	if !competes {
		g.mu.Unlock()
		// Spam or Trash kept but not selected, or a folder created since:
		// nobody else claims its messages.
		return g.s.List(ctx, mailbox, fn)
	}
	var err error
	if g.owners == nil {
		err = g.scan(ctx)
	}
	var uidv uint32
	var ids map[imap.UID]uint64
	if err == nil {
		uidv, ids, err = g.msgIDs(ctx, mailbox, nil)
	}
	owners := g.owners // never changed once built, only replaced
	g.mu.Unlock()
	if err != nil {
		return err
	}
	// fn may block for long (the engine's queue is full): no lock is held.
	left := 0
	err = g.s.List(ctx, mailbox, func(e mail.Envelope) error {
		v, uid, ok := parseID(e.ID)
		if gm, known := ids[uid]; ok && known && v == uidv {
			if owner, owned := owners.owner(gm); owned && owner != rank {
				left++
				return nil
			}
		}
		return fn(e)
	})
	if err == nil && left > 0 {
		g.s.log.Info("gmail: messages left out: they are copied from another folder", "mailbox", mailbox, "messages", left)
	}
	return err
}

// scan reads the X-GM-MSGID of every message of every competing folder and
// picks each one's owner. Memory: one map entry per distinct message.
func (g *Gmail) scan(ctx context.Context) error {
	owners := gmailOwners{}
	for rank, name := range g.order {
		_, _, err := g.msgIDs(ctx, name, func(id mail.ID, gm uint64) {
			owners.meet(gm, rank, g.opt.Copied != nil && g.opt.Copied(name, id))
		})
		if errors.Is(err, mail.ErrMailboxNotFound) {
			continue // deleted since LIST: it holds nothing to compete with
		}
		if err != nil {
			return err
		}
	}
	g.owners = owners
	return nil
}

// gmailOwners maps X-GM-MSGID to the rank of the folder owning the message,
// with ownerSticky set when the checkpoint named that folder.
type gmailOwners map[uint64]uint32

// meet records that the folder of rank holds message gm; sticky says an
// earlier run copied it from there. Folders must be met in rank order.
func (o gmailOwners) meet(gm uint64, rank int, sticky bool) {
	cur, seen := o[gm]
	switch {
	case !seen:
	case sticky && cur&ownerSticky == 0:
		// An earlier run copied it from here (its labels changed since).
	default:
		return
	}
	o[gm] = uint32(rank)
	if sticky {
		o[gm] |= ownerSticky
	}
}

// owner returns the rank of the folder owning gm.
func (o gmailOwners) owner(gm uint64) (int, bool) {
	r, ok := o[gm]
	return int(r &^ ownerSticky), ok
}

// msgIDs EXAMINEs mailbox on the raw connection and reads its messages'
// X-GM-MSGIDs with UID FETCH 1:* (UID X-GM-MSGID), which imapclient cannot
// ask for. With each nil, it returns them by UID; otherwise it calls each
// with the message's ID and returns no map. Called with g.mu held.
func (g *Gmail) msgIDs(ctx context.Context, mailbox string, each func(mail.ID, uint64)) (uint32, map[imap.UID]uint64, error) {
	op := fmt.Sprintf("fetch X-GM-MSGID %q", mailbox)
	box, err := g.s.serverName(ctx, mailbox)
	if err != nil {
		return 0, nil, err
	}
	rc := g.raw.Load()
	if rc == nil {
		if g.s.isClosed() {
			return 0, nil, fmt.Errorf("imap: %s: %w", op, mail.ErrClosed)
		}
		if rc, err = imapconn.DialRaw(ctx, g.s.cfg, &g.s.o); err != nil {
			return 0, nil, err
		}
		g.raw.Store(rc)
		if g.s.isClosed() { // Close ran meanwhile and missed it
			g.raw.CompareAndSwap(rc, nil)
			_ = rc.Close()
			return 0, nil, fmt.Errorf("imap: %s: %w", op, mail.ErrClosed)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = rc.Close() })
	uidv, ids, err := g.rawMsgIDs(rc, box, each)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil && !errors.Is(err, mail.ErrMailboxNotFound) {
		_ = rc.Close()
		g.raw.CompareAndSwap(rc, nil)
		if g.s.isClosed() {
			return 0, nil, fmt.Errorf("imap: %s: %w", op, mail.ErrClosed)
		}
		if ctx.Err() != nil {
			return 0, nil, fmt.Errorf("imap: %s: %w", op, ctx.Err())
		}
		return 0, nil, mail.Temp(fmt.Errorf("imap: %s: %w", op, err))
	}
	if err != nil {
		return 0, nil, fmt.Errorf("imap: %s: %w", op, err)
	}
	return uidv, ids, nil
}

func (g *Gmail) rawMsgIDs(rc *imapconn.RawConn, box string, each func(mail.ID, uint64)) (uint32, map[imap.UID]uint64, error) {
	var uidv, exists uint32
	err := g.command(rc, "EXAMINE "+imapconn.Quote(imapconn.EncodeMUTF7(box)), func(line string) error {
		if v, ok := respCode(line, "UIDVALIDITY"); ok {
			uidv = v
		}
		if n, ok := existsCount(line); ok {
			exists = n
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	var ids map[imap.UID]uint64
	if each == nil {
		ids = make(map[imap.UID]uint64, exists)
	}
	if exists == 0 {
		return uidv, ids, nil // "1:*" in an empty mailbox is an error on some servers
	}
	err = g.command(rc, "UID FETCH 1:* (UID X-GM-MSGID)", func(line string) error {
		uid, gm, ok := parseGmailFetch(line)
		if !ok {
			return nil // an unsolicited FLAGS update, say
		}
		if each != nil {
			each(makeID(uidv, uid), gm)
		} else {
			ids[uid] = gm
		}
		return nil
	})
	return uidv, ids, err
}

// command sends one tagged command and hands each untagged response line
// (literals skipped) to fn; it returns an error unless the server answered
// OK. A NO to EXAMINE wraps mail.ErrMailboxNotFound.
func (g *Gmail) command(rc *imapconn.RawConn, cmd string, fn func(string) error) error {
	g.tag++
	tag := "G" + strconv.Itoa(g.tag)
	if _, err := io.WriteString(rc.Conn, tag+" "+cmd+"\r\n"); err != nil {
		return err
	}
	for {
		line, err := rc.ReadResponse(gmailLiteralMax)
		if err != nil {
			return err
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			kind, text := imapconn.SplitStatus(rest)
			switch {
			case kind == "OK":
				return nil
			case kind == "NO" && strings.HasPrefix(cmd, "EXAMINE "):
				return fmt.Errorf("%s: %w", imapconn.Clip(text, 200), mail.ErrMailboxNotFound)
			default:
				return fmt.Errorf("%s %s", kind, imapconn.Clip(text, 200))
			}
		}
		if strings.HasPrefix(line, "* BYE") {
			return fmt.Errorf("server closed the connection: %s", imapconn.Clip(line, 200))
		}
		if strings.HasPrefix(line, "* ") {
			if err := fn(line); err != nil {
				return err
			}
		}
	}
}

// gmailLiteralMax caps a literal in an EXAMINE or X-GM-MSGID FETCH response,
// which has none from Gmail: a label or a mailbox name at most.
const gmailLiteralMax = 1 << 20

// respCode reads a numeric response code such as "* OK [UIDVALIDITY 3]".
func respCode(line, code string) (uint32, bool) {
	i := strings.Index(strings.ToUpper(line), "["+code+" ")
	if i < 0 {
		return 0, false
	}
	rest := line[i+len(code)+2:]
	end := strings.IndexByte(rest, ']')
	if end < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(rest[:end]), 10, 32)
	return uint32(n), err == nil
}

// existsCount reads "* n EXISTS".
func existsCount(line string) (uint32, bool) {
	f := strings.Fields(line)
	if len(f) != 3 || !strings.EqualFold(f[2], "EXISTS") {
		return 0, false
	}
	n, err := strconv.ParseUint(f[1], 10, 32)
	return uint32(n), err == nil
}

// parseGmailFetch reads "* n FETCH (UID u X-GM-MSGID m)", in any item
// order, among other items.
func parseGmailFetch(line string) (imap.UID, uint64, bool) {
	f := strings.Fields(strings.NewReplacer("(", " ", ")", " ").Replace(line))
	if len(f) < 3 || !strings.EqualFold(f[2], "FETCH") {
		return 0, 0, false
	}
	var uid uint64
	var gm uint64
	var haveUID, haveGM bool
	for i := 3; i+1 < len(f); i++ {
		switch strings.ToUpper(f[i]) {
		case "UID":
			n, err := strconv.ParseUint(f[i+1], 10, 32)
			haveUID = err == nil && n > 0
			uid = n
			i++
		case "X-GM-MSGID":
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			haveGM = err == nil
			gm = n
			i++
		}
	}
	return imap.UID(uid), gm, haveUID && haveGM
}

// Open streams one message (Source.Open).
func (g *Gmail) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	return g.s.Open(ctx, env)
}

// OpenBatch streams messages of one mailbox (Source.OpenBatch).
func (g *Gmail) OpenBatch(ctx context.Context, envs []mail.Envelope, fn func(mail.Envelope, io.Reader) error) error {
	return g.s.OpenBatch(ctx, envs, fn)
}

// MailboxRoles reports the source's special-use roles (Source.MailboxRoles).
func (g *Gmail) MailboxRoles(ctx context.Context) (map[string]string, error) {
	return g.s.MailboxRoles(ctx)
}

// Limits are the Source's.
func (g *Gmail) Limits() mail.Limits { return g.s.Limits() }

// Close closes the raw connection and the Source. It is idempotent.
func (g *Gmail) Close() error {
	err := g.s.Close()
	if rc := g.raw.Swap(nil); rc != nil {
		_ = rc.Close()
	}
	return err
}
