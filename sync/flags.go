package sync

import (
	"context"

	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// flagString is a canonical form of a flag set, for comparisons; a
// rebuilt checkpoint records the destination's flags in the same form.
func flagString(flags []mail.Flag) string { return checkpoint.FlagString(flags) }

// syncFlags gives the destination the current source flags of messages
// copied earlier whose flags changed since (RFC 9051 STORE FLAGS on an IMAP
// destination), so a message read or flagged on the source after the first
// run looks the same on the destination after the next. It needs a sink
// that can change flags (mail.FlagSetter) and records that know the flags
// last copied; a failure is logged and retried on the next run.
func (r *run) syncFlags(ctx context.Context, mb string, stored []mail.Envelope) error {
	fs := r.dstF.FlagSetter
	if fs == nil || r.cp == nil || r.opt.DryRun || len(stored) == 0 {
		return nil
	}
	recs := map[mail.ID]checkpoint.Record{}
	for _, rec := range r.cp.Records(mb) {
		recs[rec.ID] = rec
	}
	for _, env := range stored {
		rec, ok := recs[env.ID]
		if !ok || rec.Flags == nil || rec.Dst == "" || env.Flags == nil {
			continue
		}
		now := flagString(env.Flags)
		if now == *rec.Flags {
			continue
		}
		if err := fs.SetFlags(ctx, r.opt.dstName(mb), rec.Dst, env.Flags); err != nil {
			if ctx.Err() != nil || mail.Fatal(err) {
				return err
			}
			r.log.Warn("flags not updated on the destination; the next run tries again", "mailbox", mb, "id", env.ID, "err", err)
			r.unfinished(mb)
			continue
		}
		rec.Flags = &now
		if err := r.cp.Add(rec); err != nil {
			return mail.MakeFatal(err)
		}
		r.st.FlagsUpdated.Add(1)
	}
	return nil
}
