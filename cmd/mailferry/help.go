package main

import "sort"

// helpTopics are the texts of 'mailferry help TOPIC'. README.md shows the
// same examples: change both together.
func helpTopics() map[string]string {
	return map[string]string{
		"config":     helpConfig,
		"cron":       helpCron,
		"filters":    helpFilters,
		"gmail":      helpGmail,
		"oauth2":     helpOAuth2,
		"exit-codes": exitCodeTable[1:],
	}
}

func helpTopicNames() []string {
	out := make([]string, 0, len(helpTopics()))
	for k := range helpTopics() {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

const helpConfig = `The config file: named jobs for 'mailferry run JOB' and 'mailferry run --all'.

It is read from --config FILE, else $XDG_CONFIG_HOME/mailferry/config.toml,
else ~/.config/mailferry/config.toml. It is TOML; a key mailferry does not
know is an error naming the key and its line. '~/' starts a path in your
home directory; other relative paths are relative to the current directory.

  # optional: append one JSON line per job run, for monitoring
  report = "~/.local/state/mailferry/runs.jsonl"

  [jobs.pop-backup]                         # mailferry run pop-backup
  source           = "pop3s://alice@pop.example.org"
  destination      = "maildir:~/Mail/backup"
  src_password_cmd = "pass show mail/alice"
  max_size         = "50M"                  # skip (and report) bigger messages
  delete_source    = false                  # true: delete once stored and recorded

  [jobs.move]                               # mailferry run move
  source            = "imaps://alice@imap.old.example.org"
  destination       = "imaps://alice@imap.new.example.org"
  src_password_file = "~/.config/mailferry/old.pw"
  dst_password_env  = "NEW_MAIL_PASSWORD"
  exclude           = ["^Trash$", "^Junk$"] # folder regexps; include = [...] too
  since             = 2015-01-01            # internal date; before = ... too
  workers           = 8

Job keys (each one mirrors a flag of 'mailferry copy', or with mode = "sync"
of 'mailferry sync'; a key of the other mode is an error):
  mode                     "copy" (the default) or "sync"
  source, destination      endpoint URLs (required)
  include, exclude         lists of folder regexps
  map                      folder renames, ["SRC_RE=DST", ...] like --map
  delete_source            bool
  delete_after             "30d", "4w": leave mail on the source, delete what was stored that long ago
  gmail                    bool: copy each message once, not once per label (help gmail)
  workers                  number of messages copied at once
  max_size                 "25M", "1G" or a number of bytes
  max_bytes_per_sec        pace: "2M" per second over all workers
  max_msgs_per_sec         pace: messages per second over all workers
  max_bytes                budget per run, "2G": stop there (exit 8), resume next run
  since, before            dates, 2024-01-31 or "2024-01-31"
  checkpoint               file (default: named after the two endpoints)
  ca_file                  extra trusted CA certificates (PEM)
  allow_plaintext          bool: let imap:// and pop3:// go on without TLS
  allow_plaintext_auth     bool: and send the password over it in clear text
  no_starttls              bool: skip STARTTLS/STLS even when offered (loopback
                           or an already encrypted link; with allow_plaintext_auth)
  pin_sha256               list of server key pins, like --pin-sha256
  allow_unsafe_expunge     bool: like --allow-unsafe-expunge
  timeout                  "60s"
Sync jobs only (source and destination: imap, imaps or maildir), e.g.
    [jobs.laptop]                           # mailferry run laptop: a two-way sync
    mode              = "sync"              # source is A, destination B (help sync)
    source            = "imaps://alice@imap.example.org"
    destination       = "maildir:~/Mail"
    src_password_file = "~/.config/mailferry/imap.pw"
    remove_folders    = true
  no_delete                bool: never delete
  max_delete               percent of a folder's messages deleted at once before the guard holds them (50)
  remove_folders           bool: delete a folder the other side deleted when unchanged here
  (--force is a flag of 'run' only, never a key: a job that always forces has no guard)
Credentials, for src_ and dst_ (never in the URL):
  src_password_file        first line of a file
  src_password_cmd         first line printed by a command (pass, secret-tool...)
  src_password_env         name of an environment variable
  src_password             inline: only if the file is private (chmod 600)
  [jobs.NAME.src_oauth2]   OAuth2 instead of a password: see mailferry help oauth2

A config file holding a secret (src_password, client_secret, refresh_token)
must be readable by you alone: mailferry refuses it otherwise.

Flags given to 'mailferry run' override the job's settings, e.g.
  mailferry run move --dry-run --since 2024-01-01
A list flag (--include, --exclude, --map, --pin-sha256) replaces the job's
list; a side's credential flag replaces all of that side's credentials.
`

const helpCron = `Running mailferry from cron or a systemd timer.

  mailferry run --all --quiet

prints nothing when all is well (no bars, no summary), one line per problem
otherwise, and exits with a documented code (mailferry help exit-codes), so
cron mails you only when something needs you. Without a terminal there are
no bars; without --quiet a progress line is logged every --progress-interval
(10s). --report FILE (or report = "FILE" in the config) appends one JSON line
per job run: time, job, counts, errors and exit code.

Exit 8 means "try again later": the server throttled or the connection kept
dropping (after 5 temporary failures in a row the run stops instead of
hammering it), or --max-bytes was spent. Everything stored so far is
recorded; the next run resumes. Exit 9 means a full disk: the message names
the path. Exits 2, 4, 5 and 6 need you; 7 means the last run is still going.

A run locks its checkpoint (a FILE.lock beside it). A second run of the same
job exits at once with code 7 and touches nothing, so a slow night never
overlaps the next one. The lock dies with the process: after a crash or
kill -9 the next run just goes ahead and resumes where the last one stopped.

crontab -e:
  17 3 * * * mailferry run --all --quiet

systemd (user units; enable with: systemctl --user enable --now mailferry.timer):
  # ~/.config/systemd/user/mailferry.service
  [Unit]
  Description=mailferry: copy mail (all jobs)
  Wants=network-online.target
  After=network-online.target

  [Service]
  Type=oneshot
  ExecStart=%h/go/bin/mailferry run --all --quiet --report %h/.local/state/mailferry/runs.jsonl

  # ~/.config/systemd/user/mailferry.timer
  [Unit]
  Description=Run mailferry nightly

  [Timer]
  OnCalendar=*-*-* 03:17
  RandomizedDelaySec=15m
  Persistent=true

  [Install]
  WantedBy=timers.target
`

const helpFilters = `Choosing what to copy.

  --include REGEX, --exclude REGEX   folders whose name matches (repeatable);
                                     include = [...], exclude = [...] in a job
  --since DATE, --before DATE        messages by internal (received) date,
                                     YYYY-MM-DD, local time: since is
                                     inclusive, before exclusive
  --max-size SIZE                    skip messages over SIZE (25M, 1G); each
                                     is listed as skipped

Filters are shown in the summary, in --json, in --report and in --dry-run.
A message the source keeps no date for (POP3) is not filtered by date.
Filters only narrow a run: they never delete anything, and a message left
out tonight is copied by the first run whose filters let it through.
`

const helpOAuth2 = `OAuth2 (Gmail, Microsoft 365 and other servers that want a token).

mailferry logs in with SASL OAUTHBEARER (when offered) or XOAUTH2 (IMAP) and
AUTH XOAUTH2 (POP3) when a side has OAuth2 settings, and asks for a token on
every new connection, from one of:

1. A token command, which prints an access token (oama, mutt_oauth2.py,
   a script of your own):
     mailferry copy imaps://alice@gmail.com@imap.gmail.com maildir:~/Mail/gmail \
       --src-oauth2-token-cmd 'oama access alice@gmail.com'
   or in a job:
     [jobs.gmail.src_oauth2]
     token_cmd = "oama access alice@gmail.com"

2. A refresh token with your OAuth client's id and secret:
     [jobs.gmail.src_oauth2]
     provider           = "google"           # or "microsoft", or token_url = "..."
     client_id          = "1234.apps.googleusercontent.com"
     client_secret_file = "~/.config/mailferry/gmail-client-secret"
     refresh_token_cmd  = "pass show mail/gmail-refresh-token"
   (client_secret and refresh_token may also be inline in a chmod 600 file,
   or read from refresh_token_file.) The access token is refreshed when it
   is about to expire; a refused refresh (invalid_grant) exits 4.

A side logs in with OAuth2 or with a password, not both.
`
