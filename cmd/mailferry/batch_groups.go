package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/mailferry/mailferry/sync/batch"
)

// batchFileConfig is the config file's [batch] table.
type batchFileConfig struct {
	Groups map[string]groupConfig `toml:"groups"`
}

// groupConfig is one [batch.groups.NAME] table: a host group whose
// accounts share slots across every worker of the database.
type groupConfig struct {
	Match                 []string `toml:"match"`
	MaxAccounts           int      `toml:"max_accounts"`
	ConnectionsPerAccount int      `toml:"connections_per_account"`
	// The limits over all the group's accounts and workers: see
	// batch.Group.
	MaxMsgsPerSec       int64      `toml:"max_msgs_per_sec"`
	UploadBytesPerDay   configSize `toml:"upload_bytes_per_day"`
	DownloadBytesPerDay configSize `toml:"download_bytes_per_day"`
}

// batchConfig reads the config file for the batch commands: --config, or
// the usual file when it exists (a batch needs none).
func (o *batchOptions) batchConfig(env *cliEnv) (*fileConfig, error) {
	if o.configFlag == "" {
		path, err := configPath("", env)
		if err != nil {
			return &fileConfig{}, nil
		}
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return &fileConfig{}, nil
		}
	}
	return loadConfig(o.configFlag, env)
}

// groups are the config's host groups, checked.
func (cfg *fileConfig) groups() ([]batch.Group, error) {
	names := make([]string, 0, len(cfg.Batch.Groups))
	for n := range cfg.Batch.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []batch.Group
	for _, n := range names {
		g := cfg.Batch.Groups[n]
		where := fmt.Sprintf("config %s: batch.groups.%s", cfg.path, n)
		switch {
		case len(g.Match) == 0:
			return nil, &usageError{where + ": match is empty: list the host names (or patterns such as *.example.org) of the group"}
		case g.MaxAccounts < 0 || g.ConnectionsPerAccount < 0 || g.MaxMsgsPerSec < 0 || g.UploadBytesPerDay < 0 || g.DownloadBytesPerDay < 0:
			return nil, &usageError{where + ": max_accounts, connections_per_account, max_msgs_per_sec, upload_bytes_per_day and download_bytes_per_day: want 0 (no cap) or more"}
		case g.MaxMsgsPerSec > 0 && (g.MaxAccounts == 0 || g.MaxMsgsPerSec < int64(g.MaxAccounts)):
			// Each running account gets max_msgs_per_sec / max_accounts:
			// the slots are what bounds the sum across workers.
			return nil, &usageError{fmt.Sprintf("%s: max_msgs_per_sec %d is shared by the group's max_accounts accounts at once: set max_accounts, at most max_msgs_per_sec (each account gets an equal share of at least 1)", where, g.MaxMsgsPerSec)}
		}
		out = append(out, batch.Group{Name: n, Match: g.Match, MaxAccounts: g.MaxAccounts, ConnectionsPerAccount: g.ConnectionsPerAccount,
			MaxMsgsPerSec: g.MaxMsgsPerSec, UploadBytesPerDay: int64(g.UploadBytesPerDay), DownloadBytesPerDay: int64(g.DownloadBytesPerDay)})
	}
	return out, nil
}
