// Package exitcode holds mailferry's exit codes: the command returns them
// and the batch engine reads them back from the jobs it runs, so both take
// them from here. The table printed by --help (cmd/mailferry exit.go) and
// README.md say what each means.
package exitcode

// The exit codes of mailferry.
const (
	OK          = 0
	Unexpected  = 1
	Usage       = 2
	Partial     = 3
	Auth        = 4
	Unreachable = 5
	Checkpoint  = 6
	Locked      = 7
	Temporary   = 8
	DiskFull    = 9
	HeldBack    = 10 // sync: the mass-delete guard held deletions back
	Interrupted = 130
)
