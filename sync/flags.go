package sync

import (
	"context"
	"fmt"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// flagString is a canonical form of a flag set, for comparisons; a
// rebuilt checkpoint records the destination's flags in the same form.
func flagString(flags []mail.Flag) string { return checkpoint.FlagString(flags) }

// syncFlags gives the destination the current source flags of messages
// copied earlier whose flags changed since (RFC 9051 STORE FLAGS on an IMAP
// destination, a renamed file in a Maildir), so a message read or flagged
// on the source after the first run looks the same on the destination
// after the next. It needs a sink that can change flags (mail.FlagSetter);
// a failure is logged and retried on the next run.
//
// A record that knows no flags (written before the destination could
// change flags: a Maildir copy of an older mailferry) takes the flags the
// stored copy has now as the flags last given to it, as a rebuilt record
// does (checkpoint.Rebuild), when the destination lists them
// (mail.Indexer: the Maildir's file names): from then on it follows like
// any other, and a source whose flags differ from the copy's now gives
// them to it at once.
func (r *run) syncFlags(ctx context.Context, mb string, stored []mail.Envelope) error {
	fs := r.dstF.FlagSetter
	if fs == nil || r.cp == nil || r.opt.DryRun || len(stored) == 0 {
		return nil
	}
	record := r.recordLookup(mb)
	var held map[mail.ID]string // the stored copies' flags, for records without
	for _, env := range stored {
		rec, ok := record(env.ID)
		if !ok || rec.Dst == "" || env.Flags == nil {
			continue
		}
		if rec.Flags == nil {
			if held == nil {
				var err error
				if held, err = r.heldFlags(ctx, mb); err != nil {
					return err
				}
			}
			base, ok := held[rec.Dst]
			if !ok {
				continue
			}
			rec.Flags = &base
			if err := r.followFlags(ctx, fs, rec, env, true); err != nil {
				return err
			}
			continue
		}
		if err := r.followFlags(ctx, fs, rec, env, false); err != nil {
			return err
		}
	}
	return nil
}

// followFlags gives the stored copy of env the source's flags when they
// differ from the flags last given to it (rec.Flags), and records them.
// learnt says rec.Flags were just read from the copy: recorded even when
// nothing changes, so the copy is not read again next time.
func (r *run) followFlags(ctx context.Context, fs mail.FlagSetter, rec checkpoint.Record, env mail.Envelope, learnt bool) error {
	now := flagString(env.Flags)
	if now == *rec.Flags {
		if learnt {
			return r.addRecord(rec)
		}
		return nil
	}
	if err := fs.SetFlags(ctx, r.opt.dstName(rec.Mailbox), rec.Dst, env.Flags); err != nil {
		if ctx.Err() != nil || mail.Fatal(err) {
			return err
		}
		r.log.Warn("flags not updated on the destination; the next run tries again", "mailbox", rec.Mailbox, "id", env.ID, "err", err)
		r.unfinished(rec.Mailbox)
		if learnt {
			return r.addRecord(rec)
		}
		return nil
	}
	rec.Flags = &now
	if err := r.addRecord(rec); err != nil {
		return err
	}
	r.st.FlagsUpdated.Add(1)
	return nil
}

func (r *run) addRecord(rec checkpoint.Record) error {
	if err := r.cp.Add(rec); err != nil {
		return mail.MakeFatal(err)
	}
	return nil
}

// heldFlags returns the flags of every copy the destination holds in the
// folder mb maps to, by destination ID, when it can list them
// (mail.Indexer); an empty map when it cannot.
func (r *run) heldFlags(ctx context.Context, mb string) (map[mail.ID]string, error) {
	held := map[mail.ID]string{}
	idx := r.dstF.Indexer
	if idx == nil {
		return held, nil
	}
	to := r.opt.dstName(mb)
	err := idx.Index(ctx, to, func(e mail.Envelope) error {
		if e.Flags != nil {
			held[e.ID] = flagString(e.Flags)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list destination folder %q: %w", to, err)
	}
	return held, nil
}
