package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/sources/maildir"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// The correctness generator of issue 11: between runs of a nightly copy
// (IMAP -> Maildir), a seeded random generator changes the source from a
// second IMAP connection (new mail, flags set and cleared, expunges), and
// now and then deletes and recreates a folder under the same name or
// changes a folder's UIDVALIDITY (doveadm). After every round the
// incremental Maildir destination must equal a second one copied by the
// same runs with a full listing every time (--full-every 1), and it and an
// incremental IMAP destination must agree with the source: each message
// held once, byte for byte, with the source's flags, and nothing held
// before lost (a copy keeps what the source expunged). Each run's copied
// count must be what the destination gained. `make test` runs a few rounds per variant, `make soak` 100
// (MAILFERRY_SOAK_TRIALS=n any number); the seed is logged and
// MAILFERRY_SOAK_SEED replays it.

// digits makes full-listing reasons countable: "UIDVALIDITY changed from N to N".
var digits = regexp.MustCompile(`[0-9]+`)

// genFolders are the source folders the generator changes.
var genFolders = []string{"INBOX", "Work", "Lists"}

// genFlags are the flags it sets and clears: system flags and keywords
// (kept in the Maildir's dovecot-keywords).
var genFlags = []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagAnswered, imap.FlagDraft, "$Label1", "NonJunk"}

// TestNightlyGeneratorCondstore runs the generator against Dovecot with
// CONDSTORE and QRESYNC: flag changes are found by CHANGEDSINCE, and
// folders nobody touched are skipped.
func TestNightlyGeneratorCondstore(t *testing.T) {
	runGenerator(t, mailtest.NeedDovecot(t), true)
}

// TestNightlyGeneratorNoCondstore runs it against a Dovecot of its own
// started with DOVECOT_NO_CONDSTORE=1: without mod-sequences a status
// cannot show a flag change, so no folder may be skipped and flags are
// found by listing every folder's flags, never by CHANGEDSINCE.
func TestNightlyGeneratorNoCondstore(t *testing.T) {
	mailtest.NeedDovecot(t) // skips (or fails under MAILFERRY_TEST_REQUIRE) like every Dovecot test
	runGenerator(t, startDovecot(t, "DOVECOT_NO_CONDSTORE=1"), false)
}

// genRig is the generator's state: the source account, the second client
// that changes it, the two destinations, and what the checks learnt.
type genRig struct {
	t         *testing.T
	d         *mailtest.Dovecot
	user, pw  string
	rng       *rand.Rand
	c         *imapclient.Client
	selected  string
	next      string // the folder recreate deletes next, once picked
	seq       int
	ops       []string // this round's changes, printed when a check fails
	inc, ref  genDest
	imapDst   genDest // incremental too, into an IMAP account
	condstore bool
	src       map[string][]mailtest.FetchedMessage // the source at the last check
	// The paths the incremental runs took, over all rounds.
	listings          map[string]int
	fullReasons       map[string]int // why the incremental runs listed a folder in full
	modSeq, flagsList int
}

// genDest is one destination Maildir with its own checkpoint and state.
type genDest struct {
	name string
	dir  string                         // a Maildir destination's root
	user string                         // an IMAP destination's account
	pw   string                         // and its password
	args []string                       // the copy
	held map[string]map[string][]string // folder -> body -> flags of each copy, at the last check
}

// read returns what the destination holds now.
func (dst *genDest) read(t *testing.T, d *mailtest.Dovecot) map[string]map[string][]string {
	if dst.user == "" {
		return readHeld(t, dst.dir)
	}
	out := map[string]map[string][]string{}
	for mb, msgs := range d.Fetch(t, dst.user, dst.pw) {
		out[mb] = map[string][]string{}
		for _, m := range msgs {
			out[mb][string(m.Body)] = append(out[mb][string(m.Body)], flagKey(imapFlagStrings(m.Flags)))
		}
	}
	return out
}

func runGenerator(t *testing.T, d *mailtest.Dovecot, condstore bool) {
	rounds := trialCount(t, 10, 100)
	seed := genSeed(t)
	g := &genRig{t: t, d: d, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), condstore: condstore, listings: map[string]int{}, fullReasons: map[string]int{}}
	g.user, g.pw = d.NewUser(t)
	g.c = d.Dial(t, g.user, g.pw)
	if has := g.c.Caps().Has(imap.CapCondStore); has != condstore {
		t.Fatalf("the server offers CONDSTORE: %v, want %v (DOVECOT_NO_CONDSTORE)", has, condstore)
	}
	dir := t.TempDir()
	g.inc = g.dest(dir, "incremental", "--trace", "--log-level", "debug")
	g.ref = g.dest(dir, "full", "--full-every", "1")
	g.imapDst = genDest{name: "IMAP"}
	g.imapDst.user, g.imapDst.pw = d.NewUser(t)
	g.imapDst.args = []string{"copy", "imaps://" + g.user + "@" + d.IMAPS, "imaps://" + g.imapDst.user + "@" + d.IMAPS,
		"--checkpoint", filepath.Join(dir, "imap.cp"), "--ca-file", d.CAFile, "--json", "--timeout", "20s"}
	for _, f := range genFolders[1:] {
		if err := g.c.Create(f, nil).Wait(); err != nil {
			t.Fatalf("create %s: %v", f, err)
		}
	}
	for _, f := range genFolders {
		g.appendNew(f, 3)
	}
	for round := 1; round <= rounds; round++ {
		if round > 1 {
			g.change()
		}
		g.runBoth(round)
		if problems := g.check(); len(problems) > 0 {
			t.Fatalf("round %d (seed %d, replay with MAILFERRY_SOAK_SEED=%d): after\n  %s\nthe destination is wrong:\n  %s",
				round, seed, seed, strings.Join(g.ops, "\n  "), strings.Join(problems, "\n  "))
		}
	}
	t.Logf("%d rounds: incremental runs listed folders %v (in full because %v); mod-sequences asked %d times, every flag listed %d times",
		rounds, g.listings, g.fullReasons, g.modSeq, g.flagsList)
	g.checkPaths(rounds)
	g.negativeControl()
}

// genSeed returns the generator's seed, logged so a failure can be
// replayed with MAILFERRY_SOAK_SEED.
func genSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MAILFERRY_SOAK_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("MAILFERRY_SOAK_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("changes from seed %d (replay with MAILFERRY_SOAK_SEED=%d)", seed, seed)
	return seed
}

func (g *genRig) dest(dir, name string, extra ...string) genDest {
	out := filepath.Join(dir, name)
	args := append([]string{"copy", "imaps://" + g.user + "@" + g.d.IMAPS, "maildir:" + out,
		"--checkpoint", filepath.Join(dir, name+".cp"), "--ca-file", g.d.CAFile, "--json", "--timeout", "20s"}, extra...)
	return genDest{name: name, dir: out, args: args}
}

// change applies one round of random changes from the second client. A
// folder renumbered (a new UIDVALIDITY, or restored under a new one) loses
// no message in the same round: a folder only partly the same after a
// renumbering is refused by design (sync/reset.go, step 4: exit 6, the
// user checks), which is not what this generator tests.
func (g *genRig) change() {
	g.ops = g.ops[:0]
	for _, f := range genFolders {
		if g.rng.IntN(3) == 0 {
			g.appendNew(f, 1+g.rng.IntN(2))
		}
	}
	for range g.rng.IntN(5) {
		g.flagChange()
	}
	switch g.rng.IntN(12) {
	case 0:
		g.replaceFolder()
	case 1:
		g.restoreFolder()
	case 2:
		g.changeUIDValidity()
	default:
		if g.rng.IntN(2) == 0 {
			g.expunge()
		}
	}
}

// body returns a new message, unique across the run; one in six has no
// Message-ID (the engine then matches by content).
func (g *genRig) body() []byte {
	g.seq++
	var b strings.Builder
	if g.rng.IntN(6) != 0 {
		fmt.Fprintf(&b, "Message-ID: <gen-%d@example.org>\r\n", g.seq)
	}
	fmt.Fprintf(&b, "Subject: generated %d\r\n\r\nbody %d\r\n%s\r\n", g.seq, g.seq, strings.Repeat("x", g.rng.IntN(300)))
	return []byte(b.String())
}

// randomFlags returns a random subset of genFlags.
func (g *genRig) randomFlags() []imap.Flag {
	var out []imap.Flag
	for _, f := range genFlags {
		if g.rng.IntN(3) == 0 {
			out = append(out, f)
		}
	}
	return out
}

func (g *genRig) appendNew(folder string, n int) {
	for range n {
		g.appendBody(folder, g.body())
	}
}

func (g *genRig) appendBody(folder string, body []byte) {
	g.t.Helper()
	flags := g.randomFlags()
	cmd := g.c.Append(folder, int64(len(body)), &imap.AppendOptions{Flags: flags})
	_, err := cmd.Write(body)
	if cerr := cmd.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_, err = cmd.Wait()
	}
	if err != nil {
		g.t.Fatalf("append to %s: %v", folder, err)
	}
	g.ops = append(g.ops, fmt.Sprintf("append to %s %q with %v", folder, genLine(body), flags))
}

// uids selects folder and returns its UIDs.
func (g *genRig) uids(folder string) []imap.UID {
	g.t.Helper()
	if g.selected != folder {
		if _, err := g.c.Select(folder, nil).Wait(); err != nil {
			g.t.Fatalf("select %s: %v", folder, err)
		}
		g.selected = folder
	}
	data, err := g.c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil {
		g.t.Fatalf("uid search %s: %v", folder, err)
	}
	return data.AllUIDs()
}

func (g *genRig) unselect() {
	g.t.Helper()
	if g.selected == "" {
		return
	}
	if err := g.c.Unselect().Wait(); err != nil {
		g.t.Fatalf("unselect: %v", err)
	}
	g.selected = ""
}

// pick returns a random folder and one of its UIDs, or false when the
// folder is empty.
func (g *genRig) pick() (string, imap.UID, bool) {
	folder := genFolders[g.rng.IntN(len(genFolders))]
	uids := g.uids(folder)
	if len(uids) == 0 {
		return folder, 0, false
	}
	return folder, uids[g.rng.IntN(len(uids))], true
}

func (g *genRig) store(uid imap.UID, op imap.StoreFlagsOp, flag imap.Flag) {
	g.t.Helper()
	if err := g.c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{flag}}, nil).Close(); err != nil {
		g.t.Fatalf("store %v %s on UID %d: %v", op, flag, uid, err)
	}
}

func (g *genRig) flagChange() {
	folder, uid, ok := g.pick()
	if !ok {
		return
	}
	flag := genFlags[g.rng.IntN(len(genFlags))]
	op, sign := imap.StoreFlagsAdd, "+"
	if g.rng.IntN(2) == 0 {
		op, sign = imap.StoreFlagsDel, "-"
	}
	g.store(uid, op, flag)
	g.ops = append(g.ops, fmt.Sprintf("store %s UID %d %sFLAGS %s", folder, uid, sign, flag))
}

func (g *genRig) expunge() {
	folder, uid, ok := g.pick()
	if !ok {
		return
	}
	g.store(uid, imap.StoreFlagsAdd, imap.FlagDeleted)
	if err := g.c.UIDExpunge(imap.UIDSetNum(uid)).Close(); err != nil {
		g.t.Fatalf("expunge %s UID %d: %v", folder, uid, err)
	}
	g.ops = append(g.ops, fmt.Sprintf("expunge %s UID %d", folder, uid))
}

// replaceFolder deletes a folder and creates it again under the same name
// (a new UIDVALIDITY) with new messages: the destination keeps the old
// copies and gets the new ones.
func (g *genRig) replaceFolder() {
	folder := g.recreate()
	g.appendNew(folder, 1+g.rng.IntN(3))
}

// restoreFolder deletes a folder and creates it again with the same
// messages (as a restore from a backup does), flags changed, and a new
// one: the destination must not hold any of them twice.
func (g *genRig) restoreFolder() {
	g.t.Helper()
	old := g.src[g.recreatable()]
	folder := g.recreate()
	for _, m := range old {
		g.appendBody(folder, m.Body)
	}
	g.appendNew(folder, 1)
}

// recreatable picks the folder recreate will delete next: INBOX cannot be.
func (g *genRig) recreatable() string {
	if g.next == "" {
		g.next = genFolders[1+g.rng.IntN(len(genFolders)-1)]
	}
	return g.next
}

// recreate deletes a folder and creates it again, empty.
func (g *genRig) recreate() string {
	g.t.Helper()
	folder := g.recreatable()
	g.next = ""
	g.unselect()
	if err := g.c.Delete(folder).Wait(); err != nil {
		g.t.Fatalf("delete %s: %v", folder, err)
	}
	if err := g.c.Create(folder, nil).Wait(); err != nil {
		g.t.Fatalf("create %s: %v", folder, err)
	}
	g.ops = append(g.ops, "delete and create "+folder)
	return folder
}

// changeUIDValidity gives a folder a new UIDVALIDITY with the same
// messages, as a server restored from a backup may.
func (g *genRig) changeUIDValidity() {
	g.t.Helper()
	folder := genFolders[g.rng.IntN(len(genFolders))]
	g.unselect()
	st, err := g.c.Status(folder, &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil {
		g.t.Fatalf("status %s: %v", folder, err)
	}
	uv := st.UIDValidity + 1 + uint32(g.rng.IntN(1000))
	g.d.Doveadm(g.t, "mailbox", "update", "-u", g.user, "--uid-validity", fmt.Sprint(uv), folder)
	// The client's session keeps the folder's index open since STATUS;
	// Dovecot finds it reset later and drops the session ("IMAP session
	// state is inconsistent, please relogin"): log in again, as a mail
	// client would.
	_ = g.c.Logout().Wait()
	g.c = g.d.Dial(g.t, g.user, g.pw)
	g.ops = append(g.ops, fmt.Sprintf("UIDVALIDITY of %s from %d to %d", folder, st.UIDValidity, uv))
}

// runBoth runs the copy into every destination; the second client holds
// no folder selected meanwhile, as a nightly job's user may or may not.
func (g *genRig) runBoth(round int) {
	g.t.Helper()
	g.unselect()
	for _, dst := range []*genDest{&g.inc, &g.ref, &g.imapDst} {
		r := runBinLimit(g.t, runLimit, []string{"MAILFERRY_SRC_PASSWORD=" + g.pw, "MAILFERRY_DST_PASSWORD=" + dst.pw}, dst.args...)
		if r.code != 0 {
			g.t.Fatalf("round %d: %s copy: exit %d: %s", round, dst.name, r.code, lastLines(r.stderr, 20))
		}
		s := fullSummary(g.t, r)
		before := dst.held
		dst.held = dst.read(g.t, g.d)
		if lost := lostBodies(before, dst.held); len(lost) > 0 {
			g.t.Fatalf("round %d: the %s destination lost what it held: %v", round, dst.name, lost)
		}
		if added := countHeld(dst.held) - countHeld(before); s.Totals.Copied != int64(added) || s.Totals.Failed != 0 {
			g.t.Fatalf("round %d: %s copy says copied %d, failed %d; the destination gained %d messages",
				round, dst.name, s.Totals.Copied, s.Totals.Failed, added)
		}
		if dst == &g.inc {
			g.notePaths(s, r.stderr)
		}
	}
}

// notePaths counts how the incremental run listed each folder and how it
// asked the source for flag changes: by mod-sequence (QRESYNC on EXAMINE,
// FETCH CHANGEDSINCE, or ENABLE of either), or by listing every flag.
func (g *genRig) notePaths(s summary, stderr string) {
	for _, f := range genFolders {
		g.listings[s.Folders[f].Listing]++
	}
	for _, l := range strings.Split(stderr, "\n") {
		if _, reason, ok := strings.Cut(l, `msg="listing in full"`); ok {
			_, reason, _ = strings.Cut(reason, "reason=")
			g.fullReasons[digits.ReplaceAllString(strings.Trim(reason, `"`), "N")]++
		}
	}
	for _, c := range tracedCommands(stderr) {
		if c.side != "src" {
			continue
		}
		up := strings.ToUpper(c.line)
		if strings.Contains(up, "CHANGEDSINCE") || strings.Contains(up, "QRESYNC") || strings.Contains(up, "CONDSTORE") {
			g.modSeq++
		}
		if c.verb == "UID FETCH" && (strings.HasSuffix(up, " (UID FLAGS)") || strings.HasSuffix(up, " (FLAGS)")) {
			g.flagsList++
		}
	}
}

// check compares the incremental destinations (Maildir and IMAP) with
// the source, and the Maildir one with the full-listing destination.
func (g *genRig) check() []string {
	g.t.Helper()
	g.src = g.d.Fetch(g.t, g.user, g.pw)
	var problems []string
	for _, f := range genFolders {
		for _, dst := range []*genDest{&g.inc, &g.imapDst} {
			problems = append(problems, g.checkFolder(dst, f)...)
		}
		if got := g.inc.held[f]; !sameHeld(got, g.ref.held[f]) {
			problems = append(problems, fmt.Sprintf("%s: differs from the full-listing copy:\n    incremental %v\n    full        %v", f, summarise(got), summarise(g.ref.held[f])))
		}
	}
	return slices.Compact(problems)
}

// checkFolder checks that dst holds every message of the source's folder f
// once, with its flags, and nothing twice.
func (g *genRig) checkFolder(dst *genDest, f string) []string {
	var problems []string
	got := dst.held[f]
	for _, m := range g.src[f] {
		want := flagKey(imapFlagStrings(m.Flags))
		switch copies := got[string(m.Body)]; {
		case len(copies) == 0:
			problems = append(problems, fmt.Sprintf("%s %s: %q not copied", dst.name, f, genLine(m.Body)))
		case len(copies) > 1:
			problems = append(problems, fmt.Sprintf("%s %s: %q held %d times", dst.name, f, genLine(m.Body), len(copies)))
		case copies[0] != want:
			problems = append(problems, fmt.Sprintf("%s %s: %q has flags %s, the source %s", dst.name, f, genLine(m.Body), copies[0], want))
		}
	}
	for body, copies := range got {
		if len(copies) > 1 {
			problems = append(problems, fmt.Sprintf("%s %s: %q held %d times", dst.name, f, genLine([]byte(body)), len(copies)))
		}
	}
	return problems
}

// checkPaths asserts the variant took the listing path it exists for.
func (g *genRig) checkPaths(rounds int) {
	t := g.t
	if rounds < 3 {
		return // the first two runs list in full: nothing to assert yet
	}
	if g.listings["incremental"] == 0 {
		t.Errorf("no folder was ever listed incrementally: %v", g.listings)
	}
	if g.condstore {
		if g.modSeq == 0 {
			t.Errorf("with CONDSTORE, no run asked for changes by mod-sequence (CHANGEDSINCE, QRESYNC)")
		}
		return
	}
	if g.modSeq != 0 || g.listings["skipped"] != 0 {
		t.Errorf("without CONDSTORE: mod-sequences asked %d times, %d folders skipped; want 0 and 0 (flag changes do not show in STATUS)",
			g.modSeq, g.listings["skipped"])
	}
	if g.flagsList == 0 {
		t.Errorf("without CONDSTORE, no run listed every flag (UID FETCH a:b (UID FLAGS))")
	}
}

// negativeControl shows the checks can fail: a flag changed on the source
// and not yet copied is reported.
func (g *genRig) negativeControl() {
	g.t.Helper()
	folder, uid, ok := g.pick()
	for i := 0; !ok && i < len(genFolders); i++ {
		folder, uid, ok = g.pick()
	}
	if !ok {
		g.appendNew("INBOX", 1)
		if g.check() == nil {
			g.t.Errorf("a message not copied yet passes the check")
		}
		return
	}
	g.store(uid, imap.StoreFlagsAdd, imap.FlagFlagged)
	g.store(uid, imap.StoreFlagsDel, imap.FlagSeen)
	g.store(uid, imap.StoreFlagsAdd, "$Label1")
	g.store(uid, imap.StoreFlagsDel, "$Label1")
	g.store(uid, imap.StoreFlagsAdd, imap.FlagAnswered)
	if problems := g.check(); len(problems) == 0 {
		// Every one of these stores changes the flags unless the message
		// had exactly \Flagged and \Answered already, without \Seen; so
		// try the opposite once.
		g.store(uid, imap.StoreFlagsDel, imap.FlagFlagged)
		if problems = g.check(); len(problems) == 0 {
			g.t.Errorf("%s UID %d: flags changed on the source and not copied, yet the check passes", folder, uid)
		}
	}
}

// readHeld reads every message of a Maildir destination: folder -> body ->
// the flags of each copy.
func readHeld(t *testing.T, root string) map[string]map[string][]string {
	t.Helper()
	ctx := context.Background()
	src, err := maildir.New(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	for _, mb := range boxes {
		out[mb] = map[string][]string{}
		err := src.List(ctx, mb, func(env mail.Envelope) error {
			rc, err := src.Open(ctx, env)
			if err != nil {
				return err
			}
			defer func() { _ = rc.Close() }()
			body, err := io.ReadAll(rc)
			if err != nil {
				return err
			}
			var flags []string
			for _, f := range env.Flags {
				flags = append(flags, string(f))
			}
			out[mb][string(body)] = append(out[mb][string(body)], flagKey(flags))
			return nil
		})
		if err != nil {
			t.Fatalf("read %s of %s: %v", mb, root, err)
		}
	}
	return out
}

// lostBodies lists the messages before held that now does not.
func lostBodies(before, now map[string]map[string][]string) []string {
	var out []string
	for f, bodies := range before {
		for body := range bodies {
			if _, ok := now[f][body]; !ok {
				out = append(out, f+": "+genLine([]byte(body)))
			}
		}
	}
	sort.Strings(out)
	return out
}

func countHeld(h map[string]map[string][]string) int {
	n := 0
	for _, f := range h {
		for _, copies := range f {
			n += len(copies)
		}
	}
	return n
}

func sameHeld(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for body, fa := range a {
		fb := slices.Clone(b[body])
		fa = slices.Clone(fa)
		slices.Sort(fa)
		slices.Sort(fb)
		if !slices.Equal(fa, fb) {
			return false
		}
	}
	return true
}

// summarise lists a folder's messages by first line and flags, sorted.
func summarise(h map[string][]string) []string {
	var out []string
	for body, copies := range h {
		for _, f := range copies {
			out = append(out, genLine([]byte(body))+" "+f)
		}
	}
	sort.Strings(out)
	return out
}

func imapFlagStrings(fs []imap.Flag) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

// flagKey is a canonical form of a flag list: lower case, sorted.
func flagKey(fs []string) string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		if !strings.EqualFold(f, `\Recent`) {
			out = append(out, strings.ToLower(f))
		}
	}
	sort.Strings(out)
	return "[" + strings.Join(out, " ") + "]"
}

// genLine names a generated message in messages: its first line.
func genLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startDovecot starts a Dovecot of the test's own with testdata/dovecot/
// dovecot.sh and env (such as DOVECOT_NO_CONDSTORE=1) on free loopback
// ports, stopped at cleanup. Like `make test`'s, it must run as root.
func startDovecot(t *testing.T, env ...string) *mailtest.Dovecot {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dovecot")
	ports := freePorts(t, 4)
	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "dovecot", "dovecot.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// The daemon inherits the script's stdout and stderr: a file, so that
	// waiting for the script does not wait for a pipe the daemon holds.
	logPath := dir + ".log"
	sh := func(args ...string) error {
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer func() { _ = logf.Close() }()
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		cmd.Env = append(append(os.Environ(), env...),
			fmt.Sprintf("DOVECOT_IMAP_PORT=%d", ports[0]), fmt.Sprintf("DOVECOT_IMAPS_PORT=%d", ports[1]),
			fmt.Sprintf("DOVECOT_POP3_PORT=%d", ports[2]), fmt.Sprintf("DOVECOT_POP3S_PORT=%d", ports[3]))
		cmd.Stdout, cmd.Stderr = logf, logf
		return cmd.Run()
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "log", "dovecot.log")); err == nil {
				t.Logf("the test's Dovecot log ends:\n%s", lastLines(string(b), 30))
			}
		}
		if err := sh("stop", dir); err != nil {
			t.Errorf("stop the test's Dovecot: %v", err)
		}
	})
	// The ports were free a moment ago; another process may have taken
	// one since: start again on others.
	for attempt := 1; ; attempt++ {
		err := sh("start", dir)
		if err == nil {
			break
		}
		if attempt == 3 {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("start a Dovecot with %v: %v\n%s", env, err, out)
		}
		ports = freePorts(t, 4)
	}
	return &mailtest.Dovecot{
		IMAPS: fmt.Sprintf("localhost:%d", ports[1]), IMAPStartTLS: fmt.Sprintf("localhost:%d", ports[0]),
		POP3S: fmt.Sprintf("localhost:%d", ports[3]), POP3STLS: fmt.Sprintf("localhost:%d", ports[2]),
		CAFile: filepath.Join(dir, "cert.pem"), Dir: dir,
	}
}

// freePorts returns n loopback ports free a moment ago (the kernel gave
// them to listeners, now closed).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close() }()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
