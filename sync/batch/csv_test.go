package batch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const header = "id,src,dst,src_auth,dst_auth\n"

func TestLoadAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Row
	}{
		{"minimal", header + "alice,imaps://alice@old.example,imaps://alice@new.example,file:pw/alice.src,env:ALICE_DST\n",
			[]Row{{Line: 2, ID: "alice", Src: "imaps://alice@old.example", Dst: "imaps://alice@new.example",
				SrcAuth: Ref{"file", "pw/alice.src"}, DstAuth: Ref{"env", "ALICE_DST"}}}},
		{"optional columns, any order, BOM, comments, CRLF",
			"\xEF\xBB\xBFwave,id,src,dst,src_auth,dst_auth,include,exclude,since,map,gmail\r\n" +
				"# staff first\r\n" +
				"w1,bob@example.org,imap://bob@h:143,maildir:/m/bob,\"cmd:get-secret --user bob\",,INBOX;^Work/,Trash,2024-01-31,Sent Items=Sent,yes\r\n",
			[]Row{{Line: 3, ID: "bob@example.org", Src: "imap://bob@h:143", Dst: "maildir:/m/bob",
				SrcAuth: Ref{"cmd", "get-secret --user bob"}, Include: []string{"INBOX", "^Work/"}, Exclude: []string{"Trash"},
				Since: "2024-01-31", Map: []string{"Sent Items=Sent"}, Gmail: true, Wave: "w1"}}},
		{"oauth2 profile, two rows", header +
			"a,imaps://a@imap.gmail.com,imaps://a@n,oauth2:google-staff,env:A\n" +
			"b,pop3s://b@p,mbox:/b,env:B,\n",
			[]Row{{Line: 2, ID: "a", Src: "imaps://a@imap.gmail.com", Dst: "imaps://a@n", SrcAuth: Ref{"oauth2", "google-staff"}, DstAuth: Ref{"env", "A"}},
				{Line: 3, ID: "b", Src: "pop3s://b@p", Dst: "mbox:/b", SrcAuth: Ref{"env", "B"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Load:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadRefuses(t *testing.T) {
	const ok = "a,imaps://a@o,imaps://a@n,env:A,env:B\n"
	tests := []struct {
		name      string
		in        string
		line, col int
		msg       string
	}{
		{"empty file", "", 1, 1, "empty file"},
		{"header only", header, 1, 1, "no account rows"},
		{"missing column", "id,src,dst,src_auth\n" + "a,imaps://a@o,imaps://a@n,env:A\n", 1, 5, `missing column "dst_auth"`},
		{"unknown column", "id,src,dst,src_auth,dst_auth,password\n", 1, 6, `unknown column "password"`},
		{"column twice", "id,src,dst,src_auth,dst_auth,id\n", 1, 6, "column given twice"},
		{"duplicate id", header + ok + ok, 3, 1, `id "a" already used on line 2`},
		{"bad id", header + " -x,imaps://a@o,imaps://a@n,env:A,env:B\n", 2, 1, "id"},
		{"bad URL", header + "a,imaps://a@o:port,imaps://a@n,env:A,env:B\n", 2, 2, "bad URL"},
		{"unknown scheme", header + "a,http://a@o,imaps://a@n,env:A,env:B\n", 2, 2, `scheme "http"`},
		{"no user", header + "a,imaps://o,imaps://a@n,env:A,env:B\n", 2, 2, "no user"},
		{"password in URL", header + "a,imaps://a:hunter2@o,imaps://a@n,env:A,env:B\n", 2, 2, "holds a password"},
		{"inline secret", header + "a,imaps://a@o,imaps://a@n,hunter2,env:B\n", 2, 4, "looks like a secret"},
		{"inline secret with colon", header + "a,imaps://a@o,imaps://a@n,env:B,pass:word\n", 2, 5, "looks like a secret"},
		{"bad env name", header + "a,imaps://a@o,imaps://a@n,env:A-B,env:B\n", 2, 4, "variable name"},
		{"empty cmd", header + "a,imaps://a@o,imaps://a@n,cmd:  ,env:B\n", 2, 4, "names no command"},
		{"open quote", header + "a,imaps://a@o,imaps://a@n,cmd:x 'y,env:B\n", 2, 4, "unterminated"},
		{"empty file ref", header + "a,imaps://a@o,imaps://a@n,file:,env:B\n", 2, 4, "no path"},
		{"auth missing for a server", header + "a,imaps://a@o,imaps://a@n,,env:B\n", 2, 4, "a server account needs"},
		{"auth for a local side", header + "a,maildir:/x,imaps://a@n,env:A,env:B\n", 2, 4, "takes no credentials"},
		{"bad since", "id,src,dst,src_auth,dst_auth,since\n" + "a,imaps://a@o,imaps://a@n,env:A,env:B,31/01/2024\n", 2, 6, "YYYY-MM-DD"},
		{"bad include", "id,src,dst,src_auth,dst_auth,include\n" + "a,imaps://a@o,imaps://a@n,env:A,env:B,(\n", 2, 6, "folder expression"},
		{"bad map", "id,src,dst,src_auth,dst_auth,map\n" + "a,imaps://a@o,imaps://a@n,env:A,env:B,Sent\n", 2, 6, "SOURCE_REGEXP=DESTINATION"},
		{"bad gmail", "id,src,dst,src_auth,dst_auth,gmail\n" + "a,imaps://a@o,imaps://a@n,env:A,env:B,maybe\n", 2, 6, "yes or no"},
		{"bad wave", "id,src,dst,src_auth,dst_auth,wave\n" + "a,imaps://a@o,imaps://a@n,env:A,env:B,w 1\n", 2, 6, "wave"},
		{"short record", header + "a,imaps://a@o\n", 2, 1, "wrong number of fields"},
		{"bad quoting", header + "a,\"imaps://a@o,imaps://a@n,env:A,env:B\n", 2, 40, "quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := Load(strings.NewReader(tt.in))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load = %v, %v; want a *LoadError", rows, err)
			}
			if rows != nil {
				t.Errorf("Load returned %d rows with an error: a bad file loads nothing", len(rows))
			}
			if le.Line != tt.line || le.Column != tt.col || !strings.Contains(le.Error(), tt.msg) {
				t.Errorf("error %q at line %d column %d; want line %d column %d containing %q", le, le.Line, le.Column, tt.line, tt.col, tt.msg)
			}
			if strings.Contains(le.Error(), "hunter2") || strings.Contains(le.Error(), "pass:word") {
				t.Errorf("error %q repeats the secret", le)
			}
		})
	}
}

func TestSplitArgv(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"a b  c", []string{"a", "b", "c"}},
		{`vault read 'secret/mail users' "x y"`, []string{"vault", "read", "secret/mail users", "x y"}},
		{`a\ b '$HOME' "$(rm -rf /)" ''`, []string{"a b", "$HOME", "$(rm -rf /)", ""}},
		{"", nil},
	}
	for _, tt := range tests {
		got, err := SplitArgv(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitArgv(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestResolverSecret(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The command sees the row's fields only in its environment, and not
	// the database URL nor another password.
	script := "#!/bin/sh\necho \"$MAILFERRY_ROW_ID/$MAILFERRY_ROW_SIDE/${MAILFERRY_DB:-nodb}/${MAILFERRY_DST_PASSWORD:-nopw}/${DBURL:-nohide}/$1\"\n"
	if err := os.WriteFile(filepath.Join(dir, "get"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PW": "fromenv"}
	rv := &Resolver{BaseDir: dir, Hide: []string{"DBURL"},
		Getenv: func(k string) string { return env[k] },
		Environ: func() []string {
			return []string{"MAILFERRY_DB=x", "MAILFERRY_DST_PASSWORD=y", "DBURL=z", "PATH=/usr/bin:/bin"}
		}}
	row := &Row{ID: "al'ice;$(id)", Src: "imaps://a@o", Dst: "imaps://a@n"}
	tests := []struct {
		ref     string
		want    string
		wantErr string
	}{
		{"file:pw", "s3cret", ""},
		{"env:PW", "fromenv", ""},
		{"env:NOPE", "", "NOPE is empty"},
		{"cmd:./get 'a b'", "al'ice;$(id)/src/nodb/nopw/nohide/a b", ""},
		{"cmd:./missing", "", "failed"},
		{"oauth2:p", "", "no password"},
		{"file:nope", "", "no such file"},
	}
	for _, tt := range tests {
		ref, err := ParseRef(tt.ref)
		if err != nil {
			t.Fatalf("ParseRef(%q): %v", tt.ref, err)
		}
		got, err := rv.Secret(context.Background(), ref, row, "src")
		if got != tt.want || (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Secret(%s) = %q, %v; want %q, error containing %q", tt.ref, got, err, tt.want, tt.wantErr)
		}
	}
}

// FuzzLoad: no input panics, an accepted file yields rows that pass the
// checks again, and an error always names a line and a column.
func FuzzLoad(f *testing.F) {
	f.Add(header + "a,imaps://a@o,imaps://a@n,env:A,env:B\n")
	f.Add("id,src,dst,src_auth,dst_auth,include,since,map,gmail,wave\n" + "a,imap://a@o,maildir:/x,cmd:x 'y',,INBOX,2024-01-01,a=b,yes,w\n")
	f.Add(header + "a,\"imaps://a@o\nx\",imaps://a@n,env:A,env:B\n")
	f.Add("\xEF\xBB\xBF" + header)
	f.Fuzz(func(t *testing.T, in string) {
		rows, err := Load(strings.NewReader(in))
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || le.Line < 1 || le.Column < 1 || rows != nil {
				t.Fatalf("Load error %v (%T), rows %v: want a *LoadError with a line and column, and no rows", err, err, rows)
			}
			return
		}
		ids := map[string]bool{}
		for _, r := range rows {
			if ids[r.ID] || !idRe().MatchString(r.ID) || r.Line < 2 {
				t.Fatalf("accepted row %+v: duplicate or bad id, or bad line", r)
			}
			ids[r.ID] = true
			for _, ref := range []Ref{r.SrcAuth, r.DstAuth} {
				if ref.Kind == "" {
					continue
				}
				if back, err := ParseRef(ref.String()); err != nil || back != ref {
					t.Fatalf("accepted reference %v does not parse back: %v, %v", ref, back, err)
				}
			}
		}
	})
}
