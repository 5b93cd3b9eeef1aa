package checkpoint

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/mailferry/mailferry/sync/mail"
)

// Rebuild re-creates records from the destination after a checkpoint was
// lost or refused as corrupt (docs/failure-model.md A9): for each source
// mailbox that selected accepts (nil: all), it lists what dst holds in
// dstName(mailbox) (nil: the same name) and adds to st a record for every
// source message whose delivery key (mail.DeliveryKey of endpoint, mailbox
// and ID) is among them, then flushes. A sink records that key with each
// message it stores (the Maildir sink in its file names), so the following
// copy downloads none of them again, and in delete mode deletes them on
// the source only once the destination confirms it still holds them.
//
// It costs one listing of each side per mailbox and downloads nothing.
// Records get what the copy would have given them: size, Message-ID hash
// and date from the source's listing, and, when dst can read back what it
// holds (mail.StoredReader: the Maildir sink), the SHA-256 of the stored
// copy (one local read each) and a Message-ID hash taken from it if the
// listing had none (POP3). So a later identifier reset can re-map them as
// it would re-map copied ones (sync/reset.go). When dst can change flags
// (mail.FlagSetter) and the source lists flags, the flags the stored copy
// has are recorded as the flags last given to it, so the next copy makes
// flags the source changed since follow. It returns the number of records
// added. Their store time is stored (Unix seconds, the time of the
// rebuild): when the copies were made is not known, so they count as
// stored now, never as old (--delete-after).
func Rebuild(ctx context.Context, st Store, src mail.Source, dst mail.Indexer, endpoint string, selected func(string) bool, dstName func(string) string, stored int64) (int, error) {
	boxes, err := src.Mailboxes(ctx)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: rebuild: list mailboxes: %w", err)
	}
	added := 0
	for _, mb := range boxes {
		if selected != nil && !selected(mb) {
			continue
		}
		to := mb
		if dstName != nil {
			to = dstName(mb)
		}
		held := map[string]mail.Envelope{}
		if err := dst.Index(ctx, to, func(e mail.Envelope) error {
			if e.Key != "" {
				held[e.Key] = e
			}
			return nil
		}); err != nil {
			return added, fmt.Errorf("checkpoint: rebuild: list destination folder %q: %w", to, err)
		}
		if len(held) == 0 {
			continue
		}
		err := src.List(ctx, mb, func(e mail.Envelope) error {
			d, ok := held[mail.DeliveryKey(endpoint, mb, e.ID)]
			if !ok || st.Has(Key{mb, e.ID}) {
				return nil
			}
			rec := Record{Mailbox: mb, ID: e.ID, Dst: d.ID, Size: e.Size, MsgID: MsgIDSum(e.MessageID), Date: UnixDate(e.Date), Stored: stored}
			heldFlags(dst, e, d, &rec)
			if err := hashStored(ctx, dst, to, &rec); err != nil {
				return err
			}
			added++
			return st.Add(rec)
		})
		if err != nil {
			return added, fmt.Errorf("checkpoint: rebuild: list %q: %w", mb, err)
		}
		// A store that keeps folders apart holds one at a time.
		if f, ok := st.(Folders); ok {
			if err := f.Release(mb); err != nil {
				return added, err
			}
		}
	}
	if err := st.Flush(); err != nil {
		return added, err
	}
	return added, nil
}

// heldFlags records the flags of d, the stored copy of the source message
// e, in rec when a copy would record flags: dst can change them and the
// source lists flags (not POP3). The engine compares the source's flags
// with them.
func heldFlags(dst mail.Indexer, e, d mail.Envelope, rec *Record) {
	if _, ok := dst.(mail.FlagSetter); ok && e.Flags != nil && d.Flags != nil {
		f := FlagString(d.Flags)
		rec.Flags = &f
	}
}

// hashStored fills rec's content hash (and a missing Message-ID hash) from
// the copy dst holds in mailbox, when dst can read it back.
func hashStored(ctx context.Context, dst mail.Indexer, mailbox string, rec *Record) error {
	sr, ok := dst.(mail.StoredReader)
	if !ok {
		return nil
	}
	rc, err := sr.OpenStored(ctx, mailbox, rec.Dst)
	if err != nil {
		return fmt.Errorf("checkpoint: rebuild: read %s %s: %w", mailbox, rec.Dst, err)
	}
	defer func() { _ = rc.Close() }()
	scan := mail.NewHeaderScanner(rc)
	hr := mail.NewHashReader(scan)
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return fmt.Errorf("checkpoint: rebuild: read %s %s: %w", mailbox, rec.Dst, err)
	}
	d := hr.Digest()
	rec.SHA256 = hex.EncodeToString(d.SHA256[:])
	if rec.MsgID == "" {
		rec.MsgID = MsgIDSum(scan.MessageID())
	}
	return nil
}
