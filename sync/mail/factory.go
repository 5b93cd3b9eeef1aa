package mail

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
)

// Kind says where an endpoint's mail lives, which decides its canonical
// name and whether it can be missing before a run.
type Kind int

const (
	// KindUnknown is told from each URL's shape: opaque (maildir:/x) or
	// without a host is a local path, anything else a server. Schemes
	// registered with AddSource or AddSink have it.
	KindUnknown Kind = iota
	// KindLocal is a directory on this machine (Maildir, mbox).
	KindLocal
	// KindServer is an account on a server (IMAP, POP3).
	KindServer
)

// Role is what a URL is parsed for: read from, or written to.
type Role int

// The roles a URL is parsed for.
const (
	AsSource Role = iota + 1
	AsSink
)

func roleOf(source bool) Role {
	if source {
		return AsSource
	}
	return AsSink
}

// Side is how a factory parses and opens a URL as a source (T = Source) or
// a sink (T = Sink). Parse checks the URL completely (port range, query
// options, path) without any I/O and returns what Open takes, so that a
// URL is parsed once and a bad one is refused before anything is opened
// (docs/failure-model.md E1). NewSource and NewSink build one from the
// endpoint's typed ParseURL and New.
type Side[T any] struct {
	Parse func(u *url.URL) (any, error)
	Open  func(ctx context.Context, parsed any, o *OpenOptions) (T, error)
}

// NewSource returns the source Side of parse and open, which take the
// endpoint's own configuration type C and return its own source type S.
func NewSource[C any, S Source](parse func(u *url.URL) (C, error), open func(ctx context.Context, c C, o *OpenOptions) (S, error)) *Side[Source] {
	return &Side[Source]{
		Parse: func(u *url.URL) (any, error) { return parse(u) },
		Open: func(ctx context.Context, c any, o *OpenOptions) (Source, error) {
			s, err := open(ctx, c.(C), o)
			if err != nil {
				return nil, err // not a typed nil in a non-nil interface
			}
			return s, nil
		},
	}
}

// NewSink is NewSource for sinks.
func NewSink[C any, S Sink](parse func(u *url.URL) (C, error), open func(ctx context.Context, c C, o *OpenOptions) (S, error)) *Side[Sink] {
	return &Side[Sink]{
		Parse: func(u *url.URL) (any, error) { return parse(u) },
		Open: func(ctx context.Context, c any, o *OpenOptions) (Sink, error) {
			s, err := open(ctx, c.(C), o)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
	}
}

// Factory is everything mailferry knows about one URL scheme: its kind,
// how to parse and open it as a source and as a sink (nil: it cannot be
// one), and what else the CLI may ask of it. The source and the sink of a
// scheme may live in different packages: each adds its side with Add, and
// the registry joins them.
type Factory struct {
	Scheme string
	Kind   Kind
	Source *Side[Source]
	Sink   *Side[Sink]
	// DirHint explains, for a local kind, what the path must be when it
	// names a file instead of a directory.
	DirHint string
	// KeepsKeys says that the sink stores each message's Envelope.Key with
	// it and its Index reports it, so a lost checkpoint can be rebuilt from
	// the destination (docs/failure-model.md A9; the Maildir sink).
	KeepsKeys bool
	// Presets names the source presets the scheme supports ("gmail").
	Presets []string
}

// Add registers f's sides for f.Scheme (lower case), joining them with a
// side registered before. Registering a side twice, or the two sides with
// different kinds, is a programming error and panics.
func (r *Registry) Add(f Factory) {
	f.Scheme = strings.ToLower(f.Scheme)
	old, ok := r.schemes[f.Scheme]
	if !ok {
		r.schemes[f.Scheme] = &f
		return
	}
	if (f.Source != nil && old.Source != nil) || (f.Sink != nil && old.Sink != nil) {
		panic("mail: scheme registered twice: " + f.Scheme)
	}
	if f.Kind != old.Kind && f.Kind != KindUnknown && old.Kind != KindUnknown {
		panic("mail: scheme registered with two kinds: " + f.Scheme)
	}
	joined := *old
	joined.Kind = max(old.Kind, f.Kind)
	joined.Source = cmpOr(old.Source, f.Source)
	joined.Sink = cmpOr(old.Sink, f.Sink)
	joined.DirHint = cmpOr(old.DirHint, f.DirHint)
	joined.KeepsKeys = old.KeepsKeys || f.KeepsKeys
	joined.Presets = append(append([]string(nil), old.Presets...), f.Presets...)
	r.schemes[f.Scheme] = &joined
}

// cmpOr returns a unless it is the zero value, else b.
func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

// Lookup returns the factory of scheme.
func (r *Registry) Lookup(scheme string) (*Factory, bool) {
	f, ok := r.schemes[strings.ToLower(scheme)]
	return f, ok
}

// factory returns the factory of u's scheme if it can play role.
func (r *Registry) factory(u *url.URL, role Role) (*Factory, error) {
	f, ok := r.schemes[u.Scheme]
	srcs, sinks := r.Schemes()
	if role == AsSource && (!ok || f.Source == nil) {
		return nil, &ConfigError{Msg: fmt.Sprintf("%s: %q cannot be a source", Redact(u), u.Scheme), Hint: "sources: " + strings.Join(srcs, ", ")}
	}
	if role == AsSink && (!ok || f.Sink == nil) {
		return nil, &ConfigError{Msg: fmt.Sprintf("%s: %q cannot be a destination", Redact(u), u.Scheme), Hint: "destinations: " + strings.Join(sinks, ", ")}
	}
	return f, nil
}

// Endpoint is a URL parsed and checked once for a role, ready to open.
type Endpoint struct {
	URL     *url.URL
	Factory *Factory
	Role    Role
	// Canonical is the endpoint's stable name for the checkpoint: a local
	// path made absolute (scheme:/abs/path), a server URL redacted with its
	// host in lower case.
	Canonical string
	// Path is the absolute directory of a local endpoint, "" for a server.
	Path   string
	parsed any
}

// Parse parses raw once and checks it for role with its scheme's own
// parser, without any I/O but a stat of a local path: a local path that
// names a file is refused. Errors are *ConfigError.
func (r *Registry) Parse(raw string, o *OpenOptions, role Role) (*Endpoint, error) {
	u, err := ParseEndpoint(raw, o)
	if err != nil {
		return nil, err
	}
	return r.Resolve(u, role)
}

// Resolve checks a URL that ParseEndpoint returned, as Parse does.
func (r *Registry) Resolve(u *url.URL, role Role) (*Endpoint, error) {
	f, err := r.factory(u, role)
	if err != nil {
		return nil, err
	}
	e := &Endpoint{URL: u, Factory: f, Role: role}
	if role == AsSource {
		e.parsed, err = f.Source.Parse(u)
	} else {
		e.parsed, err = f.Sink.Parse(u)
	}
	if err != nil {
		return nil, err
	}
	if !e.Local() {
		c := &url.URL{Scheme: u.Scheme, User: u.User, Host: strings.ToLower(u.Host), Path: u.Path, RawQuery: u.RawQuery}
		e.Canonical = Redact(c)
		return e, nil
	}
	if e.Path, err = LocalPath(u); err != nil {
		return nil, err
	}
	e.Canonical = u.Scheme + ":" + e.Path
	return e, e.checkDir()
}

// Local reports whether the endpoint is a local path.
func (e *Endpoint) Local() bool {
	switch e.Factory.Kind {
	case KindLocal:
		return true
	case KindServer:
		return false
	}
	return e.URL.Opaque != "" || e.URL.Host == ""
}

// checkDir refuses a local path that exists but is not a directory.
func (e *Endpoint) checkDir() error {
	fi, err := os.Stat(e.Path)
	if err != nil || fi.IsDir() || e.Factory.Kind != KindLocal {
		return nil
	}
	return &ConfigError{Msg: fmt.Sprintf("%s: %s is a file, not a directory", Redact(e.URL), e.Path), Hint: e.Factory.DirHint}
}

// Missing reports whether the endpoint is a local path that does not
// exist yet.
func (e *Endpoint) Missing() bool {
	if !e.Local() {
		return false
	}
	_, err := os.Stat(e.Path)
	return errors.Is(err, fs.ErrNotExist)
}

// HasPreset reports whether the scheme supports the named source preset.
func (f *Factory) HasPreset(name string) bool {
	for _, p := range f.Presets {
		if p == name {
			return true
		}
	}
	return false
}

// OpenSource opens the endpoint, parsed as a source, with o.
func (e *Endpoint) OpenSource(ctx context.Context, o *OpenOptions) (Source, error) {
	if e.Role != AsSource {
		return nil, &ConfigError{Msg: Redact(e.URL) + ": parsed as a destination, opened as a source"}
	}
	return e.Factory.Source.Open(ctx, e.parsed, o)
}

// OpenSink opens the endpoint, parsed as a sink, with o.
func (e *Endpoint) OpenSink(ctx context.Context, o *OpenOptions) (Sink, error) {
	if e.Role != AsSink {
		return nil, &ConfigError{Msg: Redact(e.URL) + ": parsed as a source, opened as a destination"}
	}
	return e.Factory.Sink.Open(ctx, e.parsed, o)
}
