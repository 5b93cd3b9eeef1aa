package main

import (
	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// Secret handling (docs/failure-model.md I6, E2, F6) through the real binary
// against Dovecot: the password never shows in stdout, stderr (at debug
// level, in text and JSON logs), the checkpoint or the destination, in
// plain text or in any base64 form (SASL PLAIN sends base64 of
// "\x00user\x00password").

// secretForms returns the strings that betray secret: itself and its
// base64 encodings at each of the three alignments it can take inside a
// longer base64 text (only the characters that depend on the secret alone
// are kept), in the standard and URL alphabets, plus the exact SASL PLAIN
// blobs for user.
func secretForms(user, secret string) []string {
	forms := []string{secret}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for k := 0; k < 3; k++ {
			b := enc.EncodeToString(append(make([]byte, k), secret...))
			// Skip the characters that mix in the k prefix bytes and the
			// last group, which depends on what follows.
			from := []int{0, 2, 3}[k]
			if to := len(b) - 4; to-from >= 8 {
				forms = append(forms, b[from:to])
			}
		}
		forms = append(forms,
			enc.EncodeToString([]byte("\x00"+user+"\x00"+secret)),
			enc.EncodeToString([]byte(user+"\x00"+user+"\x00"+secret)))
	}
	return forms
}

// leaks returns the forms of secret found in text.
func leaks(text string, forms []string) []string {
	var out []string
	for _, f := range forms {
		if strings.Contains(text, f) {
			out = append(out, f)
		}
	}
	return out
}

// filesUnder returns the contents of every regular file under root,
// concatenated (the checkpoint, the lock, Maildir or mbox files).
func filesUnder(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("read %s: %v", path, err)
			return nil
		}
		b.WriteString(path + "\n")
		b.Write(data)
		return nil
	})
	return b.String()
}

// TestF6NoSecretInOutputs covers I6 and F6: copies, ls and verify with
// every password source, debug logs in text and JSON, --json summaries,
// --trace, a worker panic whose value holds the password (test hook), the
// password command's child argv and environment, a failing login, and a
// password in the URL; none may show the password anywhere it writes.
func TestF6NoSecretInOutputs(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	seed := crashCorpus()
	d.Seed(t, user, pw, "INBOX", seed)
	forms := secretForms(user, pw)
	// A wrong password is a secret too (it may be the user's other one).
	wrong := "wrong-" + pw[len(pw)-8:] + "-Zq7"
	wrongForms := secretForms(user, wrong)

	keyDir := t.TempDir()
	pwFile := filepath.Join(keyDir, "pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongFile := filepath.Join(keyDir, "wrong")
	if err := os.WriteFile(wrongFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	imapURL := "imaps://" + user + "@" + d.IMAPS
	pop3URL := "pop3s://" + user + "@" + d.POP3S
	debug := []string{"--ca-file", d.CAFile, "--log-level", "debug"}
	shared := t.TempDir() // written by the first case, verified by a later one

	for _, tc := range []struct {
		name   string
		env    []string
		args   []string // DIR is the case's directory, SHARED one for all cases
		code   int
		stderr string // in stderr, if set
		forms  []string
	}{
		{name: "IMAPEnvTextLog", env: []string{"MAILFERRY_SRC_PASSWORD=" + pw},
			args: []string{"copy", imapURL, "maildir:SHARED/out", "--checkpoint", "DIR/cp.jsonl", "--json"}},
		{name: "IMAPFileJSONLog",
			args: []string{"copy", imapURL, "mbox:DIR/out", "--checkpoint", "DIR/cp.jsonl", "--src-password-file", pwFile, "--log-format", "json"}},
		{name: "POP3CmdJSON",
			args: []string{"copy", pop3URL, "maildir:DIR/out", "--checkpoint", "DIR/cp.jsonl", "--src-password-cmd", "cat " + pwFile, "--json", "--log-format", "json"}},
		{name: "POP3EnvMbox", env: []string{"MAILFERRY_SRC_PASSWORD=" + pw},
			args: []string{"copy", pop3URL, "mbox:DIR/out", "--checkpoint", "DIR/cp.jsonl"}},
		{name: "Ls", env: []string{"MAILFERRY_SRC_PASSWORD=" + pw}, args: []string{"ls", imapURL, "--json"}},
		{name: "Verify", args: []string{"verify", pop3URL, "maildir:SHARED/out", "--src-password-file", pwFile}},
		{name: "IMAPWrongPassword", env: []string{"MAILFERRY_SRC_PASSWORD=" + wrong}, forms: wrongForms, code: exitcode.Auth, stderr: "authentication",
			args: []string{"copy", imapURL, "maildir:DIR/out", "--checkpoint", "DIR/cp.jsonl", "--json"}},
		{name: "POP3WrongPasswordFile", forms: wrongForms, code: exitcode.Auth, stderr: "authentication",
			args: []string{"copy", pop3URL, "maildir:DIR/out", "--checkpoint", "DIR/cp.jsonl", "--src-password-file", wrongFile}},
		{name: "IMAPWrongPasswordCmd", forms: wrongForms, code: exitcode.Auth, stderr: "authentication",
			args: []string{"ls", imapURL, "--src-password-cmd", "cat " + wrongFile}},
		// F6 and G2: a worker panics with the password in the panic value
		// (test hook): recovered into one failed message (exit 3), the
		// value never printed.
		{name: "PanicHook", env: []string{"MAILFERRY_SRC_PASSWORD=" + pw, "MAILFERRY_TEST_PANIC=boom " + pw}, code: exitcode.Partial, stderr: "internal error: panic",
			args: []string{"copy", imapURL, "maildir:DIR/out", "--checkpoint", "DIR/cp.jsonl"}},
		{name: "PanicHookJSON", env: []string{"MAILFERRY_TEST_PANIC=boom " + pw}, code: exitcode.Partial,
			args: []string{"copy", pop3URL, "mbox:DIR/out", "--checkpoint", "DIR/cp.jsonl", "--src-password-file", pwFile, "--json", "--log-format", "json"}},
		// --trace prints the protocol with the credentials masked.
		{name: "IMAPTrace", env: []string{"MAILFERRY_SRC_PASSWORD=" + pw}, stderr: "AUTHENTICATE PLAIN <redacted>",
			args: []string{"copy", imapURL, "maildir:DIR/out", "--checkpoint", "DIR/cp.jsonl", "--trace"}},
		{name: "POP3Trace", stderr: "PASS <redacted>",
			args: []string{"ls", pop3URL, "--src-password-file", pwFile, "--trace"}},
		// The password command's child sees neither password in its argv
		// or environment: it writes both into DIR, which is searched.
		{name: "PasswordCmdChild", env: []string{"MAILFERRY_DST_PASSWORD=" + pw, "MAILFERRY_SRC_PASSWORD=" + pw}, stderr: "",
			args: []string{"copy", imapURL, "maildir:DIR/out", "--checkpoint", "DIR/cp.jsonl",
				"--src-password-cmd", "env > DIR/child-env; tr '\\0' ' ' < /proc/$$/cmdline > DIR/child-argv; cat " + pwFile}},
		{name: "PasswordInURL", forms: secretForms(user, "Sekr1t-in-URL"), code: exitcode.Usage, stderr: "--src-password-file",
			args: []string{"copy", "imaps://" + user + ":Sekr1t-in-URL@" + d.IMAPS, "maildir:DIR/out", "--checkpoint", "DIR/cp.jsonl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := make([]string, 0, len(tc.args)+len(debug))
			for _, a := range tc.args {
				args = append(args, strings.NewReplacer("DIR", dir, "SHARED", shared).Replace(a))
			}
			args = append(args, debug...)
			r := runBinLimit(t, runLimit, tc.env, args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d: %s", r.code, tc.code, r.stderr)
			}
			if tc.stderr != "" && !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(tc.stderr)) {
				t.Errorf("stderr %q lacks %q", r.stderr, tc.stderr)
			}
			if tc.code == 0 && !strings.Contains(r.stderr, "level=DEBUG") && !strings.Contains(r.stderr, `"level":"DEBUG"`) {
				t.Errorf("no debug records in stderr: the test does not see what debug logs")
			}
			f := tc.forms
			if f == nil {
				f = forms
			}
			if tc.name == "PasswordCmdChild" {
				// The negative control: the child's files exist and show
				// its environment.
				env, err := os.ReadFile(filepath.Join(dir, "child-env"))
				if argv, aerr := os.ReadFile(filepath.Join(dir, "child-argv")); err != nil || aerr != nil || !strings.Contains(string(env), "PATH=") || !strings.Contains(string(argv), "sh -c") {
					t.Fatalf("password command did not record its env and argv: %v %v", err, aerr)
				}
			}
			for where, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "files": filesUnder(t, dir) + filesUnder(t, shared)} {
				if l := leaks(text, f); len(l) > 0 {
					t.Errorf("I6: %s shows the password (%q):\n%s", where, l, text[:min(len(text), 2000)])
				}
			}
		})
	}
}

// TestE2PasswordFileReadableByOthers: a password file that group or others
// can read still works but gets a warning naming the file and the remedy
// (the plan's E2 asks for a refusal: see RELIABILITY.md).
func TestE2PasswordFileReadableByOthers(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pwFile, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runBinLimit(t, runLimit, nil, "ls", "imaps://"+user+"@"+d.IMAPS, "--ca-file", d.CAFile, "--src-password-file", pwFile)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"password file is readable by group or others", "chmod 600", pwFile} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q lacks %q", r.stderr, want)
		}
	}
	if l := leaks(r.stderr+r.stdout, secretForms(user, pw)); len(l) > 0 {
		t.Errorf("output shows the password: %q", l)
	}
}

// TestE1PasswordInURLNoNetwork: a URL holding a password is refused (exit 2)
// before any connection is made, without echoing the password.
func TestE1PasswordInURLNoNetwork(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	p := mailtest.NewFaultProxy(t, d.IMAPS)
	for _, src := range []string{"imaps://bob:Hunter2-xyz@localhost:" + p.Port(), "pop3s://bob:Hunter2-xyz@localhost:" + p.Port()} {
		r := runBinLimit(t, runLimit, nil, "copy", src, "maildir:"+t.TempDir(), "--ca-file", d.CAFile)
		if r.code != exitcode.Usage || strings.Contains(r.stderr+r.stdout, "Hunter2-xyz") {
			t.Errorf("copy %s: exit %d, stderr %q; want exit 2 without the password", src, r.code, r.stderr)
		}
	}
	if n := len(p.Conns()); n != 0 {
		t.Errorf("%d connection(s) made before the URL was refused", n)
	}
}

// TestSecretFormsDetect is the negative control of the leak checks: each
// way the password can hide in a text is found, and an unrelated text is
// not flagged.
func TestSecretFormsDetect(t *testing.T) {
	user, pw := "t1x2r3", "pw-0123456789abcdef"
	forms := secretForms(user, pw)
	for _, text := range []string{
		"PASS " + pw,
		"AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pw)),
		base64.StdEncoding.EncodeToString([]byte("x" + pw + "tail")),
		base64.StdEncoding.EncodeToString([]byte("xy" + pw + "t")),
		base64.URLEncoding.EncodeToString([]byte("xyz" + pw)),
	} {
		if len(leaks(text, forms)) == 0 {
			t.Errorf("leaks(%q) found nothing", text)
		}
	}
	if l := leaks("level=DEBUG msg=\"imap: connected to t1x2r3@localhost\" "+base64.StdEncoding.EncodeToString([]byte("pw-0123")), forms); len(l) != 0 {
		t.Errorf("false positive: %q", l)
	}
}
