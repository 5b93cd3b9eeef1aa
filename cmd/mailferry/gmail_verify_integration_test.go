package main

import (
	"path/filepath"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestGmailVerifyIntoDovecot: copy --gmail into a real IMAP server whose
// Sent and Drafts carry special-use attributes, then verify --gmail reads
// the destination's roles as a source (not as the copy's sink did) and
// finds every message; a message expunged from Sent afterwards is the one
// missing, reported from [Gmail]/Sent Mail, expected in Sent.
func TestGmailVerifyIntoDovecot(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	g, _ := gmailVerifyAccount(t)
	dir := t.TempDir()
	env := map[string]string{"MAILFERRY_SRC_PASSWORD": "gm-pass", "MAILFERRY_DST_PASSWORD": pw}
	src, dst := "imap://alice@gmail.com@"+g.addr, "imaps://"+user+"@"+d.IMAPS
	cp := filepath.Join(dir, "cp.jsonl")
	if code, _, stderr := runCLI(t, env, "copy", src, dst, "--gmail", "--allow-plaintext-auth", "--ca-file", d.CAFile,
		"--checkpoint", cp, "--quiet"); code != 0 {
		t.Fatalf("copy --gmail = %d %s", code, stderr)
	}
	if got := runGmailVerify(t, env, src, dst, "--gmail", "--ca-file", d.CAFile, "--checkpoint", cp); got.code != exitcode.OK || got.missing != 0 {
		t.Fatalf("verify --gmail = %d, %d missing %v; want 0, none\n%s", got.code, got.missing, got.where, got.stderr)
	}
	d.Doveadm(t, "expunge", "-u", user, "mailbox", "Sent", "all")
	got := runGmailVerify(t, env, src, dst, "--gmail", "--ca-file", d.CAFile, "--checkpoint", cp)
	if got.code != exitcode.Partial || got.missing != 1 || got.where["[Gmail]/Sent Mail"] != "Sent" {
		t.Errorf("verify --gmail after expunging Sent = %d, %d missing %v; want %d, 1 missing from [Gmail]/Sent Mail in Sent\n%s", got.code, got.missing, got.where, exitcode.Partial, got.stderr)
	}
}
