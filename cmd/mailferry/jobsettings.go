package main

import "time"

// jobMergeRule is the rule of 'run' for a job's settings and the flags
// given on its command line; 'mailferry run --help' prints it.
const jobMergeRule = `A flag given to 'run' overrides the job's setting of the same name, for
every job run. A list flag (--include, --exclude, --map, --pin-sha256)
replaces the job's list instead of adding to it, and any credential flag
of a side (--src-password-file, --src-password-cmd, --src-oauth2-token-cmd,
and the same for dst) replaces all of the job's credentials for that side.`

// jobSetting is one setting a job may give (jobConfig) with the flags that
// override it: when none of them is given on the command line, apply sets
// the option from the job. path expands a file name of the config ("~/").
type jobSetting struct {
	flags []string
	apply func(o *copyOptions, j *jobConfig, path func(string) string)
}

// jobSettings is the one table of how a job's settings and the flags of
// 'run' merge (jobMergeRule). A job key that is zero keeps the flag's
// default where the table says so (workers, timeout, gmail).
func jobSettings() []jobSetting {
	return append([]jobSetting{
		{[]string{"include"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.common.include = j.Include }},
		{[]string{"exclude"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.common.exclude = j.Exclude }},
		{[]string{"map"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.maps = j.Map }},
		{[]string{"pin-sha256"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.common.pinSHA256 = j.PinSHA256 }},
		{[]string{"delete-source"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.deleteSource = j.DeleteSource }},
		{[]string{"delete-after"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.deleteAfter = j.DeleteAfter.retentionFlag }},
		{[]string{"gmail"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.gmail = o.gmail || j.Gmail }},
		{[]string{"workers"}, func(o *copyOptions, j *jobConfig, _ func(string) string) {
			if j.Workers > 0 {
				o.common.workers = j.Workers
			}
		}},
		{[]string{"timeout"}, func(o *copyOptions, j *jobConfig, _ func(string) string) {
			if j.Timeout > 0 {
				o.common.timeout = time.Duration(j.Timeout)
			}
		}},
		{[]string{"max-size"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.maxSize = sizeFlag(j.MaxSize) }},
		{[]string{"max-bytes-per-sec"}, func(o *copyOptions, j *jobConfig, _ func(string) string) {
			o.maxBytesPerSec = sizeFlag(j.MaxBytesPerSec)
		}},
		{[]string{"max-msgs-per-sec"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.maxMsgsPerSec = j.MaxMsgsPerSec }},
		{[]string{"max-bytes"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.maxBytes = sizeFlag(j.MaxBytes) }},
		{[]string{"since"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.since.t = j.Since.Time }},
		{[]string{"before"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.before.t = j.Before.Time }},
		{[]string{"checkpoint"}, func(o *copyOptions, j *jobConfig, path func(string) string) { o.checkpoint = path(j.Checkpoint) }},
		{[]string{"ca-file"}, func(o *copyOptions, j *jobConfig, path func(string) string) { o.common.caFile = path(j.CAFile) }},
		{[]string{"allow-plaintext"}, func(o *copyOptions, j *jobConfig, _ func(string) string) {
			o.common.allowPlaintext = j.AllowPlaintext
		}},
		{[]string{"allow-plaintext-auth"}, func(o *copyOptions, j *jobConfig, _ func(string) string) {
			o.common.allowPlaintextAuth = j.AllowPlaintextAuth
		}},
		{[]string{"no-starttls"}, func(o *copyOptions, j *jobConfig, _ func(string) string) { o.common.noStartTLS = j.NoStartTLS }},
		{[]string{"allow-unsafe-expunge"}, func(o *copyOptions, j *jobConfig, _ func(string) string) {
			o.allowUnsafeExpunge = j.AllowUnsafeExpunge
		}},
	}, credentialSettings()...)
}

// credentialSettings are the rows of a side's credentials: one row per
// side, so that any of its credential flags replaces all the job gives.
func credentialSettings() []jobSetting {
	var out []jobSetting
	for _, side := range []string{"src", "dst"} {
		out = append(out, jobSetting{
			flags: []string{side + "-password-file", side + "-password-cmd", side + "-oauth2-token-cmd"},
			apply: func(o *copyOptions, j *jobConfig, path func(string) string) {
				s, c := &o.src, jobCredentials{j.SrcPasswordFile, j.SrcPasswordCmd, j.SrcPasswordEnv, j.SrcPassword, j.SrcOAuth2}
				if side == "dst" {
					s, c = &o.dst, jobCredentials{j.DstPasswordFile, j.DstPasswordCmd, j.DstPasswordEnv, j.DstPassword, j.DstOAuth2}
				}
				s.passwordFile, s.passwordCmd, s.passwordEnv, s.inlinePassword = path(c.file), c.cmd, c.env, c.password
				s.oauth2 = c.oauth2
				s.oauth2.ClientSecretFile = path(c.oauth2.ClientSecretFile)
				s.oauth2.RefreshTokenFile = path(c.oauth2.RefreshTokenFile)
			},
		})
	}
	return out
}

// jobCredentials are one side's credential keys of a job.
type jobCredentials struct {
	file, cmd, env, password string
	oauth2                   oauth2Settings
}
