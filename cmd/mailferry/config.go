package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/mail"
)

// fileConfig is the config file: named jobs, and a few settings for every
// run. See 'mailferry help config'.
type fileConfig struct {
	// Report is the default --report file of 'mailferry run'.
	Report string               `toml:"report"`
	Jobs   map[string]jobConfig `toml:"jobs"`
	// Batch holds the host groups of 'mailferry batch' (batch_groups.go).
	Batch batchFileConfig `toml:"batch"`

	path  string   // the file it was read from
	order []string // job names in file order
}

// jobConfig is one [jobs.NAME] table. Its keys mirror the flags of copy,
// or with mode = "sync" those of sync (syncjobs.go).
type jobConfig struct {
	Source      string `toml:"source"`
	Destination string `toml:"destination"`
	// Mode is "copy" (or "") or "sync": then the source is A and the
	// destination B of 'mailferry sync A B', with the same credential keys.
	Mode string `toml:"mode"`
	// The keys of sync jobs only: --no-delete, --max-delete (percent) and
	// --remove-folders.
	NoDelete      bool          `toml:"no_delete"`
	MaxDelete     configPercent `toml:"max_delete"`
	RemoveFolders bool          `toml:"remove_folders"`

	Include        []string        `toml:"include"`
	Exclude        []string        `toml:"exclude"`
	Map            []string        `toml:"map"`
	DeleteSource   bool            `toml:"delete_source"`
	DeleteAfter    configRetention `toml:"delete_after"`
	Gmail          bool            `toml:"gmail"`
	Workers        int             `toml:"workers"`
	MaxSize        configSize      `toml:"max_size"`
	MaxBytesPerSec configSize      `toml:"max_bytes_per_sec"`
	MaxMsgsPerSec  int64           `toml:"max_msgs_per_sec"`
	MaxBytes       configSize      `toml:"max_bytes"`
	FullEvery      int             `toml:"full_every"`
	Since          configDate      `toml:"since"`
	Before         configDate      `toml:"before"`
	Checkpoint     string          `toml:"checkpoint"`
	CAFile         string          `toml:"ca_file"`
	AllowPlaintext bool            `toml:"allow_plaintext"`
	// The rest mirror --allow-plaintext-auth, --no-starttls, --pin-sha256
	// and --allow-unsafe-expunge.
	AllowPlaintextAuth bool      `toml:"allow_plaintext_auth"`
	NoStartTLS         bool      `toml:"no_starttls"`
	PinSHA256          []string  `toml:"pin_sha256"`
	AllowUnsafeExpunge bool      `toml:"allow_unsafe_expunge"`
	Timeout            configDur `toml:"timeout"`

	SrcPasswordFile string         `toml:"src_password_file"`
	SrcPasswordCmd  string         `toml:"src_password_cmd"`
	SrcPasswordEnv  string         `toml:"src_password_env"`
	SrcPassword     string         `toml:"src_password"`
	SrcOAuth2       oauth2Settings `toml:"src_oauth2"`
	DstPasswordFile string         `toml:"dst_password_file"`
	DstPasswordCmd  string         `toml:"dst_password_cmd"`
	DstPasswordEnv  string         `toml:"dst_password_env"`
	DstPassword     string         `toml:"dst_password"`
	DstOAuth2       oauth2Settings `toml:"dst_oauth2"`
}

// oauth2Settings get an OAuth2 access token for one side: from a command,
// or refreshed from a refresh token with the client's id and secret.
type oauth2Settings struct {
	TokenCmd         string `toml:"token_cmd"`
	ClientID         string `toml:"client_id"`
	ClientSecret     string `toml:"client_secret"`
	ClientSecretFile string `toml:"client_secret_file"`
	RefreshToken     string `toml:"refresh_token"`
	RefreshTokenFile string `toml:"refresh_token_file"`
	RefreshTokenCmd  string `toml:"refresh_token_cmd"`
	TokenURL         string `toml:"token_url"`
	Provider         string `toml:"provider"`
}

// enabled reports whether any OAuth2 setting is given.
func (o *oauth2Settings) enabled() bool {
	return *o != oauth2Settings{}
}

// jobName is what a job may be called: it is typed on command lines and
// completed by shells.
var jobName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// configPath returns --config, else $XDG_CONFIG_HOME/mailferry/config.toml,
// else ~/.config/mailferry/config.toml.
func configPath(flagValue string, env *cliEnv) (string, error) {
	if flagValue != "" {
		return expandHome(flagValue, env)
	}
	if dir := env.getenv("XDG_CONFIG_HOME"); dir != "" {
		return filepath.Join(dir, "mailferry", "config.toml"), nil
	}
	home, err := homeDir(env)
	if err != nil {
		return "", &mail.ConfigError{Msg: "no config file: " + err.Error(), Hint: "pass --config FILE"}
	}
	return filepath.Join(home, ".config", "mailferry", "config.toml"), nil
}

func homeDir(env *cliEnv) (string, error) {
	if h := env.getenv("HOME"); h != "" {
		return h, nil
	}
	return os.UserHomeDir()
}

// expandHome expands a leading ~/ in a path from the config file or a flag.
func expandHome(p string, env *cliEnv) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := homeDir(env)
	if err != nil {
		return "", &mail.ConfigError{Msg: "cannot expand ~: " + err.Error()}
	}
	return filepath.Join(home, p[1:]), nil
}

// loadConfig reads and checks the config file. Every mistake it reports
// names the file and, where it can, the line and key (scenario E1); a file
// holding secrets must be private (scenario E2).
func loadConfig(flagValue string, env *cliEnv) (*fileConfig, error) {
	path, err := configPath(flagValue, env)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &mail.ConfigError{Msg: fmt.Sprintf("config %s does not exist", path),
				Hint: "create it (see mailferry help config) or pass --config FILE"}
		}
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("config %s: %v", path, err)}
	}
	cfg := &fileConfig{path: path}
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			where := fmt.Sprintf("config %s: line %d", path, pe.Position.Line)
			if pe.LastKey != "" {
				where += ": " + pe.LastKey
			}
			return nil, &mail.ConfigError{Msg: where + ": " + pe.Message, Hint: parseHint(pe.Message)}
		}
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("config %s: %v", path, strings.TrimPrefix(err.Error(), "toml: "))}
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		msg := fmt.Sprintf("config %s: line %d: unknown key %q", path, keyLine(data, k), k.String())
		return nil, &mail.ConfigError{Msg: msg, Hint: unknownKeyHint(k)}
	}
	for _, k := range md.Keys() {
		if len(k) == 2 && k[0] == "jobs" {
			cfg.order = append(cfg.order, k[1])
		}
	}
	at := func(key ...string) string {
		return fmt.Sprintf("config %s: line %d: %s", path, keyLine(data, key), toml.Key(key).String())
	}
	var secrets []string
	for _, name := range cfg.order {
		sec, err := checkJob(env.registry(), at, name, cfg.Jobs[name])
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, sec...)
	}
	if len(secrets) > 0 {
		sort.Strings(secrets)
		if err := checkPrivate(path, secrets); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// checkJob checks one job of the config file and returns the keys of the
// secrets it holds (the file must then be private).
func checkJob(reg *mail.Registry, at func(key ...string) string, name string, j jobConfig) (secrets []string, err error) {
	if !jobName.MatchString(name) {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("%s: a job name may hold only letters, digits, '.', '_' and '-'", at("jobs", name))}
	}
	if j.Source == "" || j.Destination == "" {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("%s: a job needs both source and destination", at("jobs", name))}
	}
	if err := checkJobEndpoints(reg, at, name, &j); err != nil {
		return nil, err
	}
	if err := checkJobMode(at, name, &j); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"include", j.Include}, {"exclude", j.Exclude}} {
		for _, re := range l.list {
			if _, err := regexp.Compile(re); err != nil {
				return nil, &mail.ConfigError{Msg: fmt.Sprintf("%s: %q: %v", at("jobs", name, l.key), re, err)}
			}
		}
	}
	if _, err := mailferry.ParseMap(j.Map); err != nil {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("%s: %v", at("jobs", name, "map"), strings.TrimPrefix(err.Error(), "--map "))}
	}
	if j.Workers < 0 {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("%s: want a positive number", at("jobs", name, "workers")), Hint: "the number of messages copied at once, e.g. workers = 4; leave it out for the default"}
	}
	if !j.Since.IsZero() && !j.Before.IsZero() && !j.Since.Before(j.Before.Time) {
		return nil, &mail.ConfigError{Msg: fmt.Sprintf("%s: since %s is not before %s: nothing would be copied", at("jobs", name), j.Since, j.Before)}
	}
	for side, s := range map[string]struct {
		pw    string
		o     oauth2Settings
		pwSet bool
	}{"src": {j.SrcPassword, j.SrcOAuth2, j.SrcPassword+j.SrcPasswordFile+j.SrcPasswordCmd+j.SrcPasswordEnv != ""},
		"dst": {j.DstPassword, j.DstOAuth2, j.DstPassword+j.DstPasswordFile+j.DstPasswordCmd+j.DstPasswordEnv != ""}} {
		if err := s.o.check(); err != nil {
			return nil, &mail.ConfigError{Msg: fmt.Sprintf("%s: %v", at("jobs", name, side+"_oauth2"), err), Hint: "see mailferry help oauth2"}
		}
		if s.o.enabled() && s.pwSet {
			return nil, &mail.ConfigError{Msg: fmt.Sprintf("%s: a job logs in with %s_oauth2 or with a password, not both", at("jobs", name, side+"_oauth2"), side)}
		}
		if s.pw != "" {
			secrets = append(secrets, toml.Key{"jobs", name, side + "_password"}.String())
		}
		if s.o.ClientSecret != "" {
			secrets = append(secrets, toml.Key{"jobs", name, side + "_oauth2", "client_secret"}.String())
		}
		if s.o.RefreshToken != "" {
			secrets = append(secrets, toml.Key{"jobs", name, side + "_oauth2", "refresh_token"}.String())
		}
	}
	return secrets, nil
}

// checkJobEndpoints checks a job's source and destination URLs with the
// registry's factories (checkEndpoint).
func checkJobEndpoints(reg *mail.Registry, at func(key ...string) string, name string, j *jobConfig) error {
	for _, e := range []struct {
		key, raw, side string
	}{{"source", j.Source, "src"}, {"destination", j.Destination, "dst"}} {
		u, err := mail.ParseEndpoint(e.raw, &mail.OpenOptions{Side: e.side})
		if err == nil {
			err = checkEndpoint(reg, u, e.side == "src")
		}
		var ce *mail.ConfigError
		if errors.As(err, &ce) {
			return &mail.ConfigError{Msg: at("jobs", name, e.key) + ": " + ce.Msg, Hint: ce.Hint}
		}
	}
	return nil
}

// parseHint suggests the remedy for the TOML mistakes users make most.
func parseHint(msg string) string {
	switch {
	case strings.Contains(msg, "already been defined"):
		return "a job name or key may appear only once: rename or merge the duplicate"
	case strings.Contains(msg, "invalid UTF-8"):
		return "the config file must be UTF-8 text: save it as UTF-8"
	}
	return "see mailferry help config"
}

// checkPrivate refuses a config file holding secrets that others can read
// or that another user owns (fetchmail's rule; scenario E2).
func checkPrivate(path string, secrets []string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &mail.ConfigError{Msg: fmt.Sprintf("config %s: %v", path, err)}
	}
	hint := fmt.Sprintf("chmod 600 %s, or keep the secret out of it: *_password_file, *_password_cmd or *_password_env", path)
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &mail.ConfigError{Msg: fmt.Sprintf("config %s holds secrets (%s) but is readable by group or others (mode %04o): refused",
			path, strings.Join(secrets, ", "), perm), Hint: hint}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return &mail.ConfigError{Msg: fmt.Sprintf("config %s holds secrets (%s) but belongs to another user (uid %d): refused",
			path, strings.Join(secrets, ", "), st.Uid), Hint: "copy it to a file of your own, mode 600"}
	}
	return nil
}

// keyLine finds the line where a key is set in a TOML document, or 0. It
// follows [table] headers and dotted keys; a key inside an inline table is
// found at the line of that table. BurntSushi/toml keeps key positions
// private, so this small scan gives the line for unknown-key errors.
func keyLine(data []byte, key toml.Key) int {
	want := strings.Join(key, "\x00")
	var table []string
	for i, line := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSpace(string(line))
		switch {
		case s == "" || s[0] == '#':
			continue
		case strings.HasPrefix(s, "["):
			inner := strings.TrimSpace(strings.Trim(strings.SplitN(s, "]", 2)[0], "[]"))
			if strings.HasPrefix(s, "[[") {
				inner = strings.TrimSpace(strings.SplitN(strings.TrimPrefix(s, "[["), "]]", 2)[0])
			}
			table = splitKey(inner)
			if strings.Join(table, "\x00") == want {
				return i + 1
			}
			continue
		}
		eq := keyEnd(s)
		if eq < 0 {
			continue
		}
		full := append(append([]string{}, table...), splitKey(s[:eq])...)
		f := strings.Join(full, "\x00")
		if f == want {
			return i + 1
		}
		if strings.HasPrefix(want, f+"\x00") { // inside an inline table
			return i + 1
		}
	}
	return 0
}

// keyEnd returns the index of the '=' ending the key of a key/value line,
// skipping quoted key parts, or -1.
func keyEnd(s string) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			return i
		}
	}
	return -1
}

// splitKey splits a dotted TOML key (a."b.c".d) into its parts.
func splitKey(s string) []string {
	var out []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}

// unknownKeyHint suggests the known key closest to a misspelt one.
func unknownKeyHint(k toml.Key) string {
	var known []string
	switch {
	case len(k) == 1:
		known = tomlKeys(reflect.TypeOf(fileConfig{}))
	case len(k) == 3 && k[0] == "jobs":
		known = tomlKeys(reflect.TypeOf(jobConfig{}))
	case len(k) == 4 && k[0] == "jobs" && strings.HasSuffix(k[2], "_oauth2"):
		known = tomlKeys(reflect.TypeOf(oauth2Settings{}))
	default:
		return "see mailferry help config"
	}
	last := k[len(k)-1]
	best, bestD := "", 4
	for _, c := range known {
		if d := editDistance(last, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %s? see mailferry help config", best)
	}
	return "known keys: " + strings.Join(known, ", ")
}

func tomlKeys(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" {
			out = append(out, tag)
		}
	}
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// configSize is a size in the config: 26214400 or "25M".
type configSize int64

// UnmarshalTOML implements toml.Unmarshaler.
func (c *configSize) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return errors.New("want a size such as 25M, 1G or 4096")
		}
		*c = configSize(v)
		return nil
	case string:
		var s sizeFlag
		if err := s.Set(v); err != nil {
			return err
		}
		*c = configSize(s)
		return nil
	}
	return errors.New("want a size such as \"25M\", \"1G\" or 4096")
}

// configDate is a day in the config: since = 2024-01-01 (a TOML local
// date) or "2024-01-01"; it means midnight, local time.
type configDate struct{ time.Time }

// UnmarshalTOML implements toml.Unmarshaler.
func (c *configDate) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case time.Time:
		c.Time = time.Date(v.Year(), v.Month(), v.Day(), 0, 0, 0, 0, time.Local)
		return nil
	case string:
		var d dateFlag
		if err := d.Set(v); err != nil {
			return err
		}
		c.Time = d.t
		return nil
	}
	return errors.New("want a date such as 2024-01-31")
}

func (c configDate) String() string { return c.Format(time.DateOnly) }

// configDur is a duration in the config: "90s", "2m".
type configDur time.Duration

// UnmarshalTOML implements toml.Unmarshaler.
func (c *configDur) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	d, err := time.ParseDuration(s)
	if !ok || err != nil || d < 0 {
		return errors.New("want a duration such as \"60s\" or \"2m\"")
	}
	*c = configDur(d)
	return nil
}

// checkEndpoint runs the endpoint's own URL parser (port range, query
// options, paths) when the config is read, through the registry's factory
// of its scheme, so a bad job fails before it runs (scenario E1); a local
// path that exists but is not a directory is refused too. Schemes the
// registry does not know pass here: the job refuses them when it runs.
func checkEndpoint(reg *mail.Registry, u *url.URL, source bool) error {
	if _, known := reg.Lookup(u.Scheme); !known {
		return nil
	}
	role := mail.AsSink
	if source {
		role = mail.AsSource
	}
	_, err := reg.Resolve(u, role)
	return err
}
