package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// movePipe is IMAP -> IMAP in move mode (--delete-source) between two
// Dovecot accounts: RELIABILITY-PLAN A2 (third pipeline) and A7.
type movePipe struct {
	d              *mailtest.Dovecot
	srcUser, srcPW string
	dstUser, dstPW string
	boxes          map[string][]mailtest.SeedMessage
	want           map[string]map[[32]byte]int
	flags          map[[32]byte]string // seeded flags per body
}

// newMovePipe makes both accounts; the source is seeded by reset, with
// the first half of seed in INBOX and the rest in a nested non-ASCII box.
func newMovePipe(t *testing.T, d *mailtest.Dovecot, seed []mailtest.SeedMessage) *movePipe {
	t.Helper()
	mp := &movePipe{d: d}
	mp.srcUser, mp.srcPW = d.NewUser(t)
	mp.dstUser, mp.dstPW = d.NewUser(t)
	half := len(seed) / 2
	mp.boxes = map[string][]mailtest.SeedMessage{"INBOX": seed[:half], "Archiv/Übersicht": seed[half:]}
	mp.want = map[string]map[[32]byte]int{}
	mp.flags = map[[32]byte]string{}
	for mb, msgs := range mp.boxes {
		mp.want[mb] = multiset(msgs)
		for _, m := range msgs {
			mp.flags[sha256.Sum256(mailtest.CRLF(m.Body))] = flagSet(m.Flags)
		}
	}
	return mp
}

func flagSet(flags []imap.Flag) string {
	var out []string
	for _, f := range flags {
		if f != `\Recent` {
			out = append(out, strings.ToLower(string(f)))
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func (mp *movePipe) env() []string {
	return []string{"MAILFERRY_SRC_PASSWORD=" + mp.srcPW, "MAILFERRY_DST_PASSWORD=" + mp.dstPW}
}

// reset refills the source and empties the destination.
func (mp *movePipe) reset(t *testing.T) {
	t.Helper()
	mp.d.Doveadm(t, "expunge", "-u", mp.dstUser, "mailbox", "*", "all")
	mp.d.Doveadm(t, "expunge", "-u", mp.srcUser, "mailbox", "*", "all")
	for mb, msgs := range mp.boxes {
		mp.d.Seed(t, mp.srcUser, mp.srcPW, mb, msgs)
	}
}

// held returns what an account holds, per mailbox, as body multisets, and
// the flags of every message (body -> flag sets seen).
func held(t *testing.T, d *mailtest.Dovecot, user, pw string) (map[string]map[[32]byte]int, map[[32]byte][]string) {
	t.Helper()
	out := map[string]map[[32]byte]int{}
	flags := map[[32]byte][]string{}
	for mb, msgs := range d.Fetch(t, user, pw) {
		if len(msgs) == 0 {
			continue
		}
		out[mb] = map[[32]byte]int{}
		for _, m := range msgs {
			sum := sha256.Sum256(mailtest.CRLF(m.Body))
			out[mb][sum]++
			flags[sum] = append(flags[sum], flagSet(m.Flags))
		}
	}
	return out, flags
}

// checkSafe checks the state right after a kill: the destination holds no
// message more often than seeded, and every copy gone from the source is
// on the destination (I3: no expunge before the target confirmed).
func (mp *movePipe) checkSafe(t *testing.T, where string) {
	t.Helper()
	dst, _ := held(t, mp.d, mp.dstUser, mp.dstPW)
	src, _ := held(t, mp.d, mp.srcUser, mp.srcPW)
	for mb, w := range mp.want {
		for sum, n := range w {
			if got := dst[mb][sum]; got > n {
				t.Errorf("%s: I2: the destination's %s holds a message %d times, seeded %d", where, mb, got, n)
			}
			if gone := n - src[mb][sum]; gone > dst[mb][sum] {
				t.Errorf("%s: I3: %d cop(ies) of a message expunged from the source's %s, %d on the destination", where, gone, mb, dst[mb][sum])
			}
		}
	}
}

// checkDone checks a finished run: each seeded message exactly once on the
// destination with its seeded flags (never \Deleted), the source empty.
func (mp *movePipe) checkDone(t *testing.T, where string) {
	t.Helper()
	dst, flags := held(t, mp.d, mp.dstUser, mp.dstPW)
	for mb, w := range mp.want {
		if !sameMultiset(dst[mb], w) {
			t.Errorf("%s: I1/I2: the destination's %s holds %v, want each of the %d seeded bodies exactly as often as seeded", where, mb, dst[mb], len(w))
		}
	}
	for sum, fs := range flags {
		for _, f := range fs {
			if f != mp.flags[sum] {
				t.Errorf("%s: a destination message has flags %q, want %q as seeded", where, f, mp.flags[sum])
			}
		}
	}
	if src, _ := held(t, mp.d, mp.srcUser, mp.srcPW); len(src) != 0 {
		t.Errorf("%s: the source still holds %v after the move", where, src)
	}
}

// TestA2A7KillSweepIMAPMove covers A2's IMAP -> IMAP move pipeline and A7:
// the move (--delete-source) is killed with SIGKILL after each durable step
// in turn (put, commit, record, remove; batches of 2 messages over two
// mailboxes). Right after every kill no message is gone from the source that
// is not on the destination (I3) and none is there twice; on even kill
// points the kill is made to land inside Remove's UID STORE / UID EXPUNGE
// window as well, by flagging \Deleted what the destination holds, as the
// STORE of a killed Remove does. The resume must end with each message
// exactly once on the destination with its own flags (the source's \Deleted
// never reaches it), the source empty, and a third run copies nothing.
func TestA2A7KillSweepIMAPMove(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	// 8 messages (the awkward ones: a true duplicate pair, a shared
	// Message-ID, none) in batches of 2 give 20 kill points: enough, and
	// each costs three runs.
	mp := newMovePipe(t, d, crashCorpus()[4:])
	src := "imaps://" + mp.srcUser + "@" + d.IMAPS
	dst := "imaps://" + mp.dstUser + "@" + d.IMAPS
	k := 0
	n := killSweepK(t, src, dst, mp.env(), []string{"--ca-file", d.CAFile, "--workers", "3", "--delete-source"},
		func(kill int) { k = kill; mp.reset(t) },
		func(t *testing.T, _ string) { mp.checkDone(t, fmt.Sprintf("k=%d: after the resume", k)) },
		func(t *testing.T, _ string) {
			where := fmt.Sprintf("k=%d: right after the kill", k)
			mp.checkSafe(t, where)
			if k%2 == 0 {
				mp.storeDeletedWindow(t)
			}
		})
	if n < 20 {
		t.Errorf("%d kill points, want at least 20", n)
	}
}

// storeDeletedWindow flags \Deleted every source message the destination
// already holds: the state a kill between Remove's UID STORE and UID
// EXPUNGE leaves (for a batch that was recorded; for one that was not, it
// is another client marking mail \Deleted, which must not matter either).
func (mp *movePipe) storeDeletedWindow(t *testing.T) {
	t.Helper()
	dst, _ := held(t, mp.d, mp.dstUser, mp.dstPW)
	c := mp.d.Dial(t, mp.srcUser, mp.srcPW)
	for mb, msgs := range mp.d.Fetch(t, mp.srcUser, mp.srcPW) {
		var set imap.UIDSet
		for _, m := range msgs {
			if dst[mb][sha256.Sum256(mailtest.CRLF(m.Body))] > 0 {
				set.AddNum(m.UID)
			}
		}
		if len(set) == 0 {
			continue
		}
		if _, err := c.Select(mb, nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// moveTrials is the number of random kills of TestA7RandomKillIMAPMove.
func moveTrials() int {
	if os.Getenv("MAILFERRY_SOAK") == "1" {
		return 20
	}
	return 3
}

// TestA7RandomKillIMAPMove kills the IMAP -> IMAP move at uniformly random
// moments (the source throttled so kills land mid-transfer, as in the soak):
// I3 and I2 right after the kill, then one rerun converges to every message
// once on the destination and an empty source, and the next run copies
// nothing. MAILFERRY_SOAK=1 runs 20 trials instead of 3.
func TestA7RandomKillIMAPMove(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	mp := newMovePipe(t, d, crashCorpus())
	seed := soakSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	proxy := mailtest.NewFaultProxy(t, d.IMAPS)
	proxy.SetSchedule(mailtest.EveryConn(mailtest.Fault{Rate: soakRate}))
	args := func(dir string) []string {
		return []string{"copy", "imaps://" + mp.srcUser + "@localhost:" + proxy.Port(), "imaps://" + mp.dstUser + "@" + d.IMAPS,
			"--checkpoint", dir + "/cp.jsonl", "--progress", "never", "--json",
			"--ca-file", d.CAFile, "--timeout", "10s", "--workers", "3", "--delete-source"}
	}
	env := append(mp.env(), "MAILFERRY_TEST_BATCH=2")
	// The second of two clean runs gives the span the kill delays are
	// drawn from (the first access builds Dovecot's indexes), shortened by
	// any trial that finishes before its kill.
	var span time.Duration
	for i := 0; i < 2; i++ {
		mp.reset(t)
		r := runBinLimit(t, runLimit, env, args(t.TempDir())...)
		if r.code != 0 {
			t.Fatalf("clean run exited %d: %s", r.code, r.stderr)
		}
		mp.checkDone(t, "clean run")
		span = r.elapsed
	}
	t.Logf("a clean run takes %v; kills are drawn uniformly from [0, span)", span.Round(time.Millisecond))
	killed := 0
	for trial := 1; trial <= moveTrials(); trial++ {
		mp.reset(t)
		dir := t.TempDir()
		delay := time.Duration(rng.Int64N(int64(span)))
		where := fmt.Sprintf("trial %d (kill after %v)", trial, delay.Round(time.Microsecond))
		started := time.Now()
		wasKilled, code, stderr := startKill(t, delay, env, args(dir)...)
		switch {
		case wasKilled:
			killed++
			mp.checkSafe(t, where)
		case code != 0:
			t.Fatalf("%s: the run finished first but exited %d: %s", where, code, stderr)
		default:
			span = min(span, time.Since(started))
			t.Logf("%s: the run finished first; span now %v", where, span.Round(time.Millisecond))
		}
		if r := runBinLimit(t, runLimit, mp.env(), args(dir)...); r.code != 0 {
			t.Fatalf("%s: rerun exited %d: %s", where, r.code, r.stderr)
		}
		mp.checkDone(t, where+": after the rerun")
		if r := runBinLimit(t, runLimit, mp.env(), args(dir)...); r.code != 0 || copiedCount(t, r.stdout) != 0 {
			t.Errorf("%s: I4: the next run exited %d and copied %d, want 0 and 0", where, r.code, copiedCount(t, r.stdout))
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d of %d trials were killed mid-run", killed, moveTrials())
	if killed == 0 {
		t.Errorf("no trial was killed mid-run: the test tested nothing")
	}
}

// c9Server is go-imap's in-memory server in plain text, with or without
// UIDPLUS. It counts plain EXPUNGE commands (any client), and at the first
// STORE of the run another client's message arrives already \Deleted.
type c9Server struct {
	addr       string
	user       *imapmemserver.User
	plainExp   atomic.Int32
	arriveOnce stdsync.Once
}

type c9Session struct {
	imapserver.SessionIMAP4rev2
	srv *c9Server
}

func (s *c9Session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if uids == nil {
		s.srv.plainExp.Add(1)
	}
	return s.SessionIMAP4rev2.Expunge(w, uids)
}

func (s *c9Session) Store(w *imapserver.FetchWriter, set imap.NumSet, flags *imap.StoreFlags, o *imap.StoreOptions) error {
	s.srv.arriveOnce.Do(func() {
		s.srv.user.Append("INBOX", strings.NewReader("Subject: other\r\n\r\nanother client's, marked for deletion\r\n"), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDeleted}})
	})
	return s.SessionIMAP4rev2.Store(w, set, flags, o)
}

func startC9Server(t *testing.T, caps imap.CapSet, msgs []mailtest.SeedMessage) *c9Server {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("alice", "pw")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := user.Append("INBOX", strings.NewReader(string(m.Body)), &imap.AppendOptions{Flags: m.Flags, Time: m.Date}); err != nil {
			t.Fatal(err)
		}
	}
	mem.AddUser(user)
	srv := &c9Server{user: user}
	is := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &c9Session{SessionIMAP4rev2: mem.NewSession().(imapserver.SessionIMAP4rev2), srv: srv}, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go is.Serve(ln)
	t.Cleanup(func() { is.Close() })
	srv.addr = ln.Addr().String()
	return srv
}

// count returns how many messages INBOX holds and how many of them are
// flagged \Deleted, as another client sees it.
func (c *c9Server) count(t *testing.T) (total, deleted int) {
	t.Helper()
	cl, err := imapclient.DialInsecure(c.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Login("alice", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	sd, err := cl.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sd.NumMessages == 0 {
		return 0, 0
	}
	msgs, err := cl.Fetch(imap.SeqSet{{Start: 1, Stop: sd.NumMessages}}, &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		for _, f := range m.Flags {
			if f == imap.FlagDeleted {
				deleted++
			}
		}
	}
	return len(msgs), deleted
}

// TestC9MoveWithoutUIDPLUS runs a move (IMAP -> Maildir, --delete-source)
// through the CLI against servers with and without UIDPLUS, while another
// client's message arrives already \Deleted mid-run. Without UIDPLUS no
// plain EXPUNGE is ever sent: the other client's message survives the run,
// ours stay flagged \Deleted, and "expunge skipped: no UIDPLUS" is reported
// once per mailbox and run; with UIDPLUS exactly ours are expunged. The
// Maildir gets every message once. The rerun moves the newcomer like any
// message (it was copied first, so expunging it loses nothing), and the
// run after that copies nothing.
func TestC9MoveWithoutUIDPLUS(t *testing.T) {
	seed := crashCorpus()
	n := len(seed)
	for _, tc := range []struct {
		name     string
		caps     imap.CapSet
		left     [2]int // messages on the server after runs 1 and 2, all flagged \Deleted
		warnings int
		extra    []string
		copied   [3]int64 // by runs 1, 2 and 3
	}{
		{"no UIDPLUS", imap.CapSet{imap.CapIMAP4rev1: {}}, [2]int{n + 1, n + 1}, 1, nil, [3]int64{int64(n), 1, 0}},
		{"UIDPLUS", imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, [2]int{1, 0}, 0, nil, [3]int64{int64(n), 1, 0}},
		// The user's explicit choice: a plain EXPUNGE, which takes the
		// other client's \Deleted message with ours (never copied: that is
		// what "unsafe" means, and why it is not the default).
		{"no UIDPLUS, --allow-unsafe-expunge", imap.CapSet{imap.CapIMAP4rev1: {}}, [2]int{0, 0}, 0, []string{"--allow-unsafe-expunge"}, [3]int64{int64(n), 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startC9Server(t, tc.caps, seed)
			dir := t.TempDir()
			dst := "maildir:" + filepath.Join(dir, "out")
			args := append([]string{"copy", "imap://alice@" + srv.addr, dst, "--allow-plaintext-auth", "--delete-source",
				"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--progress", "never", "--json"}, tc.extra...)
			env := map[string]string{"MAILFERRY_SRC_PASSWORD": "pw", "MAILFERRY_TEST_BATCH": "2"}
			for run, wantCopied := range tc.copied {
				code, out, stderr := runCLI(t, env, args...)
				if code != 0 {
					t.Fatalf("run %d exited %d: %s", run+1, code, stderr)
				}
				if got := copiedCount(t, out); got != wantCopied {
					t.Errorf("run %d copied %d, want %d", run+1, got, wantCopied)
				}
				if w := strings.Count(stderr, "expunge skipped: no UIDPLUS"); w != tc.warnings && run < 2 {
					t.Errorf("run %d: %d \"expunge skipped: no UIDPLUS\" warnings, want %d:\n%s", run+1, w, tc.warnings, stderr)
				}
				if run < 2 {
					if left, deleted := srv.count(t); left != tc.left[run] || deleted != left {
						t.Errorf("after run %d the server holds %d messages, %d flagged \\Deleted; want %d, all flagged", run+1, left, deleted, tc.left[run])
					}
				}
				if run == 0 {
					if got := bodiesIn(t, dst, true)["INBOX"]; !sameMultiset(got, multiset(seed)) {
						t.Errorf("the Maildir holds %v, want every seeded message once", got)
					}
				}
			}
			switch p := srv.plainExp.Load(); {
			case tc.extra == nil && p != 0:
				t.Errorf("%d plain EXPUNGE (or CLOSE) command(s) sent, want none", p)
			case tc.extra != nil && p == 0:
				t.Errorf("no plain EXPUNGE sent with --allow-unsafe-expunge")
			}
		})
	}
}
