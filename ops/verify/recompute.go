package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
)

// piece says how output rows [r0, r1) (rows as in TensorInfo.Rows: every dimension but the
// innermost) were produced: as the bytes of raw at the same offsets, or as f applied, element
// by element, to the values of ins at the same flat element index, rounded once to the
// output's dtype.
type piece struct {
	r0, r1 int64
	raw    *weft.Tensor
	ins    []*weft.Tensor
	f      func(x []float64) float64 // nil: x[0]
}

// recipe is how one output tensor can be recomputed.
type recipe struct {
	how    string
	pieces []piece
	// skip, when set, says why the tensor is not recomputed (no problem in itself).
	skip string
	// prepare, when set, runs once before any element is recomputed (slerp's scalars).
	prepare func() error
}

// whole returns a one-piece recipe over all rows of out: raw when src has out's dtype, a
// conversion otherwise.
func whole(out, src *weft.Tensor, what string) *recipe {
	p := piece{r0: 0, r1: out.Rows()}
	if src.DType == out.DType {
		p.raw = src
		return &recipe{how: "copy of " + what, pieces: []piece{p}}
	}
	p.ins = []*weft.Tensor{src}
	return checkCodecs(&recipe{how: fmt.Sprintf("convert %v -> %v of %s", src.DType, out.DType, what), pieces: []piece{p}}, out)
}

// checkCodecs turns r into a skip when an element it computes cannot be decoded or encoded.
func checkCodecs(r *recipe, out *weft.Tensor) *recipe {
	for _, p := range r.pieces {
		if p.raw != nil {
			continue
		}
		for _, in := range p.ins {
			if !codec.CanDecode(in.DType) {
				return &recipe{skip: fmt.Sprintf("not recomputed: weft cannot decode %v (input tensor %q)", in.DType, in.Name)}
			}
		}
		if !codec.CanEncode(out.DType) {
			return &recipe{skip: fmt.Sprintf("not recomputed: weft cannot encode %v", out.DType)}
		}
	}
	return r
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// convertRecipes recomputes `weft convert`: every output tensor is the input tensor of the
// same name, as raw bytes or cast to the output dtype (rounded once).
func convertRecipes(out *weft.Checkpoint, params string, inputs []*weft.Checkpoint) (func(*weft.Tensor) (*recipe, error), error) {
	if len(inputs) != 1 {
		return nil, fmt.Errorf("convert records %d inputs, want 1", len(inputs))
	}
	idx := inputs[0].Index()
	return func(t *weft.Tensor) (*recipe, error) {
		x := idx[t.Name]
		if x == nil {
			return nil, fmt.Errorf("the input has no tensor %q", t.Name)
		}
		if !sameShape(x.Shape, t.Shape) {
			return nil, fmt.Errorf("shape %v, but the input's tensor has shape %v", t.Shape, x.Shape)
		}
		return whole(t, x, "the input"), nil
	}, nil
}

// blendParams is what ops/blend records (see its params type).
type blendParams struct {
	Method   string    `json:"method"`
	Alpha    float64   `json:"alpha"`
	AlphaFor []string  `json:"alpha_for"`
	Schedule []float64 `json:"alpha_schedule"`
	Weights  []float64 `json:"weights"`
	Missing  string    `json:"missing"`
	Vocab    string    `json:"vocab"`
}

// blendRecipes recomputes `weft blend` from its recorded parameters, exactly as ops/blend
// computes: base + sum_i c_i*(tuned_i - base) in float64 (each difference, product and sum
// rounded in that order), or slerp's s0*base + s1*tuned, rounded once to the output dtype;
// coefficients of exactly 0 or 1 copy an input; vocabulary rows only some inputs have come
// from the input the vocabulary policy names.
func blendRecipes(out *weft.Checkpoint, params string, inputs []*weft.Checkpoint) (func(*weft.Tensor) (*recipe, error), error) {
	var p blendParams
	dec := json.NewDecoder(strings.NewReader(params))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("blend parameters %q: %v", params, err)
	}
	if len(inputs) < 2 {
		return nil, fmt.Errorf("blend records %d inputs, want a base and at least one tuned model", len(inputs))
	}
	method := blend.Method(p.Method)
	if method == "" {
		method = blend.Linear
	}
	if blend.IsMergeMethod(method) {
		return mergeReplay(params, inputs)
	}
	if method != blend.Linear && method != blend.Slerp {
		return nil, fmt.Errorf("blend method %q is not one weft knows", p.Method)
	}
	ntuned := len(inputs) - 1
	weights := p.Weights
	if weights == nil {
		weights = make([]float64, ntuned)
		for i := range weights {
			weights[i] = 1
		}
	}
	if len(weights) != ntuned {
		return nil, fmt.Errorf("blend records %d weights for %d tuned models", len(weights), ntuned)
	}
	type alphaRule struct {
		pat   *ops.Pattern
		alpha float64
	}
	var rules []alphaRule
	for _, s := range p.AlphaFor {
		i := strings.LastIndex(s, "=")
		if i <= 0 {
			return nil, fmt.Errorf("blend alpha_for rule %q is not PATTERN=ALPHA", s)
		}
		pat, err := ops.CompilePattern(s[:i])
		if err != nil {
			return nil, err
		}
		a, err := strconv.ParseFloat(s[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("blend alpha_for rule %q: %v", s, err)
		}
		rules = append(rules, alphaRule{pat, a})
	}
	base := inputs[0]
	names := make([]string, len(base.Tensors))
	for i, t := range base.Tensors {
		names[i] = t.Name
	}
	nLayers := arch.NumLayers(names)
	idx := make([]map[string]*weft.Tensor, len(inputs))
	for k, c := range inputs {
		idx[k] = c.Index()
	}
	role := func(k int) string { return inputRole("blend", k, len(inputs)) }
	floatLike := func(d weft.DType) bool { return d.Float() || d.Quantized() }

	return func(t *weft.Tensor) (*recipe, error) {
		b := idx[0][t.Name]
		if b == nil {
			return nil, fmt.Errorf("the base has no tensor %q", t.Name)
		}
		alpha := p.Alpha
		matched := false
		for _, r := range rules {
			if r.pat.Match(t.Name) {
				alpha, matched = r.alpha, true
				break
			}
		}
		if !matched && len(p.Schedule) > 0 {
			if l, _, ok := arch.Layer(t.Name); ok {
				alpha = blend.ScheduleAt(p.Schedule, l, nLayers)
			}
		}
		coeffs := make([]float64, ntuned)
		for i, w := range weights {
			coeffs[i] = alpha * w
		}
		ins := []*weft.Tensor{b}
		for k := 1; k < len(inputs); k++ {
			u := idx[k][t.Name]
			if u == nil {
				if p.Missing != blend.MissingBase {
					return nil, fmt.Errorf("%s has no tensor %q and the blend did not record --missing base", role(k), t.Name)
				}
				if !sameShape(t.Shape, b.Shape) {
					return nil, fmt.Errorf("shape %v, but the base's tensor (the only one) has shape %v", t.Shape, b.Shape)
				}
				return whole(t, b, "the base (only the base has it)"), nil
			}
			ins = append(ins, u)
		}
		if !floatLike(b.DType) {
			if !sameShape(t.Shape, b.Shape) {
				return nil, fmt.Errorf("shape %v, but the base's tensor has shape %v", t.Shape, b.Shape)
			}
			return whole(t, b, "the base (not floating-point)"), nil
		}
		// Vocabulary: rows every input has are blended, the rest come from one input.
		outShape := append([]int64(nil), b.Shape...)
		rows := b.Rows()
		common := rows
		src := 0
		differ := false
		for k := 1; k < len(ins); k++ {
			if !sameShape(b.Shape, ins[k].Shape) {
				differ = true
				if len(ins[k].Shape) != len(b.Shape) || len(b.Shape) < 2 || !sameShape(ins[k].Shape[1:], b.Shape[1:]) {
					return nil, fmt.Errorf("inputs differ in shape beyond the vocabulary: %v (base) vs %v (%s)", b.Shape, ins[k].Shape, role(k))
				}
			}
		}
		if differ {
			perRow := int64(1)
			for _, d := range b.Shape[1 : len(b.Shape)-1] {
				perRow *= d
			}
			minD0 := b.Shape[0]
			for k := 1; k < len(ins); k++ {
				minD0 = min(minD0, ins[k].Shape[0])
			}
			switch p.Vocab {
			case blend.VocabBase:
				src = 0
			case blend.VocabTuned:
				src = 1
			case blend.VocabUnion:
				for k := 1; k < len(ins); k++ {
					if ins[k].Shape[0] > ins[src].Shape[0] {
						src = k
					}
				}
			default:
				return nil, fmt.Errorf("inputs differ in vocabulary size (%v vs %v) and the blend recorded no --vocab policy", b.Shape, ins[1].Shape)
			}
			outShape[0] = ins[src].Shape[0]
			common = minD0 * perRow
		}
		if !sameShape(t.Shape, outShape) {
			return nil, fmt.Errorf("shape %v, but the blend of these inputs has shape %v", t.Shape, outShape)
		}
		n, _ := t.NumElements()
		if n == 0 {
			return &recipe{how: "empty"}, nil
		}
		outRows := t.Rows()
		r := &recipe{}
		ident := blend.Identity(coeffs)
		first := piece{r0: 0, r1: min(common, outRows)}
		switch {
		case ident >= 0:
			if ins[ident].DType == t.DType {
				first.raw = ins[ident]
				r.how = "copy of " + role(ident)
			} else {
				first.ins = []*weft.Tensor{ins[ident]}
				r.how = fmt.Sprintf("convert %v -> %v of %s", ins[ident].DType, t.DType, role(ident))
			}
		case method == blend.Slerp:
			if len(ins) != 2 {
				return nil, fmt.Errorf("slerp records %d inputs, want 2", len(ins))
			}
			s := &slerpScalars{alpha: alpha, b: ins[0], t: ins[1], rows: common}
			first.ins = ins[:2]
			first.f = s.apply
			r.prepare = s.compute
			r.how = fmt.Sprintf("slerp t=%g", alpha)
		default:
			first.ins = ins
			c := coeffs
			first.f = func(x []float64) float64 { return linear(x, c) }
			r.how = fmt.Sprintf("blend coeffs=%v", coeffs)
		}
		if first.r1 > first.r0 {
			r.pieces = append(r.pieces, first)
		}
		if common < outRows {
			extra := piece{r0: common, r1: outRows}
			if ins[src].DType == t.DType {
				extra.raw = ins[src]
			} else {
				extra.ins = []*weft.Tensor{ins[src]}
			}
			r.pieces = append(r.pieces, extra)
			r.how += fmt.Sprintf("; rows %d-%d from %s", common, outRows, role(src))
		}
		return checkCodecs(r, t), nil
	}, nil
}

// linear returns base + sum_i c[i]*(t_i - base) for x = (base, t_1, ...), each difference,
// product and sum rounded to float64 in this order, as ops/blend computes it.
func linear(x []float64, c []float64) float64 {
	b := x[0]
	acc := float64(c[0] * (x[1] - b))
	for k := 1; k < len(c); k++ {
		acc += float64(c[k] * (x[k+1] - b))
	}
	return b + acc
}

// slerpScalars recomputes the slerp coefficients of one tensor from the whole base and
// tuned tensors (rows [0, rows)), as ops/blend does: per-row sums in element order, rows
// added with compensated summation in row order.
type slerpScalars struct {
	alpha  float64
	b, t   *weft.Tensor
	rows   int64
	s0, s1 float64
	lerp   bool
}

func (s *slerpScalars) compute() error {
	var dot, nb, nt blend.Sum
	rowLen := s.b.RowLen()
	if rowLen > 0 && s.rows > 0 {
		step := max(1, (256<<10)/rowLen)
		var bv, tv []float64
		for r0 := int64(0); r0 < s.rows; r0 += step {
			r1 := min(s.rows, r0+step)
			n := (r1 - r0) * rowLen
			if int64(cap(bv)) < n {
				bv, tv = make([]float64, n), make([]float64, n)
			}
			bv, tv = bv[:n], tv[:n]
			if err := readF64(s.b, r0*rowLen, bv); err != nil {
				return err
			}
			if err := readF64(s.t, r0*rowLen, tv); err != nil {
				return err
			}
			for off := int64(0); off < n; off += rowLen {
				var d, x, y float64
				for i := off; i < off+rowLen; i++ {
					d += float64(bv[i] * tv[i])
					x += float64(bv[i] * bv[i])
					y += float64(tv[i] * tv[i])
				}
				dot.Add(d)
				nb.Add(x)
				nt.Add(y)
			}
		}
	}
	s.s0, s.s1, s.lerp = blend.SlerpCoefficients(s.alpha, dot.Value(), math.Sqrt(nb.Value()), math.Sqrt(nt.Value()))
	return nil
}

func (s *slerpScalars) apply(x []float64) float64 {
	if s.lerp {
		return linear(x, []float64{s.alpha})
	}
	return float64(s.s0*x[0]) + float64(s.s1*x[1])
}

// readF64 reads len(dst) elements of t starting at flat element e0 (a whole number of
// blocks) and decodes them.
func readF64(t *weft.Tensor, e0 int64, dst []float64) error {
	bs, bb := t.DType.BlockSize(), t.DType.BlockBytes()
	buf := make([]byte, int64(len(dst))/bs*bb)
	if err := readFull(t, buf, e0/bs*bb); err != nil {
		return err
	}
	if err := codec.DecodeF64(t.DType, buf, dst); err != nil {
		return fmt.Errorf("%s: %v", where(t), err)
	}
	return nil
}

// recomputeAll recomputes a sample of every tensor of c with the recipes of plan, with a
// bounded pool of workers, and records the results in r.
func recomputeAll(ctx context.Context, c *weft.Checkpoint, r *Report, plan func(*weft.Tensor) (*recipe, error), opts Options) error {
	samples := opts.Samples
	if samples == 0 {
		samples = DefaultSamples
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				recomputeOne(c.Tensors[i], &r.Tensors[i], plan, samples)
			}
		}()
	}
	var err error
feed:
	for i := range c.Tensors {
		select {
		case jobs <- i:
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return err
}

// recomputeOne recomputes a sample of one tensor.
func recomputeOne(t *weft.Tensor, tr *TensorReport, plan func(*weft.Tensor) (*recipe, error), samples int) {
	if len(tr.Problems) > 0 && tr.Read != tr.Bytes {
		tr.How = "not recomputed: the tensor cannot be read"
		return
	}
	rc, err := plan(t)
	if err != nil {
		tr.Problems = append(tr.Problems, "provenance: "+err.Error())
		return
	}
	if rc.skip != "" {
		tr.How = rc.skip
		return
	}
	tr.How = rc.how
	if len(rc.pieces) == 0 {
		return
	}
	if rc.prepare != nil {
		if err := rc.prepare(); err != nil {
			tr.Problems = append(tr.Problems, "recomputing: "+err.Error())
			return
		}
	}
	unit := t.DType.BlockSize()
	for _, p := range rc.pieces {
		if p.raw != nil {
			unit = max(unit, p.raw.DType.BlockSize())
		}
		for _, in := range p.ins {
			unit = max(unit, in.DType.BlockSize())
		}
	}
	rowLen := t.RowLen()
	if rowLen%unit != 0 {
		tr.How += fmt.Sprintf(" (not recomputed: rows of %d elements are not whole blocks of %d)", rowLen, unit)
		return
	}
	seg := unit
	if unit == 1 {
		seg = min(16, rowLen)
	}
	rows := t.Rows()
	per := (rowLen + seg - 1) / seg // segments per row (the last one may be short when unit is 1)
	k := (int64(samples) + seg - 1) / seg
	// check recomputes the segment at (row, col), stopping at the first error.
	check := func(row, col, n int64) bool {
		var pc *piece
		for i := range rc.pieces {
			if row >= rc.pieces[i].r0 && row < rc.pieces[i].r1 {
				pc = &rc.pieces[i]
				break
			}
		}
		if pc == nil {
			tr.Problems = append(tr.Problems, fmt.Sprintf("recomputing: row %d is covered by no input", row))
			return false
		}
		if err := checkSpan(t, pc, row*rowLen+col, n, tr); err != nil {
			tr.Problems = append(tr.Problems, "recomputing: "+err.Error())
			return false
		}
		return true
	}
	if rows*rowLen <= int64(samples) || k >= rows*per {
		// Small enough: recompute every element, a few thousand at a time.
		step := max(seg, 4096/unit*unit)
		for row := int64(0); row < rows; row++ {
			for col := int64(0); col < rowLen; col += step {
				if !check(row, col, min(step, rowLen-col)) {
					return
				}
			}
		}
	} else {
		// k segments: the first and the last of the tensor, the others at positions drawn
		// from a generator seeded by the tensor's name (the same every run).
		h := fnv.New64a()
		h.Write([]byte(t.Name))
		rng := rand.New(rand.NewPCG(h.Sum64(), 0x5eed))
		last := (per - 1) * seg
		for i := int64(0); i < k; i++ {
			row, col := int64(0), int64(0)
			switch i {
			case 0:
			case 1:
				row, col = rows-1, last
			default:
				row, col = rng.Int64N(rows), rng.Int64N(per)*seg
			}
			if !check(row, col, min(seg, rowLen-col)) {
				return
			}
		}
	}
	if tr.Mismatches > 0 {
		tr.Problems = append(tr.Problems, fmt.Sprintf("%d of %d recomputed elements disagree with the recorded inputs (first: %s)", tr.Mismatches, tr.Recomputed, tr.FirstMismatch))
	}
}

// readBytes reads the bytes of n elements of t from flat element e0.
func readBytes(t *weft.Tensor, e0, n int64) ([]byte, error) {
	bs, bb := t.DType.BlockSize(), t.DType.BlockBytes()
	buf := make([]byte, n/bs*bb)
	if err := readFull(t, buf, e0/bs*bb); err != nil {
		return nil, err
	}
	return buf, nil
}

// checkSpan recomputes n elements of t from flat element e0 with piece pc and compares them
// with t's bytes.
func checkSpan(t *weft.Tensor, pc *piece, e0, n int64, tr *TensorReport) error {
	got, err := readBytes(t, e0, n)
	if err != nil {
		return err
	}
	var want []byte
	if pc.raw != nil {
		if want, err = readBytes(pc.raw, e0, n); err != nil {
			return err
		}
	} else {
		x := make([][]float64, len(pc.ins))
		for k, in := range pc.ins {
			x[k] = make([]float64, n)
			if err := readF64(in, e0, x[k]); err != nil {
				return err
			}
		}
		exp := make([]float64, n)
		v := make([]float64, len(pc.ins))
		for i := range exp {
			for k := range v {
				v[k] = x[k][i]
			}
			if pc.f == nil {
				exp[i] = v[0]
			} else {
				exp[i] = pc.f(v)
			}
		}
		want = make([]byte, len(got))
		if err := codec.EncodeF64(t.DType, exp, want); err != nil {
			return fmt.Errorf("encoding the expected values as %v: %v", t.DType, err)
		}
	}
	tr.Recomputed += n
	bs, bb := t.DType.BlockSize(), t.DType.BlockBytes()
	for blk := int64(0); blk < n/bs; blk++ {
		g, w := got[blk*bb:(blk+1)*bb], want[blk*bb:(blk+1)*bb]
		if bytes.Equal(g, w) {
			continue
		}
		gv, wv := make([]float64, bs), make([]float64, bs)
		gerr := codec.DecodeF64(t.DType, g, gv)
		werr := codec.DecodeF64(t.DType, w, wv)
		if bs == 1 && gerr == nil && werr == nil && gv[0] != gv[0] && wv[0] != wv[0] {
			continue // both NaN: payloads may differ
		}
		tr.Mismatches += bs
		if tr.FirstMismatch == "" {
			e := e0 + blk*bs
			row, col := e/t.RowLen(), e%t.RowLen()
			switch {
			case gerr != nil || werr != nil:
				tr.FirstMismatch = fmt.Sprintf("element %d (row %d, column %d): bytes % x, expected % x", e, row, col, g, w)
			case bs == 1:
				tr.FirstMismatch = fmt.Sprintf("element %d (row %d, column %d) is %v, expected %v", e, row, col, gv[0], wv[0])
			default:
				j := 0
				for j < len(gv) && gv[j] == wv[j] {
					j++
				}
				j = min(j, len(gv)-1)
				tr.FirstMismatch = fmt.Sprintf("block of elements %d-%d (row %d) differs: element %d is %v, expected %v", e, e+bs-1, row, e+int64(j), gv[j], wv[j])
			}
		}
	}
	return nil
}

// mergeParams is what ops/blend records for its merge methods (ties, dare_*, della*, ...).
type mergeParams struct {
	Method  string            `json:"method"`
	Missing string            `json:"missing"`
	Vocab   string            `json:"vocab"`
	DType   string            `json:"dtype"`
	OutType string            `json:"out_type"`
	TypeFor []string          `json:"type_for"`
	Merge   blend.MergeParams `json:"merge"`
}

// mergeReplay recomputes the merge methods by replaying ops/blend's own plan from the
// recorded parameters and inputs: their whole-tensor reductions (magnitude thresholds, norms,
// rescaling factors) make them no element-wise recipe, so each sampled span of an output
// tensor is compared with the same span of the replayed tensor, computed anew.
func mergeReplay(params string, inputs []*weft.Checkpoint) (func(*weft.Tensor) (*recipe, error), error) {
	var p mergeParams
	if err := json.Unmarshal([]byte(params), &p); err != nil {
		return nil, fmt.Errorf("blend parameters %q: %v", params, err)
	}
	o := blend.Options{Method: blend.Method(p.Method), Missing: p.Missing, Vocab: p.Vocab, Params: p.Merge}
	var err error
	if p.DType != "" {
		if o.DType, err = weft.ParseDType(p.DType); err != nil {
			return nil, fmt.Errorf("blend dtype %q: %v", p.DType, err)
		}
	}
	if p.OutType != "" {
		if o.OutType, err = weft.ParseDType(p.OutType); err != nil {
			return nil, fmt.Errorf("blend out_type %q: %v", p.OutType, err)
		}
	}
	for _, s := range p.TypeFor {
		r, err := blend.ParseTypeRule(s)
		if err != nil {
			return nil, err
		}
		o.TypeFor = append(o.TypeFor, r)
	}
	res, err := blend.Blend(inputs[0], inputs[1:], o)
	if err != nil {
		return nil, fmt.Errorf("replaying the blend: %v", err)
	}
	idx := res.Out.Index()
	return func(t *weft.Tensor) (*recipe, error) {
		x := idx[t.Name]
		switch {
		case x == nil:
			return nil, fmt.Errorf("the replayed %s has no tensor %q", p.Method, t.Name)
		case x.DType != t.DType || !sameShape(x.Shape, t.Shape):
			return nil, fmt.Errorf("the replayed %s makes %q %v %v, the checkpoint has %v %v", p.Method, t.Name, x.DType, x.Shape, t.DType, t.Shape)
		}
		return &recipe{how: fmt.Sprintf("%s (replayed: %s)", p.Method, res.Step(t.Name).Describe()), pieces: []piece{{r0: 0, r1: t.Rows(), raw: x}}}, nil
	}, nil
}
