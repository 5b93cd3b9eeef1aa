package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/sinks/imapsink"
	"github.com/mailferry/mailferry/sync/mail"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// keywordsNotKeptIn is the IMAP sink of a server whose folder full has no
// `\*` in its PERMANENTFLAGS (Dovecot always has it; a server with ACLs or
// a full keyword table does not), the other folders as the server says.
type keywordsNotKeptIn struct {
	*imapsink.Sink
	full string
}

func (s *keywordsNotKeptIn) KeptFlags(ctx context.Context, mailbox string) ([]mail.Flag, bool, error) {
	if mailbox == s.full {
		return []mail.Flag{mail.FlagSeen, mail.FlagAnswered, mail.FlagFlagged, mail.FlagDeleted, mail.FlagDraft}, false, nil
	}
	return s.Sink.KeptFlags(ctx, mailbox)
}

// keepsRegistry is the real registry with the imaps sink wrapped in
// keywordsNotKeptIn.
func keepsRegistry(t *testing.T, full string) *mail.Registry {
	t.Helper()
	base, r := registry(), mail.NewRegistry()
	srcs, sinks := base.Schemes()
	seen := map[string]bool{}
	for _, scheme := range append(srcs, sinks...) {
		if seen[scheme] {
			continue
		}
		seen[scheme] = true
		f, _ := base.Lookup(scheme)
		g := *f
		if scheme == "imaps" {
			side := *g.Sink
			open := side.Open
			side.Open = func(ctx context.Context, u any, o *mail.OpenOptions) (mail.Sink, error) {
				s, err := open(ctx, u, o)
				if err != nil {
					return nil, err
				}
				is, ok := s.(*imapsink.Sink)
				if !ok {
					t.Errorf("the imaps sink is a %T", s)
					return s, nil
				}
				return &keywordsNotKeptIn{Sink: is, full: full}, nil
			}
			g.Sink = &side
		}
		r.Add(g)
	}
	return r
}

// TestDovecotSyncDryRunPlansAsRun: a dry run plans what the real run right
// after does, PERMANENTFLAGS included. Folder Full of the IMAP side keeps
// no keywords; a keyword removed in the Maildir there is a removal the
// IMAP side cannot have made or seen, so it is not written there. A dry
// run that does not ask PERMANENTFLAGS (it opened no sink) planned that
// flag write.
func TestDovecotSyncDryRunPlansAsRun(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	d.Seed(t, user, pw, "Full", []mailtest.SeedMessage{{Body: []byte("Message-ID: <1@keeps.test>\r\nSubject: 1\r\n\r\nbody\r\n"),
		Flags: []imapv2.Flag{imapv2.FlagSeen, "$Work"}}})
	base := t.TempDir()
	pwFile, md, state := filepath.Join(base, "pw"), filepath.Join(base, "Mail"), filepath.Join(base, "state")
	mustDo(t, os.WriteFile(pwFile, []byte(pw+"\n"), 0o600))
	reg := keepsRegistry(t, "Full")
	run := func(extra ...string) (int, syncSummary) {
		t.Helper()
		args := append([]string{"sync", "imaps://" + user + "@" + d.IMAPS, "maildir:" + md, "--src-password-file", pwFile,
			"--ca-file", d.CAFile, "--checkpoint", state, "--json"}, extra...)
		var out, errb bytes.Buffer
		e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, reg: reg}
		code := runEnv(context.Background(), args, e)
		var s syncSummary
		if err := json.Unmarshal(out.Bytes(), &s); err != nil {
			t.Fatalf("--json: %v\n%s%s", err, out.String(), errb.String())
		}
		return code, s
	}
	if code, s := run(); code != 0 || s.B.Copied != 1 {
		t.Fatalf("first sync = %d %+v", code, s)
	}
	// A mail client removes the keyword in the Maildir: the file keeps
	// only its S.
	files, _ := filepath.Glob(filepath.Join(md, ".Full", "cur", "*"))
	if len(files) != 1 || !strings.Contains(filepath.Base(files[0]), ":2,S") || strings.HasSuffix(files[0], ":2,S") {
		t.Fatalf("the Maildir's Full holds %q, want one file with S and a keyword letter", files)
	}
	id, _, _ := strings.Cut(filepath.Base(files[0]), ":")
	mustDo(t, os.Rename(files[0], filepath.Join(md, ".Full", "cur", id+":2,S")))

	dryCode, dry := run("--dry-run")
	code, done := run()
	if dryCode != code || dry.A.Flagged != done.A.Flagged || dry.B.Flagged != done.B.Flagged || dry.A.Copied != done.A.Copied || dry.B.Copied != done.B.Copied {
		t.Fatalf("the dry run planned %+v %+v (exit %d), the run did %+v %+v (exit %d)", dry.A, dry.B, dryCode, done.A, done.B, code)
	}
	if done.A.Flagged != 0 {
		t.Fatalf("the run wrote flags on the IMAP side's Full, which keeps no keywords: %+v", done.A)
	}
	for _, m := range d.Fetch(t, user, pw)["Full"] {
		if !strings.Contains(strings.Join(flagStrings(m.Flags), " "), "$Work") {
			t.Fatalf("the server's message lost $Work: %v", m.Flags)
		}
	}
}

func flagStrings(fl []imapv2.Flag) []string {
	out := make([]string, len(fl))
	for i, f := range fl {
		out[i] = string(f)
	}
	return out
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
