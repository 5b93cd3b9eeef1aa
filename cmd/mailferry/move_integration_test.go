package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// movePipe is IMAP -> IMAP in move mode (--delete-source) between two
// Dovecot accounts: docs/failure-model.md A2 (third pipeline) and A7.
type movePipe struct {
	d              *mailtest.Dovecot
	srcUser, srcPW string
	dstUser, dstPW string
	boxes          map[string][]mailtest.SeedMessage
	want           map[string]map[[32]byte]int
	flags          map[[32]byte]string // seeded flags per body
	// srcUIDs maps the source's mailboxes and UIDs to body hashes, and
	// logFrom is the size of Dovecot's log, both taken by reset.
	srcUIDs map[string]map[imap.UID]string
	logFrom int64
	// sizes maps each seeded body's hash to the sizes Dovecot may log for
	// it: with LF line ends (as its Maildir stores it) and with CRLF.
	sizes map[string][2]int
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
	mp.sizes = map[string][2]int{}
	for mb, msgs := range mp.boxes {
		mp.want[mb] = multiset(msgs)
		for _, m := range msgs {
			body := mailtest.CRLF(m.Body)
			mp.flags[sha256.Sum256(body)] = flagSet(m.Flags)
			mp.sizes[fmt.Sprintf("%x", sha256.Sum256(body))] = [2]int{len(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))), len(body)}
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

// seeded is the number of messages reset puts on the source.
func (mp *movePipe) seeded() int {
	n := 0
	for _, msgs := range mp.boxes {
		n += len(msgs)
	}
	return n
}

// reset refills the source and empties the destination, then notes the
// source's UIDs and where Dovecot's log ends.
func (mp *movePipe) reset(t *testing.T) {
	t.Helper()
	mp.d.Doveadm(t, "expunge", "-u", mp.dstUser, "mailbox", "*", "all")
	mp.d.Doveadm(t, "expunge", "-u", mp.srcUser, "mailbox", "*", "all")
	for mb, msgs := range mp.boxes {
		mp.d.Seed(t, mp.srcUser, mp.srcPW, mb, msgs)
	}
	mp.srcUIDs = uidHashes(t, mp.d, mp.srcUser, mp.srcPW)
	fi, err := os.Stat(dovecotLog(mp.d))
	if err != nil {
		t.Fatalf("Dovecot's log (testdata/dovecot/dovecot.sh writes it): %v", err)
	}
	mp.logFrom = fi.Size()
}

// state is the end state for the A2 comparison, from fetches of both
// accounts: their messages with flags, and the checkpoint's records with
// each source ID replaced by the body it named (the UIDs change when reset
// refills the source).
func (mp *movePipe) state(t *testing.T, cp string, dstF, srcF map[string][]mailtest.FetchedMessage) outcome {
	t.Helper()
	return outcome{
		dst: fetchedState(dstF),
		src: fetchedState(srcF),
		records: recordState(t, cp, func(mb string, id mail.ID) string {
			_, u, _ := strings.Cut(string(id), ".")
			uid, err := strconv.ParseUint(u, 10, 32)
			if h, ok := mp.srcUIDs[mb][imap.UID(uid)]; err == nil && ok {
				return h
			}
			return "unknown:" + string(id)
		}),
	}
}

// held returns what an account holds, per mailbox, as body multisets, and
// the flags of every message (body -> flag sets seen).
func held(t *testing.T, d *mailtest.Dovecot, user, pw string) (map[string]map[[32]byte]int, map[[32]byte][]string) {
	t.Helper()
	return heldIn(d.Fetch(t, user, pw))
}

// heldIn is held on what Dovecot.Fetch returned.
func heldIn(fetched map[string][]mailtest.FetchedMessage) (map[string]map[[32]byte]int, map[[32]byte][]string) {
	out := map[string]map[[32]byte]int{}
	flags := map[[32]byte][]string{}
	for mb, msgs := range fetched {
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
// on the destination (I3: no expunge before the target confirmed). It
// returns how many source messages are flagged \Deleted, and what both
// accounts hold.
func (mp *movePipe) checkSafe(t *testing.T, where string) (deleted int, dstF, srcF map[string][]mailtest.FetchedMessage) {
	t.Helper()
	dstF = mp.d.Fetch(t, mp.dstUser, mp.dstPW)
	srcF = mp.d.Fetch(t, mp.srcUser, mp.srcPW)
	dst, _ := heldIn(dstF)
	src, srcFlags := heldIn(srcF)
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
	for _, fs := range srcFlags {
		for _, f := range fs {
			if strings.Contains(f, `\deleted`) {
				deleted++
			}
		}
	}
	return deleted, dstF, srcF
}

// checkDone checks a finished run: each seeded message exactly once on the
// destination with its seeded flags (never \Deleted), the source empty,
// and in Dovecot's log each source expunge after the destination's save of
// that message (checkLog). It returns the end state for the A2 comparison
// (see state), from the same two fetches.
func (mp *movePipe) checkDone(t *testing.T, where, cp string) outcome {
	t.Helper()
	dstF := mp.d.Fetch(t, mp.dstUser, mp.dstPW)
	srcF := mp.d.Fetch(t, mp.srcUser, mp.srcPW)
	dst, flags := heldIn(dstF)
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
	if src, _ := heldIn(srcF); len(src) != 0 {
		t.Errorf("%s: the source still holds %v after the move", where, src)
	}
	for _, p := range mp.checkLog(t, dstF) {
		t.Errorf("%s: %s", where, p)
	}
	if cp == "" {
		return outcome{}
	}
	return mp.state(t, cp, dstF, srcF)
}

// dovecotLog is the log Dovecot's mail_log plugin writes saves and
// expunges to (testdata/dovecot/dovecot.sh).
func dovecotLog(d *mailtest.Dovecot) string { return filepath.Join(d.Dir, "log", "dovecot.log") }

// mailLogLine is a mail_log line: "imap(user)<pid><session>: Info:
// expunge: box=INBOX, uid=7, msgid=<...>, size=307". The user is the
// prefix Dovecot's log process keeps per imap process and drops when the
// master reports the process gone; on a loaded machine it can read that
// report before the process's last lines, which then carry only "imap:"
// (seen after a kill: the killed run's final MULTIAPPEND logged its saves
// so, and the check, not seeing them, reported I3 for messages it had).
// testdata/dovecot/dovecot.sh reuses imap processes so that none exits at
// the end of a session; such a line is still parsed, with user "".
var mailLogLine = regexp.MustCompile(`(?m)imap(?:\(([^)]+)\)<[^>]*><[^>]*>)?: Info: (save|copy|expunge): box=(.*), uid=(\d+), msgid=.*, size=(\d+)$`)

// mailLogEvent is one mail_log line.
type mailLogEvent struct {
	user  string // "" when the line had only the "imap:" prefix
	event string // save, copy or expunge
	box   string
	uid   imap.UID
	size  int
}

func parseMailLog(data string) []mailLogEvent {
	var out []mailLogEvent
	for _, l := range mailLogLine.FindAllStringSubmatch(data, -1) {
		uid, _ := strconv.ParseUint(l[4], 10, 32)
		size, _ := strconv.Atoi(l[5])
		out = append(out, mailLogEvent{user: l[1], event: l[2], box: l[3], uid: imap.UID(uid), size: size})
	}
	return out
}

// checkLog checks I3 from the server's own record (A7) and returns what
// it found wrong (see judgeLog) in Dovecot's log since reset; dstF is the
// destination fetched after the run. Dovecot logs a save or expunge at the
// commit that makes it visible, before the command's OK. A finished move
// has expunged every seeded message exactly once, so checkLog first waits
// (at most 5 s: Dovecot's log process writes the lines asynchronously and
// gives nothing to wait on) until the log shows that many expunges.
func (mp *movePipe) checkLog(t *testing.T, dstF map[string][]mailtest.FetchedMessage) (problems []string) {
	t.Helper()
	var events []mailLogEvent
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := os.Open(dovecotLog(mp.d))
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(io.NewSectionReader(f, mp.logFrom, 1<<40))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		events = parseMailLog(string(data))
		n := 0
		for _, e := range events {
			if e.user == mp.srcUser && e.event == "expunge" {
				n++
			}
		}
		if n >= mp.seeded() || time.Now().After(deadline) {
			if n != mp.seeded() {
				problems = append(problems, fmt.Sprintf("Dovecot's log shows %d source expunges, want each of the %d seeded messages expunged once (is Dovecot running with the mail_log settings of testdata/dovecot/dovecot.sh?)", n, mp.seeded()))
			}
			break
		}
		<-time.After(20 * time.Millisecond) // polling the log: see above
	}
	return append(problems, mp.judgeLog(events, uidHashesIn(dstF))...)
}

// judgeLog checks the mail_log events since reset: every expunge of a
// source message must come after as many saves of its body on the
// destination (dstUIDs: its UIDs and bodies after the run) as that body
// has been expunged so far, counting the expunge itself. A line without
// its user that names a UID and size of this pipe's source or destination
// cannot be placed and is reported as such, never guessed.
func (mp *movePipe) judgeLog(events []mailLogEvent, dstUIDs map[string]map[imap.UID]string) (problems []string) {
	var unplaced []string
	for _, e := range events {
		if e.user == "" && mp.mayBeOurs(e, dstUIDs) {
			unplaced = append(unplaced, fmt.Sprintf("Dovecot's log has a %s of %s UID %d (size %d) without the user, so the order of saves and expunges cannot be checked (was Dovecot started by this repository's testdata/dovecot/dovecot.sh, which reuses imap processes?)", e.event, e.box, e.uid, e.size))
		}
	}
	if unplaced != nil {
		return unplaced
	}
	saved := map[string]int{}
	expunged := map[string]int{}
	for _, e := range events {
		switch {
		case e.user == mp.dstUser && e.event != "expunge":
			h, ok := dstUIDs[e.box][e.uid]
			if !ok {
				problems = append(problems, fmt.Sprintf("the log shows a save of %s UID %d on the destination, which does not hold it", e.box, e.uid))
			}
			saved[h]++
		case e.user == mp.dstUser:
			problems = append(problems, fmt.Sprintf("the log shows an expunge of %s UID %d on the destination", e.box, e.uid))
		case e.user == mp.srcUser && e.event == "expunge":
			h, ok := mp.srcUIDs[e.box][e.uid]
			if !ok {
				problems = append(problems, fmt.Sprintf("the log shows an expunge of %s UID %d on the source, which was never seeded", e.box, e.uid))
			}
			if expunged[h]++; expunged[h] > saved[h] {
				problems = append(problems, fmt.Sprintf("I3: the source expunged %s UID %d (body %.12s) when the destination had saved %d cop(ies) of it, %d expunged", e.box, e.uid, h, saved[h], expunged[h]))
			}
		}
	}
	return problems
}

// mayBeOurs reports whether a line without its user names a message of
// this pipe: a source UID (expunge) or destination UID (save, copy) whose
// body has the logged size.
func (mp *movePipe) mayBeOurs(e mailLogEvent, dstUIDs map[string]map[imap.UID]string) bool {
	uids := dstUIDs
	if e.event == "expunge" {
		uids = mp.srcUIDs
	}
	h, ok := uids[e.box][e.uid]
	return ok && (mp.sizes[h][0] == e.size || mp.sizes[h][1] == e.size)
}

// TestA7LogJudgement checks judgeLog on Dovecot's log lines, including
// the shape of a seen failure: the killed run's last saves logged with the
// bare "imap:" prefix before the rerun's expunges.
func TestA7LogJudgement(t *testing.T) {
	const h = "aaaaaaaaaaaa0000"
	mp := &movePipe{srcUser: "s1", dstUser: "d1",
		srcUIDs: map[string]map[imap.UID]string{"Archiv/Übersicht": {137: h}},
		sizes:   map[string][2]int{h: {307, 323}}}
	dstUIDs := map[string]map[imap.UID]string{"Archiv/Übersicht": {176: h}}
	const (
		save     = "Dec 07 04:46:54 imap(d1)<4306><FJ8v6gNistl/AAAB>: Info: save: box=Archiv/Übersicht, uid=176, msgid=<a7-136@x>, size=307\n"
		bareSave = "Dec 07 04:46:54 imap: Info: save: box=Archiv/Übersicht, uid=176, msgid=<a7-136@x>, size=307\n"
		expunge  = "Dec 07 04:46:56 imap(s1)<4524><rftU6gNiuNp/AAAB>: Info: expunge: box=Archiv/Übersicht, uid=137, msgid=<a7-136@x>, size=307\n"
		// Another account's line: a UID this pipe has, another size.
		bareOther = "Dec 07 04:46:55 imap: Info: save: box=Archiv/Übersicht, uid=176, msgid=<m1@x>, size=38\n"
		noise     = "Dec 07 04:46:54 imap(d1)<4306><FJ8v6gNistl/AAAB>: Info: Disconnected: Logged out in=87 out=577\n"
	)
	for _, tc := range []struct {
		name, log string
		want      []string // prefixes of the problems, in order
	}{
		{"save, then expunge", save + noise + expunge, nil},
		{"expunge before the save", expunge + save, []string{"I3: "}},
		{"no save at all", expunge, []string{"I3: "}},
		{"a save without its user", bareSave + expunge, []string{"Dovecot's log has a save of Archiv/Übersicht UID 176 (size 307) without the user"}},
		{"another account's line without its user", save + bareOther + expunge, nil},
		{"an expunge twice", save + expunge + expunge, []string{"I3: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mp.judgeLog(parseMailLog(tc.log), dstUIDs)
			ok := len(got) == len(tc.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasPrefix(got[i], tc.want[i])
			}
			if !ok {
				t.Errorf("judgeLog found %q, want problems starting %q", got, tc.want)
			}
		})
	}
}

// TestA7LogCheckCatchesEarlyExpunge is the negative control of checkLog:
// a source message expunged before any copy exists, and one expunged
// before its copy was saved, are both reported from Dovecot's log.
func TestA7LogCheckCatchesEarlyExpunge(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	seed := crashCorpus()[:2]
	mp := newMovePipe(t, d, seed)
	mp.reset(t)
	c := d.Dial(t, mp.srcUser, mp.srcPW)
	// Archiv/Übersicht's message: expunged first, copied after.
	for _, mb := range []string{"Archiv/Übersicht", "INBOX"} {
		if _, err := c.Select(mb, nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Expunge().Close(); err != nil {
			t.Fatal(err)
		}
		if mb == "Archiv/Übersicht" {
			d.Seed(t, mp.dstUser, mp.dstPW, mb, mp.boxes[mb])
		}
	}
	// INBOX's message: never copied.
	problems := mp.checkLog(t, d.Fetch(t, mp.dstUser, mp.dstPW))
	var early int
	for _, p := range problems {
		if strings.HasPrefix(p, "I3: ") {
			early++
		}
	}
	if early != 2 || len(problems) != 2 {
		t.Errorf("checkLog found %q, want two I3 violations and nothing else", problems)
	}
}

// TestA2A7KillSweepIMAPMove covers A2's IMAP -> IMAP move pipeline and A7.
// The move (--delete-source, batches of 2 messages over two mailboxes) is
// killed with SIGKILL after each durable step in turn (put, commit,
// record, remove), then inside each Remove's window in turn: after the
// server confirmed UID STORE \Deleted, before UID EXPUNGE
// (MAILFERRY_TEST_CRASH_IN_REMOVE). Right after every kill no message is
// gone from the source that is not on the destination (I3), none is there
// twice, and a kill in the window left messages flagged \Deleted. On even
// step kill points another client also flags \Deleted what the destination
// holds, which must not matter. Every resume must end with each message
// exactly once on the destination with its own flags (the source's
// \Deleted never reaches it), the source empty, Dovecot's log showing each
// source expunge after the destination's save of that message, and the
// uninterrupted run's end state (both accounts and checkpoint records);
// then a dry run plans nothing and a third run copies nothing.
func TestA2A7KillSweepIMAPMove(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	for _, tc := range []struct {
		name, crashEnv string
		min            int // kill points at least
	}{
		// 8 messages (the awkward ones: a true duplicate pair, a shared
		// Message-ID, none) in batches of 2 give 20 step kill points:
		// enough, and each costs four runs.
		{"steps", "MAILFERRY_TEST_CRASH_AFTER", 20},
		{"STORE-EXPUNGE window", "MAILFERRY_TEST_CRASH_IN_REMOVE", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // separate accounts
			mp := newMovePipe(t, d, crashCorpus()[4:])
			k := 0
			afterKill := func(t *testing.T, _ string) {
				where := fmt.Sprintf("k=%d: right after the kill", k)
				deleted, dstF, srcF := mp.checkSafe(t, where)
				switch {
				case tc.crashEnv == "MAILFERRY_TEST_CRASH_IN_REMOVE" && deleted == 0:
					t.Errorf("%s: no source message is flagged \\Deleted: the kill missed the window between UID STORE and UID EXPUNGE", where)
				case tc.crashEnv == "MAILFERRY_TEST_CRASH_AFTER" && k%2 == 0:
					mp.storeDeletedWindow(t, dstF, srcF)
				}
			}
			n := killSweep(t, sweep{
				src: "imaps://" + mp.srcUser + "@" + d.IMAPS, kind: "imaps://" + mp.dstUser + "@" + d.IMAPS,
				env: mp.env(), flags: []string{"--ca-file", d.CAFile, "--workers", "3", "--delete-source"}, crashEnv: tc.crashEnv,
				before:    func(kill int) { k = kill; mp.reset(t) },
				afterKill: afterKill,
				check: func(t *testing.T, _, cp string) outcome {
					return mp.checkDone(t, fmt.Sprintf("k=%d: after the run", k), cp)
				},
			})
			if n < tc.min {
				t.Errorf("%d kill points, want at least %d", n, tc.min)
			}
		})
	}
}

// storeDeletedWindow flags \Deleted every source message the destination
// already holds (dstF and srcF: what both accounts hold), as another
// client could; for the batches that were recorded, it is also the state a
// kill in Remove's window leaves. The resume must neither lose these nor
// copy their \Deleted along.
func (mp *movePipe) storeDeletedWindow(t *testing.T, dstF, srcF map[string][]mailtest.FetchedMessage) {
	t.Helper()
	dst, _ := heldIn(dstF)
	c := mp.d.Dial(t, mp.srcUser, mp.srcPW)
	for mb, msgs := range srcF {
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

// moveTrials is the number of random kills of TestA7RandomKillIMAPMove:
// at a random moment, and at a random STORE/EXPUNGE window.
func moveTrials() (moments, windows int) {
	if os.Getenv("MAILFERRY_SOAK") == "1" {
		return 20, 10
	}
	return 2, 1
}

// moveCorpus is crashCorpus plus generated messages, n in all, each with
// its own Message-ID and about 300 bytes of body, some flagged.
func moveCorpus(n int) []mailtest.SeedMessage {
	out := crashCorpus()
	date := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := len(out); i < n; i++ {
		m := mailtest.SeedMessage{Body: []byte(fmt.Sprintf("Message-ID: <a7-%d@x>\r\nSubject: move %d\r\n\r\n%s\r\n", i, i, strings.Repeat(fmt.Sprintf("line %d of message %d\r\n", i%7, i), 12))), Date: date}
		if i%3 == 0 {
			m.Flags = []imap.Flag{imap.FlagSeen}
		}
		if i%5 == 0 {
			m.Flags = append(m.Flags, imap.FlagFlagged)
		}
		out = append(out, m)
	}
	return out
}

// TestA7RandomKillIMAPMove moves 200 messages IMAP -> IMAP and kills the
// move with SIGKILL at random: at uniformly random moments (the source
// throttled so kills land mid-transfer, as in the soak), and inside a
// random Remove's window between UID STORE \Deleted and UID EXPUNGE.
// Right after the kill I3 and I2 hold; one rerun converges to every message
// once on the destination and an empty source, with Dovecot's log showing
// no source expunge before the destination's save; the next run copies
// nothing. MAILFERRY_SOAK=1 runs 20 + 10 trials instead of 2 + 1.
func TestA7RandomKillIMAPMove(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	mp := newMovePipe(t, d, moveCorpus(200))
	seed := soakSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	proxy := mailtest.NewFaultProxy(t, d.IMAPS)
	proxy.SetSchedule(mailtest.EveryConn(mailtest.Fault{Rate: soakRate}))
	args := func(dir string) []string {
		return []string{"copy", "imaps://" + mp.srcUser + "@localhost:" + proxy.Port(), "imaps://" + mp.dstUser + "@" + d.IMAPS,
			"--checkpoint", dir + "/cp.jsonl", "--progress", "never", "--json",
			"--ca-file", d.CAFile, "--timeout", "10s", "--workers", "3", "--delete-source"}
	}
	// Batches of 10: 20 or more STORE/EXPUNGE windows, and a run short
	// enough for CI.
	env := append(mp.env(), "MAILFERRY_TEST_BATCH=10")
	// A clean run gives the span the kill delays are drawn from, shortened
	// by any trial that finishes before its kill.
	mp.reset(t)
	r := runBinLimit(t, runLimit, env, args(t.TempDir())...)
	if r.code != 0 {
		t.Fatalf("clean run exited %d: %s", r.code, r.stderr)
	}
	mp.checkDone(t, "clean run", "")
	span := r.elapsed
	t.Logf("a clean run takes %v; kills are drawn uniformly from [0, span)", span.Round(time.Millisecond))
	moments, windows := moveTrials()
	// A run that ends before its kill tests nothing: it shortens the span
	// and the trial is drawn again, up to 3 times in all.
	killedMoments, finished, windowsDone := 0, 0, 0
	for trial := 1; ; trial++ {
		window := killedMoments >= moments || killedMoments+finished >= moments+3
		if window && windowsDone >= windows {
			break
		}
		if window {
			windowsDone++
		}
		mp.reset(t)
		dir := t.TempDir()
		var (
			where     string
			wasKilled bool
			code      int
			stderr    string
		)
		started := time.Now()
		if !window {
			delay := time.Duration(rng.Int64N(int64(span)))
			where = fmt.Sprintf("trial %d (kill after %v)", trial, delay.Round(time.Microsecond))
			wasKilled, code, stderr = startKill(t, delay, env, args(dir)...)
		} else {
			n := 1 + rng.IntN(18)
			where = fmt.Sprintf("trial %d (kill in STORE/EXPUNGE window %d)", trial, n)
			r := runBinLimit(t, runLimit, append(env, fmt.Sprintf("MAILFERRY_TEST_CRASH_IN_REMOVE=%d", n)), args(dir)...)
			wasKilled, code, stderr = r.killed, r.code, r.stderr
			if !wasKilled {
				t.Fatalf("%s: the run was not killed (exit %d): %s", where, code, stderr)
			}
		}
		switch {
		case wasKilled:
			if !window {
				killedMoments++
			}
			if deleted, _, _ := mp.checkSafe(t, where); window && deleted == 0 {
				t.Errorf("%s: no source message is flagged \\Deleted: the kill missed the window", where)
			}
		case code != 0:
			t.Fatalf("%s: the run finished first but exited %d: %s", where, code, stderr)
		default:
			finished++
			span = min(span, time.Since(started))
			t.Logf("%s: the run finished first; span now %v", where, span.Round(time.Millisecond))
			mp.checkDone(t, where, "")
			continue
		}
		if r := runBinLimit(t, runLimit, mp.env(), args(dir)...); r.code != 0 {
			t.Fatalf("%s: rerun exited %d: %s", where, r.code, r.stderr)
		}
		mp.checkDone(t, where+": after the rerun", "")
		if r := runBinLimit(t, runLimit, mp.env(), args(dir)...); r.code != 0 || copiedCount(t, r.stdout) != 0 {
			t.Errorf("%s: I4: the next run exited %d and copied %d, want 0 and 0", where, r.code, copiedCount(t, r.stdout))
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d trial(s) killed at a random moment, %d in a random STORE/EXPUNGE window, %d finished before the kill", killedMoments, windows, finished)
	if killedMoments == 0 {
		t.Errorf("no trial was killed at a random moment: those tested nothing")
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
	mem, user := mailtest.NewMemIMAP(t, "alice", "pw")
	for _, m := range msgs {
		if _, err := user.Append("INBOX", strings.NewReader(string(m.Body)), &imap.AppendOptions{Flags: m.Flags, Time: m.Date}); err != nil {
			t.Fatal(err)
		}
	}
	srv := &c9Server{user: user}
	ln := mailtest.Listen(t)
	mailtest.ServeIMAP(t, mem, imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &c9Session{SessionIMAP4rev2: mem.NewSession().(imapserver.SessionIMAP4rev2), srv: srv}, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
	}, ln)
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
