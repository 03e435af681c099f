package ops_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/imatrix"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/convert"
)

const vec = "vectors/llama-quantize/"

// quantizeTo converts the 8-layer input with llama-quantize's options q (as weft convert
// does, without recording provenance) and writes it.
func quantizeTo(t *testing.T, q *ops.Quant, dst string) *ops.Result {
	t.Helper()
	in, err := ckpt.Open(testshared.Path(t, vec+"input-8l-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	op := &convert.Options{Types: ops.Types{Quant: q}}
	res, err := ops.Build(op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.GGUF, nil)
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
func compareWithReference(t *testing.T, got, ref string, datMatrix bool) bool {
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
	if datMatrix {
		// llama-quantize records the matrix's file name: only that key-value differs.
		for i := range b.KV {
			if b.KV[i].Key == imatrix.KeyQuantizeFile {
				b.KV[i].Value = "imatrix.dat"
			}
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

// imatrixRef names the shared importance matrix as llama-quantize was given it
// ("imatrix.gguf", which it records): the test runs in the matrix's folder.
func imatrixRef(t *testing.T, name string) *ops.ImatrixRef {
	t.Helper()
	p := testshared.Path(t, vec+name)
	wd, _ := os.Getwd()
	if err := os.Chdir(filepath.Dir(p)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(wd) })
	return &ops.ImatrixRef{Path: name}
}

// TestMatchesLlamaQuantizeOutputs converts the 8-layer input with each mixture whose
// llama-quantize output is kept, with and without the importance matrix (GGUF and legacy
// formats), and compares every tensor's bytes and the key-values; the files come out
// identical byte for byte (weft convert adds its provenance key-values after these).
func TestMatchesLlamaQuantizeOutputs(t *testing.T) {
	for _, c := range []struct {
		ft, mat, ref string
	}{
		{"Q4_K_M", "", "out-8l-Q4_K_M.gguf"},
		{"Q3_K_M", "", "out-8l-Q3_K_M.gguf"},
		{"Q5_K_S", "", "out-8l-Q5_K_S.gguf"},
		{"Q2_K", "", "out-8l-Q2_K.gguf"},
		{"Q4_K_M", "imatrix.gguf", "out-8l-imat-Q4_K_M.gguf"},
		{"Q2_K", "imatrix.gguf", "out-8l-imat-Q2_K.gguf"},
		{"IQ4_XS", "imatrix.gguf", "out-8l-imat-IQ4_XS.gguf"},
		{"IQ4_XS", "imatrix.dat", "out-8l-imat-IQ4_XS.gguf"},
	} {
		t.Run(c.ref+"/"+c.mat, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "x.gguf")
			ref := testshared.Path(t, vec+c.ref)
			q := &ops.Quant{FileType: c.ft}
			if c.mat != "" {
				q.Imatrix = imatrixRef(t, c.mat)
			}
			quantizeTo(t, q, dst)
			same := compareWithReference(t, dst, ref, c.mat == "imatrix.dat")
			if c.mat != "imatrix.dat" && !same {
				t.Errorf("%s: not identical to llama-quantize's file", c.ref)
			}
		})
	}
}

func TestQ2KSNeedsImatrix(t *testing.T) {
	in, err := ckpt.Open(testshared.Path(t, vec+"input-8l-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	op := &convert.Options{Types: ops.Types{Quant: &ops.Quant{FileType: "Q2_K_S"}}}
	_, err = ops.Build(op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.GGUF, nil)
	if !errors.Is(err, ops.ErrNeedsImatrix) {
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
	var ov []ops.KVOverride
	for _, s := range []string{"general.name=str:pruned", "llama.context_length=int:-512", "weft.x=float:0.5", "weft.b=bool:true"} {
		o, err := ops.ParseKVOverride(s)
		if err != nil {
			t.Fatal(err)
		}
		ov = append(ov, o)
	}
	for _, bad := range []string{"k=int:x", "k=int:5000000000", "k=str:" + strings.Repeat("s", 128), "k=u32:5", "split.count=int:2", "general.alignment=int:64", "k"} {
		if _, err := ops.ParseKVOverride(bad); err == nil {
			t.Errorf("%.30q accepted", bad)
		}
	}
	prune, err := ops.ParsePruneLayers("5,2,2")
	if err != nil || !reflect.DeepEqual(prune, []int{2, 5}) {
		t.Fatalf("ParsePruneLayers: %v %v", prune, err)
	}
	op := &convert.Options{Types: ops.Types{Quant: &ops.Quant{FileType: "Q8_0", Overrides: ov, PruneLayers: prune}}}
	res, err := ops.Build(op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.GGUF, nil)
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
		if idx[nw].DType != weft.F32 {
			c, _ := ops.Cast(src[old], idx[nw].DType)
			cb, _ := ops.ReadAll(c)
			if !bytes.Equal(a, cb) {
				t.Errorf("%s is not %s quantized", nw, old)
			}
		}
	}
	if n := len(out.Tensors); n != len(in.Tensors)-2*9 {
		t.Errorf("%d tensors after pruning 2 layers of 9 tensors from %d", n, len(in.Tensors))
	}
	op.Quant.PruneLayers = []int{8}
	if _, err := ops.Build(op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.GGUF, nil); err == nil {
		t.Error("pruning a layer the model does not have accepted")
	}
	// Every option is for GGUF outputs.
	if _, err := ops.Build(op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.Safetensors, nil); err == nil {
		t.Error("a mixture for a safetensors output accepted")
	}
}

// TestTypeRulesBeforeMixture: weft's type rules come before the mixture (the mixture's
// choices for the other tensors do not change); llama-quantize's --tensor-type rules are
// within it.
func TestTypeRulesBeforeMixture(t *testing.T) {
	in, err := ckpt.Open(testshared.Path(t, vec+"input-8l-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	build := func(types ops.Types) map[string]weft.DType {
		op := &convert.Options{Types: types}
		res, err := ops.Build(op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.GGUF, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]weft.DType{}
		for _, x := range res.Out.Tensors {
			m[x.Name] = x.DType
		}
		return m
	}
	mix := build(ops.Types{Quant: &ops.Quant{FileType: "Q4_K_M"}})
	ruled := build(ops.Types{Quant: &ops.Quant{FileType: "Q4_K_M"}, TypeFor: []ops.TypeRule{{Pattern: "blk.*.attn_v.weight", DType: weft.Q8_0}}})
	for name, dt := range mix {
		want := dt
		if strings.HasSuffix(name, "attn_v.weight") {
			want = weft.Q8_0
		}
		if ruled[name] != want {
			t.Errorf("%s: %v, want %v", name, ruled[name], want)
		}
	}
	if mix["blk.0.attn_v.weight"] != weft.Q6_K || mix["blk.1.attn_v.weight"] != weft.Q4_K {
		t.Errorf("mixture attn_v: %v %v", mix["blk.0.attn_v.weight"], mix["blk.1.attn_v.weight"])
	}
}
