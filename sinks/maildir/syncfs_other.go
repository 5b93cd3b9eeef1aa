//go:build !linux

package maildir

import (
	"errors"
	"os"
	"time"
)

// openSyncRoot reports that there is no syncfs(2): Commit fsyncs each file.
func openSyncRoot(string) (*os.File, uint64, error) { return nil, 0, errors.ErrUnsupported }

func syncFS(*os.File) error { return errors.ErrUnsupported }

func devOf(os.FileInfo) (uint64, bool) { return 0, false }

func setMtimeFD(*os.File, time.Time) error { return errors.ErrUnsupported }
