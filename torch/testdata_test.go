package torch

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/safetensors"
)

// The tests here run on the project's own test data: testdata/torch holds the micro Llama
// base model as a zip archive (BF16 storages, the bytes of testdata/hf/micro-base) and in the
// legacy serialization (F16 storages). The fixture tests check the same code against files
// written by torch.save.

func readTestdataFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(testshared.Testdata(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hfBase returns the tensors of testdata/hf/micro-base, read by the safetensors reader.
func hfBase(t *testing.T) *weft.Checkpoint {
	t.Helper()
	c, err := safetensors.OpenDir(testshared.Testdata(t, "hf/micro-base"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestReadTestdata reads both serializations of the micro model from memory: the zip's
// tensors are the safetensors directory's, byte for byte; the legacy file's F16 values are
// within rounding of the same BF16 values (both round one float64 value); a file cut
// anywhere is an error that names it.
func TestReadTestdata(t *testing.T) {
	want := hfBase(t)
	for file, legacy := range map[string]bool{"micro-base-bf16.bin": false, "micro-base-f16-legacy.bin": true} {
		t.Run(file, func(t *testing.T) {
			raw := readTestdataFile(t, "torch/"+file)
			f, err := Read(bytes.NewReader(raw), int64(len(raw)), file)
			if err != nil {
				t.Fatal(err)
			}
			if f.Legacy != legacy || len(f.Tensors) != len(want.Tensors) || len(f.HeaderHash) != 64 {
				t.Fatalf("legacy %v, %d tensors, hash %q", f.Legacy, len(f.Tensors), f.HeaderHash)
			}
			for i, x := range f.Tensors {
				w := want.Tensors[i]
				if x.Name != w.Name || !reflect.DeepEqual(x.Shape, w.Shape) || x.File != file {
					t.Fatalf("tensor %d: %s %v in %q, want %s %v", i, x.Name, x.Shape, x.File, w.Name, w.Shape)
				}
				got, ref := readAll(t, x), readAll(t, w)
				if !legacy {
					if x.DType != weft.BF16 || !bytes.Equal(got, ref) {
						t.Fatalf("%s: %v, bytes differ from the safetensors file's", x.Name, x.DType)
					}
					continue
				}
				if x.DType != weft.F16 {
					t.Fatalf("%s: %v", x.Name, x.DType)
				}
				h, b := decode(t, weft.F16, got), decode(t, weft.BF16, ref)
				for j := range h {
					// BF16 keeps 8 significant bits, F16 11: each is within half its own
					// spacing of the value both were rounded from.
					if d := math.Abs(h[j] - b[j]); d > math.Abs(b[j])/256+1e-7 {
						t.Fatalf("%s[%d]: F16 %v, BF16 %v", x.Name, j, h[j], b[j])
					}
				}
			}
			for _, cut := range []int{0, 1, 10, 100, len(raw) / 2, len(raw) - 1} {
				if _, err := Read(bytes.NewReader(raw[:cut]), int64(cut), "cut.bin"); err == nil || !strings.Contains(err.Error(), "cut.bin") {
					t.Errorf("cut at %d: %v", cut, err)
				}
			}
		})
	}
}

// TestLazyTestdata: opening reads the headers, not the 48 KiB of storages (at most 20 KiB:
// the zip directory and data.pkl, or the legacy pickles with 4 KiB of read-ahead each, and
// the storages' counts); reading a tensor reads exactly its bytes.
func TestLazyTestdata(t *testing.T) {
	for _, file := range []string{"micro-base-bf16.bin", "micro-base-f16-legacy.bin"} {
		raw := readTestdataFile(t, "torch/"+file)
		cr := &countingReader{r: bytes.NewReader(raw)}
		f, err := Read(cr, int64(len(raw)), file)
		if err != nil {
			t.Fatal(err)
		}
		opened := cr.n.Load()
		if opened > 20<<10 {
			t.Errorf("%s: opening read %d bytes of a %d-byte file", file, opened, len(raw))
		}
		x := f.Tensors[2] // model.layers.0.mlp.down_proj.weight, 4 KB
		readAll(t, x)
		if got := cr.n.Load() - opened; got != x.MustSize() {
			t.Errorf("%s: reading %q (%d bytes) read %d bytes", file, x.Name, x.MustSize(), got)
		}
	}
}

// TestOpenDirTestdata opens Hugging Face directories of .bin files built from the testdata
// archive: a single pytorch_model.bin, and two shards with an index.
func TestOpenDirTestdata(t *testing.T) {
	raw := readTestdataFile(t, "torch/micro-base-bf16.bin")
	want := hfBase(t)

	single := t.TempDir()
	writeFile(t, filepath.Join(single, SingleName), raw)
	writeFile(t, filepath.Join(single, "config.json"), []byte(`{"model_type":"llama"}`))
	c, err := OpenDir(single)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Format != weft.Torch || len(c.Files) != 1 || len(c.Tensors) != len(want.Tensors) || len(c.SideFiles) != 1 {
		t.Fatalf("format %s, files %v, %d tensors, side files %v", c.Format, c.Files, len(c.Tensors), c.SideFiles)
	}

	sharded := t.TempDir()
	s1, s2 := "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"
	writeFile(t, filepath.Join(sharded, s1), raw)
	pkl := statePickle([]item{{key: "extra.weight", v: &view{cls: "FloatStorage", key: "0", numel: 4, shape: []int64{2, 2}, stride: []int64{2, 1}}}})
	writeFile(t, filepath.Join(sharded, s2), archive(t, pkl, map[string][]byte{"0": f32bytes(1, 2, 3, 4)}))
	wm := map[string]string{"extra.weight": s2}
	for _, x := range want.Tensors {
		wm[x.Name] = s1
	}
	writeIndex(t, sharded, wm)
	d, err := OpenDir(sharded)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if len(d.Files) != 2 || len(d.Tensors) != len(want.Tensors)+1 {
		t.Fatalf("files %v, %d tensors", d.Files, len(d.Tensors))
	}
	for i, w := range want.Tensors {
		x := d.Tensors[i]
		if x.Name != w.Name || x.Shard != 0 || !bytes.Equal(readAll(t, x), readAll(t, w)) {
			t.Fatalf("tensor %d: %s in shard %d, or its bytes, differ from %s", i, x.Name, x.Shard, w.Name)
		}
	}
	if x := d.Tensors[len(want.Tensors)]; x.Name != "extra.weight" || x.Shard != 1 || !reflect.DeepEqual(decode(t, weft.F32, readAll(t, x)), []float64{1, 2, 3, 4}) {
		t.Errorf("extra.weight: %+v", x.TensorInfo)
	}
}
