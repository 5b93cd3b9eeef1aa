package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/mboxfmt"
	"github.com/mailferry/mailferry/sources/maildir"
	"github.com/mailferry/mailferry/sources/mbox"
	"github.com/mailferry/mailferry/sync/mail"
)

// countedSource counts what the engine reads of a local source: List
// calls and opened messages. Its other capabilities are the inner
// source's (FolderStatuser above all).
type countedSource struct {
	mail.Source
	lists, opens *atomic.Int64
}

func (c countedSource) Features() *mail.Features { return mail.Wrap(c, c.Source) }

func (c countedSource) List(ctx context.Context, mb string, fn func(mail.Envelope) error) error {
	c.lists.Add(1)
	return c.Source.List(ctx, mb, fn)
}

func (c countedSource) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	c.opens.Add(1)
	return c.Source.Open(ctx, env)
}

// clocked is a local source whose change evidence is judged by a clock.
type clocked interface {
	mail.Source
	SetClock(func() time.Time)
}

// TestLocalSourcesSkipUnchangedFolders (issue 11 item 4): a rerun over an
// unchanged Maildir or mbox source skips every folder and reads no
// message, not even a listing; a new message in one folder makes the next
// run list that folder alone and copy it.
func TestLocalSourcesSkipUnchangedFolders(t *testing.T) {
	tests := []struct {
		scheme string
		open   func(ctx context.Context, root string) (clocked, error)
		add    func(t *testing.T, root, mb string, i int)
	}{
		{"maildir", func(ctx context.Context, root string) (clocked, error) { return maildir.New(ctx, root, nil) }, addMaildirMessage},
		{"mbox", func(ctx context.Context, root string) (clocked, error) { return mbox.New(ctx, root, nil) }, addMboxMessage},
	}
	for _, tc := range tests {
		t.Run(tc.scheme, func(t *testing.T) {
			var lists, opens atomic.Int64
			reg := registry()
			scheme := "counted" + tc.scheme
			reg.Add(mail.Factory{Scheme: scheme, Kind: mail.KindLocal, Source: mail.NewSource(mail.LocalPath,
				func(ctx context.Context, root string, _ *mail.OpenOptions) (countedSource, error) {
					src, err := tc.open(ctx, root)
					if err != nil {
						return countedSource{}, err
					}
					// The files were written a moment ago: judge their
					// evidence as a nightly run the next day would.
					src.SetClock(func() time.Time { return time.Now().Add(24 * time.Hour) })
					return countedSource{src, &lists, &opens}, nil
				})})
			dir := t.TempDir()
			root := filepath.Join(dir, "src")
			for i, mb := range []string{"INBOX", "Work", "INBOX", "Work", "Work"} {
				tc.add(t, root, mb, i)
			}
			args := []string{"copy", scheme + ":" + root, "maildir:" + filepath.Join(dir, "dst"), "--checkpoint", filepath.Join(dir, "cp"), "--json"}
			run := func() summary {
				t.Helper()
				lists.Store(0)
				opens.Store(0)
				var out, errb bytes.Buffer
				e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, hooks: inProcessHooks(nil), reg: reg}
				if code := runEnv(context.Background(), args, e); code != 0 {
					t.Fatalf("copy: exit %d: %s", code, errb.String())
				}
				var s summary
				if err := json.Unmarshal(out.Bytes(), &s); err != nil {
					t.Fatalf("--json: %v\n%s", err, out.String())
				}
				return s
			}
			if s := run(); s.Totals.Copied != 5 {
				t.Fatalf("first run copied %d, want 5", s.Totals.Copied)
			}
			run() // takes the evidence the third run compares with
			s := run()
			for mb, b := range s.Folders {
				if b.Listing != "skipped" || b.Listed != b.Skipped || b.Listed == 0 {
					t.Errorf("unchanged rerun: %s listed %q (%d found, %d present), want skipped with its messages counted", mb, b.Listing, b.Listed, b.Skipped)
				}
			}
			if n, m := lists.Load(), opens.Load(); n != 0 || m != 0 || s.Totals.Listed != 5 {
				t.Errorf("unchanged rerun: %d listings, %d messages opened, %d counted; want 0, 0, 5", n, m, s.Totals.Listed)
			}

			tc.add(t, root, "Work", 9)
			s = run()
			if got := s.Folders["Work"].Listing + " " + s.Folders["INBOX"].Listing; got != "full skipped" || s.Totals.Copied != 1 {
				t.Errorf("after a new message in Work: listings %q, copied %d; want Work full, INBOX skipped, 1", got, s.Totals.Copied)
			}
			if n, m := lists.Load(), opens.Load(); n != 1 || m != 1 {
				t.Errorf("after a new message in Work: %d listings, %d messages opened; want 1 and 1", n, m)
			}
		})
	}
}

// addMaildirMessage delivers message i to folder mb of the Maildir++ tree
// at root, as a delivery agent does (tmp/, then new/).
func addMaildirMessage(t *testing.T, root, mb string, i int) {
	t.Helper()
	dir := root
	if mb != "INBOX" {
		dir = filepath.Join(root, "."+mb)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	name := fmt.Sprintf("%d.M%d.test", 1700000000+i, i)
	tmp := filepath.Join(dir, "tmp", name)
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "Message-ID: <l%d@x>\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i, i), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "new", name)); err != nil {
		t.Fatal(err)
	}
}

// addMboxMessage appends message i to mailbox mb of the mbox folder root.
func addMboxMessage(t *testing.T, root, mb string, i int) {
	t.Helper()
	path, err := mboxfmt.FilePath(root, mb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	date := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := mboxfmt.WriteEntry(f, "", date, strings.NewReader(fmt.Sprintf("Message-ID: <l%d@x>\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i, i))); err != nil {
		t.Fatal(err)
	}
}
