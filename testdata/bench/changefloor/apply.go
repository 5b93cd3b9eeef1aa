package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The timed part: every IMAP side on one connection, every command written without waiting for
// any answer (LOGIN included: Dovecot hands what follows it to the mail process), the Maildir's
// file operations beside them, new bodies written as they arrive.

type stats struct {
	cmds, fetched, appended, flags, deleted int
	learnedFlags, learnedGone               int
	readdirs, renamed, unlinked, written    int
	dirsSynced                              int
	// When each part ended, from the start: the last IMAP answer (the slowest side), the
	// LOGIN's answer, the Maildir's last fsync.
	imapEnd, loginEnd, mdEnd time.Duration
}

func (s *stats) add(o stats) {
	s.cmds += o.cmds
	s.fetched += o.fetched
	s.appended += o.appended
	s.flags += o.flags
	s.deleted += o.deleted
	s.learnedFlags += o.learnedFlags
	s.learnedGone += o.learnedGone
	s.readdirs += o.readdirs
	s.renamed += o.renamed
	s.unlinked += o.unlinked
	s.written += o.written
	s.dirsSynced += o.dirsSynced
	s.imapEnd = max(s.imapEnd, o.imapEnd)
	s.loginEnd = max(s.loginEnd, o.loginEnd)
	s.mdEnd = max(s.mdEnd, o.mdEnd)
}

func runApply(planFile string, wait bool) error {
	var p plan
	if err := readJSON(planFile, &p); err != nil {
		return err
	}
	start := time.Now()
	abort := make(chan struct{})
	var once sync.Once
	fail := func() { once.Do(func() { close(abort) }) }
	// bodies[i]: what IMAP side i fetches, for the Maildir or for the other IMAP side.
	bodies := make([]chan []byte, len(p.IMAP))
	for i, s := range p.IMAP {
		n := 0
		for _, f := range s.Folders {
			n += len(f.Fetch)
		}
		bodies[i] = make(chan []byte, n)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total stats
		errs  []error
	)
	done := func(st stats, err error) {
		mu.Lock()
		defer mu.Unlock()
		total.add(st)
		if err != nil {
			errs = append(errs, err)
			fail()
		}
	}
	if p.Maildir != nil {
		wg.Go(func() { done(p.Maildir.run(bodies[0], abort, start)) })
	}
	for i, s := range p.IMAP {
		var in <-chan []byte
		if len(p.IMAP) == 2 {
			in = bodies[1-i]
		}
		wg.Go(func() {
			st, err := s.run(p.Addr, p.CAFile, bodies[i], in, abort, start, wait)
			if err != nil {
				err = fmt.Errorf("%s: %w", s.User, err)
			}
			done(st, err)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	t := total
	md, mdEnd := "", ""
	if p.Maildir != nil {
		md = fmt.Sprintf("; Maildir: %d directories read, %d renamed, %d unlinked, %d written, %d directories fsynced",
			t.readdirs, t.renamed, t.unlinked, t.written, t.dirsSynced)
		mdEnd = fmt.Sprintf(", the Maildir's last fsync at %.3f s", t.mdEnd.Seconds())
	}
	fmt.Printf("%d IMAP commands: fetched %d, appended %d, flags %d, deleted %d; learned %d flag changes, %d vanished%s; "+
		"in %.3f s (LOGIN answered at %.3f s, the last IMAP answer at %.3f s%s)\n",
		t.cmds, t.fetched, t.appended, t.flags, t.deleted, t.learnedFlags, t.learnedGone, md,
		elapsed.Seconds(), t.loginEnd.Seconds(), t.imapEnd.Seconds(), mdEnd)
	return nil
}

// trace (CHANGEFLOOR_TRACE=1) prints each command's answer with when it came, on stderr.
var trace = os.Getenv("CHANGEFLOOR_TRACE") == "1"

// cmd is one command of a session, in tag order.
type cmd struct {
	text     string
	isSelect bool // its untagged FETCH FLAGS and VANISHED (EARLIER) are what the side learns
}

// commands lists side s's commands before its APPEND and LOGOUT: LOGIN, ENABLE QRESYNC, the
// status of every folder in one LIST-STATUS, then per changed folder SELECT (QRESYNC) with the
// last sync's UIDVALIDITY and HIGHESTMODSEQ, the new bodies, the flag writes, the deletions.
func (s *imapSide) commands() []cmd {
	cs := []cmd{
		{text: loginCmd(s.User, readPassword(s.PasswordFile))},
		{text: "ENABLE QRESYNC"},
		{text: `LIST "" "*" RETURN (STATUS (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ))`},
	}
	for _, f := range s.Folders {
		cs = append(cs, cmd{text: fmt.Sprintf("SELECT %s (QRESYNC (%d %d))", mailbox(f.Name), f.UIDValidity, f.ModSeq), isSelect: true})
		if len(f.Fetch) > 0 {
			cs = append(cs, cmd{text: "UID FETCH " + uidSet(f.Fetch) + " (BODY.PEEK[])"})
		}
		if len(f.FlagOn) > 0 {
			cs = append(cs, cmd{text: "UID STORE " + uidSet(f.FlagOn) + ` +FLAGS.SILENT (\Flagged)`})
		}
		if len(f.FlagOff) > 0 {
			cs = append(cs, cmd{text: "UID STORE " + uidSet(f.FlagOff) + ` -FLAGS.SILENT (\Flagged)`})
		}
		if len(f.Delete) > 0 {
			set := uidSet(f.Delete)
			cs = append(cs, cmd{text: "UID STORE " + set + ` +FLAGS.SILENT (\Deleted)`}, cmd{text: "UID EXPUNGE " + set})
		}
	}
	return cs
}

// run is one IMAP side: out gets the bodies it fetches; in (IMAP <-> IMAP) the other side's,
// to APPEND here. With wait, LOGIN's and each SELECT's answer is waited for before the next
// command is written (what a tool that checks the capabilities and each folder's UIDVALIDITY
// before writing to it pays); otherwise every command goes out at once.
func (s *imapSide) run(addr, caFile string, out chan<- []byte, in <-chan []byte, abort <-chan struct{}, start time.Time,
	wait bool) (stats, error) {
	var st stats
	files := make(chan [][]byte, 1)
	go func() { files <- readAppendFiles(s.AppendFiles) }()
	c, err := dial(addr, caFile)
	if err != nil {
		return st, err
	}
	defer func() { _ = c.conn.Close() }()
	cs := s.commands()
	for _, f := range s.Folders {
		st.flags += len(f.FlagOn) + len(f.FlagOff)
		st.deleted += len(f.Delete)
	}
	msgs := <-files
	if msgs == nil {
		return st, errors.New("reading the Maildir's new files failed")
	}
	nAppend := len(msgs) + s.AppendFrom
	total := len(cs) + 1 // and LOGOUT
	if nAppend > 0 {
		total++
	}
	st.cmds = total
	// The reader owns st until it is done: the failures below return none of it.
	readErr := make(chan error, 1)
	answered := make(chan int, len(cs))
	go func() { readErr <- s.readAll(c, cs, total, out, &st, start, answered) }()
	for i, x := range cs {
		c.send(x.text)
		if !wait || (i > 0 && !x.isSelect) {
			continue
		}
		if err := c.w.Flush(); err != nil {
			return stats{}, err
		}
		for k := -1; k != i; {
			select {
			case k = <-answered:
			case err := <-readErr:
				return stats{}, fmt.Errorf("waiting for %q: %w", strings.Fields(x.text)[0], err)
			}
		}
	}
	if s.AppendFrom == 0 {
		s.writeTail(c, msgs)
	}
	if err := c.w.Flush(); err != nil {
		return stats{}, err
	}
	if s.AppendFrom > 0 {
		for range s.AppendFrom {
			select {
			case b := <-in:
				msgs = append(msgs, b)
			case <-abort:
				return stats{}, errors.New("aborted: the other side failed")
			case err := <-readErr:
				return stats{}, fmt.Errorf("before the other side's bodies came: %w", err)
			}
		}
		s.writeTail(c, msgs)
		if err := c.w.Flush(); err != nil {
			return stats{}, err
		}
	}
	if err := <-readErr; err != nil {
		return st, err
	}
	st.appended = len(msgs)
	st.imapEnd = time.Since(start)
	if st.learnedFlags < s.LearnFlags || st.learnedGone < s.LearnGone {
		return st, fmt.Errorf("its SELECTs reported %d flag changes and %d vanished, want at least %d and %d",
			st.learnedFlags, st.learnedGone, s.LearnFlags, s.LearnGone)
	}
	return st, nil
}

// writeTail writes one MULTIAPPEND (RFC 3502) of msgs with non-synchronising literals (RFC
// 7888), when there are any, and LOGOUT.
func (s *imapSide) writeTail(c *client, msgs [][]byte) {
	if len(msgs) > 0 {
		c.tag++
		fmt.Fprintf(c.w, "T%d APPEND %s", c.tag, mailbox(s.AppendTo))
		for _, m := range msgs {
			fmt.Fprintf(c.w, " {%d+}\r\n", len(m))
			_, _ = c.w.Write(m)
		}
		_, _ = c.w.WriteString("\r\n")
	}
	c.send("LOGOUT")
}

// readAll reads the answers to total commands (cs are the first), all of which must be OK.
// Each answered command of cs goes to answered, by its index.
func (s *imapSide) readAll(c *client, cs []cmd, total int, out chan<- []byte, st *stats, start time.Time,
	answered chan<- int) error {
	var first error
	for done := 0; done < total; {
		rs, err := c.read()
		if err != nil {
			return fmt.Errorf("after %d of %d answers: %w", done, total, err)
		}
		t := rs.text
		if strings.HasPrefix(t, "T") {
			done++
			if trace {
				fmt.Fprintf(os.Stderr, "%s %.3f %s", s.User, time.Since(start).Seconds(), t)
			}
			if done == 1 {
				st.loginEnd = time.Since(start)
			}
			if done <= len(cs) {
				answered <- done - 1
			}
			if _, rest, _ := strings.Cut(t, " "); !strings.HasPrefix(rest, "OK") && first == nil {
				first = errors.New(strings.TrimSpace(t))
			}
			continue
		}
		inSelect := done < len(cs) && cs[done].isSelect
		switch {
		case strings.Contains(t, " FETCH (") && strings.Contains(t, "BODY[]") && len(rs.lits) == 1:
			st.fetched++
			out <- rs.lits[0]
		case inSelect && strings.Contains(t, " FETCH (") && strings.Contains(t, "FLAGS ("):
			st.learnedFlags++
		case inSelect && strings.HasPrefix(t, "* VANISHED (EARLIER) "):
			st.learnedGone += setSize(strings.TrimSpace(strings.TrimPrefix(t, "* VANISHED (EARLIER) ")))
		}
	}
	return first
}

// readAppendFiles reads the Maildir's new files; nil when one cannot be read.
func readAppendFiles(paths []string) [][]byte {
	out := make([][]byte, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "changefloor:", err)
			return nil
		}
		out = append(out, b)
	}
	return out
}

// run is the Maildir side: read the changed folders' names (what a tool must do to learn
// their changes), rename and unlink for the IMAP side's flag changes and deletions, write each
// new body (tmp/, fsync, rename into new/) as it arrives, then fsync every directory whose
// entries changed.
func (m *maildirSide) run(bodies <-chan []byte, abort <-chan struct{}, start time.Time) (stats, error) {
	var st stats
	for _, d := range m.Readdir {
		for _, sub := range []string{"cur", "new"} {
			if err := readNames(filepath.Join(d, sub)); err != nil {
				return st, err
			}
			st.readdirs++
		}
	}
	for _, r := range m.Renames {
		if err := os.Rename(r[0], r[1]); err != nil {
			return st, err
		}
		st.renamed++
	}
	for _, p := range m.Unlinks {
		if err := os.Remove(p); err != nil {
			return st, err
		}
		st.unlinked++
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	keep := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	stamp := strconv.FormatInt(time.Now().Unix(), 10) + ".P" + strconv.Itoa(os.Getpid())
	for i := range m.NewN {
		select {
		case b := <-bodies:
			name := stamp + "Q" + strconv.Itoa(i) + ".changefloor"
			wg.Go(func() { keep(writeDurable(m.NewDir, name, b)) })
		case <-abort:
			wg.Wait()
			return st, errors.New("aborted: the IMAP side failed")
		}
	}
	wg.Wait()
	st.written = m.NewN
	for _, d := range m.Fsync {
		wg.Go(func() { keep(fsyncPath(d)) })
	}
	wg.Wait()
	st.dirsSynced = len(m.Fsync)
	st.mdEnd = time.Since(start)
	return st, errors.Join(errs...)
}

func readNames(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	_, err = f.Readdirnames(-1)
	_ = f.Close()
	return err
}

// writeDurable writes b to dir/tmp/name, fsyncs it and renames it into dir/new/.
func writeDurable(dir, name string, b []byte) error {
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "new", name))
}

func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
