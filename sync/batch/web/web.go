// Package web is the batch status page: one server-rendered HTML page
// (html/template, no script) and a JSON endpoint with the same numbers,
// read from the batch database through batch.Store, and River's own UI
// mounted under /riverui/ when the database allows it.
//
// It has no authentication: serve it on loopback, or behind a proxy that
// authenticates.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/mailferry/mailferry/sync/batch"
)

//go:embed page.html
var pageFS embed.FS

// page is parsed on first use, not at program start: every mailferry
// command links this package, and only "batch serve" shows the page.
var page = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page.html").Funcs(template.FuncMap{
		"bytes":    humanBytes,
		"bytesf":   func(f float64) string { return humanBytes(int64(f)) },
		"duration": humanDuration,
		"rate":     func(f float64) string { return fmt.Sprintf("%.1f", f) },
	}).ParseFS(pageFS, "page.html"))
})

// Reader is what the page reads of the batch database (batch.Store).
type Reader interface {
	Batches(ctx context.Context) ([]string, error)
	Overview(ctx context.Context, batch string) (*batch.Overview, error)
}

// Server serves the status page.
type Server struct {
	store Reader
	// RiverUI, when not nil, is River's UI, mounted at /riverui/.
	RiverUI http.Handler
	// Now is the clock of rates and ETAs; time.Now when nil.
	Now    func() time.Time
	Logger *slog.Logger
}

// New makes a server reading store.
func New(store Reader) *Server {
	return &Server{store: store, Now: time.Now, Logger: slog.New(slog.DiscardHandler)}
}

// Handler routes the page (/), the JSON (/api/status) and River's UI.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /api/status", s.serveJSON)
	if s.RiverUI != nil {
		mux.Handle("/riverui/", s.RiverUI)
	}
	return mux
}

// Status is the JSON endpoint's answer and the page's data: every batch
// at one instant.
type Status struct {
	Now     time.Time   `json:"now"`
	Batches []BatchView `json:"batches"`
	RiverUI bool        `json:"riverui"`
}

// BatchView is one batch with its passes' rates and ETAs worked out.
type BatchView struct {
	*batch.Overview
	Passes []PassView `json:"passes"`
}

// PassView is a pass with its rate and ETA at Status.Now.
type PassView struct {
	batch.PassOverview
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	MsgsPerSec     float64 `json:"messages_per_second"`
	BytesPerSec    float64 `json:"bytes_per_second"`
	// ETASeconds is null when it cannot be told (see batch.PassOverview.ETA).
	ETASeconds *float64 `json:"eta_seconds"`
}

// Status reads every batch.
func (s *Server) Status(ctx context.Context) (*Status, error) {
	names, err := s.store.Batches(ctx)
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	st := &Status{Now: s.Now().UTC(), Batches: []BatchView{}, RiverUI: s.RiverUI != nil}
	for _, name := range names {
		o, err := s.store.Overview(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("batch %s: %w", name, err)
		}
		st.Batches = append(st.Batches, viewOf(o, st.Now))
	}
	return st, nil
}

func viewOf(o *batch.Overview, now time.Time) BatchView {
	v := BatchView{Overview: o, Passes: make([]PassView, 0, len(o.Passes))}
	for _, p := range o.Passes {
		pv := PassView{PassOverview: p, ElapsedSeconds: p.Elapsed(now).Seconds()}
		pv.MsgsPerSec, pv.BytesPerSec = p.Rate(now)
		if eta, ok := p.ETA(now); ok {
			secs := eta.Seconds()
			pv.ETASeconds = &secs
		}
		v.Passes = append(v.Passes, pv)
	}
	return v
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	st, err := s.Status(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := page().Execute(w, st); err != nil {
		s.Logger.Warn("status page", "error", err)
	}
}

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request) {
	st, err := s.Status(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

// fail answers 500 without the error's text: it may name the database.
func (s *Server) fail(w http.ResponseWriter, err error) {
	s.Logger.Warn("status page: read the batch database", "error", err)
	http.Error(w, "cannot read the batch database (see the server's log)", http.StatusInternalServerError)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func humanDuration(secs float64) string {
	return (time.Duration(secs) * time.Second).Round(time.Second).String()
}
