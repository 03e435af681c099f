package weft_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestLibraryErrorsNameNoFlags: no error message of the library packages names a command
// line flag ("--alpha-for"); the CLI adds the flag to errors about an op's parameters
// (weft.OptionError). It checks the string literals given to fmt.Errorf, errors.New,
// weft.Optionf and friends, and to fmt.Sprintf in problems and notes, in every non-test Go
// file outside cmd/.
func TestLibraryErrorsNameNoFlags(t *testing.T) {
	flagRE := regexp.MustCompile(`(^|[\s("'])--[a-z][a-z-]+`)
	calls := map[string]bool{"Errorf": true, "New": true, "Optionf": true, "OptionValuef": true, "Sprintf": true, "classed": true, "errf": true, "usagef": false}
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "cmd", "testdata", "bench", "_asm", ".git":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			name := ""
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			case *ast.Ident:
				name = fn.Name
			}
			if !calls[name] {
				return true
			}
			for _, a := range call.Args {
				lit, ok := a.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				s, _ := strconv.Unquote(lit.Value)
				if flagRE.MatchString(s) {
					t.Errorf("%s: %s(%s) names a flag", fset.Position(lit.Pos()), name, lit.Value)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d files checked", checked)
	}
}
