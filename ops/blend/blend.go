// Package blend implements weft's blend and diff operations.
//
// Blend interpolates between a base checkpoint and one or more tuned checkpoints of the same
// architecture, tensor by tensor, streaming: every output element is
// base + sum_i c_i*(tuned_i - base), computed in float64 and rounded once to the output
// dtype, where the coefficients c_i come from the blend weight (--alpha, per-tensor rules,
// per-layer schedules) and, for more than two models, the per-model weights (task
// arithmetic). Spherical interpolation (slerp) of two models is available too.
//
// Diff measures, tensor by tensor, how far a second checkpoint moved from a first: cosine
// similarity, relative L2 distance and largest absolute difference, with a per-layer
// summary.
package blend

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/ops"
)

// Method is how two models are interpolated.
type Method string

// The blend methods.
const (
	// Linear is base + sum_i c_i*(tuned_i - base); with one tuned model and c = alpha it is
	// base + alpha*(tuned - base).
	Linear Method = "linear"
	// Slerp is spherical linear interpolation of two models, per tensor, the tensor taken
	// as one flattened vector (see SlerpThreshold).
	Slerp Method = "slerp"
)

// SlerpThreshold is the absolute cosine above which slerp treats two tensors as colinear and
// interpolates linearly instead: mergekit's DOT_THRESHOLD. As in mergekit, the cosine is the
// dot product of the two tensors each divided by its L2 norm, a norm at or below SlerpEps
// being left undivided.
const SlerpThreshold = 0.9995

// SlerpEps is the norm below which slerp does not normalise a tensor (mergekit's eps).
const SlerpEps = 1e-8

// Missing policies: what to do with tensors that not every input has.
const (
	// MissingError (the default) refuses inputs with different tensor sets.
	MissingError = ""
	// MissingBase keeps the base's tensor set: tensors only the base has are copied from
	// it, tensors the base lacks are left out (and listed in Result.Notes).
	MissingBase = "base"
)

// Vocabulary policies: what to do with embedding and output-head tensors whose row counts
// (vocabulary sizes) differ.
const (
	// VocabError (the default) refuses them as any other shape mismatch.
	VocabError = ""
	// VocabBase gives the output the base's row count: rows every input has are blended,
	// the base's extra rows are copied.
	VocabBase = "base"
	// VocabTuned gives the output the tuned model's row count (one tuned model only): rows
	// both have are blended, the tuned model's extra rows are copied.
	VocabTuned = "tuned"
	// VocabUnion gives the output the largest row count: rows every input has are blended,
	// the others are copied from the input with the most rows (the base on a tie).
	VocabUnion = "union"
)

// Options are blend's parameters.
type Options struct {
	// Method is Linear (the default when empty), Slerp (two models only), or one of the
	// merge methods Params configures (see Methods).
	Method Method `json:"method"`
	// Alpha is the blend weight of tensors no rule or schedule covers: 0 gives the base, 1
	// the tuned model, values above 1 extrapolate and below 0 move away from the tuned
	// model. With several tuned models it scales every model's weight (use 1).
	Alpha float64 `json:"alpha"`
	// AlphaFor gives matching tensors their own weight; the first matching rule wins.
	AlphaFor []AlphaRule `json:"alpha_for,omitempty"`
	// Schedule gives layer tensors a weight interpolated over the layer index (see
	// ScheduleAt); tensors outside the layers get Alpha. AlphaFor rules take precedence.
	Schedule []float64 `json:"alpha_schedule,omitempty"`
	// Weights holds one weight per tuned model for task arithmetic:
	// base + alpha*sum_i w_i*(tuned_i - base). Nil means one weight of 1 per tuned model and
	// is only allowed with a single tuned model.
	Weights []float64 `json:"weights,omitempty"`
	// Missing and Vocab are the mismatch policies (MissingError/MissingBase,
	// VocabError/VocabBase/VocabTuned/VocabUnion).
	Missing string `json:"missing,omitempty"`
	Vocab   string `json:"vocab,omitempty"`
	// Types are the output types. By default each tensor keeps the base's type (a
	// quantized tensor is quantized back to its own type).
	ops.Types
	// Params configures the methods other than Linear and Slerp (ties, dare_*, della*,
	// breadcrumbs*, task_arithmetic, model_stock, nuslerp, multislerp), with mergekit's
	// parameter names; Alpha, AlphaFor, Schedule and Weights are for Linear and Slerp only.
	Params MergeParams `json:"merge,omitempty"`
	// PassBudget bounds the bytes a merge method's pre-pass over one tensor holds at once
	// (candidates of the exact magnitude selection, per-column norms); 0 means
	// DefaultPassBudget. Tensors whose pre-pass fits are handled in memory in one pass. It
	// changes how much memory a tensor's preparation takes, never the output, so it is not
	// recorded.
	PassBudget int64 `json:"-"`

	// ty resolves the output types (nil: every tensor keeps the base's type); Plan sets it.
	ty *ops.Typer
}

// DefaultPassBudget is the default Options.PassBudget: 16 MiB per tensor being prepared
// (at most one per worker thread at a time).
const DefaultPassBudget = 16 << 20

// Step describes what the blend does to one output tensor.
type Step struct {
	Name string `json:"name"`
	// Action is "blend", "slerp", "copy" (a raw byte copy of Source), "convert" (Source's
	// values in another dtype, no arithmetic), "copy-int" (a non-float tensor copied
	// from the base), or the name of the merge method that computes it ("ties", ...).
	Action string `json:"action"`
	// Source names the input copied or converted ("base", "tuned", "tuned2", ...).
	Source string `json:"source,omitempty"`
	// Alpha is the tensor's blend weight; Coeffs the coefficient of each tuned model.
	Alpha  float64   `json:"alpha"`
	Coeffs []float64 `json:"coeffs,omitempty"`
	// Params are a merge method's parameters for this tensor ("weight=1,1 density=0.5,0.5
	// lambda=1"), for the methods configured by MergeParams.
	Params string  `json:"params,omitempty"`
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	// Note explains vocabulary handling and similar special cases.
	Note string `json:"note,omitempty"`
}

// Describe returns a one-line description of the step for plans, its numbers as people
// write them (text.Num: 0.667, not 0.6666666666666661); the JSON plan keeps them exact.
func (s Step) Describe() string {
	var b strings.Builder
	switch s.Action {
	case "copy", "convert", "copy-int":
		fmt.Fprintf(&b, "%s %s", s.Action, s.Source)
	case "slerp":
		fmt.Fprintf(&b, "slerp t=%s", text.Num(s.Alpha))
	case "blend":
		if len(s.Coeffs) == 1 {
			fmt.Fprintf(&b, "blend alpha=%s", text.Num(s.Coeffs[0]))
		} else {
			fmt.Fprintf(&b, "blend coeffs=%s", text.Nums(s.Coeffs, ","))
		}
	default:
		b.WriteString(s.Action)
		if s.Params != "" {
			b.WriteString(" " + s.Params)
		}
	}
	if s.Note != "" {
		b.WriteString("; " + s.Note)
	}
	return b.String()
}

// Result is the outcome of Blend: the output checkpoint, ready to be written, and the plan.
type Result struct {
	Out *weft.Checkpoint
	// Steps has one entry per output tensor, in output order.
	Steps []Step
	// Notes lists what the mismatch policies did (tensors left out, vocabulary changes).
	Notes []string
	// Seed is the seed of a random merge method's drops (dare_*, della*), -1 for the
	// methods that draw nothing.
	Seed int64
}

// Step returns the step of the named output tensor, or nil.
func (r *Result) Step(name string) *Step {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// inputName is how messages name input k (0 the base).
func inputName(k, ntuned int) string {
	switch {
	case k == 0:
		return "base"
	case ntuned == 1:
		return "tuned"
	}
	return fmt.Sprintf("tuned%d", k)
}

// listNames formats up to 20 names.
func listNames(names []string) string { return text.List(names, 20) }

// Blend plans the blend of base with tuned (one or more checkpoints) and returns the output
// checkpoint, whose tensors are computed on demand when it is written, together with the
// plan. Only headers are read here. The output has the base's format, tensor order, shards,
// metadata, key-values and side files; ops.Run types it and records its provenance.
func Blend(base *weft.Checkpoint, tuned []*weft.Checkpoint, opts Options) (*Result, error) {
	if base == nil || len(tuned) == 0 {
		return nil, fmt.Errorf("blend: need a base and at least one tuned checkpoint")
	}
	method := opts.Method
	if method == "" {
		method = Linear
	}
	merging := isMergeMethod(method)
	if method != Linear && method != Slerp && !merging {
		names := make([]string, 0, len(Methods()))
		for _, m := range Methods() {
			names = append(names, string(m))
		}
		return nil, weft.OptionValuef("method", string(method), "unknown method (want %s)", strings.Join(names, ", "))
	}
	if merging && (opts.Alpha != 0 || opts.AlphaFor != nil || opts.Schedule != nil || opts.Weights != nil) {
		return nil, weft.Optionf("method", "alpha, per-tensor alphas, alpha schedules and weights are for linear and slerp; %s takes its weights and scale from its own parameters (weight, lambda)", method)
	}
	weights := opts.Weights
	if merging {
		weights = make([]float64, len(tuned)) // unused: the method's parameters apply
	} else if weights == nil {
		if len(tuned) > 1 {
			return nil, weft.Optionf("weights", "%d tuned models need %d weights (task arithmetic: base + sum w_i*(T_i - base))", len(tuned), len(tuned))
		}
		weights = []float64{1}
	}
	if len(weights) != len(tuned) {
		return nil, weft.OptionValuef("weights", text.Nums(weights, ","), "%d weights for %d tuned models", len(weights), len(tuned))
	}
	if method == Slerp {
		if len(tuned) != 1 {
			return nil, weft.OptionValuef("method", string(method), "slerp takes exactly two models (a base and one tuned), got %d", len(tuned)+1)
		}
		if opts.Weights != nil {
			return nil, weft.Optionf("weights", "weights are for task arithmetic (linear), not slerp")
		}
	}
	finite := func(option string, v ...float64) error {
		for _, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return weft.OptionValuef(option, text.Num(x), "must be finite")
			}
		}
		return nil
	}
	if err := finite("alpha", opts.Alpha); err != nil {
		return nil, err
	}
	if err := finite("alpha_schedule", opts.Schedule...); err != nil {
		return nil, err
	}
	if err := finite("weights", weights...); err != nil {
		return nil, err
	}
	for _, r := range opts.AlphaFor {
		if !math.IsNaN(r.Alpha) && !math.IsInf(r.Alpha, 0) {
			continue
		}
		return nil, weft.OptionValuef("alpha_for", r.Pattern+"="+text.Num(r.Alpha), "must be finite")
	}
	switch opts.Missing {
	case MissingError, MissingBase:
	default:
		return nil, weft.OptionValuef("missing", opts.Missing, "unknown policy (want base)")
	}
	switch opts.Vocab {
	case VocabError, VocabBase, VocabUnion:
	case VocabTuned:
		if len(tuned) != 1 {
			return nil, weft.OptionValuef("vocab", opts.Vocab, "needs exactly one tuned model; use base or union")
		}
	default:
		return nil, weft.OptionValuef("vocab", opts.Vocab, "unknown policy (want base, tuned or union)")
	}
	all := append([]*weft.Checkpoint{base}, tuned...)
	// Naming: refuse to mix Hugging Face and GGUF names.
	namings := make([]arch.Naming, len(all))
	for k, c := range all {
		names := make([]string, len(c.Tensors))
		for i, t := range c.Tensors {
			names[i] = t.Name
		}
		namings[k] = arch.DetectNaming(names)
	}
	for k := 1; k < len(all); k++ {
		if namings[0] != arch.Unknown && namings[k] != arch.Unknown && namings[k] != namings[0] {
			return nil, fmt.Errorf("blend: %s (%s) uses %s tensor names but %s (%s) uses %s names; blending needs both in the same naming (convert one first)",
				inputName(0, len(tuned)), ops.BaseName(base), namingLabel(namings[0]),
				inputName(k, len(tuned)), ops.BaseName(all[k]), namingLabel(namings[k]))
		}
	}

	rs, err := newResolver(opts, base)
	if err != nil {
		return nil, err
	}
	var ms *mergeSetup
	if merging {
		if ms, err = newMergeSetup(method, opts.Params, len(tuned), rs.nLayers); err != nil {
			return nil, err
		}
	}
	budget := opts.PassBudget
	if budget <= 0 {
		budget = DefaultPassBudget
	}

	// Tensor sets and shapes.
	idx := make([]map[string]*weft.Tensor, len(all))
	for k, c := range all {
		idx[k] = c.Index()
	}
	onlyBase, onlyTuned, err := checkInputs(all, idx, opts)
	if err != nil {
		return nil, err
	}

	res := &Result{Out: ops.Derive(base)}
	if opts.Missing == MissingBase {
		if len(onlyBase) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("copied %d tensors only the base has: %s", len(onlyBase), listNames(onlyBase)))
		}
		for k := 1; k < len(all); k++ {
			if len(onlyTuned[k]) > 0 {
				res.Notes = append(res.Notes, fmt.Sprintf("left out %d tensors only %s has: %s", len(onlyTuned[k]), inputName(k, len(tuned)), listNames(onlyTuned[k])))
			}
		}
	}

	res.Out.Tensors = res.Out.Tensors[:0]
	var vocabSrc = -1 // input whose vocabulary (tokenizer) the output takes, when not the base
	var vocabRows int64 = -1
	made := map[string]*job{} // the computed tensors, by name, for ties
	for _, b := range base.Tensors {
		alpha := rs.alpha(b.Name)
		coeffs := make([]float64, len(tuned))
		for i, w := range weights {
			coeffs[i] = alpha * w
		}
		outDT, err := opts.ty.Of(b.TensorInfo)
		if err != nil {
			return nil, fmt.Errorf("blend: %w", err)
		}

		step := Step{Name: b.Name, Alpha: alpha, Coeffs: coeffs, DType: outDT.String()}

		ins := make([]*weft.Tensor, len(all))
		ins[0] = b
		complete := true
		for k := 1; k < len(all); k++ {
			ins[k] = idx[k][b.Name]
			if ins[k] == nil {
				complete = false
			}
		}

		floatLike := func(d weft.DType) bool { return d.Float() || d.Quantized() }
		n, _ := b.NumElements()
		switch {
		case !complete:
			// Only the base has it (--missing base).
			step.Note = "only in the base"
			t, err := convertWhole(b, outDT, "base")
			if err != nil {
				return nil, err
			}
			step.Action, step.Source = actionFor(b, outDT), "base"
			step.Shape = b.Shape
			res.add(t, b, step)
			continue
		case !floatLike(b.DType):
			// Integer and bool tensors (masks, counters) are not blended.
			step.Action, step.Source, step.DType, step.Shape = "copy-int", "base", b.DType.String(), b.Shape
			step.Note = "not a floating-point tensor"
			res.add(keep(b, b), b, step)
			continue
		case n == 0:
			step.Action, step.Source, step.DType, step.Shape = "copy", "base", b.DType.String(), b.Shape
			res.add(keep(b, b), b, step)
			continue
		}
		for k := 1; k < len(all); k++ {
			if !floatLike(ins[k].DType) {
				return nil, fmt.Errorf("blend: tensor %q is %v in the base but %v in %s; only floating-point and quantized tensors blend", b.Name, b.DType, ins[k].DType, inputName(k, len(tuned)))
			}
		}

		// Rows: blended rows are those every input has; the rest come from the vocabulary
		// source.
		outShape := append([]int64(nil), b.Shape...)
		common := b.Rows()
		src := 0
		vocabDiff := false
		for k := 1; k < len(all); k++ {
			if !slices.Equal(b.Shape, ins[k].Shape) {
				vocabDiff = true
			}
		}
		if vocabDiff {
			perRow := int64(1)
			for _, d := range b.Shape[1 : len(b.Shape)-1] {
				perRow *= d
			}
			minD0 := b.Shape[0]
			for k := 1; k < len(all); k++ {
				minD0 = min(minD0, ins[k].Shape[0])
			}
			switch opts.Vocab {
			case VocabBase:
				src = 0
			case VocabTuned:
				src = 1
			case VocabUnion:
				for k := 1; k < len(all); k++ {
					if ins[k].Shape[0] > ins[src].Shape[0] {
						src = k
					}
				}
			}
			outShape[0] = ins[src].Shape[0]
			common = minD0 * perRow
			step.Note = fmt.Sprintf("vocabulary: %d rows blended, %d copied from %s", minD0, outShape[0]-minD0, inputName(src, len(tuned)))
			if src != 0 && outShape[0] != b.Shape[0] {
				if vocabSrc >= 0 && vocabSrc != src {
					return nil, fmt.Errorf("blend: embedding and head tensors take their vocabulary from different inputs (%s and %s)", inputName(vocabSrc, len(tuned)), inputName(src, len(tuned)))
				}
				vocabSrc = src
				vocabRows = outShape[0]
			}
		}
		outInfo := weft.TensorInfo{Name: b.Name, DType: outDT, Shape: outShape}
		if _, err := outInfo.Size(); err != nil {
			return nil, fmt.Errorf("blend: output type %v for tensor %q: %v", outDT, b.Name, err)
		}
		step.Shape = outShape

		// Identity: all coefficients 0 (the base) or one of them 1 and the rest 0 (that
		// tuned model): emit the input's values without arithmetic, which keeps -0, inf and
		// NaN exactly.
		ident := Identity(coeffs)
		var tm tensorMethod
		if ms != nil {
			tp, err := ms.resolve(b.Name)
			if err != nil {
				return nil, err
			}
			ident = ms.identity(tp)
			step.Alpha, step.Coeffs, step.Params = 0, nil, ms.describe(tp)
			mt := mergeTensor{name: b.Name, ins: ins, rows: common, rowLen: b.RowLen(), budget: budget,
				who: func(k int) string { return inputName(k, len(tuned)) }}
			if tm, err = ms.newTensorMethod(mt, tp, outShape); err != nil {
				return nil, err
			}
		}
		j := &job{
			out:    outInfo,
			ins:    ins,
			common: common,
			method: method,
			coeffs: coeffs,
			ident:  ident,
			alpha:  alpha,
			m:      tm,
		}
		if common < outInfo.Rows() {
			j.extra = ins[src]
		}
		// Codecs: check every decode and encode the job will do.
		if err := j.checkCodecs(inputName); err != nil {
			return nil, err
		}
		if ident >= 0 && j.extra == nil && slices.Equal(ins[ident].Shape, outShape) && ins[ident].DType == outDT {
			step.Action, step.Source = "copy", inputName(ident, len(tuned))
			res.add(keep(ins[ident], b), b, step)
			continue
		}
		switch {
		case ident >= 0:
			step.Action, step.Source = "convert", inputName(ident, len(tuned))
			if j.extra != nil || ins[ident].DType == outDT {
				step.Action = "copy"
			}
		case method == Slerp:
			step.Action = "slerp"
			step.Coeffs = nil
		case merging:
			step.Action = string(method)
		default:
			step.Action = "blend"
		}
		if prev := made[b.TiedTo]; prev != nil && tiedIn(all, idx, b) && slices.Equal(prev.coeffs, coeffs) && prev.alpha == alpha &&
			prev.out.DType == outDT && slices.Equal(prev.out.Shape, outShape) && prev.common == common && (prev.extra == nil) == (j.extra == nil) {
			// Tied in every input, blended alike: the tensor it is tied to, still tied.
			res.add(ops.Alias(prev.t, b), b, step)
			continue
		}
		srcs := ins
		if ident >= 0 {
			srcs = []*weft.Tensor{ins[ident]}
			if j.extra != nil && j.extra != ins[ident] {
				srcs = append(srcs, j.extra)
			}
		}
		t := ops.ComputedFrom(outInfo, srcs, true, j.fill)
		t.Shard = b.Shard
		j.t = t
		made[b.Name] = j
		res.add(t, b, step)
	}

	if err := rs.checkUsed(); err != nil {
		return nil, err
	}
	if ms != nil {
		if err := ms.checkUsed(); err != nil {
			return nil, err
		}
	}

	if vocabSrc > 0 {
		notes, err := takeVocabulary(res.Out, all[vocabSrc], vocabRows, inputName(vocabSrc, len(tuned)))
		if err != nil {
			return nil, err
		}
		res.Notes = append(res.Notes, notes...)
	}
	res.Seed = -1
	if ms != nil && ms.random() {
		if opts.Params.Seed > math.MaxInt64 {
			return nil, fmt.Errorf("blend: seed %d is larger than %d", opts.Params.Seed, int64(math.MaxInt64))
		}
		res.Seed = int64(opts.Params.Seed)
	}
	return res, nil
}

// tiedIn reports whether base tensor b is tied to the tensor its TiedTo names in every
// input (weft.Tied).
func tiedIn(all []*weft.Checkpoint, idx []map[string]*weft.Tensor, b *weft.Tensor) bool {
	for k := range all {
		if !weft.Tied(idx[k][b.Name], idx[k][b.TiedTo]) {
			return false
		}
	}
	return true
}

// checkInputs compares the tensor sets and shapes of the inputs (all[0] the base) and
// returns the tensors only the base has and, per tuned input, the tensors only it has. It
// fails, listing every problem, on shape mismatches, on vocabulary mismatches without a
// --vocab policy and on different tensor sets without --missing base.
func checkInputs(all []*weft.Checkpoint, idx []map[string]*weft.Tensor, opts Options) (onlyBase []string, onlyTuned [][]string, err error) {
	base, ntuned := all[0], len(all)-1
	onlyTuned = make([][]string, len(all))
	var shapeBad []string
	var vocabBad []string
	for _, t := range base.Tensors {
		var miss []string
		for k := 1; k < len(all); k++ {
			u := idx[k][t.Name]
			if u == nil {
				miss = append(miss, inputName(k, ntuned))
				continue
			}
			if !slices.Equal(t.Shape, u.Shape) {
				if vocabRole(t.Name) && sameTrailing(t.Shape, u.Shape) {
					if opts.Vocab == VocabError {
						vocabBad = append(vocabBad, fmt.Sprintf("%s %v (%s) vs %v (%s)", t.Name, t.Shape, inputName(0, ntuned), u.Shape, inputName(k, ntuned)))
					}
				} else {
					shapeBad = append(shapeBad, fmt.Sprintf("%s %v (%s) vs %v (%s)", t.Name, t.Shape, inputName(0, ntuned), u.Shape, inputName(k, ntuned)))
				}
			}
		}
		if len(miss) > 0 {
			if ntuned == 1 {
				onlyBase = append(onlyBase, t.Name)
			} else {
				onlyBase = append(onlyBase, t.Name+" (missing in "+strings.Join(miss, ", ")+")")
			}
		}
	}
	for k := 1; k < len(all); k++ {
		for _, t := range all[k].Tensors {
			if idx[0][t.Name] == nil {
				onlyTuned[k] = append(onlyTuned[k], t.Name)
			}
		}
	}
	var problems []string
	if opts.Missing == MissingError {
		if len(onlyBase) > 0 {
			problems = append(problems, fmt.Sprintf("%d tensors only in the base (%s): %s", len(onlyBase), ops.BaseName(base), listNames(onlyBase)))
		}
		for k := 1; k < len(all); k++ {
			if len(onlyTuned[k]) > 0 {
				problems = append(problems, fmt.Sprintf("%d tensors only in %s (%s): %s", len(onlyTuned[k]), inputName(k, ntuned), ops.BaseName(all[k]), listNames(onlyTuned[k])))
			}
		}
	}
	if len(shapeBad) > 0 {
		problems = append(problems, fmt.Sprintf("%d tensors differ in shape: %s", len(shapeBad), listNames(shapeBad)))
	}
	if len(vocabBad) > 0 {
		problems = append(problems, fmt.Sprintf("%d embedding/head tensors differ in vocabulary size: %s", len(vocabBad), listNames(vocabBad)))
	}
	if len(problems) > 0 {
		var hints []weft.Hint
		if opts.Missing == MissingError && (len(onlyBase) > 0 || anyNonEmpty(onlyTuned)) {
			hints = append(hints, weft.Hint{Option: "missing", Value: "base", Does: "keeps the base's tensor set"})
		}
		if len(vocabBad) > 0 {
			hints = append(hints, weft.Hint{Option: "vocab", Value: "base|tuned|union", Does: "handles vocabulary sizes"})
		}
		err := fmt.Errorf("blend: inputs do not match: %s", strings.Join(problems, "; "))
		if len(hints) > 0 {
			err = &weft.HintError{Err: err, Hints: hints}
		}
		return nil, nil, err
	}

	return onlyBase, onlyTuned, nil
}

func (r *Result) add(t, base *weft.Tensor, s Step) {
	if t.Shard != base.Shard { // computed tensors; keep already placed input tensors
		t.Shard = base.Shard
	}
	r.Out.Tensors = append(r.Out.Tensors, t)
	r.Steps = append(r.Steps, s)
}

// keep returns input tensor t (copied raw when written) placed in base's shard.
func keep(t, base *weft.Tensor) *weft.Tensor {
	if t.Shard == base.Shard {
		return t
	}
	c := *t
	c.Shard = base.Shard
	return &c
}

func actionFor(t *weft.Tensor, outDT weft.DType) string {
	if t.DType == outDT {
		return "copy"
	}
	return "convert"
}

// convertWhole returns t itself when outDT is its dtype, or a computed tensor holding its
// values in outDT.
func convertWhole(t *weft.Tensor, outDT weft.DType, who string) (*weft.Tensor, error) {
	if t.DType == outDT {
		return keep(t, t), nil
	}
	info := weft.TensorInfo{Name: t.Name, DType: outDT, Shape: append([]int64(nil), t.Shape...)}
	if _, err := info.Size(); err != nil {
		return nil, fmt.Errorf("blend: output type %v for tensor %q: %v", outDT, t.Name, err)
	}
	if !codec.CanDecode(t.DType) {
		return nil, fmt.Errorf("blend: tensor %q (%s): cannot decode type %v", t.Name, who, t.DType)
	}
	if !codec.CanEncode(outDT) {
		return nil, fmt.Errorf("blend: tensor %q: cannot encode type %v", t.Name, outDT)
	}
	return ops.MapF64(info, []*weft.Tensor{t}, func(_ int64, out []float64, in [][]float64) error {
		copy(out, in[0])
		return nil
	}), nil
}

// Identity returns -1 when the coefficients need arithmetic, 0 when they are all zero (the
// output is the base), or k when coefficient k-1 is exactly 1 and the others 0 (the output
// is tuned model k): then blend copies that input instead of computing.
func Identity(coeffs []float64) int {
	one := -1
	for i, c := range coeffs {
		switch c {
		case 0:
		case 1:
			if one >= 0 {
				return -1
			}
			one = i + 1
		default:
			return -1
		}
	}
	if one < 0 {
		return 0
	}
	return one
}

// sameTrailing reports whether two shapes of 2 or more dimensions differ at most in their
// first dimension.
func sameTrailing(a, b []int64) bool {
	if len(a) != len(b) || len(a) < 2 {
		return false
	}
	return slices.Equal(a[1:], b[1:])
}

// vocabRole reports whether a tensor has one row per vocabulary entry.
func vocabRole(name string) bool {
	r := arch.RoleOf(name)
	return r == arch.RoleEmbedding || r == arch.RoleHead
}

func anyNonEmpty(l [][]string) bool {
	for _, x := range l {
		if len(x) > 0 {
			return true
		}
	}
	return false
}

func namingLabel(n arch.Naming) string {
	switch n {
	case arch.HF:
		return "Hugging Face"
	case arch.GGUFN:
		return "GGUF (llama.cpp)"
	}
	return "unknown"
}

// resolver gives each tensor its blend weight from the options.
type resolver struct {
	opts      Options
	alphaPats []*ops.Pattern
	alphaUsed []bool
	nLayers   int
}

func newResolver(opts Options, base *weft.Checkpoint) (*resolver, error) {
	rs := &resolver{opts: opts, alphaUsed: make([]bool, len(opts.AlphaFor))}
	for _, r := range opts.AlphaFor {
		p, err := ops.CompilePattern(r.Pattern)
		if err != nil {
			return nil, err
		}
		rs.alphaPats = append(rs.alphaPats, p)
	}
	names := make([]string, len(base.Tensors))
	for i, t := range base.Tensors {
		names[i] = t.Name
	}
	rs.nLayers = arch.NumLayers(names)
	return rs, nil
}

// alpha returns a tensor's weight: the first matching --alpha-for rule, else the schedule
// for layer tensors, else --alpha.
func (rs *resolver) alpha(name string) float64 {
	for i, p := range rs.alphaPats {
		if p.Match(name) {
			rs.alphaUsed[i] = true
			return rs.opts.AlphaFor[i].Alpha
		}
	}
	if len(rs.opts.Schedule) > 0 {
		if l, _, ok := arch.Layer(name); ok {
			return ScheduleAt(rs.opts.Schedule, l, rs.nLayers)
		}
	}
	return rs.opts.Alpha
}

// checkUsed fails when an alpha rule applied to no tensor: a typo, or a pattern written as
// a substring ("self_attn") where globs match whole names.
func (rs *resolver) checkUsed() error {
	var unused []string
	for i, u := range rs.alphaUsed {
		if !u {
			unused = append(unused, fmt.Sprintf("%q", rs.opts.AlphaFor[i].String()))
		}
	}
	if len(unused) > 0 {
		return weft.Optionf("alpha_for", "rule %s %w of the base (or every match taken by an earlier rule; globs match whole names, e.g. \"*self_attn*\"; groups are %s)", strings.Join(unused, ", "), ops.ErrUnmatchedRule, ops.GroupNames())
	}
	return nil
}

// OpName returns "blend".
func (o *Options) OpName() string { return "blend" }

// Plan plans the blend of in's first checkpoint (the base) with the others (the tuned
// models), asking ty for every output tensor's type.
func (o *Options) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	if len(in.Checkpoints) < 2 || len(in.Files) != 0 {
		return nil, fmt.Errorf("blend: takes a base and at least one tuned checkpoint, got %d checkpoints", len(in.Checkpoints))
	}
	opts := *o
	opts.ty = ty
	res, err := Blend(in.Checkpoints[0], in.Checkpoints[1:], opts)
	if err != nil {
		return nil, err
	}
	steps := make(map[string]string, len(res.Steps))
	for _, s := range res.Steps {
		steps[s.Name] = s.Describe()
	}
	return &ops.Planned{Out: res.Out, Seed: res.Seed, Notes: res.Notes, Report: res,
		Describe: func(name string) string { return steps[name] }}, nil
}
