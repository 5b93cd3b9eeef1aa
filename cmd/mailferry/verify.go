package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

type verifyOptions struct {
	common     commonFlags
	src, dst   sideFlags
	maps       multiFlag
	gmail      bool   // the Gmail preset, as copy --gmail applies it
	checkpoint string // with gmail: the copy's checkpoint
}

// runVerify checks by content that every message of srcURL is in dstURL
// (o is checked).
func runVerify(ctx context.Context, o *verifyOptions, srcURL, dstURL string, env *cliEnv) error {
	if o.gmail {
		if err := checkGmailSource(env.registry(), srcURL); err != nil {
			return err
		}
	}
	log, err := o.common.logger(env.stderr)
	if err != nil {
		return err
	}
	filter, err := o.common.mailboxFilter()
	if err != nil {
		return err
	}
	reg := env.registry()
	srcOpt, dstOpt := o.common.openOptions(&o.src, env, log), o.common.openOptions(&o.dst, env, log)
	// Both ends are read: the destination is parsed as a source too.
	srcEnd, err := reg.Parse(srcURL, srcOpt, mail.AsSource)
	if err != nil {
		return err
	}
	dstEnd, err := reg.Parse(dstURL, dstOpt, mail.AsSource)
	if err != nil {
		return err
	}
	srcName, dstName := srcEnd.Canonical, dstEnd.Canonical
	var store checkpoint.Store
	if o.gmail {
		cp, release, err := verifyCheckpoint(o.checkpoint, srcName, dstName, log)
		if err != nil {
			return err
		}
		if cp != nil {
			defer release()
			defer func() { _ = cp.Close() }()
			store = cp
		}
	}
	src, err := srcEnd.OpenSource(ctx, srcOpt)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	// Closed through whatever reads it: the Gmail wrapper closes its own
	// connection too.
	defer func() { _ = src.Close() }()
	dst, err := dstEnd.OpenSource(ctx, dstOpt)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	defer func() { _ = dst.Close() }()
	folderMap, err := mailferry.ParseMap(o.maps)
	if err != nil {
		return err
	}
	// With --gmail the source lists each message in its owner folder only,
	// and roleMap sends the folder where copy --gmail sent it.
	gsrc, roleMap, err := gmailSource(ctx, gmailSetup{on: o.gmail, include: o.common.include, filter: filter, store: store, hint: gmailHintVerify}, src, dst, log)
	if err != nil {
		return err
	}
	src = gsrc
	rep, err := mailferry.Verify(ctx, src, dst, mailferry.VerifyOptions{Mailboxes: filter, MapMailbox: folderMap.Then(roleMap)})
	if err != nil {
		return err
	}
	if o.common.json {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep) // a terminal write, like fmt.Fprintf (see .golangci.yml)
	} else {
		w := env.stdout
		fmt.Fprintf(w, "%-32s %9s %11s %9s %11s %8s\n", "FOLDER", "SRC MSGS", "SRC SIZE", "DST MSGS", "DST SIZE", "MISSING")
		for _, r := range rep.Mailboxes {
			fmt.Fprintf(w, "%-32s %9d %11s %9d %11s %8d\n", trimName(r.Mailbox, 32), r.SrcCount, humanBytes(r.SrcBytes), r.DstCount, humanBytes(r.DstBytes), len(r.Missing))
		}
		for _, r := range rep.Mailboxes {
			for _, e := range r.Missing {
				fmt.Fprintf(w, "missing: %s %s (%d bytes, %s)%s\n", r.Mailbox, e.ID, e.Size, e.Date.Format("2006-01-02 15:04"), expectedIn(r))
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

// expectedIn names the destination folder of a report's mailbox when it
// is not the same name (a role, --map or the Gmail preset moved it).
func expectedIn(r mailferry.MailboxReport) string {
	if r.DstMailbox == "" || r.DstMailbox == r.Mailbox {
		return ""
	}
	return ", expected in " + r.DstMailbox
}

// verifyCheckpoint opens the checkpoint of the copy being verified, for
// verify --gmail: the Gmail preset keeps a message in the folder an earlier
// run copied it from even after its labels changed, and only the
// checkpoint knows which that was. path "" means the copy's default one.
// A default that does not exist gives nil (a copy run with --checkpoint
// elsewhere, or none yet): owners then follow the labels alone. The run's
// lock is held until release, so that a copy does not change the records
// under the check. It reads the checkpoint as a dry run does
// (openReadOnlyStore): a verify writes nothing, so an old checkpoint file
// not migrated yet is read as it is.
func verifyCheckpoint(path, src, dst string, log *slog.Logger) (checkpoint.Store, func(), error) {
	explicit := path != ""
	if !explicit {
		var err error
		if path, err = checkpoint.DefaultPath(src, dst); err != nil {
			// No state directory: no copy can have left a checkpoint there.
			log.Debug("no checkpoint of the copy: each message is expected in the first folder holding it", "err", err)
			return nil, nil, nil
		}
	}
	if _, err := os.Stat(path); err != nil && !checkpointExists(path) {
		if explicit {
			return nil, nil, &usageError{fmt.Sprintf("--checkpoint %s: %v", path, err)}
		}
		log.Debug("no checkpoint of the copy: each message is expected in the first folder holding it", "file", path)
		return nil, nil, nil
	}
	release, err := lockRun(path)
	if err != nil {
		return nil, nil, err
	}
	cp, err := openReadOnlyStore(path, src, dst, log)
	if err != nil || cp == nil {
		release()
		return nil, nil, err
	}
	return cp, release, nil
}
