package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	mailferry "github.com/mailferry/mailferry/sync"
)

type verifyOptions struct {
	common   commonFlags
	src, dst sideFlags
	maps     multiFlag
}

func runVerify(ctx context.Context, args []string, env *cliEnv) error {
	var o verifyOptions
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	o.common.add(fs)
	o.src.add(fs, "src")
	o.dst.add(fs, "dst")
	fs.Var(&o.maps, "map", "expect source folders matching `SRC_RE=DST` in DST, as copy --map put them (repeatable); special-use folders follow their role as in copy")
	pos, err := parse(fs, args, 2, "verify SRC DST [flags]", env)
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
	reg := registry()
	srcOpt, dstOpt := o.common.openOptions(&o.src, env, log), o.common.openOptions(&o.dst, env, log)
	if _, err := canonical(reg, pos[0], srcOpt, true); err != nil {
		return err
	}
	if _, err := canonical(reg, pos[1], dstOpt, true); err != nil {
		return err
	}
	src, err := reg.OpenSource(ctx, pos[0], srcOpt)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	dst, err := reg.OpenSource(ctx, pos[1], dstOpt)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	defer dst.Close()
	folderMap, err := mailferry.ParseMap(o.maps)
	if err != nil {
		return err
	}
	roleMap, err := mailferry.RoleMapFor(ctx, src, dst)
	if err != nil {
		return err
	}
	rep, err := mailferry.Verify(ctx, src, dst, mailferry.VerifyOptions{Mailboxes: filter, MapMailbox: folderMap.Then(roleMap)})
	if err != nil {
		return err
	}
	if o.common.json {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		w := env.stdout
		fmt.Fprintf(w, "%-32s %9s %11s %9s %11s %8s\n", "FOLDER", "SRC MSGS", "SRC SIZE", "DST MSGS", "DST SIZE", "MISSING")
		for _, r := range rep.Mailboxes {
			fmt.Fprintf(w, "%-32s %9d %11s %9d %11s %8d\n", trimName(r.Mailbox, 32), r.SrcCount, humanBytes(r.SrcBytes), r.DstCount, humanBytes(r.DstBytes), len(r.Missing))
		}
		for _, r := range rep.Mailboxes {
			for _, e := range r.Missing {
				fmt.Fprintf(w, "missing: %s %s (%d bytes, %s)\n", r.Mailbox, e.ID, e.Size, e.Date.Format("2006-01-02 15:04"))
			}
		}
		if rep.Missing == 0 {
			fmt.Fprintln(w, "ok: every source message is in the destination")
		}
	}
	if rep.Missing > 0 {
		return &partialError{rep.Missing}
	}
	return nil
}
