package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/mailferry/mailferry/internal/maildirfmt"
	"github.com/mailferry/mailferry/sync/mail"
)

// TestKeywordsRoundTrip: keywords are stored as dovecot-keywords letters and
// the source reads them back; letters another program assigned are reused;
// past 26 keywords in a folder a new one is dropped and the rest kept.
func TestKeywordsRoundTrip(t *testing.T) {
	root := t.TempDir()
	// Another program (Dovecot) already gave NonJunk the letter b.
	if err := os.WriteFile(filepath.Join(root, maildirfmt.KeywordsFile), []byte("1 NonJunk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var full []mail.Flag
	for i := range maildirfmt.MaxKeywords {
		full = append(full, mail.Flag(fmt.Sprintf("k%02d", i)))
	}
	s := newTestSink(t, root, nil)
	for _, c := range []struct {
		mailbox string
		flags   []mail.Flag
		info    string      // the file name's info
		want    []mail.Flag // as the source lists it
	}{
		{"INBOX", []mail.Flag{mail.FlagSeen, "$Label1", "NonJunk"}, ":2,Sab", []mail.Flag{"$Label1", "NonJunk", mail.FlagSeen}},
		{"INBOX", []mail.Flag{"nonjunk"}, ":2,b", []mail.Flag{"NonJunk"}},
		{"Full", full, ":2,abcdefghijklmnopqrstuvwxyz", full},
		{"Full", []mail.Flag{mail.FlagFlagged, "k03", "TooMany"}, ":2,Fd", []mail.Flag{mail.FlagFlagged, "k03"}},
	} {
		id := put(t, s, mail.Envelope{Mailbox: c.mailbox, Key: "k" + c.info + string(c.mailbox), Flags: c.flags}, "body "+c.info)
		commit(t, s)
		dir, err := maildirfmt.FolderDir(root, c.mailbox)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "cur", string(id)+c.info)); err != nil {
			t.Errorf("Put %q %q: %v", c.mailbox, c.flags, err)
		}
		for _, e := range listed(t, root, c.mailbox) {
			if e.ID == id && !reflect.DeepEqual(e.Flags, c.want) {
				t.Errorf("source lists %q %q with %q, want %q", c.mailbox, c.flags, e.Flags, c.want)
			}
		}
	}
	if got, want := maildirfmt.ReadKeywords(root), (maildirfmt.Keywords{"$Label1", "NonJunk"}); !reflect.DeepEqual(got, want) {
		t.Errorf("INBOX keywords = %q, want %q", got, want)
	}
}
