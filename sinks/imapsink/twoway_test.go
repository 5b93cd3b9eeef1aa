package imapsink

import (
	"context"
	"reflect"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// TestKeptFlags reads PERMANENTFLAGS: a scripted server whose list lacks
// `\*` (it keeps only $Label1 of the keywords), and go-imap's memory server.
func TestKeptFlags(t *testing.T) {
	f := startFake(t, "IMAP4rev1")
	flags, all, err := f.sink(t).KeptFlags(context.Background(), "INBOX")
	want := []mail.Flag{mail.FlagSeen, mail.FlagAnswered, mail.FlagFlagged, mail.FlagDeleted, mail.FlagDraft, "$Label1"}
	if err != nil || all || !reflect.DeepEqual(flags, want) {
		t.Fatalf("KeptFlags of the scripted server = %v, %v, %v; want %v", flags, all, err, want)
	}
	flags, all, err = startMem(t).sink(t).KeptFlags(context.Background(), "INBOX")
	if err != nil || !all && len(flags) == 0 {
		t.Fatalf("KeptFlags of the memory server = %v, %v, %v", flags, all, err)
	}
}
