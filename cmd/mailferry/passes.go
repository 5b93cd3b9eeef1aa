package main

import (
	"log/slog"

	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/state"
)

// openPassState opens the per-folder pass state kept next to the
// checkpoint (cpPath + ".state"), with which a rerun skips the folders
// whose status did not move (issue 11). reset forgets it.
func openPassState(cpPath string, reset bool, src, dst string, log *slog.Logger) (*state.State, error) {
	return state.Open(cpPath+".state", src, dst, state.Options{Reset: reset, Logger: log})
}

// listingHeader is the report table's last column header, when the run
// says how it listed each folder (skipped, incremental, full).
func listingHeader(s *summary) string {
	for _, b := range s.Folders {
		if b.Listing != "" {
			return " listing"
		}
	}
	return ""
}

// listingCell is a folder's listing column, "" without one.
func listingCell(b mailferry.Snapshot) string {
	if b.Listing == "" {
		return ""
	}
	return " " + b.Listing
}
