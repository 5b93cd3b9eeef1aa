package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// TestLsPOP3UsesSTAT: `ls pop3s://...` counts the maildrop with one STAT
// (the POP3 source is a mail.Statter) instead of listing it message by
// message; --trace shows the STAT sent, and the counts are the seeded
// ones. Before the capability file, pop3.Source.Stat(ctx) did not match
// the interface ls asserted, and ls never sent STAT.
func TestLsPOP3UsesSTAT(t *testing.T) {
	t.Parallel()
	d := mailtest.NeedDovecot(t)
	user, pw := d.NewUser(t)
	corpus := crashCorpus()[:3]
	d.Seed(t, user, pw, "INBOX", corpus)
	code, stdout, stderr := runCLI(t, map[string]string{"MAILFERRY_SRC_PASSWORD": pw},
		"ls", "pop3s://"+user+"@"+d.POP3S, "--ca-file", d.CAFile, "--timeout", "10s", "--json", "--trace")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	var sent []string
	for _, l := range strings.Split(stderr, "\n") {
		if i := strings.Index(l, "C: "); i >= 0 && strings.HasPrefix(l, "trace src ") {
			sent = append(sent, strings.Fields(l[i+3:])[0])
		}
	}
	stat, list := 0, 0
	for _, c := range sent {
		switch strings.ToUpper(c) {
		case "STAT":
			stat++
		case "LIST", "UIDL":
			list++
		}
	}
	if stat != 1 || list != 0 {
		t.Errorf("ls sent STAT %d times and LIST/UIDL %d times, want one STAT and no listing; commands: %v", stat, list, sent)
	}
	var got struct {
		Messages int   `json:"messages"`
		Bytes    int64 `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, stdout)
	}
	if got.Messages != len(corpus) || got.Bytes <= 0 {
		t.Errorf("ls counts %d messages, %d bytes; want %d messages", got.Messages, got.Bytes, len(corpus))
	}
}
