package maildir

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sources/imap"
	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestDovecotFlagsFollowIntoMaildir: IMAP (Dovecot) -> Maildir, then
// another client sets \Flagged and the keyword $Label1 on two messages of
// the source; the rerun renames the two Maildir files so their names carry
// F and the keyword's dovecot-keywords letter, and Dovecot serving that
// Maildir (it indexed the tree after the first run, and moved what it
// found in new/) shows both flags on those two messages and nothing new on
// the others. A third run changes nothing.
func TestDovecotFlagsFollowIntoMaildir(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	srcUser, srcPW := d.NewUser(t)
	date := time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)
	var seed []mailtest.SeedMessage
	for i := range 4 {
		seed = append(seed, mailtest.SeedMessage{Body: fmt.Appendf(nil, "Subject: m%d\r\nMessage-ID: <m%d@flags>\r\n\r\nbody %d\r\n", i, i, i), Date: date})
	}
	seed[3].Flags = append(seed[3].Flags, `\Seen`)
	d.Seed(t, srcUser, srcPW, "INBOX", seed)

	dstUser, dstPW := d.NewUser(t)
	home := filepath.Join(d.Dir, "home", dstUser)
	root := filepath.Join(home, "Maildir") // dovecot.sh: mail_location = maildir:~/Maildir
	cpPath := filepath.Join(t.TempDir(), "cp.jsonl")
	run := func(name string) *mailferry.Result {
		t.Helper()
		res := dovecotCopy(t, d, srcUser, srcPW, root, cpPath)
		chownTree(t, root, home)
		t.Logf("%s: copied %d, flags updated %d", name, res.Stats.Copied.Load(), res.Stats.FlagsUpdated.Load())
		return res
	}
	if res := run("first run"); res.Stats.Copied.Load() != 4 {
		t.Fatalf("first run copied %d, want 4", res.Stats.Copied.Load())
	}
	d.Fetch(t, dstUser, dstPW) // Dovecot indexes the tree the sink wrote

	d.Doveadm(t, "flags", "add", "-u", srcUser, `\Flagged $Label1`, "mailbox", "INBOX", "uid", "2:3")
	if res := run("rerun"); res.Stats.FlagsUpdated.Load() != 2 || res.Stats.Copied.Load() != 0 {
		t.Fatalf("rerun: flags updated %d, copied %d; want 2 and 0", res.Stats.FlagsUpdated.Load(), res.Stats.Copied.Load())
	}

	// The files' names carry F and $Label1's letter.
	kw := maildirfmt.ReadKeywords(root)
	letter := ""
	for i, k := range kw {
		if k == "$Label1" {
			letter = string(rune('a' + i))
		}
	}
	if letter == "" {
		t.Fatalf("dovecot-keywords %q has no $Label1", kw)
	}
	want := map[string]string{"m0": "", "m1": "F" + letter, "m2": "F" + letter, "m3": "S"}
	infos := infoBySubject(t, root)
	if len(infos) != len(want) {
		t.Errorf("the Maildir INBOX holds %q, want one file each of %q", infos, want)
	}
	for subject, info := range infos {
		if got, w := sortedLetters(info), sortedLetters(want[subject]); got != w {
			t.Errorf("Maildir file of %s has info letters %q, want %q", subject, got, w)
		}
	}

	// Dovecot serving the Maildir shows them.
	wantFlags := map[string]string{"m0": "", "m1": `$label1 \flagged`, "m2": `$label1 \flagged`, "m3": `\seen`}
	for _, m := range d.Fetch(t, dstUser, dstPW)["INBOX"] {
		subject := strings.TrimPrefix(strings.SplitN(string(m.Body), "\r\n", 2)[0], "Subject: ")
		var fl []string
		for _, f := range m.Flags {
			fl = append(fl, strings.ToLower(string(f)))
		}
		sort.Strings(fl)
		if got := strings.Join(fl, " "); got != wantFlags[subject] {
			t.Errorf("Dovecot shows %s with flags %q, want %q", subject, got, wantFlags[subject])
		}
	}

	if res := run("third run"); res.Stats.FlagsUpdated.Load() != 0 || res.Stats.Copied.Load() != 0 {
		t.Errorf("third run: flags updated %d, copied %d; want nothing to do", res.Stats.FlagsUpdated.Load(), res.Stats.Copied.Load())
	}
}

// dovecotCopy runs the engine from the Dovecot account into the Maildir at
// root, with the checkpoint at cpPath.
func dovecotCopy(t *testing.T, d *mailtest.Dovecot, user, pw, root, cpPath string) *mailferry.Result {
	t.Helper()
	host, port, err := net.SplitHostPort(d.IMAPS)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	o := &mail.OpenOptions{CAFile: d.CAFile, Password: func(context.Context) (string, error) { return pw, nil }, Timeout: 30 * time.Second}
	src, err := imap.New(ctx, &imap.Config{Host: host, Port: p, User: user, TLS: imapconn.TLSImplicit}, o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, root, nil)
	if err != nil {
		t.Fatal(errors.Join(err, src.Close()))
	}
	srcName := "imaps://" + user + "@" + d.IMAPS
	cp, err := checkpoint.Open(cpPath, srcName, "maildir:"+root, false)
	if err != nil {
		t.Fatal(errors.Join(err, s.Close(), src.Close()))
	}
	res, err := mailferry.Copy(ctx, src, s, mailferry.Options{SrcEndpoint: srcName, Checkpoint: cp, Backoff: time.Millisecond})
	if err := errors.Join(err, cp.Close(), s.Close(), src.Close()); err != nil {
		t.Fatalf("copy: %v", err)
	}
	return res
}

// infoBySubject maps the Subject of each message file in the INBOX of the
// Maildir at root to the letters of its ":2," info.
func infoBySubject(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		for _, n := range files(t, root, sub) {
			b, err := os.ReadFile(filepath.Join(root, sub, n))
			if err != nil {
				t.Fatal(err)
			}
			subject := strings.TrimPrefix(strings.SplitN(string(b), "\r\n", 2)[0], "Subject: ")
			_, info, _ := strings.Cut(n, ":2,")
			out[subject] = info
		}
	}
	return out
}

// sortedLetters sorts the letters of s.
func sortedLetters(s string) string {
	b := []byte(s)
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}
