package gentestdata

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
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

// TestTestdataSmall keeps the committed test data small.
func TestTestdataSmall(t *testing.T) {
	var total int64
	for _, n := range listFiles(t, testshared.Testdata(t, ".")) {
		total += n
	}
	if total > maxTestdataBytes {
		t.Errorf("testdata/ holds %d bytes, more than the %d allowed", total, maxTestdataBytes)
	}
}

// TestTestdataReadsBack opens every entry with ckpt.Open, which recognises each by its
// content (safetensors directory, GGUF and its split parts, torch zip and legacy), and
// checks that it holds exactly what the generator computed: the same tensors in the same
// order, with the same types, shapes and bytes, the same GGUF key-values (the split keys
// aside) and the same side files.
func TestTestdataReadsBack(t *testing.T) {
	dir := testshared.Testdata(t, ".")
	for _, f := range Files() {
		t.Run(f.Path, func(t *testing.T) {
			got, err := ckpt.Open(f.OpenPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			want := f.Checkpoint()
			wantFormat := want.Format
			if strings.HasPrefix(f.Path, "torch/") {
				wantFormat = weft.Torch
			}
			if got.Format != wantFormat || len(got.Tensors) != len(want.Tensors) {
				t.Fatalf("format %s with %d tensors, want %s with %d", got.Format, len(got.Tensors), wantFormat, len(want.Tensors))
			}
			for i, w := range want.Tensors {
				g := got.Tensors[i]
				if g.Name != w.Name || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) {
					t.Fatalf("tensor %d: %s %v %v, want %s %v %v", i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
				}
				gb, err := ops.ReadAll(g)
				if err != nil {
					t.Fatal(err)
				}
				wb, err := ops.ReadAll(w)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(gb, wb) {
					t.Fatalf("tensor %s: bytes read back differ from those written", w.Name)
				}
			}
			if want.Format == weft.GGUF {
				var kv []weft.KV
				for _, x := range got.KV {
					if !strings.HasPrefix(x.Key, "split.") {
						kv = append(kv, x)
					}
				}
				if !reflect.DeepEqual(kv, want.KV) {
					t.Errorf("key-values read back differ:\n got %v\nwant %v", kv, want.KV)
				}
			}
			if got.Format == weft.Safetensors && got.Dir != "" {
				if len(got.SideFiles) != len(want.SideFiles) {
					t.Fatalf("%d side files, want %d", len(got.SideFiles), len(want.SideFiles))
				}
				for _, sf := range want.SideFiles {
					g := got.SideFile(sf.Name)
					if g == nil {
						t.Fatalf("side file %s missing", sf.Name)
					}
					b, err := os.ReadFile(g.Path)
					if err != nil || !bytes.Equal(b, sf.Data) {
						t.Fatalf("side file %s differs (%v)", sf.Name, err)
					}
				}
			}
		})
	}
}
