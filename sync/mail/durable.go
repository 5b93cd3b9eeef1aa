package mail

import "os"

// SyncDir fsyncs the directory dir, which makes the entries created,
// renamed or removed in it durable (a file's own fsync does not). Every
// local sink and the checkpoint call it through their file-system layer.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
