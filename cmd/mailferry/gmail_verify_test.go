package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/internal/exitcode"
)

// gmailVerifyAccount seeds a Gmail fake with a message in INBOX and
// Label1, one only in Label1, an archived one and a sent one (all also in
// All Mail, as on Gmail), and returns their bodies by the folder
// copy --gmail stores them in.
func gmailVerifyAccount(t *testing.T) (*gmailFake, map[string]string) {
	t.Helper()
	g := startGmailFake(t)
	const hdr = "From: a@example.org\r\nTo: alice@gmail.com\r\nDate: Fri, 01 Mar 2024 12:00:00 +0000\r\n"
	m := map[string]string{
		"INBOX":   hdr + "Message-ID: <labelled@example.org>\r\nSubject: labels\r\n\r\nin INBOX and Label1\r\n",
		"Label1":  hdr + "Message-ID: <label@example.org>\r\nSubject: label only\r\n\r\nonly in Label1\r\n",
		"Archive": hdr + "Message-ID: <archived@example.org>\r\nSubject: archived\r\n\r\nonly in All Mail\r\n",
		"Sent":    hdr + "Message-ID: <sent@example.org>\r\nSubject: sent\r\n\r\nsent by alice\r\n",
	}
	g.add(t, 2001, m["INBOX"], "INBOX", "Label1", "[Gmail]/All Mail")
	g.add(t, 2002, m["Label1"], "Label1", "[Gmail]/All Mail")
	g.add(t, 2003, m["Archive"], "[Gmail]/All Mail")
	g.add(t, 2004, m["Sent"], "[Gmail]/Sent Mail", "[Gmail]/All Mail")
	return g, m
}

// verifyOutcome is what a test reads of a verify --json run.
type verifyOutcome struct {
	code    int
	missing int
	where   map[string]string // source folder -> destination folder, of each missing message
	stderr  string
}

func runGmailVerify(t *testing.T, env map[string]string, src, dst string, extra ...string) verifyOutcome {
	t.Helper()
	args := append([]string{"verify", src, dst, "--allow-plaintext-auth", "--json"}, extra...)
	code, stdout, stderr := runCLI(t, env, args...)
	var rep struct {
		Mailboxes []struct {
			Mailbox    string            `json:"mailbox"`
			DstMailbox string            `json:"dst_mailbox"`
			Missing    []json.RawMessage `json:"missing"`
		} `json:"mailboxes"`
		Missing int `json:"missing"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("verify %v = %d, --json output %q: %v\n%s", extra, code, stdout, err, stderr)
	}
	out := verifyOutcome{code: code, missing: rep.Missing, where: map[string]string{}, stderr: stderr}
	for _, r := range rep.Mailboxes {
		if len(r.Missing) > 0 {
			to := r.DstMailbox
			if to == "" {
				to = r.Mailbox
			}
			out.where[r.Mailbox] = to
		}
	}
	return out
}

// removeStored deletes the Maildir file holding body from the folder dir
// (the Maildir root for INBOX).
func removeStored(t *testing.T, dir, body string) {
	t.Helper()
	for _, sub := range []string{"cur", "new"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			p := filepath.Join(dir, sub, e.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if strings.ReplaceAll(string(b), "\r\n", "\n") == strings.ReplaceAll(body, "\r\n", "\n") {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
	}
	t.Fatalf("no message in %s holds %q", dir, body)
}

// TestGmailVerifyAfterCopy: after copy --gmail into a Maildir, verify
// --gmail finds every message (exit 0) while a plain verify of the same
// pair reports the label and All Mail copies as missing (exit 3): the
// flag is what makes the difference. A message deleted from the
// destination afterwards is reported alone, under the folder copy --gmail
// put it in.
func TestGmailVerifyAfterCopy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deleted  string // destination folder of the deleted message; "" deletes none
		wantFrom string // the source folder verify --gmail reports it from
	}{
		{"nothing deleted", "", ""},
		{"INBOX message", "INBOX", "INBOX"},
		{"label-only message", "Label1", "Label1"},
		{"archived message", "Archive", "[Gmail]/All Mail"},
		{"sent message", "Sent", "[Gmail]/Sent Mail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, bodies := gmailVerifyAccount(t)
			dir := t.TempDir()
			env := map[string]string{"MAILFERRY_SRC_PASSWORD": "gm-pass"}
			src, dst := "imap://alice@gmail.com@"+g.addr, "maildir:"+filepath.Join(dir, "m")
			if code, _, stderr := runCLI(t, env, "copy", src, dst, "--gmail", "--allow-plaintext-auth",
				"--checkpoint", filepath.Join(dir, "cp.jsonl"), "--quiet"); code != 0 {
				t.Fatalf("copy --gmail = %d %s", code, stderr)
			}
			// Without --gmail every folder is compared with its namesake:
			// Label1 lacks the INBOX message, and All Mail (4) and Sent
			// Mail (1) have no namesake at all; the hint names --gmail.
			plain := runGmailVerify(t, env, src, dst)
			if plain.code != exitcode.Partial || plain.missing != 6 || !strings.Contains(plain.stderr, "verify --gmail checks such a copy") {
				t.Errorf("verify without --gmail = %d, %d missing %v, want %d, 6 missing and a hint\n%s", plain.code, plain.missing, plain.where, exitcode.Partial, plain.stderr)
			}
			want := verifyOutcome{code: exitcode.OK, where: map[string]string{}}
			if tc.deleted != "" {
				folder := filepath.Join(dir, "m")
				if tc.deleted != "INBOX" {
					folder = filepath.Join(folder, "."+tc.deleted)
				}
				removeStored(t, folder, bodies[tc.deleted])
				want = verifyOutcome{code: exitcode.Partial, missing: 1, where: map[string]string{tc.wantFrom: tc.deleted}}
			}
			got := runGmailVerify(t, env, src, dst, "--gmail", "--checkpoint", filepath.Join(dir, "cp.jsonl"))
			if got.code != want.code || got.missing != want.missing || len(got.where) != len(want.where) || got.where[tc.wantFrom] != want.where[tc.wantFrom] {
				t.Errorf("verify --gmail = %d, %d missing %v; want %d, %d missing %v\n%s", got.code, got.missing, got.where, want.code, want.missing, want.where, got.stderr)
			}
			if tc.deleted == "" {
				return
			}
			// The text report names the folder too.
			_, stdout, _ := runCLI(t, env, "verify", src, dst, "--gmail", "--allow-plaintext-auth", "--checkpoint", filepath.Join(dir, "cp.jsonl"))
			line := "missing: " + tc.wantFrom + " "
			if tc.wantFrom != tc.deleted {
				line = ", expected in " + tc.deleted + "\n"
			}
			if !strings.Contains(stdout, line) {
				t.Errorf("verify --gmail printed\n%s\nwant a line with %q", stdout, line)
			}
		})
	}
}

// TestGmailVerifyRelabelled: a message archived when copied and labelled
// since stays where copy --gmail put it (the checkpoint keeps its owner),
// and verify --gmail reads the copy's checkpoint, by default at the
// copy's default path, to expect it there; without that checkpoint it
// expects the message in the label's folder and reports it missing.
func TestGmailVerifyRelabelled(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	g, bodies := gmailVerifyAccount(t)
	dir := t.TempDir()
	env := map[string]string{"MAILFERRY_SRC_PASSWORD": "gm-pass"}
	src, dst := "imap://alice@gmail.com@"+g.addr, "maildir:"+filepath.Join(dir, "m")
	if code, _, stderr := runCLI(t, env, "copy", src, dst, "--gmail", "--allow-plaintext-auth", "--quiet"); code != 0 {
		t.Fatalf("copy --gmail = %d %s", code, stderr)
	}
	g.add(t, 2003, bodies["Archive"], "Label1")
	if code, _, stderr := runCLI(t, env, "copy", src, dst, "--gmail", "--allow-plaintext-auth", "--quiet"); code != 0 {
		t.Fatalf("rerun of copy --gmail = %d %s", code, stderr)
	}
	if got := runGmailVerify(t, env, src, dst, "--gmail"); got.code != exitcode.OK || got.missing != 0 {
		t.Errorf("verify --gmail with the default checkpoint = %d, %d missing %v; want 0, none\n%s", got.code, got.missing, got.where, got.stderr)
	}
	// The checkpoint's records are in its state, CHECKPOINT.state/.
	cp, err := filepath.Glob(filepath.Join(os.Getenv("XDG_STATE_HOME"), "mailferry", "*.jsonl.state"))
	if err != nil || len(cp) != 1 {
		t.Fatalf("default checkpoints: %v %v, want one", cp, err)
	}
	moved := filepath.Join(dir, "moved.jsonl")
	if err := os.Rename(cp[0], statePath(moved)); err != nil {
		t.Fatal(err)
	}
	if got := runGmailVerify(t, env, src, dst, "--gmail"); got.code != exitcode.Partial || got.missing != 1 || got.where["Label1"] != "Label1" {
		t.Errorf("verify --gmail without a checkpoint = %d, %d missing %v; want %d, the relabelled message missing from Label1\n%s", got.code, got.missing, got.where, exitcode.Partial, got.stderr)
	}
	if got := runGmailVerify(t, env, src, dst, "--gmail", "--checkpoint", moved); got.code != exitcode.OK || got.missing != 0 {
		t.Errorf("verify --gmail --checkpoint %s = %d, %d missing %v; want 0, none\n%s", moved, got.code, got.missing, got.where, got.stderr)
	}
}

// TestGmailVerifyRefusals: verify --gmail refuses what copy --gmail
// refuses, before any I/O, and a server that is not Gmail.
func TestGmailVerifyRefusals(t *testing.T) {
	dir := t.TempDir()
	g, _ := gmailVerifyAccount(t)
	env := map[string]string{"MAILFERRY_SRC_PASSWORD": "gm-pass"}
	gsrc := "imap://alice@gmail.com@" + g.addr
	mem := imapmemserver.New()
	mem.AddUser(imapmemserver.NewUser("bob", "gm-pass"))
	plain := serveIMAP(t, mem, imap.CapSet{imap.CapIMAP4rev1: {}}, nil)
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, "b", sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"not Gmail", []string{"imap://bob@" + plain, "maildir:" + filepath.Join(dir, "b"), "--gmail"}, "does not announce X-GM-EXT-1"},
		{"maildir source", []string{"maildir:" + filepath.Join(dir, "a"), "maildir:" + filepath.Join(dir, "b"), "--gmail"}, "--gmail needs an imaps:// source"},
		{"checkpoint without --gmail", []string{gsrc, "maildir:" + filepath.Join(dir, "b"), "--checkpoint", filepath.Join(dir, "cp.jsonl")}, "--checkpoint without --gmail"},
		{"missing checkpoint", []string{gsrc, "maildir:" + filepath.Join(dir, "b"), "--gmail", "--checkpoint", filepath.Join(dir, "none.jsonl")}, "none.jsonl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, env, append([]string{"verify", "--allow-plaintext-auth"}, tc.args...)...)
			if code != exitcode.Usage || !strings.Contains(stderr, tc.want) {
				t.Errorf("verify %v = %d %q, want %d and %q", tc.args, code, stderr, exitcode.Usage, tc.want)
			}
		})
	}
}
