package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/mailferry/mailferry/sync/mail"
)

// sideFlags are the credentials of one endpoint side ("src" or "dst"),
// from flags or from a job of the config file.
type sideFlags struct {
	side         string
	passwordFile string
	passwordCmd  string
	// passwordEnv names an environment variable holding the password and
	// password is an inline one; both come only from the config file.
	passwordEnv    string
	inlinePassword string
	// oauth2 gets a token instead of a password (SASL XOAUTH2/OAUTHBEARER).
	oauth2 oauth2Settings
	// hideEnv names the variables the config file says hold a password
	// (every job's src_password_env and dst_password_env): no password or
	// token command inherits them (childEnv).
	hideEnv []string
}

func (s *sideFlags) add(fs *flag.FlagSet, side string) {
	s.side = side
	fs.StringVar(&s.passwordFile, side+"-password-file", "", "read the "+side+" password from the first line of `FILE`")
	fs.StringVar(&s.passwordCmd, side+"-password-cmd", "", "run `CMD` with sh -c and use the first line of its output as the "+side+" password")
	fs.StringVar(&s.oauth2.TokenCmd, side+"-oauth2-token-cmd", "", "log in to the "+side+" with OAuth2 (SASL XOAUTH2/OAUTHBEARER): run `CMD` with sh -c for an access token, again on each new connection")
}

// commonFlags are shared by the commands that talk to servers.
type commonFlags struct {
	caFile         string
	allowPlaintext bool
	// allowPlaintextAuth lets credentials cross a connection without TLS;
	// allowPlaintext alone only lets the session go on (docs/failure-model.md F5).
	allowPlaintextAuth bool
	// noStartTLS skips STARTTLS/STLS even when offered (tunnels, loopback).
	noStartTLS         bool
	pinSHA256          multiFlag
	insecureSkipVerify bool
	timeout            time.Duration
	workers            int
	include            multiFlag
	exclude            multiFlag
	quiet              bool
	json               bool
	logLevel           string
	logFormat          string
	trace              bool // protocol trace on stderr, credentials masked
}

func (c *commonFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&c.caFile, "ca-file", "", "also trust the CA certificates in PEM `FILE` (system roots are always trusted)")
	fs.BoolVar(&c.allowPlaintext, "allow-plaintext", false, "let imap:// and pop3:// go on without STARTTLS/STLS when the server lacks it; no password is sent in clear without --allow-plaintext-auth")
	fs.BoolVar(&c.allowPlaintextAuth, "allow-plaintext-auth", false, "with or without --allow-plaintext: go on without STARTTLS/STLS and send the password in clear text")
	fs.BoolVar(&c.noStartTLS, "no-starttls", false, "connect imap:// and pop3:// in plain text without STARTTLS/STLS even when offered: only over loopback or a link that is already encrypted (SSH tunnel, VPN); needs --allow-plaintext-auth")
	fs.Var(&c.pinSHA256, "pin-sha256", "trust only the server key whose SubjectPublicKeyInfo SHA-256 is `BASE64` (repeatable; chain, host name and dates are then not checked; a refused certificate's error prints its pin)")
	fs.BoolVar(&c.insecureSkipVerify, "insecure-skip-verify", false, "accept any server certificate (warns on every run; TLS and the plaintext rules still apply)")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "give up on a connection after this long without progress (and on an IMAP response that arrives slower than 1 KiB/s over this long)")
	fs.IntVar(&c.workers, "workers", 4, "copy up to `N` messages at once (capped by each endpoint: POP3 is 1)")
	fs.Var(&c.include, "include", "copy only folders whose name matches `REGEX` (repeatable)")
	fs.Var(&c.exclude, "exclude", "skip folders whose name matches `REGEX` (repeatable)")
	fs.BoolVar(&c.quiet, "quiet", false, "print only errors (for cron)")
	fs.BoolVar(&c.json, "json", false, "print a machine-readable summary on stdout")
	fs.StringVar(&c.logLevel, "log-level", "", "log `LEVEL`: debug, info, warn, error (default info; warn while progress bars are shown)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `FORMAT` on stderr: text or json")
	fs.BoolVar(&c.trace, "trace", false, "print the IMAP/POP3 exchange on stderr (LOGIN, AUTHENTICATE and PASS masked; long literals cut), for debugging")
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// Check reports a mistake in the shared flags before anything runs: a
// log level or format, an --include or --exclude regexp.
func (c *commonFlags) Check() error {
	if _, err := c.logger(io.Discard); err != nil {
		return err
	}
	_, err := c.mailboxFilter()
	return err
}

// mailboxFilter compiles --include and --exclude.
func (c *commonFlags) mailboxFilter() (func(string) bool, error) {
	compile := func(list []string, flagName string) ([]*regexp.Regexp, error) {
		var out []*regexp.Regexp
		for _, s := range list {
			re, err := regexp.Compile(s)
			if err != nil {
				return nil, &usageError{fmt.Sprintf("--%s %q: %v", flagName, s, err)}
			}
			out = append(out, re)
		}
		return out, nil
	}
	inc, err := compile(c.include, "include")
	if err != nil {
		return nil, err
	}
	exc, err := compile(c.exclude, "exclude")
	if err != nil {
		return nil, err
	}
	if len(inc) == 0 && len(exc) == 0 {
		return nil, nil
	}
	return func(mb string) bool {
		for _, re := range exc {
			if re.MatchString(mb) {
				return false
			}
		}
		if len(inc) == 0 {
			return true
		}
		for _, re := range inc {
			if re.MatchString(mb) {
				return true
			}
		}
		return false
	}, nil
}

// logger builds the run's logger on stderr.
func (c *commonFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmp.Or(c.logLevel, "info"))); err != nil {
		return nil, &usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", c.logLevel)}
	}
	if c.quiet {
		level = max(level, slog.LevelError)
	}
	ho := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch c.logFormat {
	case "text":
		h = slog.NewTextHandler(w, ho)
	case "json":
		h = slog.NewJSONHandler(w, ho)
	default:
		return nil, &usageError{fmt.Sprintf("--log-format %q: want text or json", c.logFormat)}
	}
	if c.quiet && !c.json {
		// With --quiet the summary prints one "failed:" line per message
		// given up: the engine's record of the same failure would double it.
		h = dropHandler{h, func(msg string) bool { return msg == "message not copied" || strings.HasPrefix(msg, "folder skipped") }}
	}
	return slog.New(h), nil
}

// dropHandler leaves out the records whose message drop matches.
type dropHandler struct {
	slog.Handler
	drop func(msg string) bool
}

func (d dropHandler) Handle(ctx context.Context, r slog.Record) error {
	if d.drop(r.Message) {
		return nil
	}
	return d.Handler.Handle(ctx, r)
}

func (d dropHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return dropHandler{d.Handler.WithAttrs(as), d.drop}
}

func (d dropHandler) WithGroup(name string) slog.Handler {
	return dropHandler{d.Handler.WithGroup(name), d.drop}
}

// openOptions builds the endpoint options for one side.
func (c *commonFlags) openOptions(s *sideFlags, env *cliEnv, log *slog.Logger) *mail.OpenOptions {
	if s.side == "src" { // every command opens a source once: one warning per run
		c.warnTLS(log)
	}
	return &mail.OpenOptions{
		Logger:         log,
		Side:           s.side,
		Password:       s.password(env, log),
		Token:          s.token(env, log),
		CAFile:         c.caFile,
		AllowPlaintext: c.allowPlaintext || c.allowPlaintextAuth,
		// Plaintext auth is opt-in on its own: --allow-plaintext alone
		// refuses before any credential would cross in clear.
		RefusePlaintextAuth: !c.allowPlaintextAuth,
		NoStartTLS:          c.noStartTLS,
		PinSHA256:           c.pinSHA256,
		InsecureSkipVerify:  c.insecureSkipVerify,
		Timeout:             c.timeout,
		Conns:               c.workers,
		Trace:               traceFunc(c.trace, s.side, env.stderr),
	}
}

// warnTLS logs, on every run, that certificate checks or TLS are off: a
// warning once at set-up is the only trace an --insecure-skip-verify or
// --no-starttls left in a cron job or config file would leave.
func (c *commonFlags) warnTLS(log *slog.Logger) {
	if c.insecureSkipVerify && len(c.pinSHA256) == 0 {
		log.Warn("--insecure-skip-verify: server certificates are not checked; anyone on the network path can read the password and the mail")
	}
	if c.noStartTLS && c.allowPlaintextAuth {
		// Without --allow-plaintext-auth the endpoint refuses instead.
		log.Warn("plain text as requested (--no-starttls): on imap:// and pop3:// the password and the mail cross the link unencrypted")
	}
}

// passwordGetter adapts a lookup to mail.OpenOptions.Password.
type passwordGetter = func(ctx context.Context) (string, error)
