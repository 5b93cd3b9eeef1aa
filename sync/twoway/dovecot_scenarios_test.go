package twoway

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sinks/imapsink"
	"github.com/mailferry/mailferry/sources/imap"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
	"github.com/mailferry/mailferry/sync/state"
)

// Scenario tests of issue 12's Targets against two Dovecot users, or
// Dovecot + Maildir: what the in-memory tests (run_test.go) check, against
// a real server.

// runDovecots is syncDovecot with options, returning Run's error (e.g.
// ErrHeldBack) to the caller.
func runDovecots(t *testing.T, stores [2]*Store, users [2][2]string, dir string, opt RunOptions) (*Result, error) {
	t.Helper()
	st, err := state.Open(dir, "imaps://"+users[0][0], "imaps://"+users[1][0], state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return Run(context.Background(), stores, st, opt)
}

func tokenRange(from, to int) []int {
	var out []int
	for tok := from; tok <= to; tok++ {
		out = append(out, tok)
	}
	return out
}

// wantSame fails unless both users hold want.
func wantSame(t *testing.T, d *mailtest.Dovecot, users [2][2]string, what string, want map[string]string, res *Result) {
	t.Helper()
	for _, u := range users {
		if got := describeDovecot(t, d, u[0], u[1]); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %s holds %v, want %v (warnings %q)", what, u[0], got, want, res.Warnings)
		}
	}
}

// plainTokens is the content describeDovecot gives for toks without flags.
func plainTokens(toks []int) string {
	parts := make([]string, len(toks))
	for i, tok := range toks {
		parts[i] = strconv.Itoa(tok) + ":" // tokenBody's Subject, no flags
	}
	return sortedJoin(parts)
}

func sortedJoin(parts []string) string {
	s := append([]string(nil), parts...)
	sort.Strings(s) // as describeDovecot sorts
	return strings.Join(s, ",")
}

// expungeTokens expunges toks from mailbox, as another client would, in
// one STORE and one UID EXPUNGE.
func (c client) expungeTokens(mailbox string, toks []int) {
	c.t.Helper()
	if _, err := c.c.Select(mailbox, nil).Wait(); err != nil {
		c.t.Fatal(err)
	}
	var all imapv2.SeqSet
	all.AddRange(1, 0) // 1:*
	msgs, err := c.c.Fetch(all, &imapv2.FetchOptions{UID: true,
		BodySection: []*imapv2.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		c.t.Fatal(err)
	}
	want := map[string]bool{}
	for _, tok := range toks {
		want[string(tokenBody(tok))] = true
	}
	var set imapv2.UIDSet
	for _, m := range msgs {
		for _, b := range m.BodySection {
			if want[string(b.Bytes)] {
				set.AddNum(m.UID)
			}
		}
	}
	if err := c.c.Store(set, &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd, Silent: true, Flags: []imapv2.Flag{imapv2.FlagDeleted}}, nil).Close(); err != nil {
		c.t.Fatal(err)
	}
	if err := c.c.UIDExpunge(set).Close(); err != nil {
		c.t.Fatal(err)
	}
}

// TestDovecotMassDeleteHeldBack: another client expunges 60 % of a
// 50-message folder on B. The guard holds those deletions back (Run returns
// ErrHeldBack, the CLI's exit 10) and does not copy them back to B while
// they wait; --force (Plan.Force) then applies them and both sides agree.
func TestDovecotMassDeleteHeldBack(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	users := twoUsers(t, d)
	all := tokenRange(1, 50)
	d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(all...))
	dir := filepath.Join(t.TempDir(), "state")
	syncDovecot(t, d, users, dir)
	wantSame(t, d, users, "first sync", map[string]string{"INBOX": plainTokens(all)}, &Result{})

	b := client{t, d.Dial(t, users[1][0], users[1][1])}
	b.expungeTokens("INBOX", tokenRange(1, 30))
	left := tokenRange(31, 50)
	stores := func() [2]*Store {
		return [2]*Store{dovecotStore(t, d, users[0][0], users[0][1]), dovecotStore(t, d, users[1][0], users[1][1])}
	}
	res, err := runDovecots(t, stores(), users, dir, RunOptions{})
	if !errors.Is(err, ErrHeldBack) || !res.HeldBack {
		t.Fatalf("sync after 60 %% deleted on B: err %v, held back %v; want ErrHeldBack", err, res.HeldBack)
	}
	if res.Side[A].Held != 30 || res.Side[A].Deleted != 0 || res.Side[B].Copied != 0 {
		t.Fatalf("held-back sync counts %+v, want 30 held on A, nothing deleted or copied back", res.Side)
	}
	if got := describeDovecot(t, d, users[0][0], users[0][1]); got["INBOX"] != plainTokens(all) {
		t.Fatalf("A after the held-back sync holds %v, want all 50", got)
	}
	if got := describeDovecot(t, d, users[1][0], users[1][1]); got["INBOX"] != plainTokens(left) {
		t.Fatalf("B after the held-back sync holds %v, want the 20 left (nothing copied back)", got)
	}

	res, err = runDovecots(t, stores(), users, dir, RunOptions{Plan: Options{Force: true}})
	if err != nil {
		t.Fatalf("forced sync: %v (warnings %q)", err, res.Warnings)
	}
	if res.Side[A].Deleted != 30 {
		t.Errorf("forced sync counts %+v, want 30 deleted on A", res.Side)
	}
	wantSame(t, d, users, "forced sync", map[string]string{"INBOX": plainTokens(left)}, res)
	if res := syncDovecot(t, d, users, dir); res.Side != [2]Counts{} {
		t.Fatalf("a sync right after the forced one did %+v", res.Side)
	}
}

// TestDovecotSameMessagesFirstSync: both accounts already hold the same
// messages (300; 5,000 under MAILFERRY_SOAK=1) before the first sync. Rule
// 8 pairs them all: nothing copied, nothing deleted, and a second sync
// changes nothing.
func TestDovecotSameMessagesFirstSync(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	n := 300
	if os.Getenv("MAILFERRY_SOAK") == "1" {
		n = 5000
	}
	users := twoUsers(t, d)
	all := tokenRange(1, n)
	for _, u := range users {
		d.Seed(t, u[0], u[1], "INBOX", seedTokens(all...))
	}
	dir := filepath.Join(t.TempDir(), "state")
	for _, run := range []string{"first sync", "second sync"} {
		res := syncDovecot(t, d, users, dir)
		if res.Side != [2]Counts{} {
			t.Fatalf("%s did %+v, want nothing", run, res.Side)
		}
		wantSame(t, d, users, run, map[string]string{"INBOX": plainTokens(all)}, res)
	}
}

// TestDovecotStateDeleted: the state is lost between two syncs while both
// sides changed. The next sync merges as a first sync does: the new
// messages are copied, nothing already paired is copied twice, nothing is
// deleted, and flags are the union.
func TestDovecotStateDeleted(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	users := twoUsers(t, d)
	d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(tokenRange(1, 10)...))
	d.Seed(t, users[0][0], users[0][1], "Archive", seedTokens(20, 21, 22))
	d.Seed(t, users[1][0], users[1][1], "INBOX", seedTokens(tokenRange(5, 15)...))
	dir := filepath.Join(t.TempDir(), "state")
	syncDovecot(t, d, users, dir)
	wantSame(t, d, users, "first sync", map[string]string{"INBOX": plainTokens(tokenRange(1, 15)), "Archive": plainTokens([]int{20, 21, 22})}, &Result{})

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	a, b := client{t, d.Dial(t, users[0][0], users[0][1])}, client{t, d.Dial(t, users[1][0], users[1][1])}
	a.store("INBOX", 2, imapv2.StoreFlagsAdd, imapv2.FlagSeen)
	b.store("INBOX", 2, imapv2.StoreFlagsAdd, imapv2.FlagFlagged)
	d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(30))
	d.Seed(t, users[1][0], users[1][1], "Archive", seedTokens(31))
	res := syncDovecot(t, d, users, dir)
	inbox := append(tokenRange(1, 15), 30)
	parts := strings.Split(plainTokens(inbox), ",")
	for i, p := range parts {
		if p == "2:" {
			parts[i] = `2:\Flagged \Seen`
		}
	}
	want := map[string]string{"INBOX": sortedJoin(parts), "Archive": plainTokens([]int{20, 21, 22, 31})}
	wantSame(t, d, users, "sync without state", want, res)
	if res.Side[A].Copied != 1 || res.Side[B].Copied != 1 || res.Side[A].Deleted+res.Side[B].Deleted != 0 {
		t.Errorf("sync without state counts %+v, want one copy each way and no deletion", res.Side)
	}
	if res := syncDovecot(t, d, users, dir); res.Side != [2]Counts{} {
		t.Fatalf("a sync right after did %+v", res.Side)
	}
}

// dovecotStoreVia is dovecotStore connecting through addr (a FaultProxy)
// while keeping the identity of the real server, so that the state
// recognises the account. A connection cut while opening is returned;
// the func closes the store (so do the test's cleanups), so that many runs
// stay under Dovecot's connections per user.
func dovecotStoreVia(t *testing.T, d *mailtest.Dovecot, addr, user, pw string) (*Store, func(), error) {
	t.Helper()
	ctx := context.Background()
	u, err := url.Parse("imaps://" + user + "@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	opt := func() *mail.OpenOptions {
		return &mail.OpenOptions{CAFile: d.CAFile, Password: func(context.Context) (string, error) { return pw, nil }}
	}
	scfg, err := imap.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	src, err := imap.New(ctx, scfg, opt())
	if err != nil {
		return nil, nil, err
	}
	kcfg, err := imapsink.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := imapsink.New(ctx, kcfg, opt())
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	var once sync.Once
	closeFn := func() { once.Do(func() { src.Close(); sink.Close() }) }
	t.Cleanup(closeFn)
	return &Store{Source: src, Sink: sink, Identity: "imap:" + user + "@" + d.IMAPS}, closeFn, nil
}

// TestDovecotConnectionCutDuringListing cuts A's connections (every one,
// so a reconnect does not save the run) at offsets spread over a whole
// session, listing included. A cut listing must not read as deletions
// (rule 5): whatever each run reports, neither side loses a message, and a
// clean sync afterwards deletes nothing and leaves both sides equal.
func TestDovecotConnectionCutDuringListing(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	users := twoUsers(t, d)
	inbox := tokenRange(1, 40)
	d.Seed(t, users[0][0], users[0][1], "INBOX", seedTokens(inbox...))
	d.Seed(t, users[0][0], users[0][1], "Archive", seedTokens(tokenRange(50, 54)...))
	dir := filepath.Join(t.TempDir(), "state")
	syncDovecot(t, d, users, dir)
	want := map[string]string{"INBOX": plainTokens(inbox), "Archive": plainTokens(tokenRange(50, 54))}
	wantSame(t, d, users, "first sync", want, &Result{})

	proxy := mailtest.NewFaultProxy(t, d.IMAPS)
	// run syncs with A through the proxy; a cut while opening A is a
	// failed run that did nothing.
	run := func() (*Result, error) {
		a, closeA, err := dovecotStoreVia(t, d, proxy.Addr, users[0][0], users[0][1])
		if err != nil {
			return &Result{}, err
		}
		defer closeA()
		return runDovecots(t, [2]*Store{a, dovecotStore(t, d, users[1][0], users[1][1])}, users, dir, RunOptions{})
	}
	// A clean run through the proxy measures how many bytes a session of
	// A's sends down, so that the cuts below fall inside it.
	if _, err := run(); err != nil {
		t.Fatal(err)
	}
	var longest int64
	for _, c := range proxy.Conns() {
		longest = max(longest, c.Bytes[mailtest.Down])
	}
	failed := 0
	for i := int64(1); i <= 8; i++ {
		proxy.SetSchedule(mailtest.EveryConn(mailtest.Fault{Action: mailtest.Drop, Dir: mailtest.Down, After: longest * i / 9}))
		res, err := run()
		if err != nil {
			failed++
		}
		if res.Side[A].Deleted+res.Side[B].Deleted != 0 {
			t.Fatalf("cut at %d/9: the run deleted %+v (err %v)", i, res.Side, err)
		}
		proxy.SetSchedule(mailtest.EveryConn(mailtest.Fault{}))
		wantSame(t, d, users, "after a cut run", want, res)
	}
	if failed == 0 {
		t.Fatal("no cut made a run fail: the cuts missed the sessions, the test checked nothing")
	}
	res := syncDovecot(t, d, users, dir)
	if res.Side != [2]Counts{} {
		t.Fatalf("the clean sync after the cuts did %+v", res.Side)
	}
	wantSame(t, d, users, "clean sync after the cuts", want, res)
}

// TestDovecotMaildirFileRenamedDuringScan: a mail client renames Maildir
// files (a flag change: ":2," -> ":2,S") after the sync listed them and
// before it applies, one of them a file whose flags the sync is about to
// change. The rename is not a deletion and not a new message: nothing is
// deleted or copied twice. The flag write on file 1 sees that the name no
// longer says what the listing saw (MaildirFiles.SetFlagsIf) and merges the
// client's \Seen instead of dropping it; the next sync brings file 2's.
func TestDovecotMaildirFileRenamedDuringScan(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "INBOX", seedTokens(tokenRange(1, 5)...))
	base := t.TempDir()
	root, dir := filepath.Join(base, "Maildir"), filepath.Join(base, "state")
	syncOnce := func(opt RunOptions) *Result {
		t.Helper()
		st, err := state.Open(dir, "imaps://"+user, "maildir:"+root, state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		md, done := maildirSide(t, root, filepath.Join(base, "quarantine"))
		defer done()
		res, err := Run(context.Background(), [2]*Store{dovecotStore(t, d, user, pw), md}, st, opt)
		if err != nil {
			t.Fatalf("sync: %v (warnings %q)", err, res.Warnings)
		}
		return res
	}
	syncOnce(RunOptions{})

	a := client{t, d.Dial(t, user, pw)}
	a.store("INBOX", 1, imapv2.StoreFlagsAdd, imapv2.FlagFlagged) // the sync will write F on file 1
	d.Seed(t, user, pw, "INBOX", seedTokens(6))                   // and put a new file
	renamed := false
	rename := func(string) error { // the first durable step comes after the listing
		if renamed {
			return nil
		}
		renamed = true
		for _, tok := range []int{1, 2} {
			old := maildirFile(t, root, tok)
			if err := os.Rename(old, strings.TrimSuffix(old, ":2,")+":2,S"); err != nil {
				return err
			}
		}
		return nil
	}
	res := syncOnce(RunOptions{step: rename})
	if !renamed {
		t.Fatal("the run made no durable step: the rename never happened")
	}
	if res.Side[A].Deleted+res.Side[B].Deleted+res.Side[A].Copied != 0 || res.Side[B].Copied != 1 {
		t.Fatalf("sync with files renamed under it did %+v, want only token 6 copied to the Maildir", res.Side)
	}
	res = syncOnce(RunOptions{})
	want := map[string]string{"INBOX": `1:\Flagged \Seen,2:\Seen,3:,4:,5:,6:`}
	if got := describeDovecot(t, d, user, pw); !reflect.DeepEqual(got, want) {
		t.Fatalf("the server holds %v, want %v (warnings %q)", got, want, res.Warnings)
	}
	got := describeMaildir(t, root)
	for mb, msgs := range got {
		if msgs == "" {
			delete(got, mb) // the server's empty special folders, created on the Maildir side too
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the Maildir holds %v, want %v (warnings %q)", got, want, res.Warnings)
	}
	if res.Side[A].Deleted+res.Side[B].Deleted+res.Side[A].Copied+res.Side[B].Copied != 0 {
		t.Fatalf("the next sync did %+v, want flag changes only", res.Side)
	}
}

// realModel makes random changes, as other mail clients would, on a
// Dovecot account (A) and a Maildir (B), and keeps the truth: what the
// changes imply both sides hold after a sync. One structural change
// (new, delete, move) per message per round, and each flag of a message
// changed by one side only per round, as runModel does, so the truth does
// not depend on the order of the changes.
type realModel struct {
	t       *testing.T
	d       *mailtest.Dovecot
	user    string
	pw      string
	imap    client
	root    string
	rng     *rand.Rand
	truth   map[int]*truthMsg
	tokens  int
	locked  map[int]bool
	touched map[string]bool
	log     []string

	// Folder renames and deletions, as runModel makes them (folderOps).
	changed, left      [2]map[string]bool
	dropped            *droppedFolder
	last               map[int]truthMsg
	renames            int
	removed, recreated int
}

// realModelFlags are the flags both sides store (a Maildir's letters).
var realModelFlags = []mail.Flag{mail.FlagSeen, mail.FlagFlagged, mail.FlagAnswered}

// maildirLetter is f's Maildir info letter.
var maildirLetter = map[mail.Flag]string{mail.FlagSeen: "S", mail.FlagFlagged: "F", mail.FlagAnswered: "R"}

// held is side s's content: folder -> token -> flags.
func (m *realModel) held(s Side) map[string]map[int]flagSet {
	desc := describeDovecot(m.t, m.d, m.user, m.pw)
	if s == B {
		desc = describeMaildir(m.t, m.root)
	}
	out := map[string]map[int]flagSet{}
	for folder, msgs := range desc {
		out[folder] = map[int]flagSet{}
		for _, p := range strings.Split(msgs, ",") {
			if p == "" {
				continue
			}
			tok, flags, _ := strings.Cut(p, ":")
			n, err := strconv.Atoi(tok)
			if err != nil {
				m.t.Fatal(err)
			}
			fs := flagSet{}
			for _, f := range strings.Fields(flags) {
				fs[mail.Flag(f)] = true
			}
			out[folder][n] = fs
		}
	}
	return out
}

// pick returns a random message of side s.
func (m *realModel) pick(s Side) (folder string, tok int, flags flagSet, ok bool) {
	type at struct {
		folder string
		tok    int
	}
	held := m.held(s)
	var all []at
	for _, f := range sortedKeys(held) {
		var toks []int
		for tok := range held[f] {
			toks = append(toks, tok)
		}
		sort.Ints(toks)
		for _, tok := range toks {
			all = append(all, at{f, tok})
		}
	}
	if len(all) == 0 {
		return "", 0, nil, false
	}
	e := all[m.rng.Intn(len(all))]
	return e.folder, e.tok, held[e.folder][e.tok], true
}

// folders are side s's folders, sorted (a Maildir's empty ones included,
// Dovecot's empty special ones left out).
func (m *realModel) folder(s Side) string {
	names := sortedKeys(m.held(s))
	return names[m.rng.Intn(len(names))]
}

// maildirDir is folder's directory in the Maildir.
func (m *realModel) maildirDir(folder string) string {
	if folder == "INBOX" {
		return m.root
	}
	return filepath.Join(m.root, "."+folder)
}

// maildirName is a file name of base with flags (a mail client keeps the
// base, the message's id, and changes the info after ":2,").
func maildirName(base string, flags flagSet) string {
	var letters []string
	for f := range flags {
		letters = append(letters, maildirLetter[f])
	}
	sort.Strings(letters)
	return base + ":2," + strings.Join(letters, "")
}

func (m *realModel) must(err error) {
	m.t.Helper()
	if err != nil {
		m.t.Fatalf("%v (changes this round: %q)", err, m.log)
	}
}

func (m *realModel) opNew(s Side) {
	m.tokens++
	tok, folder := m.tokens, m.folder(s)
	fl := flagSet{}
	for _, f := range realModelFlags {
		if m.rng.Intn(3) == 0 {
			fl[f] = true
		}
	}
	if s == A {
		var imf []imapv2.Flag
		for _, f := range fl.sorted() {
			imf = append(imf, imapv2.Flag(f))
		}
		m.d.Seed(m.t, m.user, m.pw, folder, []mailtest.SeedMessage{{Body: tokenBody(tok), Date: tokenDate(tok), Flags: imf}})
	} else {
		dir := m.maildirDir(folder)
		m.must(os.WriteFile(filepath.Join(dir, "cur", maildirName(fmt.Sprintf("%d.tok", tok), fl)), tokenBody(tok), 0o600))
	}
	m.truth[tok] = &truthMsg{folder: folder, flags: fl}
	m.locked[tok] = true
	m.changed[s][folder] = true
	m.log = append(m.log, fmt.Sprintf("new %d on %s in %s %s", tok, s, folder, fl))
}

func (m *realModel) opFlag(s Side) {
	folder, tok, fl, ok := m.pick(s)
	f := realModelFlags[m.rng.Intn(len(realModelFlags))]
	key := fmt.Sprint(tok, f)
	if !ok || m.touched[key] {
		return
	}
	m.touched[key] = true
	op := imapv2.StoreFlagsAdd
	now := flagSet{}
	for g := range fl {
		now[g] = true
	}
	if fl[f] {
		op = imapv2.StoreFlagsDel
		delete(now, f)
	} else {
		now[f] = true
	}
	if s == A {
		m.imap.store(folder, tok, op, imapv2.Flag(f))
	} else {
		dir := filepath.Join(m.maildirDir(folder), "cur")
		old := maildirFile(m.t, m.maildirDir(folder), tok)
		base, _, _ := strings.Cut(filepath.Base(old), ":2,")
		m.must(os.Rename(old, filepath.Join(dir, maildirName(base, now))))
	}
	if tm := m.truth[tok]; tm != nil { // only f changed: the other side may change other flags
		tm.flags[f] = !fl[f]
		if !tm.flags[f] {
			delete(tm.flags, f)
		}
	}
	m.changed[s][folder] = true
	m.log = append(m.log, fmt.Sprintf("flags of %d on %s: %s", tok, s, now))
}

func (m *realModel) opDelete(s Side) {
	folder, tok, _, ok := m.pick(s)
	if !ok || m.locked[tok] {
		return
	}
	m.locked[tok] = true
	if s == A {
		m.imap.expunge(folder, tok)
	} else {
		m.must(os.Remove(maildirFile(m.t, m.maildirDir(folder), tok)))
	}
	delete(m.truth, tok)
	m.left[s][folder] = true
	m.log = append(m.log, fmt.Sprintf("delete %d on %s", tok, s))
}

func (m *realModel) opMove(s Side) {
	folder, tok, _, ok := m.pick(s)
	to := m.folder(s)
	if !ok || m.locked[tok] || to == folder {
		return
	}
	m.locked[tok] = true
	if s == A {
		m.imap.move(folder, tok, to)
	} else {
		old := maildirFile(m.t, m.maildirDir(folder), tok)
		m.must(os.Rename(old, filepath.Join(m.maildirDir(to), "cur", filepath.Base(old))))
	}
	m.truth[tok].folder = to
	m.left[s][folder], m.changed[s][to] = true, true
	m.log = append(m.log, fmt.Sprintf("move %d on %s from %s to %s", tok, s, folder, to))
}

func (m *realModel) opFolder(s Side) {
	name := fmt.Sprintf("F%d", m.rng.Intn(20))
	if _, exists := m.held(s.Other())[name]; exists {
		return
	}
	if s == A {
		if err := m.imap.c.Create(name, nil).Wait(); err != nil && !strings.Contains(err.Error(), "exists") {
			m.t.Fatal(err)
		}
	} else {
		for _, sub := range []string{"cur", "new", "tmp"} {
			m.must(os.MkdirAll(filepath.Join(m.maildirDir(name), sub), 0o700))
		}
	}
	m.log = append(m.log, fmt.Sprintf("folder %s on %s", name, s))
}

// want is the truth as describeDovecot gives it: the folders that hold
// messages, and INBOX.
func (m *realModel) want() map[string]string {
	parts := map[string][]string{"INBOX": nil}
	for tok, tm := range m.truth {
		parts[tm.folder] = append(parts[tm.folder], strconv.Itoa(tok)+":"+tm.flags.String())
	}
	out := map[string]string{}
	for name, p := range parts {
		sort.Strings(p)
		out[name] = strings.Join(p, ",")
	}
	return out
}

// nonEmpty leaves out the empty folders but INBOX (describeMaildir lists
// them, describeDovecot does not).
func nonEmpty(desc map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range desc {
		if v != "" || k == "INBOX" {
			out[k] = v
		}
	}
	return out
}

// TestDovecotMaildirRandomRounds makes random changes on a Dovecot account
// and a Maildir (new, flag set/clear, delete, move between folders, folder
// create, rename and delete, the latter synced without --remove-folders
// and then with it) and syncs after each round: then both sides hold the
// same messages and flags, and that is what the changes imply. 10 rounds;
// 200 under MAILFERRY_SOAK=1. The seed is logged; MAILFERRY_SEED replays one.
func TestDovecotMaildirRandomRounds(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	rounds := 10
	if os.Getenv("MAILFERRY_SOAK") == "1" {
		rounds = 200
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("MAILFERRY_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (MAILFERRY_SEED=%d replays it)", seed, seed)
	user, pw := d.NewUser(t)
	base := t.TempDir()
	m := &realModel{t: t, d: d, user: user, pw: pw, imap: client{t, d.Dial(t, user, pw)},
		root: filepath.Join(base, "Maildir"), rng: newRand(seed), truth: map[int]*truthMsg{}}
	d.Seed(t, user, pw, "INBOX", seedTokens(tokenRange(1, 8)...))
	d.Seed(t, user, pw, "Archive", seedTokens(tokenRange(9, 12)...))
	for tok := 1; tok <= 12; tok++ {
		m.truth[tok] = &truthMsg{folder: map[bool]string{true: "INBOX", false: "Archive"}[tok <= 8], flags: flagSet{}}
	}
	m.tokens = 12
	dir := filepath.Join(base, "state")
	ops := []func(Side){m.opNew, m.opNew, m.opFlag, m.opFlag, m.opDelete, m.opMove, m.opFolder}
	sync := func(round int, removeFolders bool) *Result {
		st, err := state.Open(dir, "imaps://"+user, "maildir:"+m.root, state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		md, done := maildirSide(t, m.root, filepath.Join(base, "quarantine"))
		// Force: the guard (tested on its own) would hold back a round
		// that deletes much of a small folder.
		a, closeA, err := dovecotStoreVia(t, d, d.IMAPS, user, pw)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), [2]*Store{a, md}, st, RunOptions{Plan: Options{Force: true, RemoveFolders: removeFolders}})
		closeA()
		done()
		st.Close()
		if err != nil {
			t.Fatalf("seed %d round %d: sync: %v (changes %q)", seed, round, err, m.log)
		}
		return res
	}
	for round := 0; round <= rounds; round++ {
		m.locked, m.touched, m.log = map[int]bool{}, map[string]bool{}, nil
		m.changed, m.left, m.dropped = [2]map[string]bool{{}, {}}, [2]map[string]bool{{}, {}}, nil
		if round > 0 { // round 0 is the first sync of the seeded account
			for i := m.rng.Intn(5); i >= 0; i-- {
				ops[m.rng.Intn(len(ops))](Side(m.rng.Intn(2)))
			}
			m.folderOps()
		}
		if m.dropped != nil {
			m.syncDropped(round, func() *Result { return sync(round, false) })
		}
		res := sync(round, true)
		m.last = map[int]truthMsg{}
		for tok, tm := range m.truth {
			m.last[tok] = truthMsg{folder: tm.folder, flags: setOf(tm.flags.sorted())}
		}
		want := m.want()
		if got := nonEmpty(describeDovecot(t, d, user, pw)); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d round %d: the server holds %v, want %v (changes %q, warnings %q)", seed, round, got, want, m.log, res.Warnings)
		}
		if got := nonEmpty(describeMaildir(t, m.root)); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d round %d: the Maildir holds %v, want %v (changes %q, warnings %q)", seed, round, got, want, m.log, res.Warnings)
		}
	}
	t.Logf("folders renamed %d, deleted and removed %d, deleted and recreated %d", m.renames, m.removed, m.recreated)
	if rounds >= 200 && (m.renames == 0 || m.removed == 0 || m.recreated == 0) {
		t.Errorf("the rounds renamed %d folders, removed %d, recreated %d: each kind must happen", m.renames, m.removed, m.recreated)
	}
}

// folderOps renames or deletes, one round in three, a folder that held
// messages at the last sync, on one side, as runModel.folderOps does.
func (m *realModel) folderOps() {
	if m.rng.Intn(3) != 0 {
		return
	}
	s := Side(m.rng.Intn(2))
	count := map[string]int{}
	for _, tm := range m.last {
		count[tm.folder]++
	}
	var cands []string
	for _, name := range sortedKeys(count) {
		if name != "INBOX" && !autoCreated[name] && !m.left[s][name] {
			cands = append(cands, name)
		}
	}
	if len(cands) == 0 {
		return
	}
	name := cands[m.rng.Intn(len(cands))]
	_, err := m.imap.c.Select("INBOX", nil).Wait() // the folder is not renamed or deleted under the client's selection
	m.must(err)
	if m.rng.Intn(2) == 0 || m.changed[s][name] {
		m.renames++
		to := fmt.Sprintf("R%d", m.renames)
		if s == A {
			m.must(m.imap.c.Rename(name, to, nil).Wait())
		} else {
			m.must(os.Rename(m.maildirDir(name), m.maildirDir(to)))
		}
		for _, tm := range m.truth {
			if tm.folder == name {
				tm.folder = to
			}
		}
		m.log = append(m.log, fmt.Sprintf("rename folder %s on %s to %s", name, s, to))
		return
	}
	if m.rng.Intn(2) == 0 { // new mail there on the other side: the folder comes back
		m.newIn(s.Other(), name)
	}
	if s == A {
		m.must(m.imap.c.Delete(name).Wait())
	} else {
		m.must(os.RemoveAll(m.maildirDir(name)))
	}
	m.dropped = &droppedFolder{on: s, name: name}
	m.log = append(m.log, fmt.Sprintf("delete folder %s on %s", name, s))
}

// autoCreated are the folders the test server makes again as soon as they
// are gone (testdata/dovecot: auto = subscribe): deleting or renaming one
// empties it instead, which the guard then reads as deletions.
var autoCreated = map[string]bool{"Drafts": true, "Sent": true, "Trash": true, "Junk": true}

// newIn delivers a new token without flags to folder on side s.
func (m *realModel) newIn(s Side, folder string) {
	m.tokens++
	tok := m.tokens
	if s == A {
		m.d.Seed(m.t, m.user, m.pw, folder, []mailtest.SeedMessage{{Body: tokenBody(tok), Date: tokenDate(tok)}})
	} else {
		m.must(os.WriteFile(filepath.Join(m.maildirDir(folder), "cur", maildirName(fmt.Sprintf("%d.tok", tok), flagSet{})), tokenBody(tok), 0o600))
	}
	m.truth[tok] = &truthMsg{folder: folder, flags: flagSet{}}
	m.log = append(m.log, fmt.Sprintf("new %d on %s in %s", tok, s, folder))
}

// syncDropped syncs a round that deleted a folder without
// --remove-folders (the other side keeps it as it was), then works out
// what --remove-folders does: delete the other side's copy when it did
// not change since the last sync, else recreate the folder.
func (m *realModel) syncDropped(round int, sync func() *Result) {
	d := m.dropped
	before := m.held(d.on.Other())[d.name]
	res := sync()
	if _, ok := m.held(d.on)[d.name]; ok {
		m.t.Fatalf("round %d: folder %s deleted on %s is back there without --remove-folders (changes %q)", round, d.name, d.on, m.log)
	}
	after := m.held(d.on.Other())[d.name]
	if fmt.Sprint(after) != fmt.Sprint(before) || len(res.Warnings) == 0 {
		m.t.Fatalf("round %d: without --remove-folders folder %s deleted on %s became %v on %s (was %v), warnings %q (changes %q)",
			round, d.name, d.on, after, d.on.Other(), before, res.Warnings, m.log)
	}
	for tok, fl := range after {
		if last, known := m.last[tok]; !known || last.folder != d.name || !last.flags.equal(fl) {
			m.recreated++
			m.log = append(m.log, "(changed on the other side: recreated)")
			return
		}
	}
	m.removed++
	for tok, tm := range m.truth {
		if tm.folder == d.name {
			delete(m.truth, tok)
		}
	}
}
