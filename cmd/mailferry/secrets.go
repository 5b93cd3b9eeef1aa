package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// password returns the side's secret lookup, in order of precedence:
// --X-password-file, --X-password-cmd, then MAILFERRY_X_PASSWORD. It runs
// only when an endpoint asks (after TLS is up), and never logs the secret.
func (s *sideFlags) password(env *cliEnv, log *slog.Logger) passwordGetter {
	envName := "MAILFERRY_" + strings.ToUpper(s.side) + "_PASSWORD"
	return func(ctx context.Context) (string, error) {
		switch {
		case s.passwordFile != "":
			fi, err := os.Stat(s.passwordFile)
			if err != nil {
				return "", &mail.ConfigError{Msg: fmt.Sprintf("--%s-password-file: %v", s.side, err)}
			}
			if fi.Mode().Perm()&0o077 != 0 {
				log.Warn("password file is readable by group or others; chmod 600 it", "file", s.passwordFile)
			}
			b, err := os.ReadFile(s.passwordFile)
			if err != nil {
				return "", &mail.ConfigError{Msg: fmt.Sprintf("--%s-password-file: %v", s.side, err)}
			}
			return firstLine(b), nil
		case s.passwordCmd != "":
			cmd := exec.CommandContext(ctx, "sh", "-c", s.passwordCmd)
			var errb bytes.Buffer
			cmd.Stderr = &errb
			out, err := cmd.Output()
			if err != nil {
				return "", &mail.ConfigError{Msg: fmt.Sprintf("--%s-password-cmd failed: %v: %s", s.side, err, firstLine(errb.Bytes()))}
			}
			return firstLine(out), nil
		case env.getenv(envName) != "":
			return env.getenv(envName), nil
		}
		return "", &mail.ConfigError{
			Msg:  fmt.Sprintf("no %s password given", s.side),
			Hint: fmt.Sprintf("use --%s-password-file FILE, --%s-password-cmd CMD or %s", s.side, s.side, envName),
		}
	}
}

func firstLine(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	if sc.Scan() {
		return strings.TrimRight(sc.Text(), "\r")
	}
	return ""
}
