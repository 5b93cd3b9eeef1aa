package batch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Ref says where an account's secret is, never what it is: the batch
// database, the logs and the report hold only references.
type Ref struct {
	Kind  string `json:"kind"`  // "file", "cmd", "env" or "oauth2"; "" for none
	Value string `json:"value"` // the path, the command line, the variable or the profile
}

func (r Ref) String() string {
	if r.Kind == "" {
		return ""
	}
	return r.Kind + ":" + r.Value
}

var (
	envNameRe = lazyRegexp(`^[A-Za-z_][A-Za-z0-9_]*$`)
	profileRe = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// errLiteral is the refusal of a value that is no reference. The message
// never repeats the value: it may be a password typed into the file.
var errLiteral = errors.New("not a reference: want file:PATH, cmd:ARGV, env:NAME or oauth2:PROFILE (this looks like a secret written into the file; it is refused and not echoed)")

// ParseRef checks one *_auth value.
func ParseRef(v string) (Ref, error) {
	kind, val, ok := strings.Cut(v, ":")
	if !ok {
		return Ref{}, errLiteral
	}
	switch kind {
	case "file":
		if val == "" {
			return Ref{}, errors.New("file: names no path")
		}
	case "cmd":
		argv, err := SplitArgv(val)
		if err != nil {
			return Ref{}, fmt.Errorf("cmd: %w", err)
		}
		if len(argv) == 0 {
			return Ref{}, errors.New("cmd: names no command")
		}
	case "env":
		if !envNameRe().MatchString(val) {
			return Ref{}, fmt.Errorf("env:%s: want a variable name (letters, digits, _)", val)
		}
	case "oauth2":
		if !profileRe().MatchString(val) {
			return Ref{}, fmt.Errorf("oauth2:%s: want a profile name (letters, digits, ._-)", val)
		}
	default:
		return Ref{}, errLiteral
	}
	return Ref{Kind: kind, Value: val}, nil
}

// SplitArgv splits a cmd: reference into words: blanks separate them,
// single or double quotes keep blanks inside one, a backslash escapes the
// next character. Nothing is expanded: the command runs without a shell.
func SplitArgv(s string) ([]string, error) {
	var (
		argv  []string
		cur   strings.Builder
		quote rune
		inArg bool
		esc   bool
	)
	for _, c := range s {
		switch {
		case esc:
			cur.WriteRune(c)
			esc = false
		case c == '\\' && quote != '\'':
			esc, inArg = true, true
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(c)
		case c == '\'' || c == '"':
			quote, inArg = c, true
		case c == ' ' || c == '\t':
			if inArg {
				argv = append(argv, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(c)
			inArg = true
		}
	}
	if quote != 0 || esc {
		return nil, errors.New("unterminated quote or trailing backslash")
	}
	if inArg {
		argv = append(argv, cur.String())
	}
	return argv, nil
}

// Resolver turns references into secrets, when a worker logs in.
type Resolver struct {
	Getenv  func(string) string
	Environ func() []string
	// BaseDir is where relative file: and cmd: paths start (the CSV's
	// directory for batch run); "" is the working directory.
	BaseDir string
	// Hide names more variables no command may inherit (the one holding
	// the database URL, --db-env).
	Hide []string
}

// Secret returns the password a reference names for one side ("src" or
// "dst") of row. oauth2: references are for the caller (they yield
// tokens, not a password): asking for one is an error.
func (rv *Resolver) Secret(ctx context.Context, ref Ref, row *Row, side string) (string, error) {
	what := side + "_auth " + ref.Kind
	var (
		s   string
		err error
	)
	switch ref.Kind {
	case "file":
		s, err = rv.readFile(row.Dir, ref.Value)
	case "env":
		s = rv.getenv(ref.Value)
		if s == "" {
			err = fmt.Errorf("the variable %s is empty or not set", ref.Value)
		}
	case "cmd":
		s, err = rv.runCmd(ctx, ref.Value, row, side)
	default:
		err = fmt.Errorf("no password from a %q reference", ref.Kind)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if s == "" {
		return "", fmt.Errorf("%s: empty secret", what)
	}
	return s, nil
}

func (rv *Resolver) getenv(name string) string {
	if rv.Getenv != nil {
		return rv.Getenv(name)
	}
	return os.Getenv(name)
}

// dir is where a row's relative paths start: its own Dir, else BaseDir.
func (rv *Resolver) dir(rowDir string) string {
	if rowDir != "" {
		return rowDir
	}
	return rv.BaseDir
}

func (rv *Resolver) path(dir, p string) string {
	if dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func (rv *Resolver) readFile(dir, p string) (string, error) {
	b, err := os.ReadFile(rv.path(rv.dir(dir), p))
	if err != nil {
		return "", err
	}
	return firstLine(b), nil
}

// runCmd runs a cmd: reference without a shell. The row's fields reach it
// as MAILFERRY_ROW_* variables (never substituted into the command line,
// so a field cannot inject a command); variables that may hold another
// secret are not passed on.
func (rv *Resolver) runCmd(ctx context.Context, line string, row *Row, side string) (string, error) {
	argv, err := SplitArgv(line)
	if err != nil || len(argv) == 0 {
		return "", fmt.Errorf("bad command line: %v", err)
	}
	dir := rv.dir(row.Dir)
	if strings.ContainsRune(argv[0], '/') {
		argv[0] = rv.path(dir, argv[0])
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(childEnv(rv.environ(), rv.Hide), rowEnv(row, side)...)
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%s failed: %w: %s", argv[0], err, firstLine(errb.Bytes()))
	}
	return firstLine(out), nil
}

func (rv *Resolver) environ() []string {
	if rv.Environ != nil {
		return rv.Environ()
	}
	return os.Environ()
}

// rowEnv are the row's fields for a cmd: reference.
func rowEnv(row *Row, side string) []string {
	return []string{
		"MAILFERRY_ROW_ID=" + row.ID,
		"MAILFERRY_ROW_SIDE=" + side,
		"MAILFERRY_ROW_SRC=" + row.Src,
		"MAILFERRY_ROW_DST=" + row.Dst,
		"MAILFERRY_ROW_WAVE=" + row.Wave,
	}
}

// childEnv drops the variables that may hold a secret (MAILFERRY_*
// passwords and tokens, the database URL, and the names in hide), so a command that leaks its
// environment cannot give another account's secret away.
func childEnv(environ, hide []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		up := strings.ToUpper(name)
		if strings.HasPrefix(up, "MAILFERRY_") && (strings.Contains(up, "PASSWORD") || strings.Contains(up, "TOKEN") ||
			strings.Contains(up, "SECRET") || strings.HasPrefix(up, "MAILFERRY_ROW_") || up == "MAILFERRY_DB") || slices.Contains(hide, name) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func firstLine(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	if sc.Scan() {
		return strings.TrimRight(sc.Text(), "\r")
	}
	return ""
}
