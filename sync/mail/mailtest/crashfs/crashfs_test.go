package crashfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// tree lists the files under root with their contents.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel != "." {
				out[rel+"/"] = ""
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[rel] = string(b)
		return nil
	})
	return out
}

func TestModel(t *testing.T) {
	write := func(t *testing.T, f *FS, name, data string, sync bool) {
		t.Helper()
		fl, err := f.Create(filepath.Join(f.Root(), name), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fl.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := fl.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		fl.Close()
	}
	tests := []struct {
		name  string
		noDir bool
		do    func(t *testing.T, f *FS)
		want  map[string]string
	}{
		{"unsynced create is lost", false, func(t *testing.T, f *FS) { write(t, f, "a", "x", true) }, map[string]string{"old": "o"}},
		{"entry synced, data not: empty file", false, func(t *testing.T, f *FS) {
			write(t, f, "a", "x", false)
			f.SyncDir(f.Root())
		}, map[string]string{"old": "o", "a": ""}},
		{"both synced", false, func(t *testing.T, f *FS) {
			write(t, f, "a", "x", true)
			f.SyncDir(f.Root())
		}, map[string]string{"old": "o", "a": "x"}},
		{"rename without syncing the source dir leaves both names", false, func(t *testing.T, f *FS) {
			f.Mkdir(filepath.Join(f.Root(), "d"), 0o700)
			write(t, f, "a", "x", true)
			f.SyncDir(f.Root())
			f.Rename(filepath.Join(f.Root(), "a"), filepath.Join(f.Root(), "d", "a"))
			f.SyncDir(filepath.Join(f.Root(), "d"))
		}, map[string]string{"old": "o", "a": "x", "d/": "", "d/a": "x"}},
		{"unsynced remove is undone", false, func(t *testing.T, f *FS) { f.Remove(filepath.Join(f.Root(), "old")) }, map[string]string{"old": "o"}},
		{"synced remove", false, func(t *testing.T, f *FS) {
			f.Remove(filepath.Join(f.Root(), "old"))
			f.SyncDir(f.Root())
		}, map[string]string{}},
		{"unsynced append is lost", false, func(t *testing.T, f *FS) {
			fl, _ := f.OpenFile(filepath.Join(f.Root(), "old"), os.O_WRONLY|os.O_APPEND, 0)
			fl.Write([]byte("more"))
			fl.Close()
		}, map[string]string{"old": "o"}},
		{"NoDirSync loses the entry", true, func(t *testing.T, f *FS) {
			write(t, f, "a", "x", true)
			f.SyncDir(f.Root())
		}, map[string]string{"old": "o"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			os.WriteFile(filepath.Join(root, "old"), []byte("o"), 0o600)
			f, err := New(root, 1)
			if err != nil {
				t.Fatal(err)
			}
			f.NoDirSync = tc.noDir
			tc.do(t, f)
			if err := f.Recover(); err != nil {
				t.Fatal(err)
			}
			if got := tree(t, root); !mapsEqual(got, tc.want) {
				t.Errorf("after the cut: %v, want %v", got, tc.want)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestCutAtAndTorn checks that operation n and all later ones fail, and
// that torn mode keeps a prefix of the unsynced tail.
func TestCutAtAndTorn(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "log"), []byte("synced."), 0o600)
	f, _ := New(root, 7)
	f.Torn = true
	f.CutAt(3)
	fl, err := f.OpenFile(filepath.Join(root, "log"), os.O_WRONLY|os.O_APPEND, 0) // op 1
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.Write([]byte("0123456789")); err != nil { // op 2
		t.Fatal(err)
	}
	if err := fl.Sync(); !errors.Is(err, ErrPowerLost) { // op 3: the cut
		t.Fatalf("Sync at the cut = %v, want ErrPowerLost", err)
	}
	if _, err := fl.Write([]byte("x")); !errors.Is(err, ErrPowerLost) {
		t.Fatalf("Write after the cut = %v, want ErrPowerLost", err)
	}
	fl.Close()
	f.Recover()
	got := tree(t, root)["log"]
	if len(got) < len("synced.") || got != ("synced.0123456789")[:len(got)] {
		t.Errorf("torn file = %q, want a prefix of %q keeping %q", got, "synced.0123456789", "synced.")
	}
	seen := map[int]bool{}
	for seed := range uint64(40) {
		os.WriteFile(filepath.Join(root, "log"), []byte("s"), 0o600)
		f, _ := New(root, seed)
		f.Torn = true
		fl, _ := f.OpenFile(filepath.Join(root, "log"), os.O_WRONLY|os.O_APPEND, 0)
		fl.Write([]byte("abcd"))
		fl.Close()
		f.Recover()
		seen[len(tree(t, root)["log"])] = true
	}
	var lens []int
	for l := range seen {
		lens = append(lens, l)
	}
	slices.Sort(lens)
	if len(lens) < 3 {
		t.Errorf("torn lengths over 40 seeds: %v, want a spread over 1..5", lens)
	}
}

// TestSyncFS checks the syncfs(2) model: everything done before it in the
// tree is durable (data and entries, in every directory), nothing done
// after it is, and the NoSyncFS control makes it sync nothing.
func TestSyncFS(t *testing.T) {
	p := func(f *FS, rel string) string { return filepath.Join(f.Root(), rel) }
	write := func(t *testing.T, f *FS, name, data string) {
		t.Helper()
		fl, err := f.OpenFile(p(f, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fl.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
		fl.Close()
	}
	syncfs := func(t *testing.T, f *FS) {
		t.Helper()
		if err := f.SyncFS(); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name            string
		noDir, noSyncFS bool
		do              func(t *testing.T, f *FS)
		want            map[string]string
	}{
		{"new files, directories and appends in every directory", false, false, func(t *testing.T, f *FS) {
			f.Mkdir(p(f, "d"), 0o700)
			f.Mkdir(p(f, "d/e"), 0o700)
			write(t, f, "a", "x")
			write(t, f, "d/e/b", "y")
			write(t, f, "old", "+more")
			syncfs(t, f)
		}, map[string]string{"old": "o+more", "a": "x", "d/": "", "d/e/": "", "d/e/b": "y"}},
		{"a remove", false, false, func(t *testing.T, f *FS) {
			f.Remove(p(f, "old"))
			syncfs(t, f)
		}, map[string]string{}},
		{"writes after it are lost", false, false, func(t *testing.T, f *FS) {
			write(t, f, "a", "x")
			syncfs(t, f)
			write(t, f, "a", "y")
			write(t, f, "c", "z")
		}, map[string]string{"old": "o", "a": "x"}},
		{"a rename after it needs both directory fsyncs", false, false, func(t *testing.T, f *FS) {
			f.Mkdir(p(f, "tmp"), 0o700)
			f.Mkdir(p(f, "new"), 0o700)
			write(t, f, "tmp/m", "msg")
			syncfs(t, f)
			f.RenameNoReplace(p(f, "tmp/m"), p(f, "new/m"))
		}, map[string]string{"old": "o", "tmp/": "", "tmp/m": "msg", "new/": ""}},
		{"a rename after it, directories fsynced", false, false, func(t *testing.T, f *FS) {
			f.Mkdir(p(f, "tmp"), 0o700)
			f.Mkdir(p(f, "new"), 0o700)
			write(t, f, "tmp/m", "msg")
			syncfs(t, f)
			f.RenameNoReplace(p(f, "tmp/m"), p(f, "new/m"))
			f.SyncDir(p(f, "new"))
			f.SyncDir(p(f, "tmp"))
		}, map[string]string{"old": "o", "tmp/": "", "new/": "", "new/m": "msg"}},
		{"renamed before it", false, false, func(t *testing.T, f *FS) {
			f.Mkdir(p(f, "new"), 0o700)
			write(t, f, "m", "msg")
			f.Rename(p(f, "m"), p(f, "new/m"))
			syncfs(t, f)
		}, map[string]string{"old": "o", "new/": "", "new/m": "msg"}},
		{"NoDirSync leaves it alone", true, false, func(t *testing.T, f *FS) {
			write(t, f, "a", "x")
			syncfs(t, f)
		}, map[string]string{"old": "o", "a": "x"}},
		{"NoSyncFS syncs nothing", false, true, func(t *testing.T, f *FS) {
			write(t, f, "a", "x")
			write(t, f, "old", "+more")
			syncfs(t, f)
		}, map[string]string{"old": "o"}},
		{"NoSyncFS: a directory fsync still makes the entry durable, not the data", false, true, func(t *testing.T, f *FS) {
			write(t, f, "a", "x")
			syncfs(t, f)
			f.SyncDir(f.Root())
		}, map[string]string{"old": "o", "a": ""}},
		{"cut at the syncfs", false, false, func(t *testing.T, f *FS) {
			write(t, f, "a", "x")
			f.CutAt(f.Ops() + 1)
			if err := f.SyncFS(); !errors.Is(err, ErrPowerLost) {
				t.Errorf("SyncFS at the cut = %v, want ErrPowerLost", err)
			}
		}, map[string]string{"old": "o"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			os.WriteFile(filepath.Join(root, "old"), []byte("o"), 0o600)
			f, err := New(root, 1)
			if err != nil {
				t.Fatal(err)
			}
			f.NoDirSync, f.NoSyncFS = tc.noDir, tc.noSyncFS
			tc.do(t, f)
			if err := f.Recover(); err != nil {
				t.Fatal(err)
			}
			if got := tree(t, root); !mapsEqual(got, tc.want) {
				t.Errorf("after the cut: %v, want %v", got, tc.want)
			}
		})
	}
}
