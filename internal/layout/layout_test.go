// Package layout holds tests of the repository's package layout
// (docs/style.md): sources and sinks never import each other; what both
// directions share lives in packages both import, such as internal/maildirfmt
// and internal/mboxfmt.
package layout

import (
	"errors"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/mailferry/mailferry"

// pending are imports the rule still allows, each until the change named
// beside it lands. Delete an entry when its import is gone: the test then
// keeps it from coming back.
var pending = map[string]string{}

// TestSourcesAndSinksDoNotImportEachOther reads the imports of every package
// under sinks/ and sources/ (test files aside: a sink's tests may read back
// what it wrote through the matching source) and fails on one from the other
// side.
func TestSourcesAndSinksDoNotImportEachOther(t *testing.T) {
	root := moduleRoot(t)
	for _, c := range []struct{ dir, forbidden string }{
		{"sinks", "sources"},
		{"sources", "sinks"},
	} {
		for _, pkg := range packagesUnder(t, filepath.Join(root, c.dir)) {
			rel := strings.TrimPrefix(pkg.ImportPath, module+"/")
			for _, imp := range pkg.Imports {
				dep, ok := strings.CutPrefix(imp, module+"/")
				if !ok || !strings.HasPrefix(dep+"/", c.forbidden+"/") {
					continue
				}
				if why, ok := pending[rel+" -> "+dep]; ok {
					t.Logf("%s imports %s until %s lands", rel, dep, why)
					continue
				}
				t.Errorf("%s imports %s: %s and %s never import each other; move what both need under internal/", rel, dep, c.dir, c.forbidden)
			}
		}
	}
}

// TestPendingStillNeeded fails once a pending import is gone, so the
// allowance is removed with it.
func TestPendingStillNeeded(t *testing.T) {
	root := moduleRoot(t)
	seen := map[string]bool{}
	for _, dir := range []string{"sinks", "sources"} {
		for _, pkg := range packagesUnder(t, filepath.Join(root, dir)) {
			rel := strings.TrimPrefix(pkg.ImportPath, module+"/")
			for _, imp := range pkg.Imports {
				seen[rel+" -> "+strings.TrimPrefix(imp, module+"/")] = true
			}
		}
	}
	for edge := range pending {
		if !seen[edge] {
			t.Errorf("pending import %q no longer exists: delete it from pending", edge)
		}
	}
}

// moduleRoot is the directory holding go.mod, above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// packagesUnder returns the Go packages in dir and below, testdata aside,
// with the imports of their non-test files for this platform.
func packagesUnder(t *testing.T, dir string) []*build.Package {
	t.Helper()
	root := moduleRoot(t)
	var pkgs []*build.Package
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(p, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		pkg.ImportPath = module + "/" + filepath.ToSlash(rel)
		pkgs = append(pkgs, pkg)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) == 0 {
		t.Fatalf("no package under %s", dir)
	}
	return pkgs
}
