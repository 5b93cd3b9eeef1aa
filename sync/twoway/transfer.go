package twoway

import (
	"fmt"
	"io"

	"github.com/mailferry/mailferry/sync/mail"
)

// putBatch stores cs, copies from side from in folder, on the other side
// and returns those put, in order, for commitCopies. Where the source
// streams many messages in one request (mail.BatchOpener: one pipelined
// UID FETCH), the batch costs one round trip instead of one per message; a
// message it does not serve, or all of them when the request fails, falls
// back to one Open each. A copy that fails counts as failed; a fatal error
// stops the run.
func (r *run) putBatch(folder string, from Side, cs []Copy) ([]pendingCopy, error) {
	done := make([]bool, len(cs))
	var out []pendingCopy
	if bo := mail.FeaturesOf(r.stores[from].Source).BatchOpener; bo != nil && len(cs) > 1 {
		at := make(map[mail.ID]int, len(cs))
		envs := make([]mail.Envelope, len(cs))
		for i, c := range cs {
			envs[i], at[c.Msg.ID] = r.env(from, folder, c.Msg.ID), i
		}
		err := bo.OpenBatch(r.ctx, envs, func(env mail.Envelope, body io.Reader) error {
			i, ok := at[env.ID]
			if !ok || done[i] {
				return nil
			}
			done[i] = true
			id, err := r.putCopy(folder, cs[i], env, body)
			return r.settleCopy(from, folder, cs[i], id, err, &out)
		})
		if fatal(err) {
			return nil, err
		}
		// Any other failure of the request: the rest go one by one.
	}
	for i, c := range cs {
		if done[i] {
			continue
		}
		id, err := r.copyOne(folder, c)
		if err := r.settleCopy(from, folder, c, id, err, &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// settleCopy notes a put: put, failed (counted), or fatal (returned).
func (r *run) settleCopy(from Side, folder string, c Copy, id mail.ID, err error, out *[]pendingCopy) error {
	switch {
	case err == nil:
		*out = append(*out, pendingCopy{c, id})
	case fatal(err):
		return err
	default:
		r.fail(from.Other(), fmt.Sprintf("copy %s of %q to side %s", c.Msg.ID, folder, from.Other()), err)
	}
	return nil
}
