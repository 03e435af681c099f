package ckpt_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/gentestdata"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

// The tests here run on the project's own test data (testdata/, written by weft's writers);
// the fixture tests in ckpt_test.go do the same on files written by other tools.

// sameFiles fails unless every file under want has a byte-identical twin under got, and got
// holds no other file.
func sameFiles(t *testing.T, got, want string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: differs from %s (%v)", filepath.Join(got, rel), p, err)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(got); len(ents) != n {
		t.Errorf("%s holds %d entries, want %d", got, len(ents), n)
	}
}

// TestRewriteTestdata writes every testdata entry back out with 1 and 3 workers and small
// chunks. What weft wrote comes back byte for byte: GGUF files, the parts of the split GGUF
// and Hugging Face directories (shards, index, side files). The torch archive, written as a
// Hugging Face directory sharded like testdata/hf/micro-base, gives that directory's shards
// and index byte for byte; the legacy file's tensors read back unchanged.
func TestRewriteTestdata(t *testing.T) {
	td := testshared.Testdata(t, ".")
	for _, f := range gentestdata.Files() {
		t.Run(f.Path, func(t *testing.T) {
			in, err := ckpt.Open(f.OpenPath(td))
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			dir := t.TempDir()
			out := filepath.Join(dir, filepath.Base(f.Path))
			opts := ckpt.WriteOptions{ChunkBytes: 1000, ChunkElems: 100, Force: true}
			if strings.Contains(f.Path, "/split/") {
				opts.SplitMaxSize = gentestdata.GGUFSplitSize
			}
			if in.Format == weft.Torch {
				out = strings.TrimSuffix(out, ".bin")
				opts.MaxShardSize = gentestdata.HFShardSize
			}
			for _, threads := range []int{1, 3} {
				opts.Threads = threads
				if err := ckpt.Write(context.Background(), in, out, opts); err != nil {
					t.Fatal(err)
				}
				switch {
				case in.Format == weft.GGUF:
					for _, p := range in.Files {
						a, _ := os.ReadFile(p)
						b, err := os.ReadFile(filepath.Join(dir, filepath.Base(p)))
						if err != nil || !bytes.Equal(a, b) {
							t.Fatalf("%s: rewrite is not byte-identical (%v)", filepath.Base(p), err)
						}
					}
				case in.Dir != "":
					sameFiles(t, out, in.Dir)
				case strings.HasSuffix(f.Path, "-bf16.bin"):
					for _, name := range []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"} {
						a, _ := os.ReadFile(filepath.Join(td, "hf/micro-base", name))
						b, err := os.ReadFile(filepath.Join(out, name))
						if err != nil || !bytes.Equal(a, b) {
							t.Fatalf("%s differs from testdata/hf/micro-base's (%v)", name, err)
						}
					}
				}
				back, err := ckpt.Open(out)
				if err != nil {
					if in.Format != weft.GGUF || len(in.Files) == 1 {
						t.Fatal(err)
					}
					back, err = ckpt.Open(filepath.Join(dir, filepath.Base(in.Files[0])))
					if err != nil {
						t.Fatal(err)
					}
				}
				if len(back.Tensors) != len(in.Tensors) {
					t.Fatalf("%d tensors back, want %d", len(back.Tensors), len(in.Tensors))
				}
				for i, x := range in.Tensors {
					a, err := ops.ReadAll(x)
					if err != nil {
						t.Fatal(err)
					}
					b, err := ops.ReadAll(back.Tensors[i])
					if err != nil {
						t.Fatal(err)
					}
					if back.Tensors[i].Name != x.Name || back.Tensors[i].DType != x.DType || !bytes.Equal(a, b) {
						t.Fatalf("tensor %s differs after the rewrite", x.Name)
					}
				}
				back.Close()
			}
		})
	}
}

// TestRefusesToOverwriteTestdataInputs works on copies of testdata entries: writing over an
// input (the same path, a hard link, a symbolic link, a directory that is or holds the input)
// is refused and leaves the input as it was.
func TestRefusesToOverwriteTestdataInputs(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(testshared.Testdata(t, "gguf/micro-base-q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.gguf")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(in, filepath.Join(dir, "hard.gguf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(in, filepath.Join(dir, "sym.gguf")); err != nil {
		t.Fatal(err)
	}
	c, err := ckpt.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, target := range []string{"in.gguf", "hard.gguf", "sym.gguf"} {
		if err := ckpt.Write(context.Background(), c, filepath.Join(dir, target), ckpt.WriteOptions{Force: true}); !errors.Is(err, ckpt.ErrInputOutput) {
			t.Fatalf("writing over %s: got %v, want ErrInputOutput", target, err)
		}
	}
	if after, _ := os.ReadFile(in); !bytes.Equal(after, data) {
		t.Fatal("input changed")
	}

	hf := filepath.Join(dir, "models", "base")
	if err := os.CopyFS(hf, os.DirFS(testshared.Testdata(t, "hf/micro-base"))); err != nil {
		t.Fatal(err)
	}
	h, err := ckpt.Open(hf)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, target := range []string{hf, filepath.Dir(hf)} {
		if err := ckpt.Write(context.Background(), h, target, ckpt.WriteOptions{Force: true}); !errors.Is(err, ckpt.ErrInputOutput) {
			t.Fatalf("writing over %s: got %v, want ErrInputOutput", target, err)
		}
	}
	sameFiles(t, hf, testshared.Testdata(t, "hf/micro-base"))
}
