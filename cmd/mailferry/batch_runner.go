package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	stdsync "sync"
	"time"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/batch"
	"github.com/mailferry/mailferry/sync/checkpoint"
	"github.com/mailferry/mailferry/sync/mail"
)

// batchRunner runs one account of a batch in this process, the way
// 'mailferry copy' runs: the row's URLs, folders, dates, map and Gmail
// preset go into a copy of the batch command's copy options, and copyRun
// does the rest (lock, checkpoint, open, engine, close).
type batchRunner struct {
	base copyOptions // the batch command's flags; per account: a copy
	env  *cliEnv
	// profiles is the config file, for oauth2:PROFILE references (the
	// job's src_oauth2 or dst_oauth2).
	profiles *fileConfig
	// stateDir holds the state of each account synced two ways (--mode
	// sync); see syncStateFor.
	stateDir string
}

var _ batch.Runner = (*batchRunner)(nil)

// RunAccount copies (or syncs, with --mode sync) one account and tells
// what happened, with no secret: errors are mailferry's one-line messages.
func (r *batchRunner) RunAccount(ctx context.Context, acct *batch.Account) batch.Outcome {
	if acct.Mode == batch.ModeSync {
		return r.syncAccount(ctx, acct)
	}
	start := time.Now()
	o, err := r.accountOptions(ctx, acct)
	res := &copyResult{}
	if err == nil {
		penv := *r.env
		penv.stdout = io.Discard
		penv.stderr = &prefixWriter{w: r.env.stderr, prefix: "[" + acct.Row.ID + "] "}
		if res, err = copyRun(ctx, o, acct.Row.Src, acct.Row.Dst, &penv); res == nil {
			res = &copyResult{}
		}
	}
	if res.res != nil {
		err = runError(err, res.res.Failures)
	} else {
		err = runError(err, nil)
	}
	if o == nil {
		o = &copyOptions{}
	}
	s := makeSummary(o, res, err, start)
	out := batch.Outcome{ExitCode: exitCode(err), Error: s.Error, CopyMillis: time.Since(start).Milliseconds(),
		Totals: batch.Totals{Copied: s.Counts.Stored, Present: s.Counts.Skipped["present"], Failed: s.Counts.Failed, Bytes: s.Totals.Bytes}}
	if out.ExitCode == exitcode.Unreachable && tlsError(err) {
		out.Class = batch.ClassTLS
	}
	for _, f := range s.Failures {
		out.Failures = append(out.Failures, fmt.Sprintf("%s %s: %s", f.Mailbox, f.ID, f.Err))
	}
	return out
}

// accountOptions are the copy options of one account.
func (r *batchRunner) accountOptions(ctx context.Context, acct *batch.Account) (*copyOptions, error) {
	o := r.base
	row := &acct.Row
	o.common.include = append(multiFlag(nil), row.Include...)
	o.common.exclude = append(multiFlag(nil), row.Exclude...)
	o.maps = append(multiFlag(nil), row.Map...)
	o.gmail = o.gmail || row.Gmail
	o.progress = "never"
	o.fence = acct.Fence
	if acct.Connections > 0 {
		o.common.workers = min(o.common.workers, acct.Connections)
	}
	// The host groups' shares (msgs/s, today's bytes) tighten the batch
	// command's own flags, never loosen them.
	o.maxMsgsPerSec = tighter(o.maxMsgsPerSec, acct.MaxMsgsPerSec)
	o.maxBytes = sizeFlag(tighter(int64(o.maxBytes), acct.MaxBytes))
	o.deleteSource = acct.DeleteSource
	o.accountState = batchCheckpoint(acct)
	if row.Since != "" {
		if err := o.since.Set(row.Since); err != nil {
			return nil, &usageError{fmt.Sprintf("since %q: %v", row.Since, err)}
		}
	}
	o.src = sideFlags{side: "src", hideEnv: r.base.src.hideEnv}
	o.dst = sideFlags{side: "dst", hideEnv: r.base.dst.hideEnv}
	if err := o.Check(); err != nil {
		return nil, err
	}
	if err := r.sideCredentials(ctx, acct, &o.src, &o.dst); err != nil {
		return nil, err
	}
	return &o, nil
}

// tighter is the smaller of two limits where 0 means none.
func tighter(a, b int64) int64 {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// sideCredentials fill both sides from the row's references.
func (r *batchRunner) sideCredentials(ctx context.Context, acct *batch.Account, src, dst *sideFlags) error {
	if err := r.credentials(ctx, src, acct.Row.SrcAuth, acct); err != nil {
		return err
	}
	return r.credentials(ctx, dst, acct.Row.DstAuth, acct)
}

// credentials fill one side from its reference: a password is read now
// (from the file, the variable or the command) and kept in memory only;
// an OAuth2 profile gets tokens as a config job does.
func (r *batchRunner) credentials(ctx context.Context, side *sideFlags, ref batch.Ref, acct *batch.Account) error {
	switch ref.Kind {
	case "":
		return nil
	case "oauth2":
		return r.oauth2Profile(side, ref.Value)
	}
	secret, err := acct.Resolver.Secret(ctx, ref, &acct.Row, side.side)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &usageError{err.Error()}
	}
	side.inlinePassword = secret
	return nil
}

// oauth2Profile takes the OAuth2 settings of the config file's job
// PROFILE: its <side>_oauth2, else its other side's.
func (r *batchRunner) oauth2Profile(side *sideFlags, profile string) error {
	job, ok := r.profiles.Jobs[profile]
	if !ok {
		return &usageError{fmt.Sprintf("oauth2:%s: the config file (%s) has no job %q to take OAuth2 settings from", profile, cmp.Or(r.profiles.path, "none"), profile)}
	}
	o := job.SrcOAuth2
	if side.side == "dst" && job.DstOAuth2.enabled() || !o.enabled() {
		o = job.DstOAuth2
	}
	if !o.enabled() {
		return &usageError{fmt.Sprintf("oauth2:%s: job %q has no src_oauth2 or dst_oauth2 settings", profile, profile)}
	}
	side.oauth2 = o
	return nil
}

// tlsError reports an error of the TLS layer: a certificate refused, a
// handshake failed, STARTTLS missing.
func tlsError(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
		rh tls.RecordHeaderError
		al tls.AlertError
	)
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &rh) || errors.As(err, &al) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "certificate") || strings.Contains(msg, "tls") || strings.Contains(msg, "stls")
}

// sharedLines serialises the prefixWriters' writes: the accounts running
// at once share one stderr, which need not be safe for concurrent use (a
// test's buffer: found by the throttling scenario's TLS warnings).
var sharedLines stdsync.Mutex

// prefixWriter starts every line with prefix, so that the logs of
// accounts running at once can be told apart. Lines are written whole.
type prefixWriter struct {
	mu     stdsync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := append([]byte(p.prefix), p.buf[:i+1]...)
		p.buf = p.buf[i+1:]
		sharedLines.Lock()
		_, err := p.w.Write(line)
		sharedLines.Unlock()
		if err != nil {
			return len(b), err
		}
	}
}

// accountStateFunc opens a copy's checkpoint somewhere other than a file
// (copyOptions.accountState). It returns the store (nil: none), whether it
// holds no record, its closer and a name for messages.
type accountStateFunc func(ctx context.Context, src, dst *mail.Endpoint) (store checkpoint.Store, fresh bool, closeStore func(), where string, err error)

// batchCheckpoint keeps an account's checkpoint in the batch database, where
// the worker that takes the account up next (on any machine) finds it.
// A POP3 source (nothing to compare with), a Maildir or mbox destination
// and a copy that deletes on the source (which may delete only what a
// checkpoint recorded) need one. IMAP -> IMAP would be safe without: the
// IMAP sink recognises what it already holds (ARCHITECTURE.md). But it
// recognises a message only once it has its body, so without a
// checkpoint every slice of an account (a minute by default) would
// download again all that earlier slices copied, and a large account
// would never finish; so it keeps one too.
func batchCheckpoint(acct *batch.Account) accountStateFunc {
	return func(ctx context.Context, src, dst *mail.Endpoint) (checkpoint.Store, bool, func(), string, error) {
		where := fmt.Sprintf("the batch database (batch %s, account %s)", acct.Batch, acct.Row.ID)
		cp, err := acct.OpenCheckpoint(ctx, src.Canonical, dst.Canonical, acct.Reset)
		if err != nil {
			return nil, false, func() {}, where, err
		}
		// Run closed it already on the normal path; this one only undoes an early exit.
		return cp, cp.Len() == 0, func() { _ = cp.Close() }, where, nil
	}
}
