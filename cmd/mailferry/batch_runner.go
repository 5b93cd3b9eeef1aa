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
	"path/filepath"
	"strings"
	stdsync "sync"
	"time"

	"github.com/mailferry/mailferry/sync/batch"
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
	// cpDir, when set, holds each account's checkpoint as ID.checkpoint
	// (batch run: next to the database); else copy's default place.
	cpDir string
}

var _ batch.Runner = (*batchRunner)(nil)

// RunAccount copies one account and tells what happened, with no secret:
// errors are mailferry's one-line messages.
func (r *batchRunner) RunAccount(ctx context.Context, acct *batch.Account) batch.Outcome {
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
	if out.ExitCode == exitUnreachable && tlsError(err) {
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
	if r.cpDir != "" {
		o.checkpoint = filepath.Join(r.cpDir, row.ID+".checkpoint") // ids hold no '/' (batch.Load)
	}
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
	if err := r.credentials(ctx, &o.src, row.SrcAuth, acct); err != nil {
		return nil, err
	}
	if err := r.credentials(ctx, &o.dst, row.DstAuth, acct); err != nil {
		return nil, err
	}
	return &o, nil
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
		if _, err := p.w.Write(line); err != nil {
			return len(b), err
		}
	}
}
