package imapsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/imapconn"
	"github.com/mailferry/mailferry/sources/imap"
	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// nestedBox is a nested folder with non-ASCII names (modified UTF-7 on the
// wire).
const nestedBox = "Projekte/Übersicht 2024/日本"

// seedSource fills a fresh Dovecot user with the corpus in INBOX and a few
// messages in nestedBox and Sent, and returns its account.
func seedSource(t *testing.T, d *mailtest.Dovecot) (*Config, *mail.OpenOptions, int) {
	t.Helper()
	cfg, o := dovecotAccount(t, d)
	pw, _ := o.Password(context.Background())
	var inbox []mailtest.SeedMessage
	for _, f := range mailtest.Corpus(t) {
		var flags []imapv2.Flag
		for _, fl := range f.Flags {
			flags = append(flags, imapv2.Flag(fl))
		}
		inbox = append(inbox, mailtest.SeedMessage{Body: f.Body, Flags: flags, Date: f.Date})
	}
	d.Seed(t, cfg.User, pw, "INBOX", inbox)
	var nested, sent []mailtest.SeedMessage
	for i := range 3 {
		nested = append(nested, mailtest.SeedMessage{Body: []byte(msg(fmt.Sprintf("<n%d@x>", i), "nested", fmt.Sprintf("nested %d\r\n", i))), Date: testDate})
		sent = append(sent, mailtest.SeedMessage{Body: []byte(msg(fmt.Sprintf("<s%d@x>", i), "sent", fmt.Sprintf("sent %d\r\n", i))), Flags: []imapv2.Flag{imapv2.FlagSeen}, Date: testDate})
	}
	d.Seed(t, cfg.User, pw, nestedBox, nested)
	d.Seed(t, cfg.User, pw, "Sent", sent)
	return cfg, o, len(inbox) + len(nested) + len(sent)
}

// courierAccount adds a Dovecot user whose namespace is Courier-style
// (prefix "INBOX.", separator '.'), through userdb extra fields.
func courierAccount(t *testing.T, d *mailtest.Dovecot) (*Config, *mail.OpenOptions) {
	t.Helper()
	vm, err := user.Lookup("vmail")
	if err != nil {
		t.Skipf("no vmail user: %v", err)
	}
	uid, _ := strconv.Atoi(vm.Uid)
	gid, _ := strconv.Atoi(vm.Gid)
	name := fmt.Sprintf("cour%dx%d", os.Getpid(), time.Now().UnixNano()%1e9)
	pw := "pw-" + name
	home := filepath.Join(d.Dir, "home", name)
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chown(home, uid, gid); err != nil {
		t.Skipf("cannot chown the home: %v", err)
	}
	line := fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s::userdb_namespace/inbox/prefix=INBOX. userdb_namespace/inbox/separator=.\n", name, pw, uid, gid, home)
	f, err := os.OpenFile(filepath.Join(d.Dir, "users"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write([]byte(line))
	written := time.Now()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Dovecot re-reads the users file at most once a second.
	time.Sleep(time.Until(written.Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
	host, port, _ := net.SplitHostPort(d.IMAPS)
	p, _ := strconv.Atoi(port)
	return &Config{Config: imapconn.Config{Host: host, Port: p, User: name, TLS: imapconn.TLSImplicit}, MultiAppend: true},
		&mail.OpenOptions{CAFile: d.CAFile, Password: func(context.Context) (string, error) { return pw, nil }, Timeout: 30 * time.Second}
}

// contents returns, per mailbox, the sorted normalised bodies with flags
// and dates, for comparing two accounts.
func contents(t *testing.T, d *mailtest.Dovecot, cfg *Config, o *mail.OpenOptions, rename func(string) string) map[string][]string {
	t.Helper()
	pw, _ := o.Password(context.Background())
	out := map[string][]string{}
	for box, msgs := range d.Fetch(t, cfg.User, pw) {
		var list []string
		for _, m := range msgs {
			var fl []string
			for _, f := range m.Flags {
				fl = append(fl, strings.ToLower(string(f)))
			}
			sort.Strings(fl)
			list = append(list, fmt.Sprintf("%s %v %s", m.Date.UTC().Format(time.RFC3339), fl, dovecotNormalize(m.Body)))
		}
		sort.Strings(list)
		if rename != nil {
			box = rename(box)
		}
		if len(list) > 0 {
			out[box] = list
		}
	}
	return out
}

func copyAccount(t *testing.T, srcCfg *Config, srcO *mail.OpenOptions, dstCfg *Config, dstO *mail.OpenOptions) *mailferry.Result {
	t.Helper()
	ctx := context.Background()
	src, err := imap.New(ctx, &srcCfg.Config, srcO)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := New(ctx, dstCfg, dstO)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	roles, err := mailferry.RoleMapFor(ctx, src, dst)
	if err != nil {
		t.Fatalf("RoleMapFor = %v", err)
	}
	res, err := mailferry.Copy(ctx, src, dst, mailferry.Options{MapMailbox: roles})
	if err != nil {
		t.Fatalf("Copy = %v", err)
	}
	if len(res.Failures) > 0 {
		t.Fatalf("Copy failures: %+v", res.Failures)
	}
	return res
}

// TestCopyIMAPToIMAP copies a whole account between two Dovecot users with
// the engine, then runs again without a checkpoint: the second run must
// add nothing (rule 2, scenario C11). Also into a Courier-namespace user.
func TestCopyIMAPToIMAP(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	srcCfg, srcO, total := seedSource(t, d)
	want := contents(t, d, srcCfg, srcO, nil)
	if len(want[nestedBox]) != 3 || len(want["Sent"]) != 3 {
		t.Fatalf("seeded source holds %v", keys(want))
	}
	for _, tc := range []struct {
		name    string
		account func() (*Config, *mail.OpenOptions)
		rename  func(string) string // destination server name -> source name
	}{
		{"MultiAppend", func() (*Config, *mail.OpenOptions) { return dovecotAccount(t, d) }, nil},
		{"PlainAppend", func() (*Config, *mail.OpenOptions) {
			c, o := dovecotAccount(t, d)
			c.MultiAppend = false
			return c, o
		}, nil},
		{"Courier", func() (*Config, *mail.OpenOptions) { return courierAccount(t, d) }, func(s string) string {
			return namespace{prefix: "INBOX.", delim: '.'}.userName(s)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dstCfg, dstO := tc.account()
			res := copyAccount(t, srcCfg, srcO, dstCfg, dstO)
			if n := res.Stats.Copied.Load(); n != int64(total) {
				t.Errorf("copied %d messages, want %d", n, total)
			}
			got := contents(t, d, dstCfg, dstO, tc.rename)
			if !same(got, want) {
				t.Errorf("destination differs from source:\n got %v\nwant %v", summary(got), summary(want))
			}
			// Second run, checkpoint lost: nothing is appended again.
			copyAccount(t, srcCfg, srcO, dstCfg, dstO)
			if again := contents(t, d, dstCfg, dstO, tc.rename); !same(again, want) {
				t.Errorf("after a rerun without checkpoint:\n got %v\nwant %v", summary(again), summary(want))
			}
			if tc.rename == nil {
				return
			}
			// And back out of the Courier-style account: the source drops the
			// "INBOX." prefix, so the folders land under the same names.
			backCfg, backO := dovecotAccount(t, d)
			copyAccount(t, dstCfg, dstO, backCfg, backO)
			if back := contents(t, d, backCfg, backO, nil); !same(back, want) {
				t.Errorf("copied back from the Courier account:\n got %v\nwant %v", summary(back), summary(want))
			}
		})
	}
}

func TestMailboxRolesDovecot(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	ctx := context.Background()
	for name, account := range map[string]func() (*Config, *mail.OpenOptions){
		"Plain":   func() (*Config, *mail.OpenOptions) { return dovecotAccount(t, d) },
		"Courier": func() (*Config, *mail.OpenOptions) { return courierAccount(t, d) },
	} {
		t.Run(name, func(t *testing.T) {
			cfg, o := account()
			s, err := New(ctx, cfg, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			roles, err := s.MailboxRoles(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if roles["Sent"] != mail.RoleSent || roles["Trash"] != mail.RoleTrash {
				t.Errorf("sink MailboxRoles = %v", roles)
			}
			src, err := imap.New(ctx, &cfg.Config, o)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			sroles, err := src.MailboxRoles(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The source names mailboxes without the "INBOX." prefix.
			if sroles["Sent"] != mail.RoleSent {
				t.Errorf("source MailboxRoles = %v", sroles)
			}
		})
	}
}

func TestSetFlagsDovecot(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	ctx := context.Background()
	cfg, o := dovecotAccount(t, d)
	cfg.MultiAppend = false
	s, err := New(ctx, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := put(t, s, "INBOX", msg("<f@x>", "f", "flags\r\n"), testDate, mail.FlagSeen)
	if err := s.SetFlags(ctx, "INBOX", id, []mail.Flag{mail.FlagFlagged, mail.FlagAnswered, "$Forwarded", `\Recent`}); err != nil {
		t.Fatalf("SetFlags = %v", err)
	}
	pw, _ := o.Password(ctx)
	msgs := d.Fetch(t, cfg.User, pw)["INBOX"]
	if len(msgs) != 1 {
		t.Fatalf("INBOX holds %d messages", len(msgs))
	}
	var fl []string
	for _, f := range msgs[0].Flags {
		fl = append(fl, string(f))
	}
	sort.Strings(fl)
	if fmt.Sprint(fl) != `[$Forwarded \Answered \Flagged]` {
		t.Errorf("flags after SetFlags = %v", fl)
	}
	uidv, uid, _ := parseID(id)
	for _, bad := range []mail.ID{makeID(uidv, uid+100), makeID(uidv+1, uid), "nonsense"} {
		if err := s.SetFlags(ctx, "INBOX", bad, nil); !errors.Is(err, mail.ErrNotFound) {
			t.Errorf("SetFlags(%q) = %v, want ErrNotFound", bad, err)
		}
	}
}

// TestBigMessageMemoryFlat appends a 50 MB message; the Go heap must not
// grow with it (it is spooled to disk and streamed).
func TestBigMessageMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB")
	}
	d := mailtest.NeedDovecot(t)
	for _, multi := range []bool{true, false} {
		cfg, o := dovecotAccount(t, d)
		cfg.MultiAppend = multi
		s, err := New(context.Background(), cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		const size = 50 << 20
		body := io.MultiReader(strings.NewReader("Subject: big\r\nMessage-ID: <big@x>\r\n\r\n"), io.LimitReader(zeros{}, size))
		_, err = s.Put(context.Background(), mail.Envelope{Mailbox: "INBOX", ID: "big", Size: -1, Date: testDate}, body)
		if err == nil {
			err = s.Commit(context.Background())
		}
		close(stop)
		<-done
		s.Close()
		if err != nil {
			t.Fatalf("Put(50 MB) multi=%v: %v", multi, err)
		}
		if grow := int64(peak.Load()) - int64(base); grow > 16<<20 {
			t.Errorf("multi=%v: heap grew by %d MiB for a 50 MB message", multi, grow>>20)
		}
	}
}

func same(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if fmt.Sprint(v) != fmt.Sprint(b[k]) {
			return false
		}
	}
	return true
}

func keys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func summary(m map[string][]string) string {
	var b bytes.Buffer
	for _, k := range keys(m) {
		fmt.Fprintf(&b, "%s:%d ", k, len(m[k]))
	}
	return b.String()
}
