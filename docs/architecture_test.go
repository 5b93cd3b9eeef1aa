// Package docs holds the project's prose documentation; its test keeps ARCHITECTURE.md honest.
package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// nameRef matches a code reference in ARCHITECTURE.md: a repository directory, a dot, and a
// function, type or method, e.g. `sync.(*run).transfer`, `sinks/maildir.(*Sink).Put` or
// `sync/mail.Features`; or a Go file, e.g. `sync/mail/capabilities.go`.
var nameRef = regexp.MustCompile("`((?:cmd|sync|sources|sinks|internal)(?:/[a-z0-9_]+)*)\\.(?:\\((\\*?)([A-Za-z0-9_]+)\\)\\.)?([A-Za-z0-9_]+)`")

// TestArchitectureNamesExist fails when ARCHITECTURE.md names a function, method or type
// that the code no longer has, so the walk through the code cannot silently go stale.
func TestArchitectureNamesExist(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	refs := nameRef.FindAllStringSubmatch(string(text), -1)
	if len(refs) < 15 {
		t.Fatalf("ARCHITECTURE.md names %d functions; the walk should name at least 15", len(refs))
	}
	decls := map[string]map[string]bool{} // dir -> declared names
	for _, r := range refs {
		dir, recv, name := r[1], r[3], r[4]
		if recv == "" && name == "go" { // a file, e.g. `sync/mail/capabilities.go`
			if _, err := os.Stat(filepath.Join("..", dir+".go")); err != nil {
				t.Errorf("ARCHITECTURE.md names %s, which does not exist", r[0])
			}
			continue
		}
		names, ok := decls[dir]
		if !ok {
			names = declared(t, filepath.Join("..", dir))
			decls[dir] = names
		}
		key := name
		if recv != "" {
			key = recv + "." + name
		}
		if !names[key] {
			t.Errorf("ARCHITECTURE.md names %s, which %s does not declare", r[0], dir)
		}
	}
}

// declared returns the top-level names of the non-test Go files in dir: functions and types
// as "Name", methods as "Type.Name".
func declared(t *testing.T, dir string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Errorf("no Go files in %s", dir)
		return names
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				names[funcKey(d)] = true
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						names[s.Name.Name] = true
					case *ast.ValueSpec:
						for _, n := range s.Names {
							names[n.Name] = true
						}
					}
				}
			}
		}
	}
	return names
}

func funcKey(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return d.Name.Name
	}
	typ := d.Recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	if idx, ok := typ.(*ast.IndexExpr); ok { // generic receiver T[X]
		typ = idx.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.Name + "." + d.Name.Name
	}
	return d.Name.Name
}
