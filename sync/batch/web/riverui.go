package web

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"
	"riverqueue.com/riverui/uiendpoints"
)

// RiverUI is River's own UI (riverqueue.com/riverui) for client, the
// batch.Store's River client, to mount at /riverui/; it runs its
// background services until ctx ends. It serves both drivers: riverui
// v0.22.0 lists jobs and queues through River's driver, which SQLite's
// implements too. A client of another type gives nil, nil.
func RiverUI(ctx context.Context, client any, logger *slog.Logger) (http.Handler, error) {
	var endpoints uiendpoints.Bundle
	switch c := client.(type) {
	case *river.Client[pgx.Tx]:
		endpoints = riverui.NewEndpoints(c, nil)
	case *river.Client[*sql.Tx]:
		endpoints = riverui.NewEndpoints(c, nil)
	default:
		return nil, nil
	}
	h, err := riverui.NewHandler(&riverui.HandlerOpts{Endpoints: endpoints, Logger: logger, Prefix: "/riverui"})
	if err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	if err := h.Start(ctx); err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	return h, nil
}
