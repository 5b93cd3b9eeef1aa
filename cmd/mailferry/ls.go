package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mailferry/mailferry/sync/mail"
)

type lsOptions struct {
	common commonFlags
	src    sideFlags
}

type lsRow struct {
	Mailbox  string `json:"mailbox"`
	Messages int    `json:"messages"`
	Bytes    int64  `json:"bytes"`
}

// runLs lists the mailboxes of srcURL (o is checked).
func runLs(ctx context.Context, o *lsOptions, srcURL string, env *cliEnv) error {
	log, err := o.common.logger(env.stderr)
	if err != nil {
		return err
	}
	filter, err := o.common.mailboxFilter()
	if err != nil {
		return err
	}
	src, err := env.registry().OpenSource(ctx, srcURL, o.common.openOptions(&o.src, env, log))
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }()
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		return err
	}
	// A source that counts a mailbox cheaply (IMAP STATUS, POP3 STAT) is
	// asked; others are listed message by message.
	statter := mail.FeaturesOf(src).Statter
	var rows []lsRow
	var total lsRow
	for _, mb := range boxes {
		if filter != nil && !filter(mb) {
			continue
		}
		r := lsRow{Mailbox: mb}
		if statter != nil {
			r.Messages, r.Bytes, err = statter.Stat(ctx, mb)
		} else {
			err = src.List(ctx, mb, func(e mail.Envelope) error {
				r.Messages++
				r.Bytes += max(e.Size, 0)
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("%s: %w", mb, err)
		}
		rows = append(rows, r)
		total.Messages += r.Messages
		total.Bytes += r.Bytes
	}
	if o.common.json {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"mailboxes": rows, "messages": total.Messages, "bytes": total.Bytes})
	}
	fmt.Fprintf(env.stdout, "%-40s %9s %12s\n", "FOLDER", "MESSAGES", "SIZE")
	for _, r := range rows {
		fmt.Fprintf(env.stdout, "%-40s %9d %12s\n", r.Mailbox, r.Messages, humanBytes(r.Bytes))
	}
	fmt.Fprintf(env.stdout, "%-40s %9d %12s\n", "total", total.Messages, humanBytes(total.Bytes))
	return nil
}
