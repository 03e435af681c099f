package gguf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

// The tests here run on the project's own test data (testdata/gguf, written by weft): the
// micro Llama model in F16 and Q8_0, one tensor of every GGML type weft quantizes, and a
// three-part split. The fixture tests check the same code against files written by ggml.

// testdataGGUFs returns the single-file GGUFs of testdata/gguf.
func testdataGGUFs(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(testshared.Testdata(t, "gguf"), "*.gguf"))
	if err != nil || len(paths) != 5 {
		t.Fatalf("found %d GGUFs in testdata/gguf (%v), want 5", len(paths), err)
	}
	return paths
}

func readTestdata(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(testshared.Testdata(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLayoutRoundTripTestdata lays out every testdata GGUF again from its key-values and
// tensor infos: the header comes out byte for byte, the file too, and gguf-parser-go agrees
// with the reader on every tensor (the type ids of every quantized type included).
func TestLayoutRoundTripTestdata(t *testing.T) {
	for _, p := range testdataGGUFs(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, l, paths := roundTrip(t, b, filepath.Base(p), t.TempDir(), LayoutOptions{})
			if len(paths) != 1 || l.Files[0].Size != int64(len(b)) || string(l.Files[0].Header) != string(b[:f.DataOffset]) {
				t.Fatalf("%d files; header or size differ from the file's", len(paths))
			}
			out, err := os.ReadFile(paths[0])
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != string(b) {
				t.Fatal("written file differs from the input")
			}
			crossCheck(t, p, f)
		})
	}
}

// TestTypesTestdata: types.gguf holds one tensor of every quantized type, named by its type,
// in ggml's type ids as gguf-parser-go reads them.
func TestTypesTestdata(t *testing.T) {
	p := testshared.Testdata(t, "gguf/types.gguf")
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gf, err := parser.ParseGGUFFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tensors) < 20 || len(gf.TensorInfos) != len(c.Tensors) {
		t.Fatalf("%d tensors, gguf-parser-go %d", len(c.Tensors), len(gf.TensorInfos))
	}
	for i, x := range c.Tensors {
		id, ok := x.DType.GGML()
		if !ok || x.Name != x.DType.String() || uint32(gf.TensorInfos[i].Type) != id || !strings.EqualFold(gf.TensorInfos[i].Type.String(), x.Name) {
			t.Errorf("tensor %q: type %v (ggml id %d), gguf-parser-go %v (%d)", x.Name, x.DType, id, gf.TensorInfos[i].Type, gf.TensorInfos[i].Type)
		}
		if want := x.Rows() * 256 / x.DType.BlockSize() * x.DType.BlockBytes(); x.MustSize() != want {
			t.Errorf("%s: %d bytes, want %d", x.Name, x.MustSize(), want)
		}
	}
}

// TestSplitTestdata splits testdata GGUFs by size, by tensor count and one tensor per part,
// with every check of checkSplit (names, split keys, limits, gguf-parser-go, reassembly,
// byte-identical merge).
func TestSplitTestdata(t *testing.T) {
	checkSplit(t, readTestdata(t, "gguf/micro-base-f16.gguf"), LayoutOptions{SplitMaxSize: 16 << 10}, 0)
	checkSplit(t, readTestdata(t, "gguf/micro-tuned-q8_0.gguf"), LayoutOptions{SplitMaxTensors: 4}, 6)
	checkSplit(t, readTestdata(t, "gguf/types.gguf"), LayoutOptions{SplitMaxTensors: 1}, 0)
	checkSplit(t, readTestdata(t, "gguf/micro-base-q8_0.gguf"), LayoutOptions{SplitMaxSize: 12 << 10, SplitMaxTensors: 5}, 0)
}

// TestOpenSplitTestdata opens the committed three-part split from its first part: the
// parts' tensors follow in order, the split keys are gone, and gguf-parser-go sees the same
// whole model; a later part names the first one to open.
func TestOpenSplitTestdata(t *testing.T) {
	first := testshared.Testdata(t, "gguf/split/micro-base-q4_0-00001-of-00003.gguf")
	c, err := Open(first)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Files) != 3 || len(c.Tensors) != 21 {
		t.Fatalf("%d files, %d tensors", len(c.Files), len(c.Tensors))
	}
	for _, kv := range c.KV {
		if strings.HasPrefix(kv.Key, "split.") {
			t.Errorf("key %s kept", kv.Key)
		}
	}
	gf, err := parser.ParseGGUFFile(first)
	if err != nil {
		t.Fatal(err)
	}
	if len(gf.SplitSizes) != 3 || len(gf.TensorInfos) != len(c.Tensors) {
		t.Fatalf("gguf-parser-go: %d parts, %d tensors", len(gf.SplitSizes), len(gf.TensorInfos))
	}
	last := 0
	for i, x := range c.Tensors {
		if gf.TensorInfos[i].Name != x.Name || x.Shard < last || x.File != c.Files[x.Shard] {
			t.Errorf("tensor %d: %s in part %d (%s); gguf-parser-go %s", i, x.Name, x.Shard, x.File, gf.TensorInfos[i].Name)
		}
		last = x.Shard
		if x.DType != weft.Q4_0 && len(x.Shape) != 1 {
			t.Errorf("%s: %v", x.Name, x.DType)
		}
	}
	if last != 2 {
		t.Errorf("last tensor in part %d", last)
	}
	second := strings.Replace(first, "-00001-of-", "-00002-of-", 1)
	if _, err := Open(second); err == nil || !strings.Contains(err.Error(), "open the first part, micro-base-q4_0-00001-of-00003.gguf") {
		t.Errorf("opening part 2: %v", err)
	}
}
