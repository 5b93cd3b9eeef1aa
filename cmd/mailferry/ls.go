package main

import (
	"context"
	"encoding/json"
	"flag"
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

func runLs(ctx context.Context, args []string, env *cliEnv) error {
	var o lsOptions
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	o.common.add(fs)
	o.src.add(fs, "src")
	pos, err := parse(fs, args, 1, "ls SRC [flags]", env)
	if err != nil {
		return err
	}
	log, err := o.common.logger(env.stderr)
	if err != nil {
		return err
	}
	filter, err := o.common.mailboxFilter()
	if err != nil {
		return err
	}
	src, err := env.registry().OpenSource(ctx, pos[0], o.common.openOptions(&o.src, env, log))
	if err != nil {
		return err
	}
	defer src.Close()
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
