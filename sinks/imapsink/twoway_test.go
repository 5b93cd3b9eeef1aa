package imapsink

import (
	"context"
	"crypto/tls"
	"reflect"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
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

// TestMoveKeepsIndexTrue: after a UID MOVE through the sink's Mover, the
// dedupe index knows where the message is. A Put of the same message into
// the target folder finds it (not stored twice), and a Put of it into the
// folder it left stores it (not taken for the original that moved away).
// Both folders' indexes were read before the move, as in a sync that
// copied into them first.
func TestMoveKeepsIndexTrue(t *testing.T) {
	tlsCfg, ca := mailtest.LocalCert(t)
	mem, user := mailtest.NewMemIMAP(t, testUser, testPass)
	ln := tls.NewListener(mailtest.Listen(t), tlsCfg)
	mailtest.ServeIMAP(t, mem, imapserver.Options{
		Caps:      imapv2.CapSet{imapv2.CapIMAP4rev1: {}, imapv2.CapUIDPlus: {}, imapv2.CapMove: {}, imapv2.CapLiteralPlus: {}},
		TLSConfig: tlsCfg,
	}, ln)
	m := &memServer{user: user, addr: ln.Addr().String(), ca: ca}
	s := m.sink(t)
	ctx := context.Background()
	date := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	moved := msg("<moved@x>", "moves", "the one that moves")
	m.seed(t, "INBOX", moved, date) // there before the run: the INBOX index holds it
	var id mail.ID
	if err := m.source(t).List(ctx, "INBOX", func(e mail.Envelope) error { id = e.ID; return nil }); err != nil || id == "" {
		t.Fatalf("List(INBOX) = %v, %q", err, id)
	}
	put(t, s, "INBOX", msg("<new@x>", "new", "new in INBOX"), date)
	put(t, s, "Archive", msg("<other@x>", "stays", "stays in Archive"), date)
	commit(t, s)
	if _, err := s.Move(ctx, "INBOX", id, "Archive"); err != nil {
		t.Fatalf("Move() = %v", err)
	}
	put(t, s, "Archive", moved, date)
	put(t, s, "INBOX", moved, date)
	commit(t, s)
	for box, want := range map[string]int{"Archive": 2, "INBOX": 2} {
		if got := m.readBack(t, box); len(got) != want {
			t.Errorf("%s holds %d messages after the move and the two Puts, want %d", box, len(got), want)
		}
	}
}
