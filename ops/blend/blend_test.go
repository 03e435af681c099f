package blend

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
)

const (
	synH     = 16
	synLayer = 4
)

// synthModel makes a small HF-named model with values from seed.
func synthModel(t testing.TB, path string, seed uint64, dt weft.DType, vocab int64) *weft.Checkpoint {
	t.Helper()
	var ts []*weft.Tensor
	add := func(name string, shape ...int64) {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		seed++
		ts = append(ts, mkTensor(t, name, dt, shape, randVals(seed*7919+uint64(len(ts)), int(n), 0.05)))
	}
	add("model.embed_tokens.weight", vocab, synH)
	for l := 0; l < synLayer; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", synH)
		add(p+"self_attn.q_proj.weight", synH, synH)
		add(p+"self_attn.o_proj.weight", synH, synH)
		add(p+"mlp.up_proj.weight", 2*synH, synH)
		add(p+"mlp.down_proj.weight", synH, 2*synH)
	}
	add("model.norm.weight", synH)
	add("lm_head.weight", vocab, synH)
	return mkCkpt(path, weft.Safetensors, ts...)
}

// runBlend blends through the op's entry point (ops.Run): output types resolved, provenance
// recorded, for an output in the base's format.
func runBlend(base *weft.Checkpoint, tuned []*weft.Checkpoint, o Options) (*Result, error) {
	format := base.Format
	if format != weft.GGUF {
		format = weft.Safetensors
	}
	r, err := ops.Run(&o, ops.Inputs{Checkpoints: append([]*weft.Checkpoint{base}, tuned...)}, format)
	if err != nil {
		return nil, err
	}
	return r.Report.(*Result), nil
}

func mustBlend(t testing.TB, base *weft.Checkpoint, tuned []*weft.Checkpoint, o Options) *Result {
	t.Helper()
	r, err := runBlend(base, tuned, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Out.Tensors) != len(r.Steps) {
		t.Fatalf("%d tensors, %d steps", len(r.Out.Tensors), len(r.Steps))
	}
	return r
}

func TestLinearMatchesFloat64Reference(t *testing.T) {
	base := synthModel(t, "base", 1, weft.F32, 40)
	tuned := synthModel(t, "tuned", 2, weft.F32, 40)
	for _, alpha := range []float64{0.3, 0.5, -0.5, 1.7, 1e-3} {
		for _, dt := range []weft.DType{weft.Invalid, weft.BF16, weft.F16, weft.F64} {
			r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: alpha, Types: ops.Types{DType: dt}})
			for i, out := range r.Out.Tensors {
				b, u := base.Tensors[i], tuned.Tensors[i]
				want := refLinear(decodeAll(t, b), [][]float64{decodeAll(t, u)}, []float64{alpha})
				wdt := dt
				if wdt == weft.Invalid {
					wdt = weft.F32
				}
				if out.DType != wdt {
					t.Fatalf("%s: dtype %v, want %v", out.Name, out.DType, wdt)
				}
				if got := readAll(t, out); !bytes.Equal(got, encode(t, wdt, want)) {
					t.Fatalf("alpha %g dtype %v: %s differs from the float64 reference rounded once", alpha, wdt, out.Name)
				}
				if r.Steps[i].Action != "blend" {
					t.Fatalf("%s: action %q", out.Name, r.Steps[i].Action)
				}
			}
		}
	}
}

// TestRoundsOnce checks a case where rounding twice (to float32, then to bf16) would differ
// from rounding once: the blend lands just above a bf16 tie.
func TestRoundsOnce(t *testing.T) {
	// 1 + 2^-8 is a bf16 tie between 1 and 1+2^-7; 1 + 2^-8 + 2^-30 rounds up once, but to
	// float32 first it becomes exactly the tie and then rounds to even (down).
	b := 1.0
	u := 1.0 + 2*(math.Ldexp(1, -8)+math.Ldexp(1, -30))
	base := mkCkpt("b", weft.Safetensors, mkTensor(t, "x.weight", weft.F64, []int64{1}, []float64{b}))
	tuned := mkCkpt("t", weft.Safetensors, mkTensor(t, "x.weight", weft.F64, []int64{1}, []float64{u}))
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Types: ops.Types{DType: weft.BF16}})
	got := decodeAll(t, r.Out.Tensors[0])[0]
	if want := 1 + math.Ldexp(1, -7); got != want {
		t.Fatalf("got %v, want %v (single rounding)", got, want)
	}
}

func TestAlphaZeroOneAreRawCopies(t *testing.T) {
	// Values arithmetic would change: -0, inf, NaN with payload, large and tiny numbers.
	special := []float32{float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00123), 3e38, 1e-45, 1, -2}
	raw := func(v []float32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			bits := math.Float32bits(x)
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
		}
		return b
	}
	other := []float32{1, float32(math.Inf(-1)), 0, 5, -3e38, 0, float32(math.Copysign(0, -1)), float32(math.NaN())}
	bb, tb := raw(special), raw(other)
	base := mkCkpt("b", weft.Safetensors, rawTensor("model.layers.0.mlp.up_proj.weight", weft.F32, []int64{2, 4}, bb))
	tuned := mkCkpt("t", weft.Safetensors, rawTensor("model.layers.0.mlp.up_proj.weight", weft.F32, []int64{2, 4}, tb))
	for _, c := range []struct {
		alpha float64
		want  []byte
		src   string
	}{{0, bb, "base"}, {math.Copysign(0, -1), bb, "base"}, {1, tb, "tuned"}} {
		r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: c.alpha})
		if s := r.Steps[0]; s.Action != "copy" || s.Source != c.src {
			t.Fatalf("alpha %g: step %+v, want copy %s", c.alpha, s, c.src)
		}
		if r.Out.Tensors[0].Data != map[string]*weft.Tensor{"base": base.Tensors[0], "tuned": tuned.Tensors[0]}[c.src].Data {
			t.Fatalf("alpha %g: output is not the input tensor itself", c.alpha)
		}
		if got := readAll(t, r.Out.Tensors[0]); !bytes.Equal(got, c.want) {
			t.Fatalf("alpha %g: bytes differ from %s", c.alpha, c.src)
		}
	}
	// With another output dtype, alpha 0 converts without arithmetic: -0 stays -0, inf stays
	// inf (base + 0*(t - base) would give NaN).
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0, Types: ops.Types{DType: weft.BF16}})
	got := decodeAll(t, r.Out.Tensors[0])
	if !math.Signbit(got[0]) || got[0] != 0 || !math.IsInf(got[1], 1) || !math.IsInf(got[2], -1) {
		t.Fatalf("alpha 0 to bf16: %v", got[:3])
	}
	if r.Steps[0].Action != "convert" {
		t.Fatalf("step %+v", r.Steps[0])
	}
}

func TestAlphaRulesScheduleAndPrecedence(t *testing.T) {
	base := synthModel(t, "base", 1, weft.F32, 24)
	tuned := synthModel(t, "tuned", 2, weft.F32, 24)
	o := Options{
		Alpha:    0.1,
		AlphaFor: []AlphaRule{{"model.layers.3.mlp.down_proj.weight", 2}, {"mlp", 0.8}, {"*norm*", -0.5}},
		Schedule: []float64{0, 1, 0.5},
	}
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, o)
	// Expected weights, written out by hand: schedule over 4 layers at positions 0, 1/3, 2/3, 1
	// of [0, 1, 0.5] gives 0, 2/3, 0.8333..., 0.5.
	sched := []float64{0, 2.0 / 3, 1 - 1.0/6, 0.5}
	want := func(name string) float64 {
		switch {
		case name == "model.layers.3.mlp.down_proj.weight":
			return 2
		case strings.Contains(name, ".mlp."):
			return 0.8
		case strings.Contains(name, "norm"):
			return -0.5
		case strings.HasPrefix(name, "model.layers."):
			var l int
			fmt.Sscanf(name, "model.layers.%d.", &l)
			return sched[l]
		}
		return 0.1
	}
	for i, out := range r.Out.Tensors {
		a := want(out.Name)
		if math.Abs(r.Steps[i].Alpha-a) > 1e-15 {
			t.Fatalf("%s: alpha %v, want %v", out.Name, r.Steps[i].Alpha, a)
		}
		a = r.Steps[i].Alpha // exact value used
		ref := refLinear(decodeAll(t, base.Tensors[i]), [][]float64{decodeAll(t, tuned.Tensors[i])}, []float64{a})
		if !bytes.Equal(readAll(t, out), encode(t, weft.F32, ref)) {
			t.Fatalf("%s differs from reference at alpha %v", out.Name, a)
		}
		if a == 0 && (r.Steps[i].Action != "copy" || out.Data != base.Tensors[i].Data) {
			t.Fatalf("%s: alpha 0 from the schedule should be a raw copy, got %+v", out.Name, r.Steps[i])
		}
	}
}

func TestScheduleAt(t *testing.T) {
	cases := []struct {
		s    []float64
		i, n int
		want float64
	}{
		{[]float64{0, 1}, 0, 4, 0}, {[]float64{0, 1}, 1, 4, 1.0 / 3}, {[]float64{0, 1}, 3, 4, 1},
		{[]float64{0, 1, 0}, 1, 5, 0.5}, {[]float64{0, 1, 0}, 2, 5, 1}, {[]float64{0, 1, 0}, 3, 5, 0.5},
		{[]float64{0.2}, 3, 5, 0.2}, {[]float64{0.2, 0.9}, 0, 1, 0.2},
		{[]float64{0, 0.5, 1, 0}, 2, 3, 0}, {[]float64{0, 0.5, 1, 0}, 1, 3, 0.75},
	}
	for _, c := range cases {
		if got := ScheduleAt(c.s, c.i, c.n); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("ScheduleAt(%v, %d, %d) = %v, want %v", c.s, c.i, c.n, got, c.want)
		}
	}
}

func TestPatterns(t *testing.T) {
	cases := []struct {
		pat, name string
		want      bool
	}{
		{"model.layers.*.mlp.*", "model.layers.3.mlp.down_proj.weight", true},
		{"*", "a/b.c", true},
		{"model.layers.?.self_attn.q_proj.weight", "model.layers.7.self_attn.q_proj.weight", true},
		{"model.layers.?.self_attn.q_proj.weight", "model.layers.17.self_attn.q_proj.weight", false},
		{"model.layers.[0-2].*", "model.layers.2.mlp.up_proj.weight", true},
		{"model.layers.[0-2].*", "model.layers.3.mlp.up_proj.weight", false},
		{"model.layers.[!0-2].*", "model.layers.3.mlp.up_proj.weight", true},
		{"model.layers.[^0-2].*", "model.layers.1.mlp.up_proj.weight", false},
		{"self_attn", "model.layers.0.self_attn.q_proj.weight", false}, // whole names only
		{"*self_attn*", "model.layers.0.self_attn.q_proj.weight", true},
		{"a.b", "aXb", false}, // dots are literal
		{`x\*`, "x*", true},
		{`x\*`, "xy", false},
		{"mlp", "blk.2.ffn_down.weight", true}, // groups mean the same in both namings
		{"mlp", "model.layers.2.mlp.down_proj.weight", true},
		{"attention", "blk.0.attn_q.weight", true},
		{"embeddings", "token_embd.weight", true},
		{"head", "output.weight", true},
		{"head", "lm_head.weight", true},
		{"norms", "blk.1.attn_norm.weight", true},
		{"norms", "model.layers.1.post_attention_layernorm.weight", true},
		{"mlp", "blk.2.attn_q.weight", false},
	}
	for _, c := range cases {
		p, err := ops.CompilePattern(c.pat)
		if err != nil {
			t.Fatalf("%q: %v", c.pat, err)
		}
		if got := p.Match(c.name); got != c.want {
			t.Errorf("%q matching %q = %v, want %v", c.pat, c.name, got, c.want)
		}
	}
	for _, bad := range []string{"", "[abc", `abc\`} {
		if _, err := ops.CompilePattern(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if r, err := ParseAlphaRule("model.layers.*.mlp.*=0.25"); err != nil || r.Pattern != "model.layers.*.mlp.*" || r.Alpha != 0.25 {
		t.Errorf("ParseAlphaRule: %+v %v", r, err)
	}
	for _, bad := range []string{"mlp", "=1", "mlp=", "mlp=x", "mlp=inf", "[=1"} {
		if _, err := ParseAlphaRule(bad); err == nil {
			t.Errorf("ParseAlphaRule(%q): no error", bad)
		}
	}
	if r, err := ops.ParseTypeRule("output.weight=q8_0"); err != nil || r.DType != weft.Q8_0 {
		t.Errorf("ParseTypeRule: %+v %v", r, err)
	}
	if l, err := ParseList("0, 0.5,1"); err != nil || len(l) != 3 || l[1] != 0.5 {
		t.Errorf("ParseList: %v %v", l, err)
	}
}

func TestUnusedRuleIsAnError(t *testing.T) {
	base := synthModel(t, "base", 1, weft.F32, 8)
	tuned := synthModel(t, "tuned", 2, weft.F32, 8)
	_, err := Blend(base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, AlphaFor: []AlphaRule{{"self_attn", 0.1}}})
	if !errors.Is(err, ops.ErrUnmatchedRule) || !strings.Contains(err.Error(), `"self_attn=0.1"`) {
		t.Fatalf("err = %v", err)
	}
	_, err = runBlend(base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Types: ops.Types{TypeFor: []ops.TypeRule{{Pattern: "self_attn", DType: weft.F16}}}})
	if !errors.Is(err, ops.ErrUnmatchedRule) || !strings.Contains(err.Error(), `"self_attn=F16"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestTaskArithmetic(t *testing.T) {
	base := synthModel(t, "base", 1, weft.F32, 8)
	t1 := synthModel(t, "t1", 2, weft.F32, 8)
	t2 := synthModel(t, "t2", 3, weft.BF16, 8) // inputs may differ in dtype
	t3 := synthModel(t, "t3", 4, weft.F16, 8)
	w := []float64{0.7, -0.3, 1.25}
	r := mustBlend(t, base, []*weft.Checkpoint{t1, t2, t3}, Options{Alpha: 1, Weights: w, AlphaFor: []AlphaRule{{"head", 0.5}}})
	for i, out := range r.Out.Tensors {
		s := 1.0
		if out.Name == "lm_head.weight" {
			s = 0.5
		}
		c := []float64{s * w[0], s * w[1], s * w[2]}
		ref := refLinear(decodeAll(t, base.Tensors[i]), [][]float64{decodeAll(t, t1.Tensors[i]), decodeAll(t, t2.Tensors[i]), decodeAll(t, t3.Tensors[i])}, c)
		if !bytes.Equal(readAll(t, out), encode(t, weft.F32, ref)) {
			t.Fatalf("%s differs from the task-arithmetic reference", out.Name)
		}
	}
	// One weight 1, the others 0: a raw copy of that model.
	r = mustBlend(t, base, []*weft.Checkpoint{t1, t2, t3}, Options{Alpha: 1, Weights: []float64{0, 0, 1}})
	if s := r.Steps[0]; s.Action != "convert" || s.Source != "tuned3" {
		t.Fatalf("step %+v", s) // f16 into f32 output: converted, not copied
	}
	r = mustBlend(t, base, []*weft.Checkpoint{t1, t2, t3}, Options{Alpha: 1, Weights: []float64{1, 0, 0}})
	if s := r.Steps[0]; s.Action != "copy" || s.Source != "tuned1" || r.Out.Tensors[0].Data != t1.Tensors[0].Data {
		t.Fatalf("step %+v", s)
	}
	if _, err := Blend(base, []*weft.Checkpoint{t1, t2}, Options{Alpha: 1}); !isOption(err, "weights") {
		t.Fatalf("several models without weights: %v", err)
	}
	if _, err := Blend(base, []*weft.Checkpoint{t1, t2}, Options{Alpha: 1, Weights: []float64{1}}); err == nil {
		t.Fatal("wrong weight count accepted")
	}
}

// refSlerp computes slerp of whole flattened tensors in the most direct way.
func refSlerp(tt float64, a, b []float64) []float64 {
	var dot, na, nb float64
	for i := range a {
		dot += a[i] * b[i]
		na += a[i] * a[i]
		nb += b[i] * b[i]
	}
	na, nb = math.Sqrt(na), math.Sqrt(nb)
	if na <= 1e-8 {
		na = 1
	}
	if nb <= 1e-8 {
		nb = 1
	}
	c := dot / na / nb
	out := make([]float64, len(a))
	if math.Abs(c) > 0.9995 {
		return refLinear(a, [][]float64{b}, []float64{tt})
	}
	th := math.Acos(c)
	s0 := math.Sin(th-th*tt) / math.Sin(th)
	s1 := math.Sin(th*tt) / math.Sin(th)
	for i := range out {
		out[i] = float64(s0*a[i]) + float64(s1*b[i])
	}
	return out
}

func TestSlerp(t *testing.T) {
	// Orthogonal unit vectors: halfway is (cos 45°, sin 45°).
	x := mkCkpt("b", weft.Safetensors, mkTensor(t, "v.weight", weft.F64, []int64{2}, []float64{1, 0}))
	y := mkCkpt("t", weft.Safetensors, mkTensor(t, "v.weight", weft.F64, []int64{2}, []float64{0, 1}))
	r := mustBlend(t, x, []*weft.Checkpoint{y}, Options{Method: Slerp, Alpha: 0.5})
	got := decodeAll(t, r.Out.Tensors[0])
	if math.Abs(got[0]-math.Sqrt2/2) > 1e-15 || math.Abs(got[1]-math.Sqrt2/2) > 1e-15 {
		t.Fatalf("slerp of e1, e2 at 0.5 = %v", got)
	}
	// At t = 1/3 the angle is 30°.
	r = mustBlend(t, x, []*weft.Checkpoint{y}, Options{Method: Slerp, Alpha: 1.0 / 3})
	got = decodeAll(t, r.Out.Tensors[0])
	if math.Abs(got[0]-math.Sqrt(3)/2) > 1e-15 || math.Abs(got[1]-0.5) > 1e-15 {
		t.Fatalf("slerp of e1, e2 at 1/3 = %v", got)
	}
	// Colinear (tuned = 3*base): linear fallback, base + t*(tuned - base).
	z := mkCkpt("t", weft.Safetensors, mkTensor(t, "v.weight", weft.F64, []int64{2}, []float64{3, 0}))
	r = mustBlend(t, x, []*weft.Checkpoint{z}, Options{Method: Slerp, Alpha: 0.5})
	if got := decodeAll(t, r.Out.Tensors[0]); got[0] != 2 || got[1] != 0 {
		t.Fatalf("colinear slerp = %v, want [2 0]", got)
	}

	base := synthModel(t, "base", 1, weft.F32, 24)
	tuned := synthModel(t, "tuned", 2, weft.F32, 24)
	// Make one tensor nearly colinear so the fallback is exercised on a real shape.
	near := decodeAll(t, base.Tensors[1])
	for i := range near {
		near[i] = near[i]*1.01 + 1e-5
	}
	tuned.Tensors[1] = mkTensor(t, tuned.Tensors[1].Name, weft.F32, tuned.Tensors[1].Shape, near)
	r = mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Method: Slerp, Alpha: 0.3, AlphaFor: []AlphaRule{{"mlp", 0.7}}})
	for i, out := range r.Out.Tensors {
		a := r.Steps[i].Alpha
		ref := refSlerp(a, decodeAll(t, base.Tensors[i]), decodeAll(t, tuned.Tensors[i]))
		if !bytes.Equal(readAll(t, out), encode(t, weft.F32, ref)) {
			t.Fatalf("%s: slerp differs from reference", out.Name)
		}
	}
	if _, err := Blend(base, []*weft.Checkpoint{tuned, tuned}, Options{Method: Slerp, Alpha: 0.5, Weights: []float64{1, 1}}); err == nil {
		t.Fatal("slerp of three models accepted")
	}
}

func TestSlerpCoefficients(t *testing.T) {
	// Symmetric: at t, s0(t) = s1(1-t).
	a0, a1, _ := SlerpCoefficients(0.25, 0.3, 1, 1)
	b0, b1, _ := SlerpCoefficients(0.75, 0.3, 1, 1)
	if math.Abs(a0-b1) > 1e-15 || math.Abs(a1-b0) > 1e-15 {
		t.Fatalf("asymmetric: %v %v / %v %v", a0, a1, b0, b1)
	}
	if s0, s1, lerp := SlerpCoefficients(0, 0.3, 2, 5); lerp || s0 != 1 || s1 != 0 {
		t.Fatalf("t=0: %v %v %v", s0, s1, lerp)
	}
	if _, _, lerp := SlerpCoefficients(0.5, 0.9996*6, 2, 3); !lerp {
		t.Fatal("cosine 0.9996 should fall back to lerp")
	}
	if _, _, lerp := SlerpCoefficients(0.5, 0.9994*6, 2, 3); lerp {
		t.Fatal("cosine 0.9994 should slerp")
	}
	if _, _, lerp := SlerpCoefficients(0.5, -0.9996*6, 2, 3); !lerp {
		t.Fatal("cosine -0.9996 should fall back to lerp")
	}
}

func TestChunkingAndThreadsDoNotChangeBytes(t *testing.T) {
	base := synthModel(t, "base", 1, weft.F32, 37)
	tuned := synthModel(t, "tuned", 2, weft.F32, 41)
	for _, o := range []Options{
		{Alpha: 0.37, Types: ops.Types{DType: weft.BF16}},
		{Method: Slerp, Alpha: 0.61},
		{Alpha: 0.5, Vocab: VocabUnion},
	} {
		if o.Vocab == "" {
			o.Vocab = VocabBase
		}
		var ref [][]byte
		for run, cfg := range []struct {
			rows    int64
			workers int
		}{{1 << 20, 1}, {1, 8}, {3, 3}, {7, 16}} {
			r := mustBlend(t, base, []*weft.Checkpoint{tuned}, o) // fresh: slerp scalars recomputed
			for i, out := range r.Out.Tensors {
				got := readChunked(t, out, cfg.rows, cfg.workers)
				if run == 0 {
					ref = append(ref, got)
				} else if !bytes.Equal(got, ref[i]) {
					t.Fatalf("%+v: %s differs with %d-row chunks on %d goroutines", o, out.Name, cfg.rows, cfg.workers)
				}
			}
		}
	}
}

func TestMismatchErrorsListTensors(t *testing.T) {
	base := synthModel(t, "base.safetensors", 1, weft.F32, 8)
	tuned := synthModel(t, "tuned.safetensors", 2, weft.F32, 8)
	// Drop two tensors from the tuned model, add one, and change a shape.
	tuned.Tensors = append([]*weft.Tensor(nil), tuned.Tensors...)
	tuned.Tensors = append(tuned.Tensors[:2], tuned.Tensors[4:]...) // drops layers.0 q_proj, o_proj
	tuned.Tensors = append(tuned.Tensors, mkTensor(t, "model.extra.weight", weft.F32, []int64{2}, []float64{1, 2}))
	for i, x := range tuned.Tensors {
		if x.Name == "model.layers.2.mlp.up_proj.weight" {
			tuned.Tensors[i] = mkTensor(t, x.Name, weft.F32, []int64{3 * synH, synH}, make([]float64, 3*synH*synH))
		}
	}
	_, err := Blend(base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight",
		"model.extra.weight", "model.layers.2.mlp.up_proj.weight [32 16]", "[48 16]", "only in the base", "only in tuned", "missing=base keeps the base's tensor set"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// --missing base does not excuse a shape mismatch.
	_, err = Blend(base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Missing: MissingBase})
	if err == nil || !strings.Contains(err.Error(), "model.layers.2.mlp.up_proj.weight") || strings.Contains(err.Error(), "q_proj") {
		t.Fatalf("err = %v", err)
	}
	// Vocabulary sizes differ: an error naming both tensors unless --vocab says otherwise.
	small := synthModel(t, "small", 2, weft.F32, 6)
	_, err = Blend(base, []*weft.Checkpoint{small}, Options{Alpha: 0.5})
	if err == nil || !strings.Contains(err.Error(), "model.embed_tokens.weight [8 16]") || !strings.Contains(err.Error(), "lm_head.weight") || !hints(err, "vocab") {
		t.Fatalf("err = %v", err)
	}
	// Mixed naming.
	g := mkCkpt("tuned.gguf", weft.GGUF, mkTensor(t, "token_embd.weight", weft.F32, []int64{8, synH}, make([]float64, 8*synH)),
		mkTensor(t, "blk.0.attn_q.weight", weft.F32, []int64{synH, synH}, make([]float64, synH*synH)))
	_, err = Blend(base, []*weft.Checkpoint{g}, Options{Alpha: 0.5})
	if err == nil || !strings.Contains(err.Error(), "Hugging Face") || !strings.Contains(err.Error(), "GGUF") {
		t.Fatalf("err = %v", err)
	}
}

func TestMissingBase(t *testing.T) {
	base := synthModel(t, "base", 1, weft.F32, 8)
	tuned := synthModel(t, "tuned", 2, weft.F32, 8)
	tuned.Tensors = append([]*weft.Tensor(nil), tuned.Tensors[1:]...) // no embeddings
	tuned.Tensors = append(tuned.Tensors, mkTensor(t, "model.extra.weight", weft.F32, []int64{2}, []float64{1, 2}))
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Missing: MissingBase, Types: ops.Types{DType: weft.BF16}})
	if len(r.Out.Tensors) != len(base.Tensors) {
		t.Fatalf("%d tensors, want the base's %d", len(r.Out.Tensors), len(base.Tensors))
	}
	e := r.Out.Tensors[0]
	if e.Name != "model.embed_tokens.weight" || r.Steps[0].Source != "base" || e.DType != weft.BF16 {
		t.Fatalf("embedding: %+v", r.Steps[0])
	}
	if !bytes.Equal(readAll(t, e), encode(t, weft.BF16, decodeAll(t, base.Tensors[0]))) {
		t.Fatal("base-only tensor is not the base's values")
	}
	if r.Out.Tensor("model.extra.weight") != nil {
		t.Fatal("tuned-only tensor in the output")
	}
	if !strings.Contains(strings.Join(r.Notes, "\n"), "model.extra.weight") {
		t.Fatalf("notes do not list the left-out tensor: %v", r.Notes)
	}
}

func TestVocabPolicies(t *testing.T) {
	base := synthModel(t, "base", 1, weft.F32, 10)
	tuned := synthModel(t, "tuned", 2, weft.F32, 13)
	for _, c := range []struct {
		policy string
		rows   int
	}{{VocabBase, 10}, {VocabTuned, 13}, {VocabUnion, 13}} {
		r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.25, Vocab: c.policy})
		for _, i := range []int{0, len(r.Out.Tensors) - 1} { // embeddings and head
			out := r.Out.Tensors[i]
			if out.Shape[0] != int64(c.rows) {
				t.Fatalf("%s %s: %d rows, want %d", c.policy, out.Name, out.Shape[0], c.rows)
			}
			b, u := decodeAll(t, base.Tensors[i]), decodeAll(t, tuned.Tensors[i])
			want := refLinear(b[:10*synH], [][]float64{u[:10*synH]}, []float64{0.25})
			src := b
			if c.rows == 13 {
				src = u
			}
			want = append(want, src[10*synH:c.rows*synH]...)
			if !bytes.Equal(readAll(t, out), encode(t, weft.F32, want)) {
				t.Fatalf("%s: %s rows differ", c.policy, out.Name)
			}
		}
	}
	// The base larger than the tuned model: union copies the base's extra rows.
	r := mustBlend(t, tuned, []*weft.Checkpoint{base}, Options{Alpha: 0.5, Vocab: VocabUnion})
	if r.Out.Tensors[0].Shape[0] != 13 {
		t.Fatalf("union rows %d", r.Out.Tensors[0].Shape[0])
	}
	r = mustBlend(t, tuned, []*weft.Checkpoint{base}, Options{Alpha: 0.5, Vocab: VocabTuned})
	if r.Out.Tensors[0].Shape[0] != 10 {
		t.Fatalf("tuned rows %d", r.Out.Tensors[0].Shape[0])
	}
	// Only the vocabulary dimension may differ.
	odd := synthModel(t, "odd", 2, weft.F32, 10)
	odd.Tensors[0] = mkTensor(t, odd.Tensors[0].Name, weft.F32, []int64{10, synH + 1}, make([]float64, 10*(synH+1)))
	if _, err := Blend(base, []*weft.Checkpoint{odd}, Options{Alpha: 0.5, Vocab: VocabUnion}); err == nil || !strings.Contains(err.Error(), "model.embed_tokens.weight") {
		t.Fatalf("err = %v", err)
	}
}

func TestVocabTakesTokenizerAndConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := dir + "/" + name
		if err := writeFile(p, s); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := synthModel(t, "base", 1, weft.F32, 10)
	tuned := synthModel(t, "tuned", 2, weft.F32, 13)
	base.SideFiles = []weft.SideFile{
		{Name: "config.json", Path: write("bc.json", "{\n  \"vocab_size\": 10,\n  \"torch_dtype\": \"float32\"\n}\n")},
		{Name: "tokenizer.json", Path: write("bt.json", `{"base":1}`)},
	}
	tuned.SideFiles = []weft.SideFile{
		{Name: "config.json", Path: write("tc.json", `{"vocab_size": 13}`)},
		{Name: "tokenizer.json", Path: write("tt.json", `{"tuned":1}`)},
	}
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Vocab: VocabTuned, Types: ops.Types{DType: weft.BF16}})
	cfg := r.Out.SideFile("config.json")
	if string(cfg.Data) != "{\n  \"vocab_size\": 13,\n  \"torch_dtype\": \"bfloat16\"\n}\n" {
		t.Fatalf("config.json = %q", cfg.Data)
	}
	if tok := r.Out.SideFile("tokenizer.json"); tok.Path != tuned.SideFiles[1].Path {
		t.Fatalf("tokenizer from %s", tok.Path)
	}
	if base.SideFiles[0].Data != nil {
		t.Fatal("the base's side files were modified")
	}
}

func TestProvenanceAndIntegerTensors(t *testing.T) {
	base := synthModel(t, "base", 1, weft.F32, 8)
	tuned := synthModel(t, "tuned", 2, weft.F32, 8)
	mask := []byte{1, 0, 1, 1}
	base.Tensors = append(base.Tensors, rawTensor("model.layers.0.attn.bias", weft.Bool, []int64{4}, mask))
	tuned.Tensors = append(tuned.Tensors, rawTensor("model.layers.0.attn.bias", weft.Bool, []int64{4}, []byte{0, 0, 0, 0}))
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, AlphaFor: []AlphaRule{{"norms", 0}}})
	last := r.Out.Tensors[len(r.Out.Tensors)-1]
	if !bytes.Equal(readAll(t, last), mask) || r.Steps[len(r.Steps)-1].Action != "copy-int" {
		t.Fatalf("bool tensor: %+v", r.Steps[len(r.Steps)-1])
	}
	m := r.Out.Metadata
	p, err := ops.ReadProvenance(r.Out)
	if err != nil || p == nil || len(p.Steps) != 1 || m[ops.KeyVersion] != weft.Version {
		t.Fatalf("provenance: %v, %v", m, err)
	}
	st := p.Steps[0]
	if st.Op != "blend" || len(st.Inputs) != 2 || st.Inputs[1].HeaderHash != "hash-of-tuned" ||
		!strings.Contains(string(st.Params), `"alpha":0.5`) || !strings.Contains(string(st.Params), `"alpha_for":["norms=0"]`) {
		t.Fatalf("provenance: %+v", st)
	}
	if st.Seed != nil {
		t.Fatal("blend recorded a seed")
	}
	if base.Metadata != nil && base.Metadata[ops.KeySteps] != "" {
		t.Fatal("base metadata modified")
	}
}

func TestTypeSelection(t *testing.T) {
	g := func(path string, seed uint64) *weft.Checkpoint {
		return mkCkpt(path, weft.GGUF,
			mkTensor(t, "token_embd.weight", weft.F16, []int64{4, 64}, randVals(seed, 256, 0.1)),
			mkTensor(t, "blk.0.attn_norm.weight", weft.F32, []int64{64}, randVals(seed+1, 64, 0.1)),
			mkTensor(t, "blk.0.ffn_down.weight", weft.F16, []int64{4, 64}, randVals(seed+2, 256, 0.1)),
			mkTensor(t, "output.weight", weft.F16, []int64{4, 64}, randVals(seed+3, 256, 0.1)))
	}
	base, tuned := g("b.gguf", 1), g("t.gguf", 10)
	base.KV = []weft.KV{{Key: "general.architecture", Value: "llama"}, {Key: "general.file_type", Value: uint32(1)}}
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Types: ops.Types{DType: weft.F32, TypeFor: []ops.TypeRule{{Pattern: "output.weight", DType: weft.BF16}}}})
	want := map[string]weft.DType{"token_embd.weight": weft.F32, "blk.0.attn_norm.weight": weft.F32, "blk.0.ffn_down.weight": weft.F32, "output.weight": weft.BF16}
	for _, out := range r.Out.Tensors {
		if out.DType != want[out.Name] {
			t.Errorf("%s: %v, want %v", out.Name, out.DType, want[out.Name])
		}
	}
	if v, _ := r.Out.GetKV("general.file_type"); v != uint32(0) {
		t.Errorf("general.file_type = %v, want 0 (all F32)", v)
	}
	if v, _ := r.Out.GetKV(ops.KeySteps); !strings.Contains(v.(string), `"op":"blend"`) {
		t.Errorf("provenance KV = %v", v)
	}
	// An activation-only type is refused with the reason.
	if _, err := runBlend(base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Types: ops.Types{DType: weft.Q8_K}}); err == nil || !strings.Contains(err.Error(), "activation type") {
		t.Errorf("--dtype q8_k: %v", err)
	}
	// A type whose block does not divide the rows falls back as llama-quantize does, with
	// a note naming the tensor.
	run, err := ops.Run(&Options{Alpha: 0.5, Types: ops.Types{TypeFor: []ops.TypeRule{{Pattern: "output.weight", DType: weft.Q4_K}}}}, ops.Inputs{Checkpoints: []*weft.Checkpoint{base, tuned}}, weft.GGUF)
	if err != nil {
		t.Fatal(err)
	}
	if x := run.Out.Tensor("output.weight"); x.DType != weft.Q5_0 || len(run.Notes) == 0 || !strings.Contains(run.Notes[0], "output.weight") {
		t.Errorf("fallback: %v, notes %v", x.DType, run.Notes)
	}
}

func TestOutTypeAndCodecErrors(t *testing.T) {
	g := func(path string, seed uint64) *weft.Checkpoint {
		return mkCkpt(path, weft.GGUF,
			mkTensor(t, "token_embd.weight", weft.F16, []int64{4, 64}, randVals(seed, 256, 0.1)),
			mkTensor(t, "blk.0.attn_norm.weight", weft.F32, []int64{64}, randVals(seed+1, 64, 0.1)),
			mkTensor(t, "blk.0.ffn_down.weight", weft.F16, []int64{4, 64}, randVals(seed+2, 256, 0.1)))
	}
	base, tuned := g("b.gguf", 1), g("t.gguf", 10)
	base.KV = []weft.KV{{Key: "general.file_type", Value: uint32(1)}}
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Types: ops.Types{DType: weft.Q8_0}})
	for i, out := range r.Out.Tensors {
		want := weft.Q8_0
		if len(out.Shape) == 1 {
			want = weft.F32
		}
		if out.DType != want {
			t.Errorf("%s: %v, want %v", out.Name, out.DType, want)
		}
		ref := refLinear(decodeAll(t, base.Tensors[i]), [][]float64{decodeAll(t, tuned.Tensors[i])}, []float64{0.5})
		if !bytes.Equal(readAll(t, out), encode(t, want, ref)) {
			t.Errorf("%s differs from quantize(blend)", out.Name)
		}
	}
	if v, _ := r.Out.GetKV("general.file_type"); v != uint32(7) {
		t.Errorf("general.file_type = %v, want 7 (MOSTLY_Q8_0)", v)
	}

	// A type that can be decoded but not encoded: blending it is an error naming the
	// tensor and the type; alpha 0 is still a raw copy.
	var noEnc weft.DType
	for _, d := range weft.AllDTypes() {
		if d.Quantized() && codec.CanDecode(d) && !codec.CanEncode(d) {
			noEnc = d
			break
		}
	}
	if noEnc == weft.Invalid {
		t.Log("every quantized type has an encoder; skipping the unencodable-type check")
		return
	}
	row := make([]byte, 256/noEnc.BlockSize()*noEnc.BlockBytes())
	qb := mkCkpt("b.gguf", weft.GGUF, rawTensor("blk.0.ffn_up.weight", noEnc, []int64{1, 256}, row))
	qt := mkCkpt("t.gguf", weft.GGUF, rawTensor("blk.0.ffn_up.weight", noEnc, []int64{1, 256}, row))
	_, err := runBlend(qb, []*weft.Checkpoint{qt}, Options{Alpha: 0.5})
	if err == nil || !strings.Contains(err.Error(), "blk.0.ffn_up.weight") || !strings.Contains(err.Error(), noEnc.String()) {
		t.Fatalf("err = %v", err)
	}
	r = mustBlend(t, qb, []*weft.Checkpoint{qt}, Options{Alpha: 0})
	if r.Steps[0].Action != "copy" {
		t.Fatalf("alpha 0: %+v", r.Steps[0])
	}
	// An output type without an encoder is refused too (rows of 256, so that no fallback
	// for rows that are not whole blocks applies).
	f := make([]byte, 4*256)
	fb := mkCkpt("fb.gguf", weft.GGUF, rawTensor("blk.0.ffn_down.weight", weft.F32, []int64{1, 256}, f))
	ft := mkCkpt("ft.gguf", weft.GGUF, rawTensor("blk.0.ffn_down.weight", weft.F32, []int64{1, 256}, f))
	_, err = runBlend(fb, []*weft.Checkpoint{ft}, Options{Alpha: 0.5, Types: ops.Types{TypeFor: []ops.TypeRule{{Pattern: "blk.0.ffn_down.weight", DType: noEnc}}}})
	if err == nil || !strings.Contains(err.Error(), "blk.0.ffn_down.weight") || !strings.Contains(err.Error(), noEnc.String()) {
		t.Fatalf("err = %v", err)
	}
}

func TestVocabGGUFTokenizerKeys(t *testing.T) {
	g := func(path string, seed uint64, vocab int64) *weft.Checkpoint {
		c := mkCkpt(path, weft.GGUF,
			mkTensor(t, "token_embd.weight", weft.F32, []int64{vocab, 8}, randVals(seed, int(vocab*8), 0.1)),
			mkTensor(t, "blk.0.ffn_down.weight", weft.F32, []int64{8, 8}, randVals(seed+1, 64, 0.1)))
		toks := make([]string, vocab)
		for i := range toks {
			toks[i] = fmt.Sprintf("%s%d", path, i)
		}
		c.KV = []weft.KV{{Key: "general.architecture", Value: "llama"}, {Key: "llama.vocab_size", Value: uint32(vocab)},
			{Key: "tokenizer.ggml.tokens", Value: toks}, {Key: "general.name", Value: path}}
		return c
	}
	base, tuned := g("b", 1, 10), g("t", 5, 12)
	r := mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Vocab: VocabUnion})
	if toks, _ := r.Out.GetKV("tokenizer.ggml.tokens"); len(toks.([]string)) != 12 {
		t.Fatalf("tokens %v", toks)
	}
	if v, _ := r.Out.GetKV("llama.vocab_size"); v != uint32(12) {
		t.Fatalf("vocab_size %v", v)
	}
	if v, _ := r.Out.GetKV("general.name"); v != "b" {
		t.Fatalf("general.name %v: other keys must stay the base's", v)
	}
	if toks, _ := base.GetKV("tokenizer.ggml.tokens"); len(toks.([]string)) != 10 {
		t.Fatal("base modified")
	}
	// --vocab base keeps the base's tokenizer.
	r = mustBlend(t, base, []*weft.Checkpoint{tuned}, Options{Alpha: 0.5, Vocab: VocabBase})
	if toks, _ := r.Out.GetKV("tokenizer.ggml.tokens"); len(toks.([]string)) != 10 {
		t.Fatalf("tokens %v", toks)
	}
}

// isOption reports whether err is a *weft.OptionError about option.
func isOption(err error, option string) bool {
	var oe *weft.OptionError
	return errors.As(err, &oe) && oe.Option == option
}

// hints reports whether err is a *weft.HintError suggesting option.
func hints(err error, option string) bool {
	var he *weft.HintError
	if !errors.As(err, &he) {
		return false
	}
	for _, h := range he.Hints {
		if h.Option == option {
			return true
		}
	}
	return false
}
