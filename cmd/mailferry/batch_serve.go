package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailferry/mailferry/sync/batch/web"
)

// batchServeHelp is 'mailferry batch serve --help'.
const batchServeHelp = `Serve a status page of every batch in the database: passes, accounts by
state and failure class, messages and bytes copied, rate, ETA, and each
failed account's reason. The page is HTML without scripts and reloads every
10 seconds; /api/status has the same numbers as JSON. With PostgreSQL,
River's own UI (the queue's jobs and queues) is mounted at /riverui/.

The page has NO AUTHENTICATION: anyone who reaches it sees every account's
id and failure, and River's UI can cancel and retry jobs. Keep --listen on
loopback (the default), or put it behind a proxy that authenticates.

The database: --db FILE (a SQLite file, as 'batch run' makes next to the
CSV), or the URL in the variable --db-env names (default MAILFERRY_DB).`

// batchServeOptions are the flags of 'batch serve'.
type batchServeOptions struct {
	listen, db, dbEnv string
}

// newBatchServeCommand is 'mailferry batch serve'.
func newBatchServeCommand(env *cliEnv) *cobra.Command {
	o := &batchServeOptions{}
	c := &cobra.Command{
		Use:   "serve [flags]",
		Short: "serve a status page of the batches (no authentication: loopback or behind a proxy)",
		Long:  batchServeHelp,
		Args:  nArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return batchServe(cmd.Context(), o, env)
		},
	}
	fs := c.Flags()
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "serve on `ADDR` (keep it on loopback: the page has no authentication)")
	fs.StringVar(&o.db, "db", "", "read the SQLite `FILE` of 'batch run' (instead of --db-env)")
	fs.StringVar(&o.dbEnv, "db-env", "MAILFERRY_DB", "read the database URL from the environment variable `NAME`")
	return c
}

// dbURL is --db as a SQLite URL, or the URL in --db-env's variable.
func (o *batchServeOptions) dbURL(env *cliEnv) (string, error) {
	if o.db != "" {
		return "sqlite:" + o.db, nil
	}
	if !envVarName.MatchString(o.dbEnv) {
		return "", &usageError{fmt.Sprintf("--db-env %q: want the name of an environment variable", o.dbEnv)}
	}
	return (&batchOptions{dbEnv: o.dbEnv}).dbURL(env)
}

// batchServe opens the database and serves until ctx ends (SIGINT,
// SIGTERM).
func batchServe(ctx context.Context, o *batchServeOptions, env *cliEnv) error {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return &usageError{fmt.Sprintf("--listen %s: %v", o.listen, err)}
	}
	defer func() { _ = ln.Close() }() // Shutdown closes it too; this is for the early returns
	h, closeFn, err := newBatchStatusHandler(ctx, o, env)
	if err != nil {
		return err
	}
	defer closeFn()
	fmt.Fprintf(env.stderr, "mailferry batch serve: http://%s/ (no authentication: keep it on loopback or behind a proxy)\n", ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newBatchStatusHandler opens the database and makes the status page's
// handler, with River's UI where the driver allows it; closeFn closes
// both.
func newBatchStatusHandler(ctx context.Context, o *batchServeOptions, env *cliEnv) (http.Handler, func(), error) {
	url, err := o.dbURL(env)
	if err != nil {
		return nil, nil, err
	}
	// Opened to read: no worker, no copy flags.
	s, err := (&batchOptions{dbEnv: o.dbEnv}).openStore(ctx, url, 0, "", env)
	if err != nil {
		return nil, nil, err
	}
	logger := batchLogger(env.stderr)
	srv := web.New(s)
	srv.Logger = logger
	uiCtx, stopUI := context.WithCancel(context.WithoutCancel(ctx))
	ui, err := web.RiverUI(uiCtx, s.RiverClient(), logger)
	if err != nil {
		stopUI()
		s.Close()
		return nil, nil, err
	}
	srv.RiverUI = ui
	return srv.Handler(), func() { stopUI(); s.Close() }, nil
}
