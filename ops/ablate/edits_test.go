package ablate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
)

// untouched checks that every output tensor not in changed holds the input's bytes.
func untouched(t *testing.T, in, out *weft.Checkpoint, changed map[string]bool) {
	t.Helper()
	for _, x := range in.Tensors {
		if !changed[x.Name] {
			sameBytes(t, out, x.Name, in, x.Name)
		}
	}
	if len(out.Tensors) != len(in.Tensors) {
		t.Fatalf("%d tensors out, %d in", len(out.Tensors), len(in.Tensors))
	}
	for i, x := range in.Tensors {
		if out.Tensors[i].Name != x.Name {
			t.Fatalf("tensor %d is %s, was %s: the order changed", i, out.Tensors[i].Name, x.Name)
		}
	}
}

func hfNames(l int) (attn, mlp string) {
	return fmt.Sprintf("model.layers.%d.self_attn.o_proj.weight", l), fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", l)
}

func ggufNames(l int) (attn, mlp string) {
	return fmt.Sprintf("blk.%d.attn_output.weight", l), fmt.Sprintf("blk.%d.ffn_down.weight", l)
}

func TestZero(t *testing.T) {
	cases := []struct {
		name  string
		in    func(t testing.TB) *weft.Checkpoint
		out   string
		names func(int) (string, string)
	}{
		{"hf", hfBase, "out", hfNames},
		{"f32", func(t testing.TB) *weft.Checkpoint { return ggufBase(t, "f32") }, "out.gguf", ggufNames},
		{"q8_0", func(t testing.TB) *weft.Checkpoint { return ggufBase(t, "q8_0") }, "out.gguf", ggufNames},
		{"q4_k", func(t testing.TB) *weft.Checkpoint { return ggufBase(t, "q4_k") }, "out.gguf", ggufNames},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.in(t)
			res := mustAblate(t, in, Options{
				Zero: &Zero{What: Layer, Layers: []int{1}},
			})
			res2 := mustAblate(t, in, Options{Zero: &Zero{What: Attn, Layers: []int{2, 3}}})
			out := writeOpen(t, res.Out, c.out, 4, in)
			a, m := c.names(1)
			changed := map[string]bool{a: true, m: true}
			for name := range changed {
				x := tensorOf(t, out, name)
				for i, v := range decode(t, x) {
					if v != 0 || math.Signbit(v) {
						t.Fatalf("%s[%d] = %v, want +0", name, i, v)
					}
				}
				n, _ := x.NumElements()
				if want := encode(t, x.DType, make([]float64, n)); !bytes.Equal(readAll(t, x), want) {
					t.Fatalf("%s is not %v's encoding of zeros", name, x.DType)
				}
			}
			untouched(t, in, out, changed)
			if in.Format == weft.GGUF {
				if gf := parseGGUF(t, out.Path); gf.Architecture().BlockCount != 4 {
					t.Fatal("gguf-parser-go: wrong block count")
				}
			}
			// Attention only, in two layers: the MLP stays.
			out2 := writeOpen(t, res2.Out, c.out, 1, in)
			changed = map[string]bool{}
			for _, l := range []int{2, 3} {
				a, _ := c.names(l)
				changed[a] = true
				for _, v := range decode(t, tensorOf(t, out2, a)) {
					if v != 0 {
						t.Fatalf("%s not zero", a)
					}
				}
			}
			untouched(t, in, out2, changed)
		})
	}
}

// TestZeroConv1D zeroes the MLP of GPT-2's Conv1D layout.
func TestZeroConv1D(t *testing.T) {
	in := open(t, fixture(t, "torch/gpt2-tiny-f32.bin"))
	res := mustAblate(t, in, Options{Zero: &Zero{What: MLP, Layers: []int{0}}})
	out := writeOpen(t, res.Out, "out.safetensors", 2, in)
	name := "transformer.h.0.mlp.c_proj.weight"
	for _, v := range decode(t, tensorOf(t, out, name)) {
		if v != 0 {
			t.Fatalf("%s not zero", name)
		}
	}
	for _, x := range in.Tensors {
		if x.Name != name && out.Tensor(x.Name) != nil {
			sameBytes(t, out, x.Name, in, x.Name)
		}
	}
}

// neox is a small in-memory GPT-NeoX-style F16 model whose residual writers have biases.
func neox(t *testing.T) *weft.Checkpoint {
	var ts []*weft.Tensor
	add := func(name string, shape []int64, seed uint64) {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		ts = append(ts, memTensor(name, weft.F16, shape, encode(t, weft.F16, randVec(int(n), seed))))
	}
	add("gpt_neox.embed_in.weight", []int64{10, 8}, 1)
	for l := 0; l < 2; l++ {
		p := fmt.Sprintf("gpt_neox.layers.%d.", l)
		add(p+"attention.query_key_value.weight", []int64{24, 8}, uint64(10*l+2))
		add(p+"attention.dense.weight", []int64{8, 8}, uint64(10*l+3))
		add(p+"attention.dense.bias", []int64{8}, uint64(10*l+4))
		add(p+"mlp.dense_h_to_4h.weight", []int64{16, 8}, uint64(10*l+5))
		add(p+"mlp.dense_4h_to_h.weight", []int64{8, 16}, uint64(10*l+6))
		add(p+"mlp.dense_4h_to_h.bias", []int64{8}, uint64(10*l+7))
	}
	cfg := `{"model_type": "gpt_neox", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 2}`
	return &weft.Checkpoint{Format: weft.Safetensors, Path: "neox", Tensors: ts, SideFiles: []weft.SideFile{{Name: "config.json", Data: []byte(cfg)}}}
}

func TestBiases(t *testing.T) {
	in := neox(t)
	res := mustAblate(t, in, Options{Zero: &Zero{What: Attn, Layers: []int{1}}, Scale: &Scale{Attn: 1, MLP: 0.25, Layers: []int{0}}})
	for _, name := range []string{"gpt_neox.layers.1.attention.dense.weight", "gpt_neox.layers.1.attention.dense.bias"} {
		if b := readAll(t, res.Out.Tensor(name)); !bytes.Equal(b, make([]byte, len(b))) {
			t.Fatalf("%s not zero", name)
		}
	}
	for _, name := range []string{"gpt_neox.layers.0.mlp.dense_4h_to_h.weight", "gpt_neox.layers.0.mlp.dense_4h_to_h.bias"} {
		v := decode(t, in.Tensor(name))
		for i := range v {
			v[i] *= 0.25
		}
		if !bytes.Equal(readAll(t, res.Out.Tensor(name)), encode(t, weft.F16, v)) {
			t.Fatalf("%s not scaled", name)
		}
	}
	if res.Out.Tensor("gpt_neox.layers.0.attention.dense.bias") != in.Tensor("gpt_neox.layers.0.attention.dense.bias") {
		t.Fatal("attention scaled by 1 is not a raw copy")
	}

	// Projection: the bias b' = b - w r (r.b).
	r := randVec(8, 3)
	ru := unit(r)
	res = mustAblate(t, in, Options{Project: &Project{Directions: [][]float64{r}, Layers: []int{1}, Weight: 1, Source: "r"}})
	for _, name := range []string{"gpt_neox.layers.1.attention.dense.bias", "gpt_neox.layers.1.mlp.dense_4h_to_h.bias"} {
		b, got := decode(t, in.Tensor(name)), decode(t, res.Out.Tensor(name))
		var d, dot, norm float64
		for i := range b {
			d += ru[i] * b[i]
		}
		for i := range b {
			ref := b[i] - ru[i]*d
			if math.Abs(got[i]-ref) > halfUlpF16(ref)*(1+1e-6) {
				t.Fatalf("%s[%d] = %v, reference %v", name, i, got[i], ref)
			}
			dot += ru[i] * got[i]
			norm += got[i] * got[i]
		}
		// Each element is within 2^-11 (relative) of the exact projection.
		if math.Abs(dot) > math.Ldexp(1, -11)*math.Sqrt(norm)+1e-12 {
			t.Fatalf("%s: r.b' = %g", name, dot)
		}
		if math.Abs(d) < 0.05 {
			t.Fatalf("%s: r.b = %g is already small: the test proves nothing", name, d)
		}
	}
	for _, name := range []string{"gpt_neox.layers.1.attention.dense.weight", "gpt_neox.layers.1.mlp.dense_4h_to_h.weight"} {
		if bytes.Equal(readAll(t, res.Out.Tensor(name)), readAll(t, in.Tensor(name))) {
			t.Fatalf("%s not projected", name)
		}
	}
	// Heads of GPT-NeoX's dense: 2 heads of 4 columns.
	res = mustAblate(t, in, Options{Heads: []HeadSel{{0, []int{1}}}})
	v := decode(t, res.Out.Tensor("gpt_neox.layers.0.attention.dense.weight"))
	v0 := decode(t, in.Tensor("gpt_neox.layers.0.attention.dense.weight"))
	for i := range v {
		want := v0[i]
		if i%8 >= 4 {
			want = 0
		}
		if v[i] != want {
			t.Fatalf("element %d = %v, want %v", i, v[i], want)
		}
	}
	if res.Out.Tensor("gpt_neox.layers.0.attention.dense.bias") != in.Tensor("gpt_neox.layers.0.attention.dense.bias") {
		t.Fatal("the bias of the output projection belongs to no head and must stay")
	}
}

// TestHeadsConv1D zeroes heads in GPT-2's Conv1D layout, where c_proj.weight is stored
// [in, out]: a head is a block of rows.
func TestHeadsConv1D(t *testing.T) {
	var ts []*weft.Tensor
	add := func(name string, shape []int64, seed uint64) {
		n := shape[0]
		if len(shape) > 1 {
			n *= shape[1]
		}
		ts = append(ts, memTensor(name, weft.F32, shape, encode(t, weft.F32, randVec(int(n), seed))))
	}
	add("transformer.wte.weight", []int64{10, 8}, 1)
	add("transformer.h.0.attn.c_proj.weight", []int64{8, 8}, 2)
	add("transformer.h.0.attn.c_proj.bias", []int64{8}, 3)
	add("transformer.h.0.mlp.c_proj.weight", []int64{32, 8}, 4)
	cfg := `{"model_type": "gpt2", "n_embd": 8, "n_head": 4, "n_layer": 1}`
	in := &weft.Checkpoint{Format: weft.Torch, Path: "gpt2", Tensors: ts, SideFiles: []weft.SideFile{{Name: "config.json", Data: []byte(cfg)}}}
	res := mustAblate(t, in, Options{Heads: []HeadSel{{0, []int{1, 3}}}})
	name := "transformer.h.0.attn.c_proj.weight"
	v, v0 := decode(t, res.Out.Tensor(name)), decode(t, in.Tensor(name))
	for i := range v {
		want := v0[i]
		if row := i / 8; row/2 == 1 || row/2 == 3 {
			want = 0
		}
		if v[i] != want {
			t.Fatalf("element %d (row %d) = %v, want %v", i, i/8, v[i], want)
		}
	}
	if d := res.Plan.Describe(name); !strings.Contains(d, "zero heads 1,3 (rows 2-3,6-7)") {
		t.Fatalf("plan: %q", d)
	}
	// Square matrices only: the model type decides.
	in.Tensors = ts[:3]
	res = mustAblate(t, in, Options{Heads: []HeadSel{{0, []int{0}}}})
	if d := res.Plan.Describe(name); !strings.Contains(d, "(rows 0-1)") {
		t.Fatalf("plan: %q", d)
	}
	in.SideFiles[0].Data = []byte(`{"model_type": "gpt_bigcode", "n_embd": 8, "n_head": 4, "n_layer": 1}`)
	res = mustAblate(t, in, Options{Heads: []HeadSel{{0, []int{0}}}})
	if d := res.Plan.Describe(name); !strings.Contains(d, "(columns 0-1)") {
		t.Fatalf("plan: %q", d)
	}
}

// halfUlpF16 is half the spacing of float16 values around v (normal range).
func halfUlpF16(v float64) float64 {
	_, e := math.Frexp(math.Abs(v))
	return math.Ldexp(1, max(e-12, -25))
}

func TestHeads(t *testing.T) {
	cases := []struct {
		name  string
		in    func(t testing.TB) *weft.Checkpoint
		out   string
		names func(int) (string, string)
		hd    int64
	}{
		{"hf", hfBase, "out", hfNames, 16},
		{"f32", func(t testing.TB) *weft.Checkpoint { return ggufBase(t, "f32") }, "out.gguf", ggufNames, 64},
		{"q8_0", func(t testing.TB) *weft.Checkpoint { return ggufBase(t, "q8_0") }, "out.gguf", ggufNames, 64},
		{"q4_k", func(t testing.TB) *weft.Checkpoint { return ggufBase(t, "q4_k") }, "out.gguf", ggufNames, 64},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.in(t)
			sel, err := ParseHeads("1:1,2:0,3", 4)
			if err != nil {
				t.Fatal(err)
			}
			res := mustAblate(t, in, Options{Heads: sel})
			out := writeOpen(t, res.Out, c.out, 4, in)
			changed := map[string]bool{}
			for _, s := range sel {
				name, _ := c.names(s.Layer)
				changed[name] = true
				zeroCol := map[int64]bool{}
				for _, h := range s.Heads {
					for j := int64(h) * c.hd; j < int64(h+1)*c.hd; j++ {
						zeroCol[j] = true
					}
				}
				tin, tout := tensorOf(t, in, name), tensorOf(t, out, name)
				rows, cols := tin.Shape[0], tin.Shape[1]
				vin, vout := decode(t, tin), decode(t, tout)
				rawIn, rawOut := readAll(t, tin), readAll(t, tout)
				dt := tin.DType
				bs, bb := dt.BlockSize(), dt.BlockBytes()
				for r := int64(0); r < rows; r++ {
					for j := int64(0); j < cols; j++ {
						v := vout[r*cols+j]
						if zeroCol[j] && v != 0 {
							t.Fatalf("%s[%d,%d] = %v, want 0", name, r, j, v)
						}
					}
					// Block by block: blocks without a zeroed column are the input's
					// bytes; the others are the input block, decoded, zeroed and
					// quantized again (for plain types, blocks are single elements).
					for k := int64(0); k < cols/bs; k++ {
						off := (r*cols/bs + k) * bb
						got := rawOut[off : off+bb]
						touched := false
						blk := make([]float64, bs)
						for i := int64(0); i < bs; i++ {
							blk[i] = vin[r*cols+k*bs+i]
							if zeroCol[k*bs+i] {
								touched = true
								blk[i] = 0
							}
						}
						want := rawIn[off : off+bb]
						if touched {
							want = encode(t, dt, blk)
						}
						if !bytes.Equal(got, want) {
							t.Fatalf("%s row %d block %d: bytes differ (touched %v)", name, r, k, touched)
						}
					}
				}
			}
			untouched(t, in, out, changed)
			if strings.Contains(c.name, "q") && len(res.Plan.Notes) == 0 {
				t.Error("no note about requantization")
			}
			want := fmt.Sprintf("zero heads 0,3 (columns 0-%d,%d-%d)", c.hd-1, 3*c.hd, 4*c.hd-1)
			if d := res.Plan.Describe(func() string { n, _ := c.names(2); return n }()); !strings.Contains(d, want) {
				t.Errorf("plan says %q, want %q", d, want)
			}
		})
	}
}

func TestHeadsErrors(t *testing.T) {
	in := hfBase(t)
	if _, err := Ablate(in, Options{Heads: []HeadSel{{1, []int{4}}}}); err == nil || !strings.Contains(err.Error(), "heads=1:4: head out of range: layer 1 has 4 heads (0-3)") || !weft.IsOptionError(err) {
		t.Fatalf("got %v", err)
	}
	gpt := open(t, fixture(t, "torch/gpt2-tiny-f32.bin"))
	if _, err := Ablate(gpt, Options{Heads: []HeadSel{{0, []int{0}}}}); err == nil || !strings.Contains(err.Error(), "number of attention heads is unknown") {
		t.Fatalf("got %v", err)
	}
}

func TestScale(t *testing.T) {
	for _, typ := range []string{"hf", "q8_0"} {
		t.Run(typ, func(t *testing.T) {
			var in *weft.Checkpoint
			names, outName := hfNames, "out"
			if typ == "hf" {
				in = hfBase(t)
			} else {
				in, names, outName = ggufBase(t, typ), ggufNames, "out.gguf"
			}
			res := mustAblate(t, in, Options{Scale: &Scale{Attn: 0.5, MLP: -3, Layers: []int{0, 2}}})
			out := writeOpen(t, res.Out, outName, 3, in)
			changed := map[string]bool{}
			for _, l := range []int{0, 2} {
				a, m := names(l)
				for name, f := range map[string]float64{a: 0.5, m: -3} {
					changed[name] = true
					x := tensorOf(t, in, name)
					v := decode(t, x)
					for i := range v {
						v[i] *= f
					}
					if !bytes.Equal(readAll(t, tensorOf(t, out, name)), encode(t, x.DType, v)) {
						t.Fatalf("%s is not %v(%g * input)", name, x.DType, f)
					}
				}
			}
			untouched(t, in, out, changed)
		})
	}
}

// noiseRef computes the expected noisy tensor in the test: std over the whole tensor, then
// x + s*std*N from the row streams, rounded once.
func noiseRef(t *testing.T, x *weft.Tensor, key string, s float64, seed uint64) []byte {
	v := decode(t, x)
	var mean float64
	for _, a := range v {
		mean += a
	}
	mean /= float64(len(v))
	var ss float64
	for _, a := range v {
		ss += (a - mean) * (a - mean)
	}
	std := math.Sqrt(ss / float64(len(v)))
	rl := x.RowLen()
	for r := int64(0); r < x.Rows(); r++ {
		st := ops.RowStream(seed, key, r)
		for j := int64(0); j < rl; j++ {
			v[r*rl+j] += s * std * st.Normal()
		}
	}
	return encode(t, x.DType, v)
}

func TestNoise(t *testing.T) {
	for _, typ := range []string{"hf", "f32", "q8_0"} {
		t.Run(typ, func(t *testing.T) {
			var in *weft.Checkpoint
			outName := "out"
			if typ == "hf" {
				in = hfBase(t)
			} else {
				in, outName = ggufBase(t, typ), "out.gguf"
			}
			opts := Options{Noise: &Noise{Std: 0.1, Seed: 7, Layers: []int{1, 3}}, Duplicate: []Block{{3, 3, 2}}}
			res := mustAblate(t, in, opts)
			out1 := writeOpen(t, res.Out, outName, 1, in)
			// Again, with many workers and small chunks: the same bytes.
			res2 := mustAblate(t, in, opts)
			p := filepath.Join(t.TempDir(), outName)
			if err := ckpt.Write(context.Background(), res2.Out, p, ckpt.WriteOptions{Threads: 16, ChunkElems: 64, ChunkBytes: 256}); err != nil {
				t.Fatal(err)
			}
			outN := open(t, p)
			changed := map[string]bool{}
			for _, x := range in.Tensors {
				l, _, ok := arch.Layer(x.Name)
				if !ok || (l != 1 && l != 3) {
					continue
				}
				changed[x.Name] = true
				want := noiseRef(t, x, x.Name, 0.1, 7)
				outs := []string{x.Name}
				if l == 3 {
					outs = append(outs, arch.WithLayer(x.Name, 4))
				}
				for _, name := range outs {
					got1 := readAll(t, tensorOf(t, out1, name))
					if x.DType.Float() && !bytes.Equal(got1, want) {
						t.Fatalf("%s differs from the float64 reference", name)
					}
					if x.DType.Quantized() {
						// Quantized: the reference goes through float32 first, as
						// EncodeF64 does; compare dequantized values.
						if !bytes.Equal(got1, want) {
							t.Fatalf("%s differs from the reference quantization", name)
						}
					}
					if !bytes.Equal(got1, readAll(t, tensorOf(t, outN, name))) {
						t.Fatalf("%s differs between 1 worker and 16 workers with small chunks", name)
					}
					if bytes.Equal(got1, readAll(t, x)) {
						t.Fatalf("%s unchanged", name)
					}
				}
			}
			// Duplicated layer 3 became layers 3 and 4.
			for _, x := range in.Tensors {
				if !changed[x.Name] {
					sameBytes(t, out1, x.Name, in, x.Name)
				}
			}
			// Another seed gives other noise.
			res3 := mustAblate(t, in, Options{Noise: &Noise{Std: 0.1, Seed: 8, Layers: []int{1}}})
			a, _ := hfNames(1)
			if typ != "hf" {
				a, _ = ggufNames(1)
			}
			if bytes.Equal(readAll(t, res3.Out.Tensor(a)), readAll(t, tensorOf(t, out1, a))) {
				t.Fatal("seed 8 gives the same noise as seed 7")
			}
		})
	}
}

// TestNoiseConcurrent reads one computed tensor row by row from many goroutines, and whole,
// and compares.
func TestNoiseConcurrent(t *testing.T) {
	in := ggufBase(t, "f32")
	res := mustAblate(t, in, Options{Noise: &Noise{Std: 0.5, Seed: 3, Layers: []int{0}}, Project: &Project{Directions: [][]float64{randVec(256, 1)}, Layers: []int{0}, Weight: 1, Source: "mem"}})
	for _, name := range []string{"blk.0.ffn_down.weight", "blk.0.attn_q.weight"} {
		x := res.Out.Tensor(name)
		rb := x.RowBytes()
		whole := readAll(t, x)
		res2 := mustAblate(t, in, Options{Noise: &Noise{Std: 0.5, Seed: 3, Layers: []int{0}}, Project: &Project{Directions: [][]float64{randVec(256, 1)}, Layers: []int{0}, Weight: 1, Source: "mem"}})
		y := res2.Out.Tensor(name)
		got := make([]byte, len(whole))
		var wg sync.WaitGroup
		for r := x.Rows() - 1; r >= 0; r-- {
			wg.Add(1)
			go func(r int64) {
				defer wg.Done()
				if _, err := y.Data.ReadAt(got[r*rb:(r+1)*rb], r*rb); err != nil {
					t.Error(err)
				}
			}(r)
		}
		wg.Wait()
		if !bytes.Equal(got, whole) {
			t.Fatalf("%s: concurrent row reads differ from one whole read", name)
		}
	}
}

func TestReplaceFrom(t *testing.T) {
	in := hfBase(t)
	tuned := open(t, fixture(t, "hf/tiny-llama-tuned"))
	res := mustAblate(t, in, Options{Replace: &Replace{Other: tuned, Layers: []int{1, 3}}, Drop: []int{0}})
	out := writeOpen(t, res.Out, "out", 2, in, tuned)
	seq := []int{1, 2, 3}
	for _, x := range in.Tensors {
		l, _, ok := arch.Layer(x.Name)
		switch {
		case !ok:
			sameBytes(t, out, x.Name, in, x.Name)
		case l == 1 || l == 3:
			for j, s := range seq {
				if s == l {
					sameBytes(t, out, arch.WithLayer(x.Name, j), tuned, x.Name)
				}
			}
		case l == 2:
			sameBytes(t, out, arch.WithLayer(x.Name, 1), in, x.Name)
		}
	}
	// Through the op's entry point, the other checkpoint is the second recorded input.
	run, err := ops.Run(&Options{Replace: &Replace{Layers: []int{1, 3}}, Drop: []int{0}}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in, tuned}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ops.ReadProvenance(run.Out); err != nil || p == nil || len(p.Steps[0].Inputs) != 2 || p.Steps[0].Inputs[1].Path != "tiny-llama-tuned" {
		t.Errorf("provenance: %+v, %v", p, err)
	}
	for _, tp := range res.Plan.Tensors {
		if tp.InLayer == 3 && (tp.From != tuned.Path || !tp.Raw) {
			t.Errorf("plan: %+v", tp)
		}
	}

	// GGUF: the f16 tuned layers go into the q8_0 base, converted.
	q8 := ggufBase(t, "q8_0")
	f16 := open(t, fixture(t, "gguf/tiny-llama-tuned-f16.gguf"))
	res = mustAblate(t, q8, Options{Replace: &Replace{Other: f16, Layers: []int{2}}})
	for _, x := range f16.Tensors {
		if l, _, ok := arch.Layer(x.Name); ok && l == 2 {
			got := res.Out.Tensor(x.Name)
			if got.DType != q8.Tensor(x.Name).DType {
				t.Fatalf("%s: %v, want the input's %v", x.Name, got.DType, q8.Tensor(x.Name).DType)
			}
			if !bytes.Equal(readAll(t, got), encode(t, got.DType, decode(t, x))) {
				t.Fatalf("%s is not the tuned tensor converted to %v", x.Name, got.DType)
			}
		}
	}

	// Mismatches are listed.
	gguf := ggufBase(t, "f32")
	_, err = Ablate(in, Options{Replace: &Replace{Other: gguf, Layers: []int{1}}})
	if err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.down_proj.weight: missing from tiny-llama-base-f32.gguf") {
		t.Fatalf("got %v", err)
	}
	other := ops.Derive(tuned)
	other.Path = tuned.Path // a stand-in for a file like tuned with other tensors
	other.Tensors = nil
	for _, x := range tuned.Tensors {
		switch x.Name {
		case "model.layers.1.mlp.up_proj.weight":
			continue
		case "model.layers.1.mlp.down_proj.weight":
			y := *x
			y.Shape = []int64{128, 64}
			other.Tensors = append(other.Tensors, &y)
			continue
		}
		other.Tensors = append(other.Tensors, x)
	}
	other.Tensors = append(other.Tensors, memTensor("model.layers.1.extra.weight", weft.F32, []int64{1}, make([]byte, 4)))
	_, err = Ablate(in, Options{Replace: &Replace{Other: other, Layers: []int{1, 2}}})
	for _, frag := range []string{
		"layers 1-2 do not match",
		"model.layers.1.mlp.down_proj.weight: shape [128 64] in tiny-llama-tuned, [64 128] in the input",
		"model.layers.1.mlp.up_proj.weight: missing from tiny-llama-tuned",
		"model.layers.1.extra.weight: only in tiny-llama-tuned",
	} {
		if err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("error %v lacks %q", err, frag)
		}
	}
}

// randVec is a deterministic pseudo-random vector.
func randVec(n int, seed uint64) []float64 {
	st := ops.RowStream(seed, "test-direction", 0)
	v := make([]float64, n)
	for i := range v {
		v[i] = st.Normal()
	}
	return v
}

func unit(v []float64) []float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	s = math.Sqrt(s)
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x / s
	}
	return out
}

// writeNPY writes a little-endian float64 .npy file.
func writeNPY(t *testing.T, path string, shape []int, v []float64) {
	t.Helper()
	dims := ""
	for _, d := range shape {
		dims += fmt.Sprintf("%d, ", d)
	}
	if len(shape) > 1 {
		dims = strings.TrimSuffix(dims, ", ")
	} else {
		dims = strings.TrimSuffix(dims, " ")
	}
	hdr := fmt.Sprintf("{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }", dims)
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	b := []byte("\x93NUMPY\x01\x00")
	b = append(b, byte(len(hdr)), byte(len(hdr)>>8))
	b = append(b, hdr...)
	raw := encode(t, weft.F64, v)
	b = append(b, raw...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkProjected compares a projected matrix (stored [hidden, in], or [in, hidden] when
// transposed) with the float64 reference M - w r (r^T M), and checks that r^T M' is within
// the bound rounding allows: |(r^T M')_j| <= u * ||M'_:,j|| (Cauchy-Schwarz over the
// rounding errors, each at most u = 2^-(p+1) relative for p mantissa bits).
func checkProjected(t *testing.T, name string, before, after *weft.Tensor, r []float64, w float64, transposed bool) {
	t.Helper()
	m, got := decode(t, before), decode(t, after)
	rows, cols := before.Shape[0], before.Shape[1]
	h, k := rows, cols // hidden, in
	at := func(v []float64, i, j int64) float64 { return v[i*cols+j] }
	if transposed {
		h, k = cols, rows
		at = func(v []float64, i, j int64) float64 { return v[j*cols+i] }
	}
	u := math.Ldexp(1, -24)
	if before.DType == weft.BF16 {
		u = math.Ldexp(1, -8)
	}
	bigBefore := 0
	for j := int64(0); j < k; j++ {
		var c float64 // r^T M, column j
		for i := int64(0); i < h; i++ {
			c += r[i] * at(m, i, j)
		}
		var dot, norm, norm0 float64
		for i := int64(0); i < h; i++ {
			ref := at(m, i, j) - w*r[i]*c
			g := at(got, i, j)
			if math.Abs(g-ref) > halfUlp(before.DType, ref)*(1+1e-6) {
				t.Fatalf("%s[hidden %d, in %d] = %v, reference %v", name, i, j, g, ref)
			}
			dot += r[i] * g
			norm += g * g
			norm0 += at(m, i, j) * at(m, i, j)
		}
		bound := u*math.Sqrt(norm) + 1e-12*math.Sqrt(norm0)
		if w == 1 && math.Abs(dot) > bound {
			t.Fatalf("%s column %d: r^T M' = %g, bound %g", name, j, dot, bound)
		}
		if math.Abs(c) > 4*bound {
			bigBefore++
		}
	}
	if bigBefore < int(k)/2 {
		t.Fatalf("%s: r^T M was already within the bound in %d of %d columns: the test proves nothing", name, int(k)-bigBefore, k)
	}
}

func TestProjectOut(t *testing.T) {
	cases := []struct {
		name  string
		in    func(t testing.TB) *weft.Checkpoint
		out   string
		names func(int) (string, string)
		h     int
		emb   string
	}{
		{"hf", hfBase, "out", hfNames, 64, "model.embed_tokens.weight"},
		{"f32", func(t testing.TB) *weft.Checkpoint { return ggufBase(t, "f32") }, "out.gguf", ggufNames, 256, "token_embd.weight"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.in(t)
			r := randVec(c.h, 5)
			dir := filepath.Join(t.TempDir(), "r.npy")
			writeNPY(t, dir, []int{c.h}, r)
			dirs, err := LoadDirection(dir)
			if err != nil {
				t.Fatal(err)
			}
			res := mustAblate(t, in, Options{Project: &Project{Directions: dirs, Source: dir, Layers: []int{0, 2}, Weight: 1, Embeddings: true}})
			out := writeOpen(t, res.Out, c.out, 4, in)
			ru := unit(r)
			changed := map[string]bool{c.emb: true}
			for _, l := range []int{0, 2} {
				a, m := c.names(l)
				for _, name := range []string{a, m} {
					changed[name] = true
					checkProjected(t, name, tensorOf(t, in, name), tensorOf(t, out, name), ru, 1, false)
				}
			}
			// Embedding rows: e' = e - r (r.e), rows of the hidden size (transposed view).
			checkProjected(t, c.emb, tensorOf(t, in, c.emb), tensorOf(t, out, c.emb), ru, 1, true)
			untouched(t, in, out, changed)
		})
	}
}

func TestProjectOutPerLayerAndWeight(t *testing.T) {
	in := hfBase(t)
	dirs := make([][]float64, 4)
	flat := []float64{}
	for l := range dirs {
		dirs[l] = randVec(64, uint64(10+l))
		flat = append(flat, dirs[l]...)
	}
	// The per-layer directions as a [4, 64] BF16 safetensors file.
	vec := memTensor("dirs", weft.F32, []int64{4, 64}, encode(t, weft.F32, flat))
	p := filepath.Join(t.TempDir(), "dirs.safetensors")
	if err := ckpt.Write(context.Background(), &weft.Checkpoint{Format: weft.Safetensors, Tensors: []*weft.Tensor{vec}}, p, ckpt.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDirection(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || len(got[3]) != 64 {
		t.Fatalf("LoadDirection: %d x %d", len(got), len(got[0]))
	}
	for l := range dirs {
		for i := range dirs[l] {
			dirs[l][i] = float64(float32(dirs[l][i]))
			if got[l][i] != dirs[l][i] {
				t.Fatalf("LoadDirection[%d][%d] = %v, want %v", l, i, got[l][i], dirs[l][i])
			}
		}
	}
	res := mustAblate(t, in, Options{Project: &Project{Directions: got, Source: p, Layers: []int{1, 3}, Weight: 0.5}})
	for _, l := range []int{1, 3} {
		a, _ := hfNames(l)
		checkProjected(t, a, in.Tensor(a), res.Out.Tensor(a), unit(dirs[l]), 0.5, false)
	}
	if _, err := Ablate(in, Options{Project: &Project{Directions: got, Source: p, Embeddings: true, Weight: 1}}); err == nil || !strings.Contains(err.Error(), "needs a single direction") {
		t.Fatalf("got %v", err)
	}
	if _, err := Ablate(in, Options{Project: &Project{Directions: [][]float64{make([]float64, 64)}, Source: "z", Layers: []int{1}, Weight: 1}}); err == nil || !strings.Contains(err.Error(), "is zero") {
		t.Fatalf("got %v", err)
	}
	if _, err := Ablate(in, Options{Project: &Project{Directions: [][]float64{randVec(32, 1)}, Source: "z", Layers: []int{1}, Weight: 1}}); err == nil || !strings.Contains(err.Error(), "writes 64 values; the direction has 32") {
		t.Fatalf("got %v", err)
	}
}

// TestProjectConv1D projects a direction out of GPT-2's Conv1D weights ([in, out]) and
// biases, which are rows of the hidden size.
func TestProjectConv1D(t *testing.T) {
	in := open(t, fixture(t, "torch/gpt2-tiny-f32.bin"))
	emb := in.Tensor("transformer.wte.weight")
	h := int(emb.Shape[1])
	r := randVec(h, 9)
	res := mustAblate(t, in, Options{Project: &Project{Directions: [][]float64{r}, Source: "mem", Layers: []int{0}, Weight: 1}})
	ru := unit(r)
	for _, name := range []string{"transformer.h.0.attn.c_proj.weight", "transformer.h.0.mlp.c_proj.weight"} {
		checkProjected(t, name, in.Tensor(name), res.Out.Tensor(name), ru, 1, true)
	}
	if !strings.Contains(res.Plan.Describe("transformer.h.0.attn.c_proj.weight"), "project out w=1") {
		t.Errorf("plan: %q", res.Plan.Describe("transformer.h.0.attn.c_proj.weight"))
	}
}

func TestCombined(t *testing.T) {
	// Zero overrides, scale then project compose, and the plan says so.
	in := ggufBase(t, "f32")
	r := randVec(256, 2)
	res := mustAblate(t, in, Options{
		Drop:    []int{0},
		Zero:    &Zero{What: MLP, Layers: []int{1}},
		Scale:   &Scale{Attn: 2, MLP: 1, Layers: []int{1}},
		Project: &Project{Directions: [][]float64{r}, Layers: []int{1}, Weight: 1, Source: "r"},
	})
	// Input layer 1 is output layer 0.
	a, m := ggufNames(0)
	for _, v := range decode(t, res.Out.Tensor(m)) {
		if v != 0 {
			t.Fatal("zeroed ffn_down not zero")
		}
	}
	src, _ := ggufNames(1)
	x := in.Tensor(src)
	scaled := decode(t, x)
	for i := range scaled {
		scaled[i] *= 2
	}
	sx := memTensor(src, weft.F32, x.Shape, encode(t, weft.F32, scaled))
	checkProjected(t, a, sx, res.Out.Tensor(a), unit(r), 1, false)
	var acts []string
	for _, tp := range res.Plan.Tensors {
		if tp.Name == a {
			acts = tp.Actions
			if tp.Source != src || tp.InLayer != 1 || tp.OutLayer != 0 {
				t.Errorf("plan entry %+v", tp)
			}
		}
	}
	if strings.Join(acts, ", ") != "scale 2, project out w=1" {
		t.Errorf("actions %v", acts)
	}
	if d := res.Plan.Describe(m); d != "zero" {
		t.Errorf("zeroed tensor: %q", d)
	}
}

func TestErrors(t *testing.T) {
	in := hfBase(t)
	// Invalid options are *weft.OptionError naming the option (the CLI names the flag).
	for _, c := range []struct {
		opts   Options
		option string
		frag   string
	}{
		{Options{Zero: &Zero{What: "ffn", Layers: []int{1}}}, "zero", `zero=ffn: want attn, mlp or layer`},
		{Options{Zero: &Zero{What: Attn}}, "zero.layers", "no layers given"},
		{Options{Zero: &Zero{What: Attn, Layers: []int{4}}}, "zero.layers", "zero.layers=4: layer out of range: the model has 4 layers (0-3)"},
		{Options{Noise: &Noise{Std: 0, Layers: []int{1}}}, "noise", "must be positive"},
		{Options{Noise: &Noise{Std: 1, Seed: -1, Layers: []int{1}}}, "noise.seed", "noise.seed=-1: must be 0 or more"},
		{Options{Scale: &Scale{Attn: math.NaN(), MLP: 1, Layers: []int{1}}}, "scale", "not a finite number"},
		{Options{Drop: []int{0, 1, 2, 3}}, "drop", "leaves no model"},
		{Options{Drop: []int{7}}, "drop", "drop=7: layer out of range"},
		{Options{Replace: &Replace{Layers: []int{1}}}, "", "no checkpoint given"},
	} {
		_, err := Ablate(in, c.opts)
		var oe *weft.OptionError
		if err == nil || !strings.Contains(err.Error(), c.frag) || (c.option != "" && (!errors.As(err, &oe) || oe.Option != c.option)) {
			t.Errorf("%+v: error %v, want option %q and %q", c.opts, err, c.option, c.frag)
		}
	}
	// A layer without an MLP down projection.
	ts := []*weft.Tensor{memTensor("model.layers.0.self_attn.o_proj.weight", weft.F32, []int64{1, 1}, make([]byte, 4))}
	c := &weft.Checkpoint{Format: weft.Safetensors, Path: "mem", Tensors: ts}
	if _, err := Ablate(c, Options{Zero: &Zero{What: Layer, Layers: []int{0}}}); err == nil || !strings.Contains(err.Error(), "layer 0 has no MLP down projection (down_proj") {
		t.Errorf("got %v", err)
	}
	// A type weft decodes but cannot quantize without an importance matrix (IQ2_XXS): the
	// error names the tensor and the type. Zeros need no quantizer: the all-zero block
	// decodes to zeros.
	ts = []*weft.Tensor{memTensor("blk.0.attn_output.weight", weft.IQ2_XXS, []int64{1, 256}, make([]byte, 66))}
	c = &weft.Checkpoint{Format: weft.GGUF, Path: "mem", Tensors: ts}
	if _, err := Ablate(c, Options{Scale: &Scale{Attn: 2, MLP: 1, Layers: []int{0}}}); err == nil || !strings.Contains(err.Error(), `"blk.0.attn_output.weight": weft cannot encode IQ2_XXS`) {
		t.Errorf("got %v", err)
	}
	if _, err := Ablate(c, Options{Zero: &Zero{What: Attn, Layers: []int{0}}}); err != nil {
		t.Errorf("zeros of IQ2_XXS: %v", err)
	}
}

// TestProjectOutQuantized projects out of Q8_0 matrices: the result is the float64
// reference quantized again, so each value is within Q8_0's rounding of the reference
// (half a step of its block's scale, plus the f16 rounding of that scale).
func TestProjectOutQuantized(t *testing.T) {
	in := ggufBase(t, "q8_0")
	r := randVec(256, 4)
	res := mustAblate(t, in, Options{Project: &Project{Directions: [][]float64{r}, Layers: []int{3}, Weight: 1, Source: "r"}})
	ru := unit(r)
	for _, name := range []string{"blk.3.attn_output.weight", "blk.3.ffn_down.weight"} {
		x := in.Tensor(name)
		m, got := decode(t, x), decode(t, res.Out.Tensor(name))
		rows, cols := x.Shape[0], x.Shape[1]
		c := make([]float64, cols)
		for i := int64(0); i < rows; i++ {
			for j := int64(0); j < cols; j++ {
				c[j] += ru[i] * m[i*cols+j]
			}
		}
		ref := make([]float64, len(m))
		for i := int64(0); i < rows; i++ {
			for j := int64(0); j < cols; j++ {
				ref[i*cols+j] = m[i*cols+j] - ru[i]*c[j]
			}
		}
		for b := 0; b < len(ref); b += 32 {
			amax := 0.0
			for _, v := range ref[b : b+32] {
				amax = math.Max(amax, math.Abs(v))
			}
			d := amax / 127
			for k := b; k < b+32; k++ {
				if math.Abs(got[k]-ref[k]) > 0.6*d+1e-12 {
					t.Fatalf("%s[%d] = %v, reference %v (block step %v)", name, k, got[k], ref[k], d)
				}
			}
		}
		if d := res.Plan.Describe(name); d != "project out w=1, requantize Q8_0" {
			t.Errorf("plan: %q", d)
		}
	}
}
