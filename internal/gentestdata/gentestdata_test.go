package gentestdata

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft/internal/testshared"
)

// maxTestdataBytes bounds the committed test data: the repository stays small.
const maxTestdataBytes = 640 << 10

// listFiles returns every regular file under dir (slash-separated, relative) with its size.
func listFiles(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTestdataUpToDate regenerates every testdata file and compares it, byte for byte, with
// the committed one; files the generator does not write (other than the README) fail too.
func TestTestdataUpToDate(t *testing.T) {
	committed := testshared.Testdata(t, ".")
	fresh := t.TempDir()
	if err := Generate(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	want, have := listFiles(t, fresh), listFiles(t, committed)
	delete(have, "README.md")
	const fix = "if the change is intended, run `make testdata` (go generate ./internal/gentestdata) and commit testdata/"
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := have[n]; !ok {
			t.Errorf("testdata/%s is missing: %s", n, fix)
			continue
		}
		a, err := os.ReadFile(filepath.Join(fresh, n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(committed, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			at := 0
			for at < min(len(a), len(b)) && a[at] == b[at] {
				at++
			}
			t.Errorf("testdata/%s differs from what the generator writes now (%d bytes committed, %d generated, first difference at byte %d): %s", n, len(b), len(a), at, fix)
		}
	}
	for n := range have {
		if _, ok := want[n]; !ok {
			t.Errorf("testdata/%s is not written by the generator: remove it, or add it to gentestdata.Files", n)
		}
	}
}

// TestTestdataSmall keeps the committed test data small, and checks that every entry of
// Files exists (one file or directory per entry, split GGUF parts named after theirs).
func TestTestdataSmall(t *testing.T) {
	dir := testshared.Testdata(t, ".")
	var total int64
	files := listFiles(t, dir)
	for _, n := range files {
		total += n
	}
	if total > maxTestdataBytes {
		t.Errorf("testdata/ holds %d bytes, more than the %d allowed", total, maxTestdataBytes)
	}
	for _, f := range Files() {
		prefix := strings.TrimSuffix(f.Path, ".gguf")
		found := false
		for n := range files {
			found = found || n == f.Path || strings.HasPrefix(n, f.Path+"/") || strings.HasPrefix(n, prefix+"-00001-of-")
		}
		if !found {
			t.Errorf("entry %s has no file in testdata/", f.Path)
		}
	}
}
