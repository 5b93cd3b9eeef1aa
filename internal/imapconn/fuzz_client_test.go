package imapconn

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// FuzzClientResponses feeds arbitrary server bytes, after a valid greeting,
// to go-imap's client (under our respGuard, as every source connection is)
// while it runs the commands the source sends: LIST, EXAMINE, UID FETCH of
// bodies, and UID SEARCH (whose results, like the UID sets in response
// codes such as COPYUID, go through go-imap's sequence-set parser). go-imap parses responses in its own reader goroutine, where a
// panic would kill the whole process instead of failing one message, so
// its parser is fuzzed here (docs/failure-model.md F10). The properties: no
// panic; every command returns (the fake server closes the connection
// after its reply) within two seconds; no input makes it allocate more
// than 64 MiB.
func FuzzClientResponses(f *testing.F) {
	for _, s := range []string{
		"* LIST () \"/\" INBOX\r\nT1 OK done\r\n",
		"* LIST (\\Noselect) \".\" {3}\r\nabc\r\nT1 OK\r\n",
		"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 4] x\r\nT2 OK [READ-ONLY] done\r\n",
		"* 1 FETCH (UID 5 RFC822.SIZE 5 FLAGS (\\Seen) INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" BODY[] {5}\r\nhello)\r\nT3 OK\r\n",
		"* 1 FETCH (BODY[] {5}\r\nhello UID 5)\r\nT3 OK\r\n",
		"* 1 FETCH (UID 4294967296 BODY[] NIL)\r\nT3 NO [UNAVAILABLE] later\r\n",
		"* 1 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {0}\r\n)\r\nT3 BAD\r\n",
		"* BYE going away\r\n",
		"* 1 FETCH (FLAGS (\\Seen $Junk \\*) MODSEQ (123))\r\nT3 OK\r\n",
		"* ESEARCH (TAG \"T3\") UID ALL 1:5,7\r\nT3 OK\r\n",
		"+ go on\r\nT1 OK\r\n",
		"* SEARCH 1 2 5\r\nT1 OK [COPYUID 7 1:3,9 4:6,10] x\r\n",
		"T1 OK [APPENDUID 7 1:*] x\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		cli, srv := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer srv.Close()
			srv.SetDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(srv, "* OK [CAPABILITY IMAP4rev1 UIDPLUS] fuzz\r\n"); err != nil {
				return
			}
			// Answer the first command with the fuzz input, then hang up;
			// keep draining what the client writes so it never blocks.
			r := bufio.NewReader(srv)
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			go io.Copy(io.Discard, r)
			srv.Write(in)
		}()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		c := imapclient.New(&respGuard{Conn: cli}, nil)
		defer c.Close()
		start := time.Now()
		var uids imap.UIDSet
		uids.AddNum(1, 5)
		switch len(in) % 4 {
		case 0:
			c.List("", "*", nil).Collect()
		case 1:
			c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		case 2: // sequence sets: SEARCH results and the UID sets of response codes
			c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{uids}}, nil).Wait()
		default:
			cmd := c.Fetch(uids, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true,
				BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
			for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
				for item := msg.Next(); item != nil; item = msg.Next() {
					if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
						io.Copy(io.Discard, b.Literal)
					}
				}
			}
			cmd.Close()
		}
		c.Close()
		<-done
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the client took %v on %q", d, in)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
			t.Fatalf("one input made the client allocate %d MiB: %q", n>>20, in)
		}
	})
}
