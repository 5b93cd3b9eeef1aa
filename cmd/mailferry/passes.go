package main

import (
	mailferry "github.com/mailferry/mailferry/sync"
)

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
