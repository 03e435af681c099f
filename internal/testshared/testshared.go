// Package testshared locates the shared test data folder (../shared beside the project root)
// for tests. A test that needs it calls Path, which skips the test with one line naming the
// folder when it is absent, and never when it is present. Testdata locates the project's own
// test data (testdata/ at the project root, written by internal/gentestdata), which every
// clone has.
package testshared

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once    sync.Once
	root    string // the shared folder, or "" when absent
	why     string
	project string // the project root (the folder holding go.mod), or "" when not found
)

func locate() {
	dir, err := os.Getwd()
	if err != nil {
		why = err.Error()
		return
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			why = "no go.mod above the test's directory"
			return
		}
		dir = parent
	}
	project = dir
	s := filepath.Join(filepath.Dir(dir), "shared")
	if st, err := os.Stat(s); err != nil || !st.IsDir() {
		why = s + " is absent"
		return
	}
	root = s
}

// Dir returns the shared folder, or "" when it is absent.
func Dir() string {
	once.Do(locate)
	return root
}

// Path returns the path of rel (slash-separated, e.g. "fixtures/gguf/tiny-llama-base-f32.gguf")
// inside the shared folder. When the folder is absent it skips t with one line; when the
// folder is present but rel is not, it fails t, so a missing fixture is never a silent skip.
func Path(t testing.TB, rel string) string {
	t.Helper()
	once.Do(locate)
	if root == "" {
		t.Skipf("skipping: needs ../shared (the shared test data beside the project): %s", why)
	}
	p := filepath.Join(root, filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared test data missing although ../shared is present: %v", err)
	}
	return p
}

// Testdata returns the path of rel (slash-separated, e.g. "gguf/micro-base-f16.gguf") inside
// the project's own testdata/ folder. The folder is part of the repository, so a missing
// file fails t; it is never skipped.
func Testdata(t testing.TB, rel string) string {
	t.Helper()
	once.Do(locate)
	if project == "" {
		t.Fatalf("testdata %s: %s", rel, why)
	}
	p := filepath.Join(project, "testdata", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("project test data missing (go generate ./internal/gentestdata writes it): %v", err)
	}
	return p
}
