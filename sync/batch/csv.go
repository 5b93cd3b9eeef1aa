package batch

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Row is one account of an accounts CSV: copy Src to Dst with the
// credentials the two references name. It holds no secret, so it can be
// stored in the batch database and printed.
type Row struct {
	Line    int      `json:"line"` // 1-based line of the row in its file, for messages
	ID      string   `json:"id"`
	Src     string   `json:"src"`
	Dst     string   `json:"dst"`
	SrcAuth Ref      `json:"src_auth"`
	DstAuth Ref      `json:"dst_auth"`
	Include []string `json:"include,omitempty"` // folder regexps, ';'-separated in the file
	Exclude []string `json:"exclude,omitempty"`
	Since   string   `json:"since,omitempty"` // YYYY-MM-DD
	Map     []string `json:"map,omitempty"`   // SRC_RE=DST rules, ';'-separated in the file
	Gmail   bool     `json:"gmail,omitempty"`
	Wave    string   `json:"wave,omitempty"` // a free label to run accounts in waves
	// Dir is where the row's relative file: and cmd: paths start: the
	// CSV's directory, made absolute when the file is loaded, so that a
	// worker started elsewhere finds them.
	Dir string `json:"dir,omitempty"`
}

// LoadError is a mistake in an accounts CSV: the whole file is refused,
// naming the line and the column (1-based; the column's header name too
// once the header is read).
type LoadError struct {
	Line, Column int
	Name         string // the column's header name, when known
	Msg          string
}

func (e *LoadError) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("line %d, column %d (%s): %s", e.Line, e.Column, e.Name, e.Msg)
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// required and optional are the columns an accounts CSV may have.
var (
	required = []string{"id", "src", "dst", "src_auth", "dst_auth"}
	optional = []string{"include", "exclude", "since", "map", "gmail", "wave"}
)

// maxRows bounds one file: a typo'd multi-gigabyte file fails early.
const maxRows = 1_000_000

var (
	idRe   = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,199}$`)
	waveRe = lazyRegexp(`^[A-Za-z0-9._-]{0,64}$`)
)

// Load reads an accounts CSV: a header naming at least the required
// columns, then one row per account. Lines starting with '#' are comments.
// Any mistake refuses the whole file with a *LoadError.
func Load(r io.Reader) ([]Row, error) {
	cr := csv.NewReader(bomSkipper(r))
	cr.Comment = '#'
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &LoadError{Line: 1, Column: 1, Msg: "empty file: want a header line " + strings.Join(required, ",")}
		}
		return nil, csvError(err)
	}
	hline, _ := cr.FieldPos(0)
	cols, err := readHeader(header, hline)
	if err != nil {
		return nil, err
	}
	cr.FieldsPerRecord = len(header)
	return readRows(cr, cols)
}

// columns maps a column name to its index in the file.
type columns map[string]int

func readHeader(header []string, line int) (columns, error) {
	cols := columns{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		switch {
		case !known(name):
			return nil, &LoadError{Line: line, Column: i + 1, Name: h, Msg: fmt.Sprintf("unknown column %q (want %s, optionally %s)", h, strings.Join(required, ","), strings.Join(optional, ","))}
		case hasColumn(cols, name):
			return nil, &LoadError{Line: line, Column: i + 1, Name: name, Msg: "column given twice"}
		}
		cols[name] = i
	}
	for _, name := range required {
		if !hasColumn(cols, name) {
			return nil, &LoadError{Line: line, Column: len(header) + 1, Name: name, Msg: fmt.Sprintf("missing column %q (want %s)", name, strings.Join(required, ","))}
		}
	}
	return cols, nil
}

func hasColumn(cols columns, name string) bool {
	_, ok := cols[name]
	return ok
}

func known(name string) bool {
	for _, list := range [][]string{required, optional} {
		for _, n := range list {
			if n == name {
				return true
			}
		}
	}
	return false
}

func readRows(cr *csv.Reader, cols columns) ([]Row, error) {
	var rows []Row
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(err)
		}
		line, _ := cr.FieldPos(0)
		if len(rows) >= maxRows {
			return nil, &LoadError{Line: line, Column: 1, Msg: fmt.Sprintf("more than %d rows: split the file", maxRows)}
		}
		row, err := parseRow(rec, cols, line)
		if err != nil {
			return nil, err
		}
		if first, dup := seen[row.ID]; dup {
			return nil, &LoadError{Line: line, Column: cols["id"] + 1, Name: "id", Msg: fmt.Sprintf("id %q already used on line %d", row.ID, first)}
		}
		seen[row.ID] = line
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, &LoadError{Line: 1, Column: 1, Msg: "no account rows after the header"}
	}
	return rows, nil
}

// parseRow checks every field of one record, left to right.
func parseRow(rec []string, cols columns, line int) (Row, error) {
	row := Row{Line: line}
	get := func(name string) (string, int, bool) {
		i, ok := cols[name]
		if !ok {
			return "", 0, false
		}
		return strings.TrimSpace(rec[i]), i + 1, true
	}
	for _, f := range fieldParsers {
		v, col, ok := get(f.name)
		if !ok {
			continue
		}
		if err := f.parse(&row, v); err != nil {
			return Row{}, &LoadError{Line: line, Column: col, Name: f.name, Msg: err.Error()}
		}
	}
	if err := checkAuthNeeded(&row); err != nil {
		col := cols[err.column] + 1
		return Row{}, &LoadError{Line: line, Column: col, Name: err.column, Msg: err.msg}
	}
	return row, nil
}

// fieldParsers check and store each column, in this order.
var fieldParsers = []struct {
	name  string
	parse func(*Row, string) error
}{
	{"id", func(r *Row, v string) error {
		if !idRe().MatchString(v) {
			return fmt.Errorf("id %q: want 1-200 characters of letters, digits and ._@+=- (not starting with a sign)", v)
		}
		r.ID = v
		return nil
	}},
	{"src", func(r *Row, v string) error { return parseEndpoint(&r.Src, v) }},
	{"dst", func(r *Row, v string) error { return parseEndpoint(&r.Dst, v) }},
	{"src_auth", func(r *Row, v string) error { return parseRefInto(&r.SrcAuth, v) }},
	{"dst_auth", func(r *Row, v string) error { return parseRefInto(&r.DstAuth, v) }},
	{"include", func(r *Row, v string) error { return parseRegexps(&r.Include, v) }},
	{"exclude", func(r *Row, v string) error { return parseRegexps(&r.Exclude, v) }},
	{"since", parseSince},
	{"map", parseMapRules},
	{"gmail", parseGmail},
	{"wave", func(r *Row, v string) error {
		if !waveRe().MatchString(v) {
			return fmt.Errorf("wave %q: want up to 64 letters, digits and ._-", v)
		}
		r.Wave = v
		return nil
	}},
}

// endpointSchemes are the URL schemes an account may name.
var endpointSchemes = map[string]bool{"imap": true, "imaps": true, "pop3": true, "pop3s": true, "maildir": true, "mbox": true}

// remote reports whether an endpoint URL logs in to a server.
func remote(u string) bool {
	scheme, _, _ := strings.Cut(u, ":")
	return scheme != "maildir" && scheme != "mbox"
}

func parseEndpoint(dst *string, v string) error {
	if v == "" {
		return errors.New("empty: want an endpoint URL such as imaps://user@host")
	}
	u, err := url.Parse(v)
	if err != nil {
		return fmt.Errorf("bad URL: %v", unwrapURLError(err))
	}
	if !endpointSchemes[strings.ToLower(u.Scheme)] {
		return fmt.Errorf("URL scheme %q: want imap, imaps, pop3, pop3s, maildir or mbox", u.Scheme)
	}
	if _, set := u.User.Password(); set {
		return errors.New("the URL holds a password: remove it and name where the secret is in the *_auth column")
	}
	if remote(u.Scheme) && u.Host == "" {
		return errors.New("no host in the URL: want " + u.Scheme + "://user@host")
	}
	if remote(u.Scheme) && u.User.Username() == "" {
		return errors.New("no user in the URL: want " + u.Scheme + "://user@host")
	}
	*dst = v
	return nil
}

// unwrapURLError drops url.Error's repetition of the whole URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func parseRefInto(dst *Ref, v string) error {
	if v == "" {
		return nil // checked against the endpoint in checkAuthNeeded
	}
	ref, err := ParseRef(v)
	if err != nil {
		return err
	}
	*dst = ref
	return nil
}

// splitList splits a ';'-separated field; empty parts are dropped.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ";") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseRegexps(dst *[]string, v string) error {
	list := splitList(v)
	for _, s := range list {
		if _, err := regexp.Compile(s); err != nil {
			return fmt.Errorf("folder expression %q: %v", s, err)
		}
	}
	*dst = list
	return nil
}

func parseSince(r *Row, v string) error {
	if v == "" {
		return nil
	}
	if _, err := time.Parse("2006-01-02", v); err != nil {
		return fmt.Errorf("since %q: want a date YYYY-MM-DD", v)
	}
	r.Since = v
	return nil
}

// parseMapRules checks the shape of --map rules (SRC_RE=DST); copy checks
// them again as it does for its flag.
func parseMapRules(r *Row, v string) error {
	list := splitList(v)
	for _, rule := range list {
		src, _, ok := strings.Cut(rule, "=")
		if !ok || src == "" {
			return fmt.Errorf("map rule %q: want SOURCE_REGEXP=DESTINATION", rule)
		}
		if _, err := regexp.Compile(src); err != nil {
			return fmt.Errorf("map rule %q: %v", rule, err)
		}
	}
	r.Map = list
	return nil
}

func parseGmail(r *Row, v string) error {
	switch strings.ToLower(v) {
	case "", "0", "no", "false":
		r.Gmail = false
	case "1", "yes", "true":
		r.Gmail = true
	default:
		return fmt.Errorf("gmail %q: want yes or no", v)
	}
	return nil
}

// authMissing names the auth column a remote endpoint needs.
type authMissing struct{ column, msg string }

// checkAuthNeeded: a server endpoint needs a reference, a local one none.
func checkAuthNeeded(r *Row) *authMissing {
	for _, s := range []struct {
		side, url string
		ref       Ref
	}{{"src", r.Src, r.SrcAuth}, {"dst", r.Dst, r.DstAuth}} {
		switch {
		case remote(s.url) && s.ref.Kind == "":
			return &authMissing{s.side + "_auth", "empty: a server account needs file:PATH, cmd:ARGV, env:NAME or oauth2:PROFILE"}
		case !remote(s.url) && s.ref.Kind != "":
			return &authMissing{s.side + "_auth", "a local " + s.side + " takes no credentials: leave the column empty"}
		}
	}
	return nil
}

// csvError turns encoding/csv's errors into a LoadError.
func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LoadError{Line: pe.Line, Column: max(pe.Column, 1), Msg: pe.Err.Error()}
	}
	return &LoadError{Line: 1, Column: 1, Msg: err.Error()}
}

// bomSkipper drops a UTF-8 byte order mark, which spreadsheet programs
// write at the start of CSV exports.
func bomSkipper(r io.Reader) io.Reader {
	var head [3]byte
	n, err := io.ReadFull(r, head[:])
	if n == 3 && bytes.Equal(head[:], []byte{0xEF, 0xBB, 0xBF}) {
		return r
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return io.MultiReader(bytes.NewReader(head[:n]), errReader{err})
	}
	return io.MultiReader(bytes.NewReader(head[:n]), r)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// lazyRegexp compiles expr on first use, not at program start: every
// mailferry command links this package (the batch commands), and a copy
// or sync that never validates a batch file should not pay for compiling
// its patterns (idRe's {0,199} alone is a program of about 200 states).
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
