package mail

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSrc and fakeSnk are endpoints that are nothing but their URL.
type fakeSrc struct{ Source }
type fakeSnk struct{ Sink }

func fakeParse(u *url.URL) (string, error) {
	if u.Query().Has("bad") {
		return "", &ConfigError{Msg: "bad option"}
	}
	return u.String(), nil
}

func fakeRegistry() *Registry {
	r := NewRegistry()
	openSrc := func(ctx context.Context, c string, o *OpenOptions) (*fakeSrc, error) { return &fakeSrc{}, nil }
	failSrc := func(ctx context.Context, c string, o *OpenOptions) (*fakeSrc, error) { return nil, errors.New("down") }
	openSnk := func(ctx context.Context, c string, o *OpenOptions) (*fakeSnk, error) { return &fakeSnk{}, nil }
	// The source and sink sides of "dir" come from two registrations,
	// as sources/maildir and sinks/maildir add theirs.
	r.Add(Factory{Scheme: "dir", Kind: KindLocal, Source: NewSource(fakeParse, openSrc), DirHint: "want a directory"})
	r.Add(Factory{Scheme: "DIR", Kind: KindLocal, Sink: NewSink(fakeParse, openSnk), KeepsKeys: true})
	r.Add(Factory{Scheme: "srv", Kind: KindServer, Source: NewSource(fakeParse, openSrc), Presets: []string{"p"}})
	r.Add(Factory{Scheme: "down", Kind: KindServer, Source: NewSource(fakeParse, failSrc)})
	return r
}

func TestRegistryParse(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := fakeRegistry()
	tests := []struct {
		raw       string
		role      Role
		canonical string
		local     bool
		missing   bool
		wantErr   string
	}{
		{"dir:" + dir, AsSource, "dir:" + dir, true, false, ""},
		{"dir://" + dir + "/new/", AsSink, "dir:" + dir + "/new", true, true, ""},
		{"srv://Alice@Mail.Example.org:993/x?b=1&a=2", AsSource, "srv://Alice@mail.example.org:993/x?a&b", false, false, ""},
		{"dir:" + file, AsSink, "", false, false, "is a file, not a directory (want a directory)"},
		{"dir:" + dir + "?bad=1", AsSource, "", false, false, "bad option"},
		{"srv://a@h", AsSink, "", false, false, `"srv" cannot be a destination`},
		{"nope://a@h", AsSource, "", false, false, `"nope" cannot be a source`},
		{"srv://a:pw@h", AsSource, "", false, false, "a password in the URL is refused"},
	}
	for _, tc := range tests {
		e, err := r.Parse(tc.raw, nil, tc.role)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrConfig) {
				t.Errorf("Parse(%q) = %v, want a config error with %q", tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q) = %v", tc.raw, err)
			continue
		}
		if e.Canonical != tc.canonical || e.Local() != tc.local || e.Missing() != tc.missing {
			t.Errorf("Parse(%q) = canonical %q local %v missing %v; want %q %v %v", tc.raw, e.Canonical, e.Local(), e.Missing(), tc.canonical, tc.local, tc.missing)
		}
	}
}

func TestRegistryJoinsSides(t *testing.T) {
	r := fakeRegistry()
	f, ok := r.Lookup("Dir")
	if !ok || f.Source == nil || f.Sink == nil || !f.KeepsKeys || f.DirHint == "" || f.Kind != KindLocal {
		t.Fatalf("Lookup(dir) = %+v, %v; want both sides joined", f, ok)
	}
	if s, _ := r.Lookup("srv"); !s.HasPreset("p") || s.HasPreset("q") {
		t.Errorf("srv presets = %v", s.Presets)
	}
	srcs, sinks := r.Schemes()
	if strings.Join(srcs, ",") != "dir,down,srv" || strings.Join(sinks, ",") != "dir" {
		t.Errorf("Schemes() = %v, %v", srcs, sinks)
	}
	for _, f := range []Factory{
		{Scheme: "dir", Source: NewSource(fakeParse, func(context.Context, string, *OpenOptions) (*fakeSrc, error) { return nil, nil })},
		{Scheme: "srv", Kind: KindLocal},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%s again) did not panic", f.Scheme)
				}
			}()
			r.Add(f)
		}()
	}
}

func TestEndpointOpen(t *testing.T) {
	r := fakeRegistry()
	ctx := context.Background()
	e, err := r.Parse("dir:/x", nil, AsSink)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := e.OpenSink(ctx, nil); err != nil || s == nil {
		t.Errorf("OpenSink() = %v, %v", s, err)
	}
	if _, err := e.OpenSource(ctx, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("OpenSource of a sink endpoint = %v, want a config error", err)
	}
	// A constructor's nil pointer must not become a non-nil Source.
	if s, err := r.OpenSource(ctx, "down://a@h", nil); err == nil || s != nil {
		t.Errorf("OpenSource(down) = %#v, %v; want a nil Source and the error", s, err)
	}
}
