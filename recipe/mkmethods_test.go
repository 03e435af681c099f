package recipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
)

// The tests below run mergekit configurations of the methods blend.MergeParams configures
// and compare them, tensor by tensor and bit by bit, with the same merge given to blend by
// hand; ties and dare_linear are also checked against float64 references written here from
// mergekit's definitions (generalized_task_arithmetic.py, sparsify.py; config.py's
// evaluate_setting; plan.py's t = layer/(layers-1), t = 0 outside the layers).

const mkLayers = 4

// mkModels writes four small synthetic Hugging Face models of type dt: a base (a) and three
// models tuned from it (b, c, d).
func mkModels(t *testing.T, dt weft.DType) (dir string, paths [4]string) {
	t.Helper()
	dir = t.TempDir()
	for i, name := range []string{"a", "b", "c", "d"} {
		s := synth.Spec{Layers: mkLayers, Hidden: 32, Intermediate: 64, Vocab: 64, Heads: 4, DType: dt, Seed: uint64(30 + i)}
		if i > 0 {
			s.Related = 30
		}
		paths[i] = filepath.Join(dir, name)
		if err := s.Write(context.Background(), paths[i], false); err != nil {
			t.Fatal(err)
		}
	}
	return dir, paths
}

// mkBuild parses and builds a mergekit configuration, for a safetensors output.
func mkBuild(t *testing.T, dir, cfg string) (*Built, error) {
	t.Helper()
	return mkBuildTo(t, dir, cfg, "out")
}

// mkBuildTo parses and builds a mergekit configuration for the output out (in dir).
func mkBuildTo(t *testing.T, dir, cfg, out string) (*Built, error) {
	t.Helper()
	r, err := Parse("merge.yml", dir, []byte(cfg))
	if err != nil {
		return nil, err
	}
	b, err := Build(r, BuildOptions{Output: filepath.Join(dir, out)})
	if err != nil {
		return nil, err
	}
	t.Cleanup(b.Close)
	return b, nil
}

// mkOpen opens checkpoints, closed at the end of the test.
func mkOpen(t *testing.T, paths ...string) []*weft.Checkpoint {
	t.Helper()
	var out []*weft.Checkpoint
	for _, p := range paths {
		c, err := ckpt.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

// tensorBytes reads a tensor's bytes (computing them for a computed tensor).
func tensorBytes(t *testing.T, x *weft.Tensor) []byte {
	t.Helper()
	buf := make([]byte, x.MustSize())
	if _, err := x.Data.ReadAt(buf, 0); err != nil {
		t.Fatalf("%s: %v", x.Name, err)
	}
	return buf
}

// tensorF64 reads a tensor's values.
func tensorF64(t *testing.T, x *weft.Tensor) []float64 {
	t.Helper()
	n, _ := x.NumElements()
	out := make([]float64, n)
	if err := ops.ReadRowsF64(x, 0, x.Rows(), out); err != nil {
		t.Fatalf("%s: %v", x.Name, err)
	}
	return out
}

// mkSameAsBlend requires the configuration's output to equal, byte for byte and tensor by
// tensor, blend run by hand with opts on the inputs (base first), and to differ from the
// base somewhere (the merge did something).
func mkSameAsBlend(t *testing.T, b *Built, opts *blend.Options, inputs []*weft.Checkpoint) *ops.Result {
	t.Helper()
	if len(b.Outputs) != 1 {
		t.Fatalf("%d outputs", len(b.Outputs))
	}
	got := b.Outputs[0].Checkpoint
	want, err := ops.Run(opts, ops.Inputs{Checkpoints: inputs}, weft.Safetensors)
	if err != nil {
		t.Fatalf("blend by hand: %v", err)
	}
	if len(got.Tensors) != len(want.Out.Tensors) {
		t.Fatalf("%d tensors, blend by hand %d", len(got.Tensors), len(want.Out.Tensors))
	}
	changed := 0
	for i, g := range got.Tensors {
		w := want.Out.Tensors[i]
		if g.Name != w.Name || g.DType != w.DType || fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) {
			t.Fatalf("tensor %d: %s %v %v, blend by hand %s %v %v", i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
		}
		gb, wb := tensorBytes(t, g), tensorBytes(t, w)
		if !bytes.Equal(gb, wb) {
			t.Fatalf("tensor %s differs from blend by hand", g.Name)
		}
		if !bytes.Equal(gb, tensorBytes(t, inputs[0].Tensor(g.Name))) {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("the merge left every tensor as the first input has it")
	}
	res := b.Outputs[0].Chain[len(b.Outputs[0].Chain)-1].Result
	for _, x := range got.Tensors {
		if g, w := res.DescribeTensor(x.Name), want.DescribeTensor(x.Name); g != w {
			t.Fatalf("%s: plan %q, blend by hand %q", x.Name, g, w)
		}
	}
	return res
}

func bptr(b bool) *bool { return &b }

// TestMergekitMethodsMatchBlend: every method blend.MergeParams configures, from a mergekit
// configuration with mergekit's parameter names and placement (per-model and global), gives
// exactly the bytes of the same merge given to blend by hand.
func TestMergekitMethodsMatchBlend(t *testing.T) {
	dir, p := mkModels(t, weft.BF16)
	all := mkOpen(t, p[0], p[1], p[2], p[3])
	A, B, C, D := all[0], all[1], all[2], all[3]
	c := blend.Const
	cases := []struct {
		name, cfg string
		opts      blend.Options
		inputs    []*weft.Checkpoint
	}{
		{"ties", `models:
  - model: b
    parameters: {weight: 0.6, density: 0.5}
  - model: c
    parameters: {weight: 0.4, density: 0.7}
merge_method: ties
base_model: a
parameters: {lambda: 0.9, normalize: false, int8_mask: true}
`, blend.Options{Method: blend.TIES, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(0.6), Density: c(0.5)}, {Weight: c(0.4), Density: c(0.7)}},
			Lambda: c(0.9), Normalize: bptr(false)}}, []*weft.Checkpoint{A, B, C}},
		// The base listed among the models (mergekit reads no weight of it), density
		// global.
		{"dare_ties", `models:
  - model: a
  - model: b
    parameters: {weight: 0.5}
  - model: c
    parameters: {weight: 0.8}
  - model: d
    parameters: {weight: -0.3}
merge_method: dare_ties
base_model: a
parameters: {density: 0.6}
`, blend.Options{Method: blend.DARETIES, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(0.5), Density: c(0.6)}, {Weight: c(0.8), Density: c(0.6)}, {Weight: c(-0.3), Density: c(0.6)}}}},
			[]*weft.Checkpoint{A, B, C, D}},
		{"dare_linear", `models:
  - model: b
    parameters: {weight: 0.7, density: 0.4}
  - model: c
    parameters: {weight: 0.3, density: 0.9}
merge_method: dare_linear
base_model: a
parameters: {rescale: false, normalize: true}
`, blend.Options{Method: blend.DARELinear, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(0.7), Density: c(0.4)}, {Weight: c(0.3), Density: c(0.9)}},
			Rescale: bptr(false), Normalize: bptr(true)}}, []*weft.Checkpoint{A, B, C}},
		{"breadcrumbs", `models:
  - model: b
    parameters: {weight: 1, density: 0.8, gamma: 0.05}
  - model: c
    parameters: {weight: 0.5}
merge_method: breadcrumbs
base_model: a
parameters: {density: 0.6}
`, blend.Options{Method: blend.Breadcrumbs, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(1), Density: c(0.8), Gamma: c(0.05)}, {Weight: c(0.5), Density: c(0.6)}}}},
			[]*weft.Checkpoint{A, B, C}},
		{"breadcrumbs_ties", `models:
  - model: b
    parameters: {weight: 0.6}
  - model: c
    parameters: {weight: 0.6}
merge_method: breadcrumbs_ties
base_model: a
parameters: {density: 0.7, gamma: 0.1, lambda: 1.2}
`, blend.Options{Method: blend.BreadcrumbsTIES, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(0.6), Density: c(0.7), Gamma: c(0.1)}, {Weight: c(0.6), Density: c(0.7), Gamma: c(0.1)}},
			Lambda: c(1.2)}}, []*weft.Checkpoint{A, B, C}},
		{"della", `models:
  - model: b
    parameters: {weight: 0.5, density: 0.5, epsilon: 0.2}
  - model: c
    parameters: {weight: 0.5, density: 0.6}
merge_method: della
base_model: a
`, blend.Options{Method: blend.DELLA, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(0.5), Density: c(0.5), Epsilon: c(0.2)}, {Weight: c(0.5), Density: c(0.6)}}}},
			[]*weft.Checkpoint{A, B, C}},
		{"della_linear", `models:
  - model: b
    parameters: {weight: 0.5}
  - model: c
    parameters: {weight: 0.5}
merge_method: della_linear
base_model: a
parameters: {density: 0.4, epsilon: 0.1, lambda: 0.7}
`, blend.Options{Method: blend.DELLALinear, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(0.5), Density: c(0.4), Epsilon: c(0.1)}, {Weight: c(0.5), Density: c(0.4), Epsilon: c(0.1)}},
			Lambda: c(0.7)}}, []*weft.Checkpoint{A, B, C}},
		{"model_stock", `models:
  - model: b
  - model: c
  - model: d
merge_method: model_stock
base_model: a
parameters: {filter_wise: true}
`, blend.Options{Method: blend.ModelStock, Params: blend.MergeParams{FilterWise: true}}, []*weft.Checkpoint{A, B, C, D}},
		{"nuslerp with a base", `models:
  - model: b
    parameters: {weight: 0.3}
  - model: c
    parameters: {weight: 0.9}
merge_method: nuslerp
base_model: a
`, blend.Options{Method: blend.NuSlerp, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(0.3)}, {Weight: c(0.9)}}}}, []*weft.Checkpoint{A, B, C}},
		{"nuslerp without a base, by columns", `models:
  - model: c
    parameters: {weight: 1}
  - model: b
    parameters: {weight: 2}
merge_method: nuslerp
parameters: {nuslerp_flatten: false, nuslerp_row_wise: true}
`, blend.Options{Method: blend.NuSlerp, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(1)}, {Weight: c(2)}}, NoBase: true,
			NuSlerpFlatten: bptr(false), NuSlerpRowWise: true}}, []*weft.Checkpoint{C, B}},
		{"multislerp with a base", `models:
  - model: b
    parameters: {weight: 0.2}
  - model: c
    parameters: {weight: 0.3}
  - model: d
    parameters: {weight: 0.5}
merge_method: multislerp
base_model: a
`, blend.Options{Method: blend.MultiSlerp, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(0.2)}, {Weight: c(0.3)}, {Weight: c(0.5)}}}}, []*weft.Checkpoint{A, B, C, D}},
		{"multislerp without a base", `models:
  - model: b
    parameters: {weight: 1}
  - model: c
    parameters: {weight: 3}
  - model: d
    parameters: {weight: 2}
merge_method: multislerp
parameters: {normalize_weights: false, eps: 1e-6}
`, blend.Options{Method: blend.MultiSlerp, Params: blend.MergeParams{Models: []blend.ModelParams{{Weight: c(1)}, {Weight: c(3)}, {Weight: c(2)}}, NoBase: true,
			NormalizeWeights: bptr(false), Eps: func() *float64 { x := 1e-6; return &x }()}}, []*weft.Checkpoint{B, C, D}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := mkBuild(t, dir, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if op := b.Outputs[0].Chain[0].Op.(*blend.Options); op.Method != tc.opts.Method {
				t.Fatalf("method %s, want %s", op.Method, tc.opts.Method)
			}
			mkSameAsBlend(t, b, &tc.opts, tc.inputs)
		})
	}
}

// mkGrad is evaluate_setting for a list of numbers at t (each product rounded, as Python
// computes it).
func mkGrad(g []float64, t float64) float64 {
	scaled := t * float64(len(g)-1)
	i0 := int(scaled)
	i1 := min(len(g)-1, i0+1)
	frac := scaled - float64(i0)
	return float64((1-frac)*g[i0]) + float64(frac*g[i1])
}

// mkT is plan.py's t of a tensor: layer/(layers-1) inside the layers, 0 outside.
func mkT(name string) float64 {
	var l int
	if _, err := fmt.Sscanf(name, "model.layers.%d.", &l); err == nil {
		return float64(l) / float64(mkLayers-1)
	}
	return 0
}

// mkRules gives every tensor of c its value f(name), one rule per tensor: blend's
// per-tensor parameters written out by hand.
func mkRules(c *weft.Checkpoint, f func(name string) float64) *blend.Value {
	v := &blend.Value{Default: 12345}
	for _, x := range c.Tensors {
		v.For = append(v.For, blend.ValueRule{Pattern: x.Name, Value: f(x.Name)})
	}
	return v
}

// TestMergekitGradientsAndFilters: densities, weights and lambda given as gradients over the
// layers and as filter conditions (per model, per slice, global, nested) take, tensor by
// tensor, the values evaluate_setting gives; the merge equals blend given those values
// tensor by tensor by hand.
func TestMergekitGradientsAndFilters(t *testing.T) {
	dir, p := mkModels(t, weft.BF16)
	all := mkOpen(t, p[0], p[1], p[2])
	A := all[0]
	has := func(name, s string) bool { return strings.Contains(name, s) }

	// ties: model b's density a gradient, c's conditions with a nested gradient; weights
	// by filter; lambda a global gradient; the slices form with its own parameters.
	cfg := `slices:
  - sources:
      - model: a
        layer_range: [0, 4]
      - model: b
        layer_range: [0, 4]
        parameters:
          density: [0.2, 0.9, 0.5]
          weight:
            - filter: mlp
              value: 0.8
            - value: 0.3
      - model: c
        layer_range: [0, 4]
        parameters:
          density:
            - filter: self_attn
              value: [1, 0.25]
            - filter: embed
              value: 0.6
          weight: [0.5, 1.5]
    parameters:
      density: 0.75
merge_method: ties
base_model: a
parameters:
  lambda: [1, 0.5]
`
	b, err := mkBuild(t, dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	densB := func(n string) float64 { return mkGrad([]float64{0.2, 0.9, 0.5}, mkT(n)) }
	densC := func(n string) float64 {
		switch {
		case has(n, "self_attn"):
			return mkGrad([]float64{1, 0.25}, mkT(n))
		case has(n, "embed"):
			return 0.6
		}
		return 0.75 // the slice's
	}
	weightB := func(n string) float64 {
		if has(n, "mlp") {
			return 0.8
		}
		return 0.3
	}
	weightC := func(n string) float64 { return mkGrad([]float64{0.5, 1.5}, mkT(n)) }
	lambda := func(n string) float64 { return mkGrad([]float64{1, 0.5}, mkT(n)) }
	opts := blend.Options{Method: blend.TIES, Params: blend.MergeParams{
		Models: []blend.ModelParams{{Weight: mkRules(A, weightB), Density: mkRules(A, densB)}, {Weight: mkRules(A, weightC), Density: mkRules(A, densC)}},
		Lambda: mkRules(A, lambda)}}
	res := mkSameAsBlend(t, b, &opts, all)
	// The plan shows each tensor's values.
	num := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	for _, name := range []string{"model.layers.1.mlp.up_proj.weight", "model.layers.3.self_attn.q_proj.weight",
		"model.embed_tokens.weight", "model.layers.2.post_attention_layernorm.weight"} {
		want := fmt.Sprintf("ties weight=%s,%s density=%s,%s lambda=%g", num(weightB(name)), num(weightC(name)),
			num(densB(name)), num(densC(name)), lambda(name))
		if got := res.DescribeTensor(name); got != want {
			t.Errorf("%s: plan %q, want %q", name, got, want)
		}
	}

	// nuslerp with per-tensor weights (t = w2/(w1+w2) per tensor), no base.
	cfg = `models:
  - model: b
    parameters:
      weight: [1, 3]
  - model: c
    parameters:
      weight:
        - filter: self_attn.v_proj
          value: 2
        - value: 1
merge_method: nuslerp
`
	if b, err = mkBuild(t, dir, cfg); err != nil {
		t.Fatal(err)
	}
	opts = blend.Options{Method: blend.NuSlerp, Params: blend.MergeParams{NoBase: true, Models: []blend.ModelParams{
		{Weight: mkRules(all[1], func(n string) float64 { return mkGrad([]float64{1, 3}, mkT(n)) })},
		{Weight: mkRules(all[1], func(n string) float64 {
			if has(n, "self_attn.v_proj") {
				return 2
			}
			return 1
		})}}}}
	mkSameAsBlend(t, b, &opts, all[1:])
}

// mkCheckF32 requires the F32 values got to be the float64 reference rounded to float32.
// The reference sums in another order than weft, so it is known to within rel times mag
// (the magnitude of its terms): a value in that interval is accepted but counted, and those
// must be rare (a reference within rounding error of a midpoint between two float32s).
func mkCheckF32(t *testing.T, what string, got, ref, mag []float64, rel float64) {
	t.Helper()
	near := 0
	for i := range ref {
		if got[i] == float64(float32(ref[i])) {
			continue
		}
		d := rel * mag[i]
		if lo, hi := float64(float32(ref[i]-d)), float64(float32(ref[i]+d)); got[i] >= lo && got[i] <= hi {
			near++
			continue
		}
		t.Fatalf("%s[%d] = %v, mergekit's definition gives %v", what, i, got[i], ref[i])
	}
	if near > len(ref)/100+1 {
		t.Fatalf("%s: %d of %d values off by one rounding", what, near, len(ref))
	}
}

// mkRefTensors are the tensors the references are computed for: a matrix in a layer, a
// norm, the embeddings.
var mkRefTensors = []string{"model.layers.1.mlp.down_proj.weight", "model.layers.2.self_attn.q_proj.weight",
	"model.layers.3.input_layernorm.weight", "model.embed_tokens.weight"}

// TestMergekitTIESReference: ties from a mergekit configuration (per-model densities, one a
// gradient, weights, lambda, normalize by default) against mergekit's definition in
// float64: trim each task vector to its int(density*n) largest magnitudes, elect the sign of
// the weighted sum, average the agreeing weighted values by their weights, times lambda.
func TestMergekitTIESReference(t *testing.T) {
	dir, p := mkModels(t, weft.F32)
	in := mkOpen(t, p[0], p[1], p[2])
	b, err := mkBuild(t, dir, `models:
  - model: b
    parameters: {weight: 0.7, density: [0.3, 0.9]}
  - model: c
    parameters: {weight: 0.5, density: 0.5}
merge_method: ties
base_model: a
parameters: {lambda: 0.8}
dtype: float32
`)
	if err != nil {
		t.Fatal(err)
	}
	out := b.Outputs[0].Checkpoint
	weights := []float64{0.7, 0.5}
	for _, name := range mkRefTensors {
		base := tensorF64(t, in[0].Tensor(name))
		n := len(base)
		dens := []float64{mkGrad([]float64{0.3, 0.9}, mkT(name)), 0.5}
		wd := make([][]float64, 2)
		for k := range wd {
			x := tensorF64(t, in[k+1].Tensor(name))
			d := make([]float64, n)
			for i := range d {
				d[i] = x[i] - base[i]
			}
			// magnitude(): keep the int(density*n) largest |d| (no equal magnitudes in
			// these random values).
			idx := make([]int, n)
			for i := range idx {
				idx[i] = i
			}
			sort.SliceStable(idx, func(i, j int) bool { return math.Abs(d[idx[i]]) > math.Abs(d[idx[j]]) })
			keep := make([]bool, n)
			for _, i := range idx[:int(dens[k]*float64(n))] {
				keep[i] = true
			}
			wd[k] = make([]float64, n)
			for i := range d {
				if keep[i] {
					wd[k][i] = d[i] * weights[k]
				}
			}
		}
		ref, mag := make([]float64, n), make([]float64, n)
		for i := range ref {
			sum := wd[0][i] + wd[1][i]
			maj := -1.0
			if sum >= 0 {
				maj = 1
			}
			var mixed, div float64
			for k := range wd {
				if v := wd[k][i]; (v > 0 && maj > 0) || (v < 0 && maj < 0) {
					mixed += v
					div += weights[k]
				}
			}
			if div == 0 {
				div = 1
			}
			ref[i] = base[i] + (mixed/div)*0.8
			mag[i] = math.Abs(base[i]) + math.Abs(wd[0][i]) + math.Abs(wd[1][i])
		}
		mkCheckF32(t, "ties "+name, tensorF64(t, out.Tensor(name)), ref, mag, 1e-14)
	}
}

// TestMergekitDARELinearReference: dare_linear from a mergekit configuration against its
// definition in float64: each element of each task vector kept with probability density
// (weft's counter-based draw: element c of row r of model k is kept when the c-th Uniform()
// of ops.RowStream(seed, name+"\x00"+k, r) is below the density; mergekit's configurations
// have no seed, weft's is 0), the survivors rescaled by the ratio of the L1 norms (rescale,
// on by default), weighted and summed (normalize off by default).
func TestMergekitDARELinearReference(t *testing.T) {
	dir, p := mkModels(t, weft.F32)
	in := mkOpen(t, p[0], p[1], p[2])
	b, err := mkBuild(t, dir, `models:
  - model: b
    parameters:
      weight: 0.6
      density:
        - filter: mlp
          value: 0.3
        - value: 0.7
  - model: c
    parameters: {weight: 0.9, density: 0.5}
merge_method: dare_linear
base_model: a
dtype: float32
`)
	if err != nil {
		t.Fatal(err)
	}
	out := b.Outputs[0].Checkpoint
	weights := []float64{0.6, 0.9}
	for _, name := range mkRefTensors {
		bt := in[0].Tensor(name)
		base := tensorF64(t, bt)
		n, rowLen := len(base), int(bt.RowLen())
		dens := []float64{0.7, 0.5}
		if strings.Contains(name, "mlp") {
			dens[0] = 0.3
		}
		ref, mag := append([]float64(nil), base...), make([]float64, n)
		for i := range mag {
			mag[i] = math.Abs(base[i])
		}
		for k := range weights {
			x := tensorF64(t, in[k+1].Tensor(name))
			d, keep := make([]float64, n), make([]bool, n)
			var before, after float64
			for r := 0; r < n/rowLen; r++ {
				st := ops.RowStream(0, name+"\x00"+strconv.Itoa(k+1), int64(r))
				for c := 0; c < rowLen; c++ {
					i := r*rowLen + c
					d[i] = x[i] - base[i]
					keep[i] = st.Uniform() < dens[k]
					before += math.Abs(d[i])
					if keep[i] {
						after += math.Abs(d[i])
					}
				}
			}
			f := before / after
			if before < 1e-7 || after < 1e-7 {
				f = 1
			}
			for i := range d {
				if keep[i] {
					ref[i] += d[i] * f * weights[k]
					mag[i] += math.Abs(d[i] * f * weights[k])
				}
			}
		}
		mkCheckF32(t, "dare_linear "+name, tensorF64(t, out.Tensor(name)), ref, mag, 1e-13)
	}
}

// TestMergekitMethodMistakes: configurations the methods refuse are errors at the line (and
// column) of the setting at fault.
func TestMergekitMethodMistakes(t *testing.T) {
	dir, _ := mkModels(t, weft.BF16)
	two := "models:\n  - model: b\n    parameters: {weight: 0.5}\n  - model: c\n    parameters: {weight: 0.5}\n"
	cases := []struct {
		name, cfg string
		line, col int
		want      string
	}{
		{"unknown parameter", "merge_method: ties\nbase_model: a\n" + two + "parameters: {gamma: 0.1}\n", 8, 14, `ties has no parameter "gamma"`},
		{"unknown per-model parameter", "merge_method: dare_linear\nbase_model: a\nmodels:\n  - model: b\n    parameters: {weight: 0.5, epsilon: 0.1}\n", 5, 31, `dare_linear has no parameter "epsilon"`},
		{"weight of model_stock", "merge_method: model_stock\nbase_model: a\n" + two, 5, 18, `model_stock has no parameter "weight" (it has filter_wise)`},
		{"global parameter of a model", "merge_method: della\nbase_model: a\nmodels:\n  - model: b\n    parameters: {weight: 0.5, lambda: 2}\n", 5, 31, "lambda is a global parameter of della"},
		{"consensus_method is not mergekit's", "merge_method: ties\nbase_model: a\n" + two + "parameters: {consensus_method: count}\n", 8, 14, `no parameter "consensus_method"`},
		{"density above 1", "merge_method: ties\nbase_model: a\nmodels:\n  - model: b\n    parameters: {weight: 0.5, density: 1.5}\n", 5, 40, "density 1.5 is outside [0, 1]"},
		{"density below 0 in a gradient", "merge_method: dare_ties\nbase_model: a\n" + two + "parameters:\n  density: [0.5, -0.1]\n", 9, 18, "density -0.1 is outside [0, 1]"},
		{"density in a condition", "merge_method: breadcrumbs\nbase_model: a\n" + two + "parameters:\n  density:\n    - filter: mlp\n      value: 2\n", 11, 14, "density 2 is outside [0, 1]"},
		{"gamma above 1", "merge_method: breadcrumbs_ties\nbase_model: a\n" + two + "parameters: {gamma: 1.01}\n", 8, 21, "gamma 1.01 is outside [0, 1]"},
		{"normalize not a boolean", "merge_method: ties\nbase_model: a\n" + two + "parameters: {normalize: 1}\n", 8, 25, "normalize: want true or false"},
		{"a list of booleans", "merge_method: ties\nbase_model: a\n" + two + "parameters: {rescale: [true, false]}\n", 8, 23, "a list of true/false"},
		{"weight not a number", "merge_method: nuslerp\nmodels:\n  - model: b\n    parameters: {weight: heavy}\n  - model: c\n    parameters: {weight: 1}\n", 4, 26, "weight: want a number"},
		{"negative eps", "merge_method: multislerp\n" + two + "parameters: {eps: -1e-8}\n", 7, 19, "eps -1e-08 is negative"},
		{"ties without base_model", "merge_method: ties\n" + two, 1, 15, "ties needs a base_model"},
		{"model_stock without base_model", "merge_method: model_stock\nmodels:\n  - model: b\n  - model: c\n  - model: d\n", 1, 15, "model_stock needs a base_model"},
		{"della_linear without base_model", "merge_method: della_linear\n" + two, 1, 15, "della_linear needs a base_model"},
		{"missing weight", "merge_method: ties\nbase_model: a\nmodels:\n  - model: b\n    parameters: {density: 0.5}\n  - model: c\n    parameters: {weight: 0.5}\n", 4, 5, "model b has no weight"},
		{"missing weight without a base", "merge_method: multislerp\nmodels:\n  - model: b\n    parameters: {weight: 0.5}\n  - model: c\n", 5, 5, "model c has no weight (mergekit requires one for every model merged)"},
		{"model_stock of one model", "merge_method: model_stock\nbase_model: a\nmodels:\n  - model: b\n", 4, 3, "model_stock needs the base_model and at least two other models, got 1 other"},
		{"nuslerp of three", "merge_method: nuslerp\nbase_model: a\n" + two + "  - model: d\n    parameters: {weight: 1}\n", 4, 3, "nuslerp with a base_model merges exactly two other models, got 3"},
		{"karcher", "merge_method: karcher\n" + two, 1, 15, "merge_method karcher is not one weft runs"},
		// Found when the models are read: a setting that gives tensors different values of
		// a parameter weft holds once, della's epsilon against the density, a weight whose
		// conditions match no tensor.
		{"normalize per tensor", "merge_method: ties\nbase_model: a\n" + two + "parameters:\n  normalize:\n    - filter: mlp\n      value: false\n    - value: true\n", 11, 14, "normalize is false for tensor model.layers.0.mlp.down_proj.weight but true for tensor model.embed_tokens.weight"},
		{"eps on some tensors", "merge_method: multislerp\n" + two + "parameters:\n  eps:\n    - filter: mlp\n      value: 0.001\n", 10, 14, "eps is 0.001 for tensor model.layers.0.mlp.down_proj.weight but unset (no condition matches) for tensor model.embed_tokens.weight"},
		{"della epsilon", "merge_method: della\nbase_model: a\n" + two + "parameters:\n  density: 0.8\n  epsilon: [0.1, 0.3]\n", 10, 12, "epsilon 0.23333333333333334 with density 0.8 (model b, tensor model.layers.2.input_layernorm.weight)"},
		{"weight matching no tensor", "merge_method: ties\nbase_model: a\nmodels:\n  - model: b\n    parameters:\n      weight:\n        - filter: mlp\n          value: 1\n  - model: c\n    parameters: {weight: 0.5}\n", 4, 5, "no weight of model b for tensor model.embed_tokens.weight"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := mkBuild(t, dir, c.cfg)
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("want an *Error, got %v", err)
			}
			if re.Line != c.line || re.Column != c.col || !strings.Contains(re.Msg, c.want) {
				t.Fatalf("got %v (line %d col %d), want line %d col %d containing %q", err, re.Line, re.Column, c.line, c.col, c.want)
			}
		})
	}
}

// TestMergekitGGUF: on quantized GGUF models (Q8_0 matrices), filters match the tensors'
// Hugging Face names (blk.N.ffn_up is mlp.up_proj) and gradients their layers; the merge
// equals blend given the values tensor by tensor by hand, and the output keeps the inputs'
// types.
func TestMergekitGGUF(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i, name := range []string{"a.gguf", "b.gguf", "c.gguf"} {
		s := synth.Spec{Layers: mkLayers, Hidden: 32, Intermediate: 64, Vocab: 64, Heads: 4, DType: weft.Q8_0, Seed: uint64(40 + i), GGUF: true}
		if i > 0 {
			s.Related = 40
		}
		paths = append(paths, filepath.Join(dir, name))
		if err := s.Write(context.Background(), paths[i], false); err != nil {
			t.Fatal(err)
		}
	}
	in := mkOpen(t, paths...)
	b, err := mkBuildTo(t, dir, `models:
  - model: b.gguf
    parameters:
      weight:
        - filter: mlp.up_proj
          value: [0.2, 1]
        - value: 0.5
  - model: c.gguf
    parameters: {weight: 0.5}
merge_method: della_linear
base_model: a.gguf
parameters:
  density:
    - filter: self_attn
      value: 0.3
    - value: 0.6
`, "out.gguf")
	if err != nil {
		t.Fatal(err)
	}
	layer := func(n string) float64 {
		var l int
		if _, err := fmt.Sscanf(n, "blk.%d.", &l); err == nil {
			return float64(l) / float64(mkLayers-1)
		}
		return 0
	}
	weightB := func(n string) float64 {
		if strings.Contains(n, ".ffn_up.") {
			return mkGrad([]float64{0.2, 1}, layer(n))
		}
		return 0.5
	}
	density := func(n string) float64 {
		if strings.Contains(n, ".attn_q.") || strings.Contains(n, ".attn_k.") || strings.Contains(n, ".attn_v.") || strings.Contains(n, ".attn_output.") {
			return 0.3
		}
		return 0.6
	}
	opts := blend.Options{Method: blend.DELLALinear, Params: blend.MergeParams{Models: []blend.ModelParams{
		{Weight: mkRules(in[0], weightB), Density: mkRules(in[0], density)},
		{Weight: blend.Const(0.5), Density: mkRules(in[0], density)}}}}
	got := b.Outputs[0].Checkpoint
	want, err := ops.Run(&opts, ops.Inputs{Checkpoints: in}, weft.GGUF)
	if err != nil {
		t.Fatal(err)
	}
	quantized := 0
	for i, g := range got.Tensors {
		w := want.Out.Tensors[i]
		if g.Name != w.Name || g.DType != in[0].Tensors[i].DType || w.DType != g.DType {
			t.Fatalf("tensor %d: %s %v, blend by hand %s %v, input %v", i, g.Name, g.DType, w.Name, w.DType, in[0].Tensors[i].DType)
		}
		if !bytes.Equal(tensorBytes(t, g), tensorBytes(t, w)) {
			t.Fatalf("tensor %s differs from blend by hand", g.Name)
		}
		if g.DType == weft.Q8_0 {
			quantized++
		}
	}
	if quantized == 0 {
		t.Fatal("no quantized tensor merged")
	}
}

// TestMergekitVaryingWeights: linear and task_arithmetic of several models whose weights
// differ between tensors (a gradient, a filter), which one weight per model cannot express,
// give mergekit's definitions per tensor: linear sum_i w_i*x_i / sum_i w_i (normalize),
// task_arithmetic base + lambda*sum_k w_k*(x_k - base) / sum_k w_k (normalize).
func TestMergekitVaryingWeights(t *testing.T) {
	dir, p := mkModels(t, weft.F32)
	in := mkOpen(t, p[0], p[1], p[2])
	wA := func(n string) float64 { return mkGrad([]float64{0.1, 0.5, 0.9}, mkT(n)) }
	wB := func(n string) float64 {
		if strings.Contains(n, "self_attn") {
			return 0.7
		}
		return 0.2
	}
	wC := func(string) float64 { return 0.4 }
	b, err := mkBuild(t, dir, `models:
  - model: a
    parameters: {weight: [0.1, 0.5, 0.9]}
  - model: b
    parameters:
      weight:
        - filter: self_attn
          value: 0.7
        - value: 0.2
  - model: c
    parameters: {weight: 0.4}
merge_method: linear
dtype: float32
`)
	if err != nil {
		t.Fatal(err)
	}
	if m := b.Outputs[0].Chain[0].Op.(*blend.Options).Method; m != blend.TaskArithmetic {
		t.Fatalf("method %s", m)
	}
	for _, name := range mkRefTensors {
		xa, xb, xc := tensorF64(t, in[0].Tensor(name)), tensorF64(t, in[1].Tensor(name)), tensorF64(t, in[2].Tensor(name))
		a, bb, c := wA(name), wB(name), wC(name)
		ref, mag := make([]float64, len(xa)), make([]float64, len(xa))
		for i := range ref {
			ref[i] = (a*xa[i] + bb*xb[i] + c*xc[i]) / (a + bb + c)
			mag[i] = math.Abs(xa[i]) + math.Abs(xb[i]) + math.Abs(xc[i])
		}
		mkCheckF32(t, "linear "+name, tensorF64(t, b.Outputs[0].Checkpoint.Tensor(name)), ref, mag, 1e-14)
	}

	b, err = mkBuild(t, dir, `models:
  - model: b
    parameters:
      weight:
        - filter: mlp
          value: [0.3, 1.2]
        - value: 0.6
  - model: c
    parameters: {weight: 0.5}
merge_method: task_arithmetic
base_model: a
parameters: {lambda: [0.5, 1], normalize: true}
dtype: float32
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range mkRefTensors {
		xa, xb, xc := tensorF64(t, in[0].Tensor(name)), tensorF64(t, in[1].Tensor(name)), tensorF64(t, in[2].Tensor(name))
		wb, wc := 0.6, 0.5
		if strings.Contains(name, "mlp") {
			wb = mkGrad([]float64{0.3, 1.2}, mkT(name))
		}
		lambda := mkGrad([]float64{0.5, 1}, mkT(name))
		ref, mag := make([]float64, len(xa)), make([]float64, len(xa))
		for i := range ref {
			ref[i] = xa[i] + lambda*(wb*(xb[i]-xa[i])+wc*(xc[i]-xa[i]))/(wb+wc)
			mag[i] = math.Abs(xa[i]) + math.Abs(xb[i]) + math.Abs(xc[i])
		}
		mkCheckF32(t, "task_arithmetic "+name, tensorF64(t, b.Outputs[0].Checkpoint.Tensor(name)), ref, mag, 1e-14)
	}
}
