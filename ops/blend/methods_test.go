package blend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
)

// Shapes of the merge tests: a matrix, a vector and a 3-D tensor, named so that arch finds
// their layers.
var mergeShapes = []struct {
	name  string
	shape []int64
}{
	{"model.layers.0.mlp.up_proj.weight", []int64{6, 10}},
	{"model.layers.1.input_layernorm.weight", []int64{12}},
	{"model.layers.1.self_attn.q_proj.weight", []int64{2, 3, 4}},
}

// gridModels makes a base and ntuned tuned models whose values sit on coarse grids, so that
// task vectors are exact and full of equal magnitudes (ties at every threshold) and of zeros.
func gridModels(t testing.TB, seed uint64, ntuned int, dt weft.DType) (*weft.Checkpoint, []*weft.Checkpoint) {
	r := rand.New(rand.NewPCG(seed, 7))
	var bts []*weft.Tensor
	tts := make([][]*weft.Tensor, ntuned)
	for _, s := range mergeShapes {
		n := int64(1)
		for _, d := range s.shape {
			n *= d
		}
		b := make([]float64, n)
		for i := range b {
			b[i] = float64(r.IntN(129)-64) / 64
		}
		bts = append(bts, mkTensor(t, s.name, dt, s.shape, b))
		for k := range tts {
			u := make([]float64, n)
			for i := range u {
				u[i] = b[i] + float64(r.IntN(7)-3)/16
			}
			tts[k] = append(tts[k], mkTensor(t, s.name, dt, s.shape, u))
		}
	}
	base := mkCkpt("base", weft.Safetensors, bts...)
	var tuned []*weft.Checkpoint
	for k := range tts {
		tuned = append(tuned, mkCkpt(fmt.Sprintf("tuned%d", k+1), weft.Safetensors, tts[k]...))
	}
	return base, tuned
}

// gaussModels makes a base and tuned models with normal values (no ties).
func gaussModels(t testing.TB, seed uint64, ntuned int, dt weft.DType) (*weft.Checkpoint, []*weft.Checkpoint) {
	var bts []*weft.Tensor
	tts := make([][]*weft.Tensor, ntuned)
	for i, s := range mergeShapes {
		n := int64(1)
		for _, d := range s.shape {
			n *= d
		}
		b := randVals(seed*100+uint64(i), int(n), 0.05)
		bts = append(bts, mkTensor(t, s.name, dt, s.shape, b))
		for k := range tts {
			d := randVals(seed*100+uint64(i)+uint64(k+1)*1000, int(n), 0.01)
			for j := range d {
				d[j] += b[j]
			}
			tts[k] = append(tts[k], mkTensor(t, s.name, dt, s.shape, d))
		}
	}
	base := mkCkpt("base", weft.Safetensors, bts...)
	var tuned []*weft.Checkpoint
	for k := range tts {
		tuned = append(tuned, mkCkpt(fmt.Sprintf("tuned%d", k+1), weft.Safetensors, tts[k]...))
	}
	return base, tuned
}

// close reports whether got matches want to float64 rounding (the reference sums in another
// order).
func mergeClose(got, want float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	return math.Abs(got-want) <= 1e-12*math.Max(1, math.Abs(want))
}

func checkMerge(t *testing.T, what string, r *Result, want func(i int) []float64) {
	t.Helper()
	for i, out := range r.Out.Tensors {
		got := decodeAll(t, out)
		w := want(i)
		for e := range got {
			if !mergeClose(got[e], w[e]) {
				t.Fatalf("%s: %s element %d: got %v, the float64 reference says %v (step %s)", what, out.Name, e, got[e], w[e], r.Steps[i].Describe())
			}
		}
	}
}

func vals(t *testing.T, c *weft.Checkpoint, i int) []float64 { return decodeAll(t, c.Tensors[i]) }

func tunedVals(t *testing.T, tuned []*weft.Checkpoint, i int) [][]float64 {
	var out [][]float64
	for _, c := range tuned {
		out = append(out, vals(t, c, i))
	}
	return out
}

func models(weight, density []float64) []ModelParams {
	var m []ModelParams
	for i := range weight {
		mp := ModelParams{Weight: Const(weight[i])}
		if density != nil {
			mp.Density = Const(density[i])
		}
		m = append(m, mp)
	}
	return m
}

func boolp(b bool) *bool { return &b }

func TestGTAMethodsMatchReference(t *testing.T) {
	type tc struct {
		method  Method
		weight  []float64
		density []float64
		extra   func(*MergeParams)
		ref     func(p *refGTAParams)
	}
	cases := []tc{
		{TaskArithmetic, []float64{0.7, -0.4, 1.1}, nil, func(p *MergeParams) { p.Lambda = Const(1.5) }, nil},
		{TaskArithmetic, []float64{1, 1, 1}, nil, func(p *MergeParams) { p.Normalize = boolp(true) }, nil},
		// Negative weights, ties at the threshold, density 0 and 1 among the models.
		{TIES, []float64{1, -0.5, 0.7}, []float64{0.5, 0.3, 1}, nil, nil},
		{TIES, []float64{1, 0.5, 2}, []float64{0, 0.5, 0.25}, func(p *MergeParams) { p.Lambda = Const(0.8) }, nil},
		{TIES, []float64{1, 1, 1}, []float64{1, 1, 1}, nil, nil},
		{TIES, []float64{1, 1, 1}, []float64{0, 0, 0}, nil, nil},
		{TIES, []float64{1, -1, 1}, []float64{0.4, 0.6, 0.5}, func(p *MergeParams) { p.ConsensusMethod = "count"; p.Rescale = boolp(true) }, nil},
		{TIES, []float64{0.3, 0.3, 0.4}, []float64{0.5, 0.5, 0.5}, func(p *MergeParams) { p.Normalize = boolp(false) }, nil},
		{DARELinear, []float64{1, 0.5, -0.3}, []float64{0.5, 0.9, 0.1}, func(p *MergeParams) { p.Seed = 42 }, nil},
		{DARELinear, []float64{1, 1, 1}, []float64{0, 1, 0.5}, func(p *MergeParams) { p.Seed = 7; p.Rescale = boolp(false) }, nil},
		{DARETIES, []float64{1, -0.5, 0.7}, []float64{0.3, 0.6, 0.9}, func(p *MergeParams) { p.Seed = 3 }, nil},
		{DELLA, []float64{1, 0.6, -0.2}, []float64{0.5, 0.4, 0.7}, func(p *MergeParams) {
			p.Seed = 11
			p.Models[1].Epsilon = Const(0.3)
		}, func(p *refGTAParams) { p.epsilon[1] = 0.3 }},
		{DELLALinear, []float64{1, 1, 1}, []float64{0.5, 0, 1}, func(p *MergeParams) { p.Seed = 5 }, nil},
		{Breadcrumbs, []float64{1, 0.5, 0.5}, []float64{0.5, 0.9, 0.8}, func(p *MergeParams) {
			p.Models[0].Gamma = Const(0.1)
			p.Models[1].Gamma = Const(0) // mergekit's indices[n_bot:-0] bug: weft keeps the top
			p.Models[2].Gamma = Const(0.5)
		}, func(p *refGTAParams) { p.gamma = []float64{0.1, 0, 0.5} }},
		{BreadcrumbsTIES, []float64{1, -1, 0.5}, []float64{0.6, 0.7, 0.8}, nil, nil},
	}
	for ci, c := range cases {
		for _, data := range []string{"grid", "gauss"} {
			var base *weft.Checkpoint
			var tuned []*weft.Checkpoint
			if data == "grid" {
				base, tuned = gridModels(t, uint64(ci+1), 3, weft.F64)
			} else {
				base, tuned = gaussModels(t, uint64(ci+1), 3, weft.F64)
			}
			p := MergeParams{Models: models(c.weight, c.density)}
			if c.extra != nil {
				c.extra(&p)
			}
			for _, budget := range []int64{16, 1 << 20} { // the streaming and the in-memory selection
				r, err := Blend(base, tuned, Options{Method: c.method, Params: p, PassBudget: budget})
				if err != nil {
					t.Fatalf("case %d %s: %v", ci, c.method, err)
				}
				spec := gtaSpecs[c.method]
				rp := refGTAParams{sparse: spec.sparse, normalize: spec.normalize, rescale: spec.rescale,
					weight: c.weight, density: c.density, lambda: 1, seed: p.Seed,
					epsilon: []float64{DefaultEpsilon, DefaultEpsilon, DefaultEpsilon}, gamma: []float64{DefaultGamma, DefaultGamma, DefaultGamma}}
				if spec.consensus {
					rp.consensus = "sum"
				}
				if rp.density == nil {
					rp.density = []float64{1, 1, 1}
				}
				if p.Lambda != nil {
					rp.lambda = p.Lambda.Default
				}
				if p.Normalize != nil {
					rp.normalize = *p.Normalize
				}
				if p.Rescale != nil {
					rp.rescale = *p.Rescale
				}
				if p.ConsensusMethod != "" {
					rp.consensus = p.ConsensusMethod
				}
				if c.ref != nil {
					c.ref(&rp)
				}
				what := fmt.Sprintf("case %d %s (%s data, budget %d)", ci, c.method, data, budget)
				checkMerge(t, what, r, func(i int) []float64 {
					rp.name = mergeShapes[i].name
					rp.rowLen = int(mergeShapes[i].shape[len(mergeShapes[i].shape)-1])
					return refGTA(vals(t, base, i), tunedVals(t, tuned, i), rp)
				})
				if r.Steps[0].Action != string(c.method) {
					t.Fatalf("%s: action %q", what, r.Steps[0].Action)
				}
			}
		}
	}
}

// TestTIESKeepsExactlyKWithLowerIndexFirst checks the trimming on its own: one tuned model,
// every task-vector magnitude equal, density 0.3 of 60 elements: exactly the first 18 flat
// indices survive, at any budget.
func TestTIESKeepsExactlyKWithLowerIndexFirst(t *testing.T) {
	n := 60
	b := make([]float64, n)
	u := make([]float64, n)
	for i := range u {
		u[i] = 0.25
		if i%2 == 1 {
			u[i] = -0.25
		}
	}
	base := mkCkpt("b", weft.Safetensors, mkTensor(t, "w.weight", weft.F32, []int64{6, 10}, b))
	tuned := mkCkpt("t", weft.Safetensors, mkTensor(t, "w.weight", weft.F32, []int64{6, 10}, u))
	for _, budget := range []int64{1, 1 << 20} {
		r, err := Blend(base, []*weft.Checkpoint{tuned}, Options{Method: TIES, Params: MergeParams{Models: models([]float64{1}, []float64{0.3})}, PassBudget: budget})
		if err != nil {
			t.Fatal(err)
		}
		got := decodeAll(t, r.Out.Tensors[0])
		for i, v := range got {
			want := 0.0
			if i < 18 {
				want = u[i]
			}
			if v != want {
				t.Fatalf("budget %d: element %d = %v, want %v", budget, i, v, want)
			}
		}
	}
}

func TestMergeMethodsSphericalAndStock(t *testing.T) {
	base, tuned := gaussModels(t, 5, 3, weft.F64)
	// model_stock, per tensor and per row.
	for _, fw := range []bool{false, true} {
		r := mustBlend(t, base, tuned, Options{Method: ModelStock, Params: MergeParams{FilterWise: fw}})
		checkMerge(t, fmt.Sprintf("model_stock filter_wise=%v", fw), r, func(i int) []float64 {
			b := vals(t, base, i)
			rl := len(b)
			if fw {
				rl = int(mergeShapes[i].shape[len(mergeShapes[i].shape)-1])
			}
			return refModelStock(b, tunedVals(t, tuned, i), rl)
		})
	}
	// nuslerp with a base (two tuned), flat, per row, per column; and without a base.
	groupsFor := func(i int, mode string) [][]int {
		s := mergeShapes[i].shape
		n := 1
		for _, d := range s {
			n *= int(d)
		}
		rl := int(s[len(s)-1])
		var g [][]int
		switch mode {
		case "flat":
			all := make([]int, n)
			for e := range all {
				all[e] = e
			}
			g = append(g, all)
		case "rows":
			for r := 0; r < n/rl; r++ {
				var row []int
				for c := 0; c < rl; c++ {
					row = append(row, r*rl+c)
				}
				g = append(g, row)
			}
		case "cols": // vectors along the first dimension
			ncols := n / int(s[0])
			for c := 0; c < ncols; c++ {
				var col []int
				for e := c; e < n; e += ncols {
					col = append(col, e)
				}
				g = append(g, col)
			}
		}
		return g
	}
	for _, mode := range []string{"flat", "rows", "cols"} {
		p := MergeParams{Models: models([]float64{0.3, 0.9}, nil)}
		if mode != "flat" {
			p.NuSlerpFlatten = boolp(false)
			p.NuSlerpRowWise = mode == "cols"
		}
		r := mustBlend(t, base, tuned[:2], Options{Method: NuSlerp, Params: p})
		checkMerge(t, "nuslerp "+mode, r, func(i int) []float64 {
			b := vals(t, base, i)
			tv := tunedVals(t, tuned[:2], i)
			v0, v1 := make([]float64, len(b)), make([]float64, len(b))
			for e := range b {
				v0[e], v1[e] = tv[0][e]-b[e], tv[1][e]-b[e]
			}
			res := refNuSlerp(0.9/1.2, v0, v1, groupsFor(i, mode))
			for e := range res {
				res[e] += b[e]
			}
			return res
		})
		p.NoBase = true
		r = mustBlend(t, base, tuned[:1], Options{Method: NuSlerp, Params: p})
		checkMerge(t, "nuslerp no base "+mode, r, func(i int) []float64 {
			return refNuSlerp(0.9/1.2, vals(t, base, i), vals(t, tuned[0], i), groupsFor(i, mode))
		})
	}
	// nuslerp of colinear vectors is linear; weights summing to 0 give t = 0.5.
	lin := mkCkpt("t2", weft.Safetensors)
	for i, bt := range base.Tensors {
		v := vals(t, base, i)
		for e := range v {
			v[e] *= 3
		}
		lin.Tensors = append(lin.Tensors, mkTensor(t, bt.Name, weft.F64, bt.Shape, v))
	}
	r := mustBlend(t, base, []*weft.Checkpoint{lin}, Options{Method: NuSlerp, Params: MergeParams{NoBase: true, Models: models([]float64{1, -1}, nil)}})
	checkMerge(t, "nuslerp colinear", r, func(i int) []float64 {
		b := vals(t, base, i)
		for e := range b {
			b[e] = 0.5*b[e] + 0.5*(3*b[e])
		}
		return b
	})

	// multislerp with a base (three tuned) and without, weights normalised or not.
	for _, norm := range []bool{true, false} {
		w := []float64{0.2, 0.5, 0.3}
		p := MergeParams{Models: models(w, nil), NormalizeWeights: boolp(norm)}
		r := mustBlend(t, base, tuned, Options{Method: MultiSlerp, Params: p})
		checkMerge(t, fmt.Sprintf("multislerp normalize=%v", norm), r, func(i int) []float64 {
			b := vals(t, base, i)
			tv := tunedVals(t, tuned, i)
			for k := range tv {
				for e := range b {
					tv[k][e] -= b[e]
				}
			}
			res, ok := refMultiSlerp(tv, w, norm, MultiSlerpEps)
			if !ok {
				t.Fatal("reference refused")
			}
			for e := range res {
				res[e] += b[e]
			}
			return res
		})
		p.NoBase = true
		p.Models = models([]float64{0.2, 0.5, 0.3, 1}, nil)
		r = mustBlend(t, base, tuned, Options{Method: MultiSlerp, Params: p})
		checkMerge(t, fmt.Sprintf("multislerp no base normalize=%v", norm), r, func(i int) []float64 {
			x := append([][]float64{vals(t, base, i)}, tunedVals(t, tuned, i)...)
			res, _ := refMultiSlerp(x, []float64{0.2, 0.5, 0.3, 1}, norm, MultiSlerpEps)
			return res
		})
	}
	// multislerp of antipodal models with equal weights falls back to linear for two, and
	// is an error for three.
	neg := mkCkpt("neg", weft.Safetensors)
	for i, bt := range base.Tensors {
		v := vals(t, base, i)
		for e := range v {
			v[e] = -v[e]
		}
		neg.Tensors = append(neg.Tensors, mkTensor(t, bt.Name, weft.F64, bt.Shape, v))
	}
	r = mustBlend(t, base, []*weft.Checkpoint{neg}, Options{Method: MultiSlerp, Params: MergeParams{NoBase: true}})
	for i, out := range r.Out.Tensors {
		for e, v := range decodeAll(t, out) {
			if v != 0 {
				t.Fatalf("multislerp of x and -x: %s[%d] = %v, want 0 (linear fallback)", out.Name, e, v)
			}
		}
		_ = i
	}
	r = mustBlend(t, base, []*weft.Checkpoint{neg, base}, Options{Method: MultiSlerp, Params: MergeParams{NoBase: true, Models: models([]float64{1, 2, 1}, nil)}})
	if _, err := ops.ReadAll(r.Out.Tensors[0]); err == nil || !strings.Contains(err.Error(), mergeShapes[0].name) {
		t.Fatalf("antipodal multislerp of three: err %v, want one naming the tensor", err)
	}
}

// TestRandomMasksIndependentOfThreads reads DARE and DELLA outputs with 1 and 16 workers
// and with different chunkings: the bytes must not change, and another seed must change them.
func TestRandomMasksIndependentOfThreads(t *testing.T) {
	base, tuned := gaussModels(t, 9, 2, weft.BF16)
	for _, m := range []Method{DARELinear, DARETIES, DELLA, DELLALinear} {
		var first [][]byte
		for _, rw := range []struct{ rows, workers int }{{1, 1}, {1, 16}, {5, 16}, {1000, 1}} {
			r := mustBlend(t, base, tuned, Options{Method: m, Params: MergeParams{Seed: 99, Models: models([]float64{1, 0.5}, []float64{0.4, 0.6})}})
			for i, out := range r.Out.Tensors {
				got := readChunked(t, out, int64(rw.rows), rw.workers)
				if first == nil || len(first) <= i {
					first = append(first, got)
				} else if !bytes.Equal(got, first[i]) {
					t.Fatalf("%s: %s differs with %d rows per chunk and %d workers", m, out.Name, rw.rows, rw.workers)
				}
			}
		}
		r := mustBlend(t, base, tuned, Options{Method: m, Params: MergeParams{Seed: 100, Models: models([]float64{1, 0.5}, []float64{0.4, 0.6})}})
		if bytes.Equal(readAll(t, r.Out.Tensors[0]), first[0]) {
			t.Fatalf("%s: seed 100 gives the same bytes as seed 99", m)
		}
	}
}

// countingReader counts reads of a tensor's data.
type countingReader struct {
	r     io.ReaderAt
	reads *atomic.Int64
}

func (c countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.reads.Add(1)
	return c.r.ReadAt(p, off)
}

func TestMergePlanningReadsNoData(t *testing.T) {
	base, tuned := gaussModels(t, 2, 2, weft.F32)
	var reads atomic.Int64
	for _, c := range append([]*weft.Checkpoint{base}, tuned...) {
		for _, x := range c.Tensors {
			x.Data = countingReader{x.Data, &reads}
		}
	}
	for _, m := range []Method{TIES, DARETIES, DELLA, Breadcrumbs, ModelStock, NuSlerp, MultiSlerp} {
		mustBlend(t, base, tuned, Options{Method: m, Params: MergeParams{Models: models([]float64{1, 1}, nil)}.withDensity(m)})
	}
	// Provenance fingerprints read the first and last 4 KiB of each tensor; nothing else.
	n := reads.Load()
	if n > int64(7*len(mergeShapes)*6*2) {
		t.Fatalf("planning made %d reads", n)
	}
	reads.Store(0)
	r := mustBlend(t, base, tuned, Options{Method: TIES, Params: MergeParams{Models: models([]float64{1, 1}, []float64{0.5, 0.5})}})
	before := reads.Load()
	readAll(t, r.Out.Tensors[0])
	if reads.Load() == before {
		t.Fatal("reading the output read no input")
	}
}

// withDensity sets density 0.5 for the methods that use it.
func (p MergeParams) withDensity(m Method) MergeParams {
	if m == ModelStock {
		p.Models = nil
		return p
	}
	if s, ok := gtaSpecs[m]; ok && s.sparse != sparseNone {
		for i := range p.Models {
			p.Models[i].Density = Const(0.5)
		}
	}
	return p
}

func TestMergeNaNRefusedNamingTheTensor(t *testing.T) {
	b := []float64{1, 2, 3, 4}
	u := []float64{1, math.NaN(), 3, 5}
	base := mkCkpt("b", weft.Safetensors, mkTensor(t, "model.layers.0.mlp.up_proj.weight", weft.F32, []int64{2, 2}, b))
	tuned := mkCkpt("t", weft.Safetensors, mkTensor(t, "model.layers.0.mlp.up_proj.weight", weft.F32, []int64{2, 2}, u))
	for _, m := range []Method{TIES, Breadcrumbs, DELLA} {
		r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Method: m, Params: MergeParams{Models: models([]float64{1}, []float64{0.5})}})
		_, err := ops.ReadAll(r.Out.Tensors[0])
		if err == nil || !strings.Contains(err.Error(), "model.layers.0.mlp.up_proj.weight") || !strings.Contains(err.Error(), "NaN") || !strings.Contains(err.Error(), "row 0, column 1") {
			t.Fatalf("%s: err %v, want NaN named with tensor, row and column", m, err)
		}
	}
}

func TestMergeParamsChecked(t *testing.T) {
	base, tuned := gaussModels(t, 3, 2, weft.F32)
	bad := []struct {
		m    Method
		p    MergeParams
		o    Options
		want string
	}{
		{TIES, MergeParams{Models: []ModelParams{{Epsilon: Const(0.1)}, {}}}, Options{}, "does not use epsilon"},
		{DARELinear, MergeParams{ConsensusMethod: "sum"}, Options{}, "does not use consensus_method"},
		{TIES, MergeParams{ConsensusMethod: "vote"}, Options{}, "consensus_method"},
		{ModelStock, MergeParams{Models: []ModelParams{{Weight: Const(1)}, {}}}, Options{}, "does not use weight"},
		{TIES, MergeParams{Models: []ModelParams{{Density: Const(1.5)}, {}}}, Options{}, "outside [0, 1]"},
		{DELLA, MergeParams{Models: []ModelParams{{Density: Const(0.1), Epsilon: Const(0.2)}, {}}}, Options{}, "epsilon"},
		{TIES, MergeParams{Models: []ModelParams{{}}}, Options{}, "1 sets of model parameters for 2 models"},
		{TIES, MergeParams{}, Options{Alpha: 0.5}, "for linear and slerp"},
		{NuSlerp, MergeParams{NoBase: true}, Options{}, "exactly two models"},
		{TIES, MergeParams{NoBase: true}, Options{}, "needs a base"},
		{TIES, MergeParams{Lambda: &Value{Default: 1, For: []ValueRule{{"*nothing*", 2}}}}, Options{}, `lambda rule "*nothing*" matches no tensor of the base`},
		{TIES, MergeParams{FilterWise: true}, Options{}, "filter_wise"},
		{Method("dare"), MergeParams{}, Options{}, "unknown method"},
	}
	for _, c := range bad {
		c.o.Method, c.o.Params = c.m, c.p
		_, err := Blend(base, tuned, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s %+v: err %v, want %q", c.m, c.p, err, c.want)
		}
	}
	// An unmatched rule of a method's parameter is ErrUnmatchedRule, as for the type rules.
	if _, err := Blend(base, tuned, Options{Method: TIES, Params: MergeParams{Models: []ModelParams{{}, {Density: &Value{Default: 0.5, For: []ValueRule{{"head", 1}}}}}}}); !errors.Is(err, ops.ErrUnmatchedRule) {
		t.Fatalf("density rule matching nothing: %v, want ops.ErrUnmatchedRule", err)
	}
	// One tuned model is too few for model_stock.
	if _, err := Blend(base, tuned[:1], Options{Method: ModelStock}); err == nil || !strings.Contains(err.Error(), "at least two") {
		t.Fatalf("model_stock with one tuned model: %v", err)
	}
}

func TestMergePerTensorAndPerLayerParams(t *testing.T) {
	base, tuned := gaussModels(t, 4, 1, weft.F64)
	dens := &Value{Default: 0.9, For: []ValueRule{{"norms", 0.2}}, Schedule: []float64{0.1, 0.5}}
	r := mustBlend(t, base, tuned, Options{Method: TIES, Params: MergeParams{Models: []ModelParams{{Density: dens}}, Lambda: &Value{Default: 1, For: []ValueRule{{"*q_proj*", 2}}}}})
	// Layer 0 of 2 sits at 0 of the schedule, layer 1 at 1; the norm takes its rule.
	want := []string{"weight=1 density=0.1 lambda=1", "weight=1 density=0.2 lambda=1", "weight=1 density=0.5 lambda=2"}
	for i, s := range r.Steps {
		if s.Params != want[i] {
			t.Fatalf("%s: params %q, want %q", s.Name, s.Params, want[i])
		}
	}
	checkMerge(t, "per-tensor params", r, func(i int) []float64 {
		d := []float64{0.1, 0.2, 0.5}[i]
		l := []float64{1, 1, 2}[i]
		return refGTA(vals(t, base, i), tunedVals(t, tuned, i), refGTAParams{sparse: sparseMagnitude, consensus: "sum", normalize: true,
			weight: []float64{1}, density: []float64{d}, lambda: l})
	})
	// lambda 0 copies the base.
	r = mustBlend(t, base, tuned, Options{Method: TIES, Params: MergeParams{Lambda: Const(0)}})
	if r.Steps[0].Action != "copy" || r.Out.Tensors[0].Data != base.Tensors[0].Data {
		t.Fatalf("lambda 0: %+v", r.Steps[0])
	}
}

// TestMergeProvenanceRecordsParams: the recorded step holds the method and its parameters
// (blend's Options as given, which read back equal) and the seed of the random drops.
func TestMergeProvenanceRecordsParams(t *testing.T) {
	base, tuned := gaussModels(t, 6, 2, weft.F32)
	o := Options{Method: DARETIES, Params: MergeParams{Seed: 1234, Rescale: boolp(false),
		Models: []ModelParams{{Weight: Const(1), Density: Const(0.3)}, {Weight: &Value{Default: 0.5, For: []ValueRule{{"norms", 0.25}}, Schedule: []float64{0.5, 1}}, Density: Const(0.4)}}}}
	r := mustBlend(t, base, tuned, o)
	prov, err := ops.ReadProvenance(r.Out)
	if err != nil || prov == nil || len(prov.Steps) != 1 {
		t.Fatalf("provenance %+v, %v", prov, err)
	}
	st := prov.Steps[0]
	if st.Op != "blend" || st.Seed == nil || *st.Seed != 1234 {
		t.Fatalf("step %s seed %v", st.Op, st.Seed)
	}
	var p struct {
		Method string `json:"method"`
		Merge  struct {
			Models []struct {
				Weight  Value `json:"weight"`
				Density Value `json:"density"`
			} `json:"models"`
			Rescale *bool  `json:"rescale"`
			Seed    uint64 `json:"seed"`
		} `json:"merge"`
	}
	if err := json.Unmarshal(st.Params, &p); err != nil {
		t.Fatal(err)
	}
	m := p.Merge
	if p.Method != "dare_ties" || len(m.Models) != 2 || m.Models[1].Density.Default != 0.4 || m.Models[1].Weight.Default != 0.5 ||
		len(m.Models[1].Weight.For) != 1 || m.Models[1].Weight.For[0] != (ValueRule{"norms", 0.25}) || m.Rescale == nil || *m.Rescale || m.Seed != 1234 {
		t.Fatalf("provenance %s", st.Params)
	}
	if !strings.Contains(string(st.Params), `"for":["norms=0.25"]`) {
		t.Fatalf("value rules are not recorded as PATTERN=V: %s", st.Params)
	}
	var back Options
	if err := json.Unmarshal(st.Params, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, o) {
		t.Fatalf("recorded options read back as %+v, want %+v", back, o)
	}
	// The methods that draw nothing record no seed.
	r = mustBlend(t, base, tuned, Options{Method: TIES, Params: MergeParams{Models: models([]float64{1, 1}, []float64{0.5, 0.5})}})
	if prov, err := ops.ReadProvenance(r.Out); err != nil || prov.Steps[0].Seed != nil {
		t.Fatalf("ties records seed %v (%v)", prov.Steps[0].Seed, err)
	}
}

// TestMergeQuantizedAndRounding runs ties on BF16 inputs into Q8_0 and BF16 outputs: the
// result is the float64 reference rounded once (to bf16, or by the reference quantizer).
func TestMergeQuantizedAndRounding(t *testing.T) {
	var bts, tts []*weft.Tensor
	b := randVals(1, 4*64, 0.05)
	u := randVals(2, 4*64, 0.05)
	bts = append(bts, mkTensor(t, "model.layers.0.mlp.up_proj.weight", weft.BF16, []int64{4, 64}, b))
	tts = append(tts, mkTensor(t, "model.layers.0.mlp.up_proj.weight", weft.BF16, []int64{4, 64}, u))
	base, tuned := mkCkpt("b", weft.GGUF, bts...), mkCkpt("t", weft.GGUF, tts...)
	for _, dt := range []weft.DType{weft.BF16, weft.Q8_0} {
		r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Method: TIES, Types: ops.Types{DType: dt}, Params: MergeParams{Models: models([]float64{1}, []float64{0.4})}})
		want := refGTA(decodeAll(t, bts[0]), [][]float64{decodeAll(t, tts[0])}, refGTAParams{sparse: sparseMagnitude, consensus: "sum", normalize: true,
			weight: []float64{1}, density: []float64{0.4}, lambda: 1})
		if !bytes.Equal(readAll(t, r.Out.Tensors[0]), encode(t, dt, want)) {
			t.Fatalf("%v: output is not the reference rounded once", dt)
		}
	}
}

func TestMergeDescribe(t *testing.T) {
	s := Step{Action: "ties", Params: "weight=1 density=0.5 lambda=1"}
	if got := s.Describe(); got != "ties weight=1 density=0.5 lambda=1" {
		t.Fatal(got)
	}
}
