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
		case g.MaxAccounts < 0 || g.ConnectionsPerAccount < 0:
			return nil, &usageError{where + ": max_accounts and connections_per_account: want 0 (no cap) or more"}
		}
		out = append(out, batch.Group{Name: n, Match: g.Match, MaxAccounts: g.MaxAccounts, ConnectionsPerAccount: g.ConnectionsPerAccount})
	}
	return out, nil
}
