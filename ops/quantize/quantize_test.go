package quantize_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/imatrix"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/quantize"
)

const vec = "vectors/llama-quantize/"

// quantizeTo applies a mixture to the 8-layer input and writes it.
func quantizeTo(t *testing.T, ft string, mat *imatrix.Matrix, dst string) *quantize.Result {
	t.Helper()
	in, err := ckpt.Open(testshared.Path(t, vec+"input-8l-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	f, ok := arch.ParseMixFileType(ft)
	if !ok {
		t.Fatal(ft)
	}
	res, err := quantize.Apply(in, quantize.Options{FileType: f, Imatrix: mat})
	if err != nil {
		t.Fatal(err)
	}
	if err := ckpt.Write(context.Background(), res.Out, dst, ckpt.WriteOptions{Threads: 2, Inputs: []*weft.Checkpoint{in}}); err != nil {
		t.Fatal(err)
	}
	return res
}

// compareWithReference checks a written output against llama-quantize's: the same tensors
// in the same order with the same types, shapes and bytes, and the same key-values in the
// same order; it returns whether the files are identical byte for byte.
func compareWithReference(t *testing.T, got, ref string) bool {
	t.Helper()
	a, err := ckpt.Open(got)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ckpt.Open(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors, llama-quantize %d", len(a.Tensors), len(b.Tensors))
	}
	differ := 0
	for i, x := range a.Tensors {
		y := b.Tensors[i]
		if x.Name != y.Name || x.DType != y.DType || !reflect.DeepEqual(x.Shape, y.Shape) {
			t.Errorf("tensor %d: %s %v %v, llama-quantize %s %v %v", i, x.Name, x.DType, x.Shape, y.Name, y.DType, y.Shape)
			continue
		}
		bx, err := ops.ReadAll(x)
		if err != nil {
			t.Fatal(err)
		}
		by, err := ops.ReadAll(y)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bx, by) {
			differ++
			t.Errorf("tensor %s (%v): bytes differ from llama-quantize's", x.Name, x.DType)
		}
	}
	if !reflect.DeepEqual(a.KV, b.KV) {
		t.Errorf("key-values differ:\n got %v\nwant %v", keys(a.KV), keys(b.KV))
	}
	ga, _ := os.ReadFile(got)
	gb, _ := os.ReadFile(ref)
	return differ == 0 && bytes.Equal(ga, gb)
}

func keys(kvs []weft.KV) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

// TestMatchesLlamaQuantizeOutputs quantizes the 8-layer input with each mixture whose
// llama-quantize output is kept, with and without the importance matrix, and compares
// every tensor's bytes and the key-values; the files come out identical byte for byte.
func TestMatchesLlamaQuantizeOutputs(t *testing.T) {
	mat, err := imatrix.Open(testshared.Path(t, vec+"imatrix.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	// llama-quantize recorded the matrix under the name given on its command line.
	mat.File = "imatrix.gguf"
	for _, c := range []struct {
		ft  string
		mat *imatrix.Matrix
		ref string
	}{
		{"Q4_K_M", nil, "out-8l-Q4_K_M.gguf"},
		{"Q3_K_M", nil, "out-8l-Q3_K_M.gguf"},
		{"Q5_K_S", nil, "out-8l-Q5_K_S.gguf"},
		{"Q2_K", nil, "out-8l-Q2_K.gguf"},
		{"Q4_K_M", mat, "out-8l-imat-Q4_K_M.gguf"},
		{"Q2_K", mat, "out-8l-imat-Q2_K.gguf"},
		{"IQ4_XS", mat, "out-8l-imat-IQ4_XS.gguf"},
	} {
		t.Run(c.ref, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "x.gguf")
			quantizeTo(t, c.ft, c.mat, dst)
			if !compareWithReference(t, dst, testshared.Path(t, vec+c.ref)) {
				t.Errorf("%s: not identical to llama-quantize's file", c.ref)
			}
		})
	}
}

// TestLegacyImatrixSameTensors: the .dat matrix gives the same tensors as the GGUF one
// (llama-quantize found the same); only quantize.imatrix.file differs.
func TestLegacyImatrixSameTensors(t *testing.T) {
	dat, err := imatrix.Open(testshared.Path(t, vec+"imatrix.dat"))
	if err != nil {
		t.Fatal(err)
	}
	dat.File = "imatrix.gguf"
	dst := filepath.Join(t.TempDir(), "x.gguf")
	quantizeTo(t, "IQ4_XS", dat, dst)
	if !compareWithReference(t, dst, testshared.Path(t, vec+"out-8l-imat-IQ4_XS.gguf")) {
		t.Error("not identical to llama-quantize's file")
	}
}

func TestQ2KSNeedsImatrix(t *testing.T) {
	in, err := ckpt.Open(testshared.Path(t, vec+"input-8l-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	f, _ := arch.ParseMixFileType("Q2_K_S")
	_, err = quantize.Apply(in, quantize.Options{FileType: f})
	if !errors.Is(err, quantize.ErrNeedsImatrix) {
		t.Fatalf("Q2_K_S without an importance matrix: %v", err)
	}
	for _, s := range []string{"blk.0.attn_k.weight", "q2_K"} {
		if !bytes.Contains([]byte(err.Error()), []byte(s)) {
			t.Errorf("error %q does not name %s, as llama-quantize does", err, s)
		}
	}
}

func TestOverridesAndPrune(t *testing.T) {
	in, err := ckpt.Open(testshared.Path(t, vec+"input-8l-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var ov []quantize.Override
	for _, s := range []string{"general.name=str:pruned", "llama.context_length=int:-512", "weft.x=float:0.5", "weft.b=bool:true"} {
		o, err := quantize.ParseOverride(s)
		if err != nil {
			t.Fatal(err)
		}
		ov = append(ov, o)
	}
	for _, bad := range []string{"k=int:x", "k=int:5000000000", "k=str:" + string(make([]byte, 128)), "k=u32:5", "split.count=int:2", "k"} {
		if _, err := quantize.ParseOverride(bad); err == nil {
			t.Errorf("%.30q accepted", bad)
		}
	}
	prune, err := quantize.ParsePrune("5,2,2")
	if err != nil || !reflect.DeepEqual(prune, []int{2, 5}) {
		t.Fatalf("ParsePrune: %v %v", prune, err)
	}
	f, _ := arch.ParseMixFileType("Q8_0")
	res, err := quantize.Apply(in, quantize.Options{FileType: f, Overrides: ov, PruneLayers: prune})
	if err != nil {
		t.Fatal(err)
	}
	out := res.Out
	// The overrides come after general.file_type, in order, then block_count.
	want := []weft.KV{
		{Key: "general.quantization_version", Value: uint32(2)}, {Key: "general.file_type", Value: uint32(7)},
		{Key: "general.name", Value: "pruned"}, {Key: "llama.context_length", Value: uint32(512)},
		{Key: "weft.x", Value: float32(0.5)}, {Key: "weft.b", Value: true}, {Key: "llama.block_count", Value: uint32(6)},
	}
	if got := out.KV[len(out.KV)-len(want):]; !reflect.DeepEqual(got, want) {
		t.Errorf("last key-values %v, want %v", got, want)
	}
	// Layers 0,1 stay; 3,4 become 2,3; 6,7 become 4,5; the data follows the names.
	idx := out.Index()
	if idx["blk.6.attn_q.weight"] != nil || idx["blk.5.attn_q.weight"] == nil {
		t.Fatal("layers not renumbered")
	}
	src := in.Index()
	for nw, old := range map[string]string{"blk.1.ffn_up.weight": "blk.1.ffn_up.weight", "blk.2.ffn_up.weight": "blk.3.ffn_up.weight", "blk.5.attn_norm.weight": "blk.7.attn_norm.weight"} {
		a, _ := ops.ReadAll(idx[nw])
		b, _ := ops.ReadAll(src[old])
		if idx[nw].DType == weft.F32 && !bytes.Equal(a, b) {
			t.Errorf("%s does not hold %s", nw, old)
		}
		if idx[nw].DType != weft.F32 && len(a) == len(b) {
			t.Errorf("%s: not quantized", nw)
		}
	}
	if n := len(out.Tensors); n != len(in.Tensors)-2*9 {
		t.Errorf("%d tensors after pruning 2 layers of 9 tensors from %d", n, len(in.Tensors))
	}
	if _, _, _, err := quantize.Prune(in, []int{8}); err == nil {
		t.Error("pruning a layer the model does not have accepted")
	}
}
