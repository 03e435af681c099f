package blend

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

// The tests here blend the project's own test data (testdata/: the micro model's base and
// tuned checkpoints as Hugging Face directories, F16 and Q8_0 GGUF, written by weft): files
// on disk with side files and key-values, against the float64 reference. The fixture tests
// do the same on checkpoints written by other tools; the in-memory tests cover the rules.

func openTestdata(t testing.TB, rel string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(testshared.Testdata(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTestdataHFLinear(t *testing.T) {
	base, tuned := openTestdata(t, "hf/micro-base"), openTestdata(t, "hf/micro-tuned")
	bi, ti := base.Index(), tuned.Index()
	out := writeOut(t, mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.3}), "out", ckpt.WriteOptions{Threads: 4})
	checkAgainst(t, out, sameDType(base), func(n string) []byte {
		return encode(t, weft.BF16, refLinear(decodeAll(t, bi[n]), [][]float64{decodeAll(t, ti[n])}, []float64{0.3}))
	})
	if len(out.Tensors) != len(base.Tensors) || len(out.Files) != 2 {
		t.Fatalf("%d tensors in %d files", len(out.Tensors), len(out.Files))
	}
	for _, x := range out.Tensors {
		if x.Shard != bi[x.Name].Shard {
			t.Fatalf("%s in shard %d, base has it in %d", x.Name, x.Shard, bi[x.Name].Shard)
		}
	}
	if !strings.Contains(out.Metadata[ops.KeySteps], `"op":"blend"`) || !strings.Contains(out.Metadata[ops.KeySteps], base.HeaderHash) {
		t.Fatalf("provenance: %v", out.Metadata)
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		a, _ := os.ReadFile(base.SideFile(name).Path)
		b, err := os.ReadFile(filepath.Join(out.Dir, name))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s not kept (%v)", name, err)
		}
	}
	if cfg := readConfig(t, out); cfg["torch_dtype"] != "bfloat16" || cfg["num_hidden_layers"] != 2.0 {
		t.Fatalf("config %v", cfg)
	}

	// Extrapolation to another type: every tensor F32, the config says so.
	out = writeOut(t, mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 1.5, Types: ops.Types{DType: weft.F32}}), "f32", ckpt.WriteOptions{})
	checkAgainst(t, out, func(string) weft.DType { return weft.F32 }, func(n string) []byte {
		return encode(t, weft.F32, refLinear(decodeAll(t, bi[n]), [][]float64{decodeAll(t, ti[n])}, []float64{1.5}))
	})
	if cfg := readConfig(t, out); cfg["torch_dtype"] != "float32" || cfg["vocab_size"] != 64.0 {
		t.Fatalf("config %v", cfg)
	}
}

// TestTestdataGGUFGroupsAndSchedule blends the F16 GGUF pair with a group rule, an
// embeddings rule and a layer schedule, in llama.cpp's naming.
func TestTestdataGGUFGroupsAndSchedule(t *testing.T) {
	base, tuned := openTestdata(t, "gguf/micro-base-f16.gguf"), openTestdata(t, "gguf/micro-tuned-f16.gguf")
	bi, ti := base.Index(), tuned.Index()
	alpha := func(name string) float64 {
		var l int
		switch {
		case strings.HasPrefix(name, "blk.") && strings.Contains(name, ".ffn_") && !strings.Contains(name, "norm"):
			return 0.8
		case name == "token_embd.weight":
			return -0.5
		}
		if _, err := fmt.Sscanf(name, "blk.%d.", &l); err == nil {
			return float64(l) // schedule 0..1 over two layers
		}
		return 0.2
	}
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.2, AlphaFor: []AlphaRule{{"mlp", 0.8}, {"embeddings", -0.5}}, Schedule: []float64{0, 1}})
	for _, s := range r.Steps {
		if s.Alpha != alpha(s.Name) {
			t.Fatalf("%s: alpha %v, want %v", s.Name, s.Alpha, alpha(s.Name))
		}
	}
	out := writeOut(t, r, "out.gguf", ckpt.WriteOptions{Threads: 3})
	checkAgainst(t, out, sameDType(base), func(n string) []byte {
		return encode(t, bi[n].DType, refLinear(decodeAll(t, bi[n]), [][]float64{decodeAll(t, ti[n])}, []float64{alpha(n)}))
	})
	if v, _ := out.GetKV("llama.block_count"); v != uint32(2) {
		t.Fatalf("llama.block_count = %v", v)
	}
	if v, _ := out.GetKV(ops.KeySteps); !strings.Contains(fmt.Sprint(v), `"op":"blend"`) {
		t.Fatalf("weft.op = %v", v)
	}
}

// TestTestdataQuantized blends the Q8_0 pair: each quantized tensor is the reference
// quantizer's output for the float64 blend of the dequantized inputs, within Q8_0's step of
// that blend; F32 norms are blended exactly.
func TestTestdataQuantized(t *testing.T) {
	base, tuned := openTestdata(t, "gguf/micro-base-q8_0.gguf"), openTestdata(t, "gguf/micro-tuned-q8_0.gguf")
	bi, ti := base.Index(), tuned.Index()
	out := writeOut(t, mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5}), "out.gguf", ckpt.WriteOptions{Threads: 4})
	nq := 0
	for _, x := range out.Tensors {
		blend := refLinear(decodeAll(t, bi[x.Name]), [][]float64{decodeAll(t, ti[x.Name])}, []float64{0.5})
		if x.DType != bi[x.Name].DType || !bytes.Equal(readAll(t, x), encode(t, x.DType, blend)) {
			t.Fatalf("%s (%v): bytes differ from quantize(blend of dequantized inputs)", x.Name, x.DType)
		}
		if x.DType != weft.Q8_0 {
			continue
		}
		nq++
		got := decodeAll(t, x)
		for b := 0; b < len(blend); b += 32 {
			m := 0.0
			for _, v := range blend[b : b+32] {
				m = math.Max(m, math.Abs(v))
			}
			for i := b; i < b+32; i++ {
				if e := math.Abs(got[i] - blend[i]); e > m/127+1e-7 {
					t.Fatalf("%s[%d]: |%g - %g| exceeds the Q8_0 step bound %g", x.Name, i, got[i], blend[i], m/127)
				}
			}
		}
	}
	if nq != 16 {
		t.Fatalf("%d Q8_0 tensors", nq)
	}
}

// TestTestdataAlphaZeroOne: alpha 0 gives the base's bytes, alpha 1 the tuned model's, in
// every testdata type.
func TestTestdataAlphaZeroOne(t *testing.T) {
	for _, pair := range [][3]string{
		{"hf/micro-base", "hf/micro-tuned", "out"},
		{"gguf/micro-base-f16.gguf", "gguf/micro-tuned-f16.gguf", "out.gguf"},
		{"gguf/micro-base-q8_0.gguf", "gguf/micro-tuned-q8_0.gguf", "out.gguf"},
	} {
		base, tuned := openTestdata(t, pair[0]), openTestdata(t, pair[1])
		for alpha, want := range map[float64]*weft.Checkpoint{0: base, 1: tuned} {
			out := writeOut(t, mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: alpha}), pair[2], ckpt.WriteOptions{})
			checkAgainst(t, out, sameDType(want), func(n string) []byte { return readAll(t, want.Tensor(n)) })
		}
	}
}

// TestTestdataThreadsAndChunks: one worker with one-element chunks and seven with larger
// ones write identical files.
func TestTestdataThreadsAndChunks(t *testing.T) {
	for _, c := range [][3]string{
		{"hf/micro-base", "hf/micro-tuned", "out.safetensors"},
		{"gguf/micro-base-q8_0.gguf", "gguf/micro-tuned-q8_0.gguf", "out.gguf"},
	} {
		var files [][]byte
		for _, wo := range []ckpt.WriteOptions{{Threads: 1, ChunkElems: 1}, {Threads: 7, ChunkElems: 3000}} {
			base, tuned := openTestdata(t, c[0]), openTestdata(t, c[1])
			path := filepath.Join(t.TempDir(), c[2])
			if err := ckpt.Write(context.Background(), mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 1.3}).Out, path, wo); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, b)
		}
		if !bytes.Equal(files[0], files[1]) {
			t.Fatalf("%s: output depends on threads and chunking", c[0])
		}
	}
}

// TestTestdataDiff compares the base with itself and with the tuned model, tensor by tensor
// against the float64 reference.
func TestTestdataDiff(t *testing.T) {
	for _, pair := range [][2]string{{"hf/micro-base", "hf/micro-tuned"}, {"gguf/micro-base-q8_0.gguf", "gguf/micro-tuned-q8_0.gguf"}} {
		a, b := openTestdata(t, pair[0]), openTestdata(t, pair[1])
		for _, d := range mustDiff(t, a, a, DiffOptions{Threads: 2}).Tensors {
			if d.Cosine != 1 || d.RelL2 != 0 || d.MaxAbs != 0 {
				t.Fatalf("%s vs itself: %+v", d.Name, d)
			}
		}
		r := mustDiff(t, a, b, DiffOptions{Threads: 3, ChunkElems: 100})
		if len(r.Tensors) != len(a.Tensors) {
			t.Fatalf("%d tensors compared", len(r.Tensors))
		}
		ai, bi := a.Index(), b.Index()
		for _, d := range r.Tensors {
			cos, rel, mx := refDiff(decodeAll(t, ai[d.Name]), decodeAll(t, bi[d.Name]))
			if math.Abs(d.Cosine-cos) > 1e-12 || math.Abs(d.RelL2-rel) > 1e-12*rel || d.MaxAbs != mx || rel == 0 {
				t.Fatalf("%s: got cos %v rel %v max %v, reference %v %v %v", d.Name, d.Cosine, d.RelL2, d.MaxAbs, cos, rel, mx)
			}
		}
	}
}
