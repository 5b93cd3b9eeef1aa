//go:build !linux

package maildir

// renameNoReplace falls back to link(2) + unlink(2), which never overwrites.
func renameNoReplace(oldpath, newpath string) error { return linkRename(oldpath, newpath) }
