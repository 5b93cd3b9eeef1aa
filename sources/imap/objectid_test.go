package imap

import (
	"context"
	"strings"
	"testing"
)

// TestFolderStatusesMailboxID: a server that offers OBJECTID (RFC 8474) is
// asked each folder's MAILBOXID with its status, which FolderStatuses
// reports (two-way sync follows a rename by it); one without OBJECTID is
// not asked, and its statuses have none.
func TestFolderStatusesMailboxID(t *testing.T) {
	for _, tc := range []struct {
		caps string
		want string
	}{
		{"IMAP4rev1 OBJECTID", "F2212ea87-6097"},
		{"IMAP4rev1", ""},
	} {
		t.Run(tc.caps, func(t *testing.T) {
			f := startFake(t, &fakeServer{caps: tc.caps, handle: func(fc *fakeConn, tag, cmd, args string) bool {
				if cmd != "STATUS" {
					return false
				}
				box, items, _ := strings.Cut(args, " ")
				id := ""
				if strings.Contains(items, "MAILBOXID") {
					id = " MAILBOXID (F2212ea87-6097)"
				}
				fc.send("* STATUS %s (UIDVALIDITY 7 UIDNEXT 11 MESSAGES 4%s)\r\n%s OK done\r\n", box, id, tag)
				return true
			}})
			s, err := New(context.Background(), addrConfig(t, f.addr, TLSStartTLS), plainOpts())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, err := s.FolderStatuses(context.Background(), []string{"INBOX"})
			if err != nil || got["INBOX"].MailboxID != tc.want || got["INBOX"].UIDNext != 11 {
				t.Fatalf("FolderStatuses() = %+v, %v; want MAILBOXID %q", got, err, tc.want)
			}
		})
	}
}
