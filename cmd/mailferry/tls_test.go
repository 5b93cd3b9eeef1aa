package main

import (
	"bufio"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// greeter is a hostile server: it sends greeting to every connection and
// records the lines the client sends, without ever answering.
type greeter struct {
	addr  string
	mu    sync.Mutex
	lines []string
}

func startGreeter(t *testing.T, greeting string) *greeter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &greeter{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			conns = append(conns, c)
			g.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Write([]byte(greeting))
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					g.mu.Lock()
					g.lines = append(g.lines, sc.Text())
					g.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		g.mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		g.mu.Unlock()
		wg.Wait()
	})
	return g
}

func (g *greeter) sent() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.lines...)
}

// TestF3HostileGreetingsCLI covers F3 through the CLI: a PREAUTH greeting
// on a STARTTLS connection, a garbled greeting and a BYE are refused with a
// one-line message naming the problem, before any credential or mailbox
// command is sent. PREAUTH over implicit TLS is allowed by design (the
// source package tests it).
func TestF3HostileGreetingsCLI(t *testing.T) {
	for _, tc := range []struct {
		name, scheme, greeting string
		code                   int
		want                   string
	}{
		{"IMAPPreauthBeforeSTARTTLS", "imap", "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome back\r\n", exitUnreachable, "unencrypted PREAUTH refused"},
		{"IMAPGarbled", "imap", "HELLO THERE\r\n", exitUnreachable, "invalid greeting"},
		{"IMAPBye", "imap", "* BYE too many connections\r\n", exitUnexpected, "too many connections"},
		{"POP3Err", "pop3", "-ERR go away\r\n", exitUnreachable, "greeting"},
		{"POP3Garbled", "pop3", "HELLO THERE\r\n", exitUnreachable, "greeting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGreeter(t, tc.greeting)
			dir := t.TempDir()
			code, _, stderr := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": "Never-Sent-7"},
				"copy", tc.scheme+"://bob@"+g.addr, "maildir:"+filepath.Join(dir, "out"), "--checkpoint", filepath.Join(dir, "cp.jsonl"), "--timeout", "5s")
			last := lastLine(stderr)
			if code != tc.code || !strings.Contains(last, tc.want) {
				t.Errorf("exit %d, last line %q; want exit %d and %q", code, last, tc.code, tc.want)
			}
			for _, l := range g.sent() {
				up := strings.ToUpper(l)
				if strings.Contains(l, "Never-Sent-7") || strings.Contains(up, "LOGIN") || strings.Contains(up, "AUTHENTICATE") ||
					strings.HasPrefix(up, "USER") || strings.HasPrefix(up, "PASS") || strings.Contains(up, "SELECT") || strings.Contains(up, "EXAMINE") {
					t.Errorf("client sent %q after a hostile greeting", l)
				}
			}
		})
	}
}
