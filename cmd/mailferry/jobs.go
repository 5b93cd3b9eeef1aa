package main

import (
	"encoding/json"
	"fmt"
)

type jobsOptions struct {
	config string
	names  bool
	json   bool
}

type jobRow struct {
	Name        string `json:"name"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Mode        string `json:"mode"` // copy or sync
}

// runJobs lists the jobs of the config file: "NAME  SRC -> DST" lines
// ("A <-> B" for a sync job), or
// only the names (for shell completion), or JSON.
func runJobs(o *jobsOptions, env *cliEnv) error {
	cfg, err := loadConfig(o.config, env)
	if err != nil {
		return err
	}
	rows := make([]jobRow, 0, len(cfg.order))
	width := 0
	for _, n := range cfg.order {
		j := cfg.Jobs[n]
		mode := j.Mode
		if mode == "" {
			mode = "copy"
		}
		rows = append(rows, jobRow{n, j.Source, j.Destination, mode})
		width = max(width, len(n))
	}
	switch {
	case o.json:
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case o.names:
		for _, r := range rows {
			fmt.Fprintln(env.stdout, r.Name)
		}
	default:
		if len(rows) == 0 {
			fmt.Fprintf(env.stderr, "no jobs in %s (see mailferry help config)\n", cfg.path)
		}
		for _, r := range rows {
			arrow := "->"
			if r.Mode == "sync" {
				arrow = "<->"
			}
			fmt.Fprintf(env.stdout, "%-*s  %s %s %s\n", width, r.Name, r.Source, arrow, r.Destination)
		}
		if len(rows) > 0 {
			fmt.Fprintf(env.stderr, "(from %s; run one with: mailferry run %s)\n", cfg.path, rows[0].Name)
		}
	}
	return nil
}
