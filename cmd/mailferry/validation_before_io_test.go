package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailferry/mailferry/internal/exitcode"
	maildirsink "github.com/mailferry/mailferry/sinks/maildir"
)

// e1Listener accepts and counts TCP connections: a config mistake
// must be refused before any is made.
func e1Listener(t *testing.T) (addr string, conns *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns = &atomic.Int64{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), conns
}

// TestE1ValidationBeforeIO: each configuration mistake of the plan's list
// exits 2 with one line naming the file, line and key (or the flag) and the
// remedy, before any connection to the listener the endpoints point at and
// before the checkpoint is created. There is no --keep flag: delete vs keep
// is the one flag --delete-source (delete_source in a job).
func TestE1ValidationBeforeIO(t *testing.T) {
	addr, conns := e1Listener(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.mbox")
	if err := os.WriteFile(file, []byte("From x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := "imaps://bob@" + addr
	job := func(body string) string { return "[jobs.a]\n" + body }
	tests := []struct {
		name   string
		config string   // for 'run a --config'; empty: args is a 'copy' command line
		args   []string // copy arguments
		want   []string // in the one line on stderr
	}{
		{name: "negative workers", config: job("source = \"" + srv + "\"\ndestination = \"" + srv + "\"\nworkers = -1\n"),
			want: []string{"line 4", "jobs.a.workers", "want a positive number", "workers = 4"}},
		{name: "port 0", config: job("source = \"imaps://bob@127.0.0.1:0\"\ndestination = \"" + srv + "\"\n"),
			want: []string{"line 2", "jobs.a.source", `port "0" is not a number from 1 to 65535`}},
		{name: "port 70000", config: job("source = \"" + srv + "\"\ndestination = \"imaps://bob@127.0.0.1:70000\"\n"),
			want: []string{"line 3", "jobs.a.destination", `port "70000"`}},
		{name: "unknown key", config: job("source = \"" + srv + "\"\ndestination = \"" + srv + "\"\ndelete_sourc = true\n"),
			want: []string{"line 4", `unknown key "jobs.a.delete_sourc"`, "did you mean delete_source"}},
		{name: "unknown URL option", config: job("source = \"" + srv + "/INBOX?fast=1\"\ndestination = \"" + srv + "\"\n"),
			want: []string{"line 2", "jobs.a.source", "unknown option", "fast"}},
		{name: "mbox path is a file", config: job("source = \"" + srv + "\"\ndestination = \"mbox:" + file + "\"\n"),
			want: []string{"line 3", "jobs.a.destination", file + " is a file, not a directory", "INBOX.mbox"}},
		{name: "invalid UTF-8", config: job("source = \"" + srv + "\"\ndestination = \"maildir:/tmp/x\xff\"\n"),
			want: []string{"line 3", "invalid UTF-8", "save it as UTF-8"}},
		{name: "duplicate job names", config: job("source = \""+srv+"\"\ndestination = \""+srv+"\"\n") + job("source = \""+srv+"\"\n"),
			want: []string{"line 4", "already been defined", "rename or merge"}},
		{name: "workers flag negative", args: []string{srv, srv, "--workers", "-1"}, want: []string{"--workers -1", "want 1 or more"}},
		{name: "workers flag zero", args: []string{srv, srv, "--workers", "0"}, want: []string{"--workers 0"}},
		{name: "source port 70000, network destination", args: []string{"imaps://bob@127.0.0.1:70000", srv}, want: []string{`port "70000"`}},
		{name: "source URL option, network destination", args: []string{srv + "/INBOX?fast=1", srv}, want: []string{"unknown option", "fast"}},
		{name: "mbox source is a file, network destination", args: []string{"mbox:" + file, srv}, want: []string{"is a file, not a directory", "INBOX.mbox"}},
		{name: "no keep flag", args: []string{srv, srv, "--delete-source", "--keep"}, want: []string{"flag provided but not defined: -keep"}},
	}
	env := map[string]string{"MAILFERRY_SRC_PASSWORD": "pw", "MAILFERRY_DST_PASSWORD": "pw"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cp := filepath.Join(t.TempDir(), "cp.jsonl")
			args := append(append([]string{"copy"}, tc.args...), "--checkpoint", cp)
			cfg := ""
			if tc.config != "" {
				cfg = writeConfig(t, 0o600, tc.config+"checkpoint = \""+cp+"\"\n")
				args = []string{"run", "a", "--config", cfg}
			}
			code, _, stderr := runCLI(t, env, args...)
			if code != exitcode.Usage {
				t.Errorf("%v = %d, want %d; stderr %q", args, code, exitcode.Usage, stderr)
			}
			for _, s := range append(tc.want, cfg) {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q lacks %q", stderr, s)
				}
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
				t.Errorf("error is %d lines, want one: %q", n+1, stderr)
			}
			if checkpointExists(cp) {
				t.Errorf("the checkpoint %s was created before the mistake was refused", cp)
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the listener saw %d connection(s), want 0: configuration must be checked before any network I/O", n)
	}
}

// TestE1RelativeMaildirPath: a relative Maildir path is accepted and
// resolved against the current directory; the checkpoint and the summary
// name the absolute path, so the same run written with the absolute path
// finds everything already copied.
func TestE1RelativeMaildirPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	w := newFakeWorld()
	w.fixtures["a"] = fixtures("INBOX", "2024-01-01", "2024-01-02")
	reg := w.registry()
	maildirsink.Register(reg)
	cp := filepath.Join(dir, "cp.jsonl")
	code, stdout, stderr := cliWith(t, reg, nil, "copy", "mem:a", "maildir:Mail/alice", "--checkpoint", cp, "--json")
	if code != 0 {
		t.Fatalf("copy to a relative path = %d %q", code, stderr)
	}
	abs := filepath.Join(dir, "Mail", "alice")
	if s := jsonSummary(t, stdout); s.Dst != "maildir:"+abs || s.Counts.Stored != 2 {
		t.Errorf("summary dst %q, stored %d; want maildir:%s and 2", s.Dst, s.Counts.Stored, abs)
	}
	code, stdout, stderr = cliWith(t, reg, nil, "copy", "mem:a", "maildir:"+abs, "--checkpoint", cp, "--json")
	var s struct {
		Counts runCounts `json:"counts"`
	}
	if err := json.Unmarshal([]byte(stdout), &s); code != 0 || err != nil || s.Counts.Stored != 0 || s.Counts.Skipped["present"] != 2 {
		t.Errorf("same copy with the absolute path = %d, counts %+v, stderr %q; want 0 and nothing new", code, s.Counts, stderr)
	}
	ents, _ := os.ReadDir(filepath.Join(abs, "new"))
	if len(ents) != 2 {
		t.Errorf("%s/new holds %d messages, want 2", abs, len(ents))
	}
}
