package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	stdsync "sync"

	"github.com/mailferry/mailferry/sync/mail"
)

// password returns the side's secret lookup, in order of precedence:
// --X-password-file, --X-password-cmd, the config's X_password_env and
// X_password, then MAILFERRY_X_PASSWORD. It runs only when an endpoint asks
// (after TLS is up), and never logs the secret.
func (s *sideFlags) password(env *cliEnv, log *slog.Logger) passwordGetter {
	envName := "MAILFERRY_" + strings.ToUpper(s.side) + "_PASSWORD"
	return func(ctx context.Context) (string, error) {
		switch {
		case s.passwordFile != "":
			return readSecretFile(s.passwordFile, "--"+s.side+"-password-file", log)
		case s.passwordCmd != "":
			return secretCommand(ctx, s.passwordCmd, "--"+s.side+"-password-cmd", s.hideEnv)
		case s.passwordEnv != "":
			if v := env.getenv(s.passwordEnv); v != "" {
				return v, nil
			}
			return "", &mail.ConfigError{Msg: fmt.Sprintf("%s_password_env: the variable %s is empty or not set", s.side, s.passwordEnv)}
		case s.inlinePassword != "":
			return s.inlinePassword, nil
		case env.getenv(envName) != "":
			return env.getenv(envName), nil
		}
		return "", &mail.ConfigError{
			Msg:  fmt.Sprintf("no %s password given", s.side),
			Hint: fmt.Sprintf("use --%s-password-file FILE, --%s-password-cmd CMD or %s (in a config file: %s_password_file, %s_password_cmd or %s_password_env)", s.side, s.side, envName, s.side, s.side, s.side),
		}
	}
}

// readSecretFile returns the first line of a file holding a secret; what
// names the setting in messages. A file others can read still works, with a
// warning (the config file itself is refused instead: see checkPrivate).
func readSecretFile(path, what string, log *slog.Logger) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", &mail.ConfigError{Msg: fmt.Sprintf("%s: %v", what, err)}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("password file is readable by group or others; chmod 600 it", "file", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &mail.ConfigError{Msg: fmt.Sprintf("%s: %v", what, err)}
	}
	return firstLine(b), nil
}

// secretCommand runs cmd with sh -c and returns the first line it prints.
// hide names more variables the command must not inherit (see childEnv).
func secretCommand(ctx context.Context, cmdline, what string, hide []string) (string, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", cmdline)
	cmd.Env = childEnv(os.Environ(), hide)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", &mail.ConfigError{Msg: fmt.Sprintf("%s failed: %v: %s", what, err, firstLine(errb.Bytes()))}
	}
	return firstLine(out), nil
}

// childEnv is the environment of a password or token command: ours without
// the variables that may hold a secret (MAILFERRY_SRC_PASSWORD, a token,
// a config's *_password_env variable, named in hide...), so a command that logs or leaks
// its environment cannot give away the other side's password
// (docs/failure-model.md I6: no secret in child argv or environment). The
// command line itself is the user's and holds none.
func childEnv(environ, hide []string) []string {
	out := environ[:0:0]
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		up := strings.ToUpper(name)
		if strings.HasPrefix(up, "MAILFERRY_") && (strings.Contains(up, "PASSWORD") || strings.Contains(up, "TOKEN") || strings.Contains(up, "SECRET")) {
			continue
		}
		if slices.Contains(hide, name) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// traceMu keeps the trace lines of all connections whole on stderr.
var traceMu stdsync.Mutex

// traceFunc returns the --trace writer of one side, or nil when off. The
// endpoints mask credentials before calling it (sources/imap tracer,
// sources/pop3 traceCmds): it only labels and prints.
func traceFunc(on bool, side string, w io.Writer) func(string) {
	if !on {
		return nil
	}
	return func(line string) {
		traceMu.Lock()
		defer traceMu.Unlock()
		fmt.Fprintf(w, "trace %s %s\n", side, line)
	}
}

func firstLine(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	if sc.Scan() {
		return strings.TrimRight(sc.Text(), "\r")
	}
	return ""
}
