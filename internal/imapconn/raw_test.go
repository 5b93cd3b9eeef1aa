package imapconn

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	imap "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestDialRaw: the bare connection is logged in (a command works), over
// implicit TLS and STARTTLS, with capabilities after login; the trace
// never shows the password; a wrong password is ErrAuth.
func TestDialRaw(t *testing.T) {
	m := startMem(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapLiteralPlus: {}})
	for _, startTLS := range []bool{false, true} {
		t.Run(fmt.Sprint("startTLS=", startTLS), func(t *testing.T) {
			var mu sync.Mutex
			var lines []string
			o := m.opts(testPass)
			o.Trace = func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() }
			rc, err := DialRaw(context.Background(), m.config(t, startTLS), o)
			if err != nil {
				t.Fatalf("DialRaw() = %v", err)
			}
			defer rc.Close()
			if !rc.Has("uidplus") || !rc.Has("LITERAL+") {
				t.Errorf("caps after login = %v", rc.Caps)
			}
			fmt.Fprintf(rc, "x1 SELECT INBOX\r\n")
			if line := readTagged(t, rc.R, "x1"); !strings.HasPrefix(line, "x1 OK") {
				t.Errorf("SELECT = %q", line)
			}
			mu.Lock()
			all := strings.Join(lines, "\n")
			mu.Unlock()
			b64 := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPass))
			if strings.Contains(all, testPass) || strings.Contains(all, b64) {
				t.Fatalf("trace leaks the password:\n%s", all)
			}
		})
	}
	_, err := DialRaw(context.Background(), m.config(t, false), m.opts("wrong"))
	if !errors.Is(err, mail.ErrAuth) {
		t.Errorf("DialRaw(wrong password) = %v, want ErrAuth", err)
	}
}

// TestDialRawLogin: without AUTH=PLAIN, LOGIN quotes the arguments.
func TestDialRawLogin(t *testing.T) {
	f := startFake(t, &fakeServer{caps: "IMAP4rev1 UIDPLUS"})
	o := plainOpts()
	o.Password = func(context.Context) (string, error) { return `p"w\x`, nil }
	rc, err := DialRaw(context.Background(), addrConfig(t, f.addr, TLSStartTLS), o)
	if err != nil {
		t.Fatalf("DialRaw() = %v", err)
	}
	rc.Close()
	var login string
	for _, l := range f.sent() {
		if strings.Contains(l, "LOGIN") {
			login = l
		}
	}
	if want := `L1 LOGIN "alice" "p\"w\\x"`; login != want {
		t.Errorf("sent %q, want %q", login, want)
	}
}

func readTagged(t *testing.T, r *bufio.Reader, tag string) string {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if strings.HasPrefix(line, tag+" ") {
			return strings.TrimRight(line, "\r\n")
		}
	}
}
