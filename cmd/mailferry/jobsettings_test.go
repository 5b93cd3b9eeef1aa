package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	flag "github.com/spf13/pflag"
)

// TestJobSettingsListFlagsReplace: the one rule of 'run' for lists: a list
// flag given on the command line replaces the job's list (--map and
// --pin-sha256 used to add to it); not given, the job's list stands. A
// side's credential flag replaces all of that side's job credentials.
func TestJobSettingsListFlagsReplace(t *testing.T) {
	cfgText := jobConfigText(t.TempDir(), `include = ["^INBOX$"]
map = ["Sent Items=Sent"]
pin_sha256 = ["job-pin"]
workers = 2
src_password_cmd = "job-cmd"
dst_password_env = "JOB_DST_PW"`)
	tests := []struct {
		name string
		args []string
		get  func(o *copyOptions) []string
		want []string
	}{
		{"include from the job", nil, func(o *copyOptions) []string { return o.common.include }, []string{"^INBOX$"}},
		{"--include replaces", []string{"--include", "^Archive$"}, func(o *copyOptions) []string { return o.common.include }, []string{"^Archive$"}},
		{"map from the job", nil, func(o *copyOptions) []string { return o.maps }, []string{"Sent Items=Sent"}},
		{"--map replaces", []string{"--map", "INBOX=Old", "--map", "Junk=Spam"}, func(o *copyOptions) []string { return o.maps }, []string{"INBOX=Old", "Junk=Spam"}},
		{"pins from the job", nil, func(o *copyOptions) []string { return o.common.pinSHA256 }, []string{"job-pin"}},
		{"--pin-sha256 replaces", []string{"--pin-sha256", "flag-pin"}, func(o *copyOptions) []string { return o.common.pinSHA256 }, []string{"flag-pin"}},
		{"workers from the job", nil, func(o *copyOptions) []string { return []string{strconv.Itoa(o.common.workers)} }, []string{"2"}},
		{"--workers wins", []string{"--workers", "7"}, func(o *copyOptions) []string { return []string{strconv.Itoa(o.common.workers)} }, []string{"7"}},
		{"src credentials from the job", nil, func(o *copyOptions) []string { return []string{o.src.passwordCmd, o.src.passwordFile} }, []string{"job-cmd", ""}},
		{"a src credential flag replaces them all", []string{"--src-password-file", "/pw"}, func(o *copyOptions) []string { return []string{o.src.passwordCmd, o.src.passwordFile} }, []string{"", "/pw"}},
		{"dst credentials stay", []string{"--src-password-file", "/pw"}, func(o *copyOptions) []string { return []string{o.dst.passwordEnv} }, []string{"JOB_DST_PW"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(writeConfig(t, 0o600, cfgText), &cliEnv{getenv: func(string) string { return "" }})
			if err != nil {
				t.Fatal(err)
			}
			var ro runOptions
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			ro.addFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			ro.given = fs.Changed
			o := jobOptions(cfg, "nightly", &ro, &cliEnv{getenv: func(string) string { return "" }})
			if got := tc.get(o); !slices.Equal(got, tc.want) {
				t.Errorf("run nightly %s: got %q, want %q", strings.Join(tc.args, " "), got, tc.want)
			}
		})
	}
}
