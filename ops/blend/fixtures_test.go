package blend

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/weft-ml/weft/quant"
	"github.com/weft-ml/weft/sidefile"
)

func fixture(t testing.TB, rel string) string {
	t.Helper()
	return testshared.Path(t, "fixtures/"+rel)
}

func open(t testing.TB, rel string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(fixture(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// writeOut writes a blend result and opens it again.
func writeOut(t testing.TB, r *Result, name string, opts ckpt.WriteOptions) *weft.Checkpoint {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := ckpt.Write(context.Background(), r.Out, path, opts); err != nil {
		t.Fatal(err)
	}
	c, err := ckpt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkAgainst compares every tensor of got with want(name) encoded in the tensor's dtype.
func checkAgainst(t testing.TB, got *weft.Checkpoint, wantDT func(string) weft.DType, want func(name string) []byte) {
	t.Helper()
	for _, x := range got.Tensors {
		if d := wantDT(x.Name); x.DType != d {
			t.Fatalf("%s: dtype %v, want %v", x.Name, x.DType, d)
		}
		if w := want(x.Name); !bytes.Equal(readAll(t, x), w) {
			t.Fatalf("%s: bytes differ from the reference", x.Name)
		}
	}
}

func sameDType(c *weft.Checkpoint) func(string) weft.DType {
	idx := c.Index()
	return func(n string) weft.DType { return idx[n].DType }
}

func TestFixtureHFLinear(t *testing.T) {
	base, tuned := open(t, "hf/tiny-llama-base"), open(t, "hf/tiny-llama-tuned")
	bi, ti := base.Index(), tuned.Index()
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.3})
	out := writeOut(t, r, "out", ckpt.WriteOptions{Threads: 4})
	if len(out.Tensors) != len(base.Tensors) {
		t.Fatalf("%d tensors", len(out.Tensors))
	}
	checkAgainst(t, out, sameDType(base), func(n string) []byte {
		return encode(t, weft.BF16, refLinear(decodeAll(t, bi[n]), [][]float64{decodeAll(t, ti[n])}, []float64{0.3}))
	})
	// Sharded like the base: the same tensors in each shard.
	if len(out.Files) != len(base.Files) {
		t.Fatalf("%d shards, base has %d", len(out.Files), len(base.Files))
	}
	for _, x := range out.Tensors {
		if x.Shard != bi[x.Name].Shard {
			t.Fatalf("%s in shard %d, base has it in %d", x.Name, x.Shard, bi[x.Name].Shard)
		}
	}
	// Provenance.
	if p, err := ops.ReadProvenance(out); err != nil || p == nil || p.Steps[0].Op != "blend" || p.Steps[0].Inputs[0].HeaderHash != base.HeaderHash || p.Steps[0].Inputs[1].HeaderHash != tuned.HeaderHash {
		t.Fatalf("provenance: %+v %v", p, err)
	}
	// The config keeps bfloat16.
	cfg := readConfig(t, out)
	if cfg["torch_dtype"] != "bfloat16" {
		t.Fatalf("torch_dtype %v", cfg["torch_dtype"])
	}
}

func readConfig(t testing.TB, c *weft.Checkpoint) map[string]any {
	t.Helper()
	sf := c.SideFile("config.json")
	if sf == nil {
		t.Fatal("no config.json")
	}
	data, err := sidefile.Read(sf)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFixtureHFDTypeAndConfig(t *testing.T) {
	base, tuned := open(t, "hf/tiny-llama-base"), open(t, "hf/tiny-llama-tuned")
	bi, ti := base.Index(), tuned.Index()
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 1.5, Types: ops.Types{DType: weft.F32}})
	out := writeOut(t, r, "out", ckpt.WriteOptions{})
	checkAgainst(t, out, func(string) weft.DType { return weft.F32 }, func(n string) []byte {
		return encode(t, weft.F32, refLinear(decodeAll(t, bi[n]), [][]float64{decodeAll(t, ti[n])}, []float64{1.5}))
	})
	cfg := readConfig(t, out)
	if cfg["torch_dtype"] != "float32" || cfg["vocab_size"] != 320.0 || cfg["model_type"] != "llama" {
		t.Fatalf("config: %v", cfg)
	}
}

func TestFixtureAlphaZeroOneByteIdentical(t *testing.T) {
	for _, pair := range [][2]string{
		{"hf/tiny-llama-base", "hf/tiny-llama-tuned"},
		{"gguf/tiny-llama-base-f32.gguf", "gguf/tiny-llama-tuned-f32.gguf"},
		{"gguf/tiny-llama-base-f16.gguf", "gguf/tiny-llama-tuned-f16.gguf"},
		{"gguf/tiny-llama-base-q8_0.gguf", "gguf/tiny-llama-tuned-q8_0.gguf"},
		{"gguf/tiny-llama-base-q4_k.gguf", "gguf/tiny-llama-tuned-q4_k.gguf"},
	} {
		base, tuned := open(t, pair[0]), open(t, pair[1])
		name := "out"
		if strings.HasSuffix(pair[0], ".gguf") {
			name = "out.gguf"
		}
		for _, c := range []struct {
			alpha float64
			want  *weft.Checkpoint
		}{{0, base}, {1, tuned}} {
			r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: c.alpha})
			out := writeOut(t, r, name, ckpt.WriteOptions{})
			wi := c.want.Index()
			for _, x := range out.Tensors {
				if !bytes.Equal(readAll(t, x), readAll(t, wi[x.Name])) || x.DType != wi[x.Name].DType {
					t.Fatalf("%s alpha %g: %s is not byte-identical to the input", pair[0], c.alpha, x.Name)
				}
			}
			if len(out.Tensors) != len(base.Tensors) {
				t.Fatalf("%d tensors", len(out.Tensors))
			}
		}
	}
}

func TestFixtureGGUFLinear(t *testing.T) {
	for _, ty := range []string{"f32", "f16"} {
		base, tuned := open(t, "gguf/tiny-llama-base-"+ty+".gguf"), open(t, "gguf/tiny-llama-tuned-"+ty+".gguf")
		bi, ti := base.Index(), tuned.Index()
		for _, alpha := range []float64{0.6, -0.25} {
			r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: alpha})
			out := writeOut(t, r, "out.gguf", ckpt.WriteOptions{Threads: 3})
			checkAgainst(t, out, sameDType(base), func(n string) []byte {
				return encode(t, bi[n].DType, refLinear(decodeAll(t, bi[n]), [][]float64{decodeAll(t, ti[n])}, []float64{alpha}))
			})
			// GGUF key-values survive; provenance is added.
			if v, _ := out.GetKV("llama.block_count"); v != uint32(4) {
				t.Fatalf("llama.block_count = %v", v)
			}
			if p, err := ops.ReadProvenance(out); err != nil || p == nil || p.Steps[0].Op != "blend" {
				t.Fatalf("provenance %+v %v", p, err)
			}
		}
	}
}

// wantAlpha is the weight each fixture tensor should get with
// --alpha 0.2 --alpha-for mlp=0.8 --alpha-for <embedding>=-0.5 --alpha-schedule 0,1, written
// out by hand for both namings.
func wantAlpha(name string) float64 {
	switch {
	case strings.Contains(name, ".mlp.") || strings.Contains(name, ".ffn_") && !strings.Contains(name, "norm"):
		return 0.8
	case name == "model.embed_tokens.weight" || name == "token_embd.weight":
		return -0.5
	}
	var l int
	if _, err := fmt.Sscanf(name, "model.layers.%d.", &l); err == nil {
		return float64(l) / 3
	}
	if _, err := fmt.Sscanf(name, "blk.%d.", &l); err == nil {
		return float64(l) / 3
	}
	return 0.2
}

func TestFixtureGroupsAndSchedule(t *testing.T) {
	for _, pair := range [][3]string{
		{"hf/tiny-llama-base", "hf/tiny-llama-tuned", "out"},
		{"gguf/tiny-llama-base-f32.gguf", "gguf/tiny-llama-tuned-f32.gguf", "out.gguf"},
	} {
		base, tuned := open(t, pair[0]), open(t, pair[1])
		bi, ti := base.Index(), tuned.Index()
		o := Options{Alpha: 0.2, AlphaFor: []AlphaRule{{"mlp", 0.8}, {"embeddings", -0.5}}, Schedule: []float64{0, 1}}
		r := mustBlend(t, base, []*weft.Checkpoint{tuned}, o)
		for _, s := range r.Steps {
			if w := wantAlpha(s.Name); s.Alpha != w {
				t.Fatalf("%s: alpha %v, want %v", s.Name, s.Alpha, w)
			}
		}
		out := writeOut(t, r, pair[2], ckpt.WriteOptions{})
		checkAgainst(t, out, sameDType(base), func(n string) []byte {
			a := wantAlpha(n)
			return encode(t, bi[n].DType, refLinear(decodeAll(t, bi[n]), [][]float64{decodeAll(t, ti[n])}, []float64{a}))
		})
	}
}

func TestFixtureTaskArithmetic(t *testing.T) {
	base := open(t, "gguf/tiny-llama-base-f32.gguf")
	t1 := open(t, "gguf/tiny-llama-tuned-f32.gguf")
	t2 := open(t, "gguf/tiny-llama-tuned-f16.gguf")
	t3 := open(t, "gguf/tiny-llama-base-f16.gguf")
	w := []float64{0.6, 0.3, -0.4}
	r := mustBlend(t, base, []*weft.Checkpoint{t1, t2, t3}, Options{Alpha: 1, Weights: w})
	out := writeOut(t, r, "out.gguf", ckpt.WriteOptions{})
	idx := []map[string]*weft.Tensor{base.Index(), t1.Index(), t2.Index(), t3.Index()}
	checkAgainst(t, out, sameDType(base), func(n string) []byte {
		return encode(t, weft.F32, refLinear(decodeAll(t, idx[0][n]), [][]float64{decodeAll(t, idx[1][n]), decodeAll(t, idx[2][n]), decodeAll(t, idx[3][n])}, w))
	})
	if p, err := ops.ReadProvenance(out); err != nil || p == nil || len(p.Steps[0].Inputs) != 4 {
		t.Fatalf("provenance %+v: %v", p, err)
	}
}

func TestFixtureSlerp(t *testing.T) {
	base, tuned := open(t, "hf/tiny-llama-base"), open(t, "hf/tiny-llama-tuned")
	bi, ti := base.Index(), tuned.Index()
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Method: Slerp, Alpha: 0.4})
	out := writeOut(t, r, "out", ckpt.WriteOptions{Threads: 5, ChunkElems: 100})
	checkAgainst(t, out, sameDType(base), func(n string) []byte {
		return encode(t, weft.BF16, refSlerp(0.4, decodeAll(t, bi[n]), decodeAll(t, ti[n])))
	})
	if p, err := ops.ReadProvenance(out); err != nil || p == nil || !strings.Contains(string(p.Steps[0].Params), `"method":"slerp"`) {
		t.Fatalf("provenance %+v %v", p, err)
	}
}

// TestFixtureQuantized blends quantized GGUF pairs. Each quantized output tensor must be
// exactly what ggml's reference quantizer makes of the float64 blend of the dequantized
// inputs (rounded once to float32, which the quantizer takes): the only error is that
// type's requantization error. As a sanity check independent of the quantizer the test
// also bounds that error per element by the block's largest magnitude m:
//   - Q8_0 stores q = round(x/d) with d = m/127 (kept as f16): |error| <= d/2 plus
//     127*|d - f16(d)| <= m/254 + m*2^-11 < m/127.
//   - Q4_K stores 8 sub-blocks of 32 as d*q - dmin with 4-bit q and 6-bit sub-scales: the
//     step is at most 2m/15 and its half plus the 6-bit scale error stays below m/4, a
//     loose bound.
func TestFixtureQuantized(t *testing.T) {
	for _, ty := range []struct {
		name string
		dt   weft.DType
		// step bound: the largest |error| per element, relative to the block's max |x|.
		rel float64
	}{{"q8_0", weft.Q8_0, 1.0 / 127}, {"q4_k", weft.Q4_K, 0.25}} {
		if !quant.CanQuantize(ty.dt) || !quant.CanDequantize(ty.dt) {
			t.Errorf("%v: package quant cannot handle it yet", ty.dt)
			continue
		}
		base, tuned := open(t, "gguf/tiny-llama-base-"+ty.name+".gguf"), open(t, "gguf/tiny-llama-tuned-"+ty.name+".gguf")
		bi, ti := base.Index(), tuned.Index()
		r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5})
		out := writeOut(t, r, "out.gguf", ckpt.WriteOptions{Threads: 4})
		nq := 0
		for _, x := range out.Tensors {
			b := bi[x.Name]
			if x.DType != b.DType {
				t.Fatalf("%s: %v, want the base's %v", x.Name, x.DType, b.DType)
			}
			blend := refLinear(decodeAll(t, b), [][]float64{decodeAll(t, ti[x.Name])}, []float64{0.5})
			want := encode(t, x.DType, blend)
			if x.DType.Quantized() {
				nq++
				// encode == quant.Quantize(float32(blend)); do it by hand to say so.
				f := make([]float32, len(blend))
				for i, v := range blend {
					f[i] = float32(v)
				}
				q := make([]byte, len(want))
				if err := quant.Quantize(x.DType, f, q); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(q, want) {
					t.Fatal("codec.EncodeF64 is not quantize(float32(x))")
				}
				got := decodeAll(t, x)
				bs := int(x.DType.BlockSize())
				for blk := 0; blk < len(blend); blk += bs {
					m := 0.0
					for _, v := range blend[blk : blk+bs] {
						m = math.Max(m, math.Abs(v))
					}
					for i := blk; i < blk+bs; i++ {
						if e := math.Abs(got[i] - blend[i]); e > ty.rel*m+1e-7 {
							t.Fatalf("%s[%d]: |%g - %g| exceeds the %v step bound %g", x.Name, i, got[i], blend[i], x.DType, ty.rel*m)
						}
					}
				}
			}
			if !bytes.Equal(readAll(t, x), want) {
				t.Fatalf("%s (%v): bytes differ from quantize(blend of dequantized inputs)", x.Name, x.DType)
			}
		}
		if nq == 0 {
			t.Fatalf("%s: no quantized tensors", ty.name)
		}
	}
}

func TestFixtureOutType(t *testing.T) {
	if !quant.CanQuantize(weft.Q8_0) || !quant.CanDequantize(weft.Q4_K) {
		t.Fatal("package quant cannot handle q8_0/q4_k yet")
	}
	base, tuned := open(t, "gguf/tiny-llama-base-q4_k.gguf"), open(t, "gguf/tiny-llama-tuned-q4_k.gguf")
	bi, ti := base.Index(), tuned.Index()
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.25, Types: ops.Types{DType: weft.Q8_0, TypeFor: []ops.TypeRule{{Pattern: "output.weight", DType: weft.F16}}}})
	out := writeOut(t, r, "out.gguf", ckpt.WriteOptions{})
	checkAgainst(t, out, func(n string) weft.DType {
		switch {
		case n == "output.weight":
			return weft.F16
		case len(bi[n].Shape) >= 2:
			return weft.Q8_0
		}
		return bi[n].DType
	}, func(n string) []byte {
		dt := out.Tensor(n).DType
		return encode(t, dt, refLinear(decodeAll(t, bi[n]), [][]float64{decodeAll(t, ti[n])}, []float64{0.25}))
	})
	// Alpha 0 with another type: the base's values requantized, no arithmetic.
	r = mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0, Types: ops.Types{DType: weft.Q8_0}})
	x := r.Out.Tensor("blk.0.ffn_up.weight")
	if s := r.Step(x.Name); s.Action != "convert" || !bytes.Equal(readAll(t, x), encode(t, weft.Q8_0, decodeAll(t, bi[x.Name]))) {
		t.Fatalf("alpha 0 --out-type q8_0: %+v", s)
	}
}

// TestFixtureThreadsAndChunks writes the same blends with one worker and tiny chunks and
// with many workers and large chunks: the files must be identical.
func TestFixtureThreadsAndChunks(t *testing.T) {
	for _, c := range []struct {
		base, tuned, name string
		o                 Options
	}{
		{"hf/tiny-llama-base", "hf/tiny-llama-tuned", "out.safetensors", Options{Alpha: 0.37, AlphaFor: []AlphaRule{{"attention", 0.9}}}},
		{"hf/tiny-llama-base", "hf/tiny-llama-tuned", "out.safetensors", Options{Method: Slerp, Alpha: 0.37}},
		// Q4_K quantization is slow: compute one layer (and the embeddings), copy the rest.
		{"gguf/tiny-llama-base-q4_k.gguf", "gguf/tiny-llama-tuned-q4_k.gguf", "out.gguf", Options{Alpha: 0, AlphaFor: []AlphaRule{{"blk.1.*", 0.7}, {"embeddings", 0.2}}}},
		{"gguf/tiny-llama-base-q8_0.gguf", "gguf/tiny-llama-tuned-q8_0.gguf", "out.gguf", Options{Alpha: 1.3}},
	} {
		var files [][]byte
		for _, wo := range []ckpt.WriteOptions{{Threads: 1, ChunkElems: 1}, {Threads: 16, ChunkElems: 1 << 22}, {Threads: 7, ChunkElems: 3000}} {
			base, tuned := open(t, c.base), open(t, c.tuned)
			r := mustBlend(t, base, []*weft.Checkpoint{tuned}, c.o)
			path := filepath.Join(t.TempDir(), c.name)
			if err := ckpt.Write(context.Background(), r.Out, path, wo); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, b)
		}
		for i := 1; i < len(files); i++ {
			if !bytes.Equal(files[0], files[i]) {
				t.Fatalf("%s %+v: output depends on threads/chunking", c.base, c.o)
			}
		}
	}
}

func TestFixtureMixedNamingRefused(t *testing.T) {
	base, tuned := open(t, "hf/tiny-llama-base"), open(t, "gguf/tiny-llama-tuned-f32.gguf")
	_, err := Blend(base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5})
	if err == nil || !strings.Contains(err.Error(), "Hugging Face") || !strings.Contains(err.Error(), "GGUF") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Diff(context.Background(), base, tuned, DiffOptions{}); err == nil || !strings.Contains(err.Error(), "naming") {
		t.Fatalf("diff err = %v", err)
	}
}
