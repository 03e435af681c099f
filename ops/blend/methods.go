package blend

import (
	"fmt"
	"github.com/weft-ml/weft"
	"math"
	"strconv"
	"strings"

	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
)

// The merge methods beyond linear and slerp, with mergekit's names and definitions
// (github.com/arcee-ai/mergekit, mergekit/merge_methods and mergekit/sparsify.py). Each works
// on one tensor at a time, streaming its rows; where a method needs a reduction over the
// whole tensor (a magnitude threshold, norms, a rescaling factor) weft computes it in
// streaming passes when the tensor is first read, once, and keeps only the reduced values.
// Arithmetic is float64 with one rounding to the output type at the end; mergekit computes
// in the checkpoint's own type (bfloat16 or float16 for most models), rounding at every step,
// so its outputs differ from weft's in the last bits.
const (
	// TaskArithmetic is base + lambda * sum_i weight_i*(tuned_i - base) (normalize divides
	// by the sum of the weights).
	TaskArithmetic Method = "task_arithmetic"
	// TIES trims each task vector (tuned_i - base) to its `density` fraction of largest
	// magnitudes, elects a sign per element from the weighted sum (or count) of the trimmed
	// vectors, and averages the weighted values that agree with it (normalize, on by
	// default), times lambda.
	TIES Method = "ties"
	// DARELinear drops each element of each task vector with probability 1-density
	// (seeded, counter-based) and rescales the survivors (rescale, on by default), then sums
	// them weighted.
	DARELinear Method = "dare_linear"
	// DARETIES is DARE's random drop followed by TIES' sign election.
	DARETIES Method = "dare_ties"
	// DELLA drops elements with probabilities ranked by magnitude within each row (from
	// density-epsilon for the smallest to density+epsilon for the largest), rescales, and
	// elects signs as TIES does.
	DELLA Method = "della"
	// DELLALinear is DELLA's drop without the sign election.
	DELLALinear Method = "della_linear"
	// Breadcrumbs drops the `gamma` fraction of largest magnitudes and then the smallest,
	// keeping a `density` fraction of each task vector, and sums them weighted.
	Breadcrumbs Method = "breadcrumbs"
	// BreadcrumbsTIES is Breadcrumbs' drop followed by TIES' sign election.
	BreadcrumbsTIES Method = "breadcrumbs_ties"
	// ModelStock interpolates between the base and the average of two or more tuned models
	// with a weight computed from the angles between their task vectors.
	ModelStock Method = "model_stock"
	// NuSlerp is spherical interpolation of two models (or, with a base, of their task
	// vectors) at t = weight_2/(weight_1+weight_2), over the flattened tensor, its rows, or
	// its columns.
	NuSlerp Method = "nuslerp"
	// MultiSlerp is spherical barycentric interpolation of two or more models (or their
	// task vectors) with per-model weights.
	MultiSlerp Method = "multislerp"
)

// Methods lists every method Blend accepts, in the order help texts show them.
func Methods() []Method {
	return []Method{Linear, Slerp, TaskArithmetic, TIES, DARELinear, DARETIES, DELLA, DELLALinear,
		Breadcrumbs, BreadcrumbsTIES, ModelStock, NuSlerp, MultiSlerp}
}

// sparsification is how a task-vector method drops elements (mergekit's
// SparsificationMethod).
type sparsification int

const (
	sparseNone      sparsification = iota
	sparseMagnitude                // keep the top `density` fraction by magnitude
	sparseRandom                   // keep each element with probability density (DARE)
	sparseOutliers                 // drop the top `gamma` and the smallest (breadcrumbs)
	sparseDella                    // keep with probability ranked by magnitude in its row
)

// gtaSpec describes one method of mergekit's generalized task arithmetic family: how it
// sparsifies, whether it elects signs, and its defaults for normalize and rescale.
type gtaSpec struct {
	sparse    sparsification
	consensus bool
	normalize bool
	rescale   bool
}

var gtaSpecs = map[Method]gtaSpec{
	TaskArithmetic:  {sparseNone, false, false, false},
	TIES:            {sparseMagnitude, true, true, false},
	DARETIES:        {sparseRandom, true, false, true},
	DARELinear:      {sparseRandom, false, false, true},
	Breadcrumbs:     {sparseOutliers, false, false, false},
	BreadcrumbsTIES: {sparseOutliers, true, false, false},
	DELLA:           {sparseDella, true, true, true},
	DELLALinear:     {sparseDella, false, false, true},
}

// IsMergeMethod reports whether m is one of the methods MergeParams configures (every
// method but Linear and Slerp).
func IsMergeMethod(m Method) bool { return isMergeMethod(m) }

// isMergeMethod reports whether m is one of the methods MergeParams configures.
func isMergeMethod(m Method) bool {
	_, gta := gtaSpecs[m]
	return gta || m == ModelStock || m == NuSlerp || m == MultiSlerp
}

// Default parameter values, mergekit's.
const (
	DefaultDensity = 1.0
	DefaultEpsilon = 0.15
	DefaultGamma   = 0.01
	DefaultLambda  = 1.0
	// MultiSlerpEps is multislerp's default eps.
	MultiSlerpEps = 1e-8
)

// ValueRule gives the tensors matching Pattern (a group name or a glob, as for --alpha-for)
// the value Value.
type ValueRule struct {
	Pattern string
	Value   float64
}

// String returns the rule as "PATTERN=V".
func (r ValueRule) String() string { return fmt.Sprintf("%s=%g", r.Pattern, r.Value) }

// MarshalText writes the rule as "PATTERN=V" (V in the shortest form that reads back
// exactly).
func (r ValueRule) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses "PATTERN=V" (see ParseValueRule).
func (r *ValueRule) UnmarshalText(b []byte) error {
	v, err := ParseValueRule(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseValueRule parses "PATTERN=V" (for example "mlp=0.3" or "model.layers.*.self_attn.*=0.5"):
// the pattern ends at the last '=', V is a finite real.
func ParseValueRule(s string) (ValueRule, error) {
	i := strings.LastIndexByte(s, '=')
	if i <= 0 || i == len(s)-1 {
		return ValueRule{}, fmt.Errorf("value rule %q: want PATTERN=VALUE", s)
	}
	x, err := ParseReal(s[i+1:])
	if err != nil {
		return ValueRule{}, fmt.Errorf("value rule %q: %v", s, err)
	}
	if _, err := ops.CompilePattern(s[:i]); err != nil {
		return ValueRule{}, err
	}
	return ValueRule{Pattern: s[:i], Value: x}, nil
}

// Value is a method parameter that may differ between tensors. A tensor's value is that of
// the first rule whose pattern matches its name, else, for tensors inside the layers when
// Schedule is set, the schedule interpolated at the tensor's layer (ScheduleAt, as mergekit's
// gradients), else Default. A rule that applies to no tensor is an error, as for --alpha-for.
type Value struct {
	Default  float64     `json:"default"`
	For      []ValueRule `json:"for,omitempty"`
	Schedule []float64   `json:"schedule,omitempty"`
}

// Const returns a Value that is v for every tensor.
func Const(v float64) *Value { return &Value{Default: v} }

// ModelParams are mergekit's per-model parameters (its "tensor parameters"); a nil field
// takes the method's default.
type ModelParams struct {
	// Weight is the model's weight (default 1): the coefficient of its task vector, or its
	// share of a spherical interpolation.
	Weight *Value `json:"weight,omitempty"`
	// Density is the fraction of its task vector kept (ties, dare_*, della*, breadcrumbs*;
	// default 1, which keeps everything).
	Density *Value `json:"density,omitempty"`
	// Epsilon is della's half-width of the keep probabilities around density (default
	// 0.15); density-epsilon and density+epsilon must lie in (0, 1).
	Epsilon *Value `json:"epsilon,omitempty"`
	// Gamma is breadcrumbs' fraction of largest magnitudes dropped (default 0.01).
	Gamma *Value `json:"gamma,omitempty"`
}

// MergeParams are the parameters of the methods beyond linear and slerp, named as mergekit
// names them. A nil pointer takes the method's default; a parameter the method does not use
// is an error when set.
type MergeParams struct {
	// Models has one entry per model merged: one per tuned model, or, with NoBase, one per
	// input (the first input first). Nil gives every model the defaults.
	Models []ModelParams `json:"models,omitempty"`
	// Lambda scales the merged task vector (task-vector methods; default 1).
	Lambda *Value `json:"lambda,omitempty"`
	// Normalize divides the merged task vector by the sum of the weights that contributed
	// (task-vector methods; default on for ties and della, off for the others).
	Normalize *bool `json:"normalize,omitempty"`
	// Rescale scales each sparsified task vector back to its L1 norm before the drop
	// (task-vector methods; default on for dare_* and della*, off for the others).
	Rescale *bool `json:"rescale,omitempty"`
	// ConsensusMethod is the sign election of the *_ties methods, ties and della: "sum"
	// (the default: the sign of the sum of the weighted values) or "count" (the sign held by
	// more models).
	ConsensusMethod string `json:"consensus_method,omitempty"`
	// Seed keys the random drops of dare_* and della* (see the DARE mask in sparse.go).
	Seed uint64 `json:"seed,omitempty"`
	// FilterWise computes model_stock's interpolation weight per row instead of per tensor.
	FilterWise bool `json:"filter_wise,omitempty"`
	// NuSlerpFlatten (default true) treats each tensor as one flat vector for nuslerp;
	// false interpolates each row (or, with NuSlerpRowWise, each column) separately.
	NuSlerpFlatten *bool `json:"nuslerp_flatten,omitempty"`
	// NuSlerpRowWise, when NuSlerpFlatten is false, interpolates the vectors along the first
	// dimension (a matrix's columns) instead of the last (its rows). mergekit's option name
	// and behaviour: its documentation says the reverse.
	NuSlerpRowWise bool `json:"nuslerp_row_wise,omitempty"`
	// NormalizeWeights (default true) makes multislerp's weights sum to 1.
	NormalizeWeights *bool `json:"normalize_weights,omitempty"`
	// Eps is multislerp's stabilising constant (default 1e-8).
	Eps *float64 `json:"eps,omitempty"`
	// NoBase makes nuslerp and multislerp merge the inputs themselves rather than their task
	// vectors relative to the first input (mergekit without a base_model). The output still
	// takes the first input's layout, metadata and side files.
	NoBase bool `json:"no_base,omitempty"`
}

// mergeSetup is a method's validated configuration, ready to resolve per tensor.
type mergeSetup struct {
	method  Method
	gta     gtaSpec
	isGTA   bool
	nModels int // models merged (tuned models, or all inputs with NoBase)
	p       MergeParams
	// Resolved globals.
	normalize, rescale bool
	consensus          string
	flatten            bool
	normWeights        bool
	eps                float64
	// Per-model value resolvers (nil where the method does not use the parameter).
	weight, density, epsilon, gamma []*valueResolver
	lambda                          *valueResolver
	nLayers                         int
}

// valueResolver resolves one Value per tensor and remembers which rules applied.
type valueResolver struct {
	param string
	v     Value
	pats  []*ops.Pattern
	used  []bool
}

func newValueResolver(param string, v *Value, def float64) (*valueResolver, error) {
	vr := &valueResolver{param: param, v: Value{Default: def}}
	if v != nil {
		vr.v = *v
	}
	check := func(what string, x float64) error {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("blend: %s %s must be finite, got %v", param, what, x)
		}
		return nil
	}
	if err := check("", vr.v.Default); err != nil {
		return nil, err
	}
	for _, s := range vr.v.Schedule {
		if err := check("schedule", s); err != nil {
			return nil, err
		}
	}
	for _, r := range vr.v.For {
		if err := check("for "+r.Pattern, r.Value); err != nil {
			return nil, err
		}
		p, err := ops.CompilePattern(r.Pattern)
		if err != nil {
			return nil, err
		}
		vr.pats = append(vr.pats, p)
	}
	vr.used = make([]bool, len(vr.pats))
	return vr, nil
}

func (vr *valueResolver) at(name string, nLayers int) float64 {
	for i, p := range vr.pats {
		if p.Match(name) {
			vr.used[i] = true
			return vr.v.For[i].Value
		}
	}
	if len(vr.v.Schedule) > 0 {
		if l, _, ok := arch.Layer(name); ok {
			return ScheduleAt(vr.v.Schedule, l, nLayers)
		}
	}
	return vr.v.Default
}

// newMergeSetup validates p for method m with ntuned tuned models.
func newMergeSetup(m Method, p MergeParams, ntuned int, nLayers int) (*mergeSetup, error) {
	s := &mergeSetup{method: m, p: p, nLayers: nLayers}
	s.gta, s.isGTA = gtaSpecs[m]
	s.nModels = ntuned
	if p.NoBase {
		if m != NuSlerp && m != MultiSlerp {
			return nil, fmt.Errorf("blend: %s needs a base model (no_base is for nuslerp and multislerp)", m)
		}
		s.nModels = ntuned + 1
	}
	switch {
	case m == ModelStock && ntuned < 2:
		return nil, fmt.Errorf("blend: model_stock needs a base and at least two tuned models, got %d tuned", ntuned)
	case m == NuSlerp && s.nModels != 2:
		if p.NoBase {
			return nil, fmt.Errorf("blend: nuslerp without a base merges exactly two models, got %d", s.nModels)
		}
		return nil, fmt.Errorf("blend: nuslerp with a base merges exactly two tuned models, got %d", ntuned)
	case m == MultiSlerp && p.NoBase && s.nModels < 2:
		return nil, fmt.Errorf("blend: multislerp without a base needs at least two models")
	}
	if p.Models != nil && len(p.Models) != s.nModels {
		return nil, fmt.Errorf("blend: %d sets of model parameters for %d models", len(p.Models), s.nModels)
	}
	models := p.Models
	if models == nil {
		models = make([]ModelParams, s.nModels)
	}

	// Parameters the method does not use are errors: a typo or a misunderstanding.
	var unused []string
	usesDensity := s.isGTA && s.gta.sparse != sparseNone
	for i, mp := range models {
		if mp.Weight != nil && m == ModelStock {
			unused = append(unused, fmt.Sprintf("weight (model %d)", i+1))
		}
		if mp.Density != nil && !usesDensity {
			unused = append(unused, fmt.Sprintf("density (model %d)", i+1))
		}
		if mp.Epsilon != nil && !(s.isGTA && s.gta.sparse == sparseDella) {
			unused = append(unused, fmt.Sprintf("epsilon (model %d)", i+1))
		}
		if mp.Gamma != nil && !(s.isGTA && s.gta.sparse == sparseOutliers) {
			unused = append(unused, fmt.Sprintf("gamma (model %d)", i+1))
		}
	}
	if !s.isGTA {
		for name, set := range map[string]bool{"lambda": p.Lambda != nil, "normalize": p.Normalize != nil, "rescale": p.Rescale != nil} {
			if set {
				unused = append(unused, name)
			}
		}
	}
	if p.ConsensusMethod != "" && !(s.isGTA && s.gta.consensus) {
		unused = append(unused, "consensus_method")
	}
	if p.Seed != 0 && !(s.isGTA && (s.gta.sparse == sparseRandom || s.gta.sparse == sparseDella)) {
		unused = append(unused, "seed")
	}
	if p.FilterWise && m != ModelStock {
		unused = append(unused, "filter_wise")
	}
	if (p.NuSlerpFlatten != nil || p.NuSlerpRowWise) && m != NuSlerp {
		unused = append(unused, "nuslerp_flatten/nuslerp_row_wise")
	}
	if (p.NormalizeWeights != nil || p.Eps != nil) && m != MultiSlerp {
		unused = append(unused, "normalize_weights/eps")
	}
	if len(unused) > 0 {
		return nil, fmt.Errorf("blend: %s does not use %s", m, strings.Join(sortedUnique(unused), ", "))
	}

	s.normalize, s.rescale = s.gta.normalize, s.gta.rescale
	if p.Normalize != nil {
		s.normalize = *p.Normalize
	}
	if p.Rescale != nil {
		s.rescale = *p.Rescale
	}
	s.consensus = ""
	if s.gta.consensus {
		s.consensus = "sum"
		switch p.ConsensusMethod {
		case "", "sum":
		case "count":
			s.consensus = "count"
		default:
			return nil, fmt.Errorf("blend: consensus_method %q: want sum or count", p.ConsensusMethod)
		}
	}
	s.flatten = p.NuSlerpFlatten == nil || *p.NuSlerpFlatten
	s.normWeights = p.NormalizeWeights == nil || *p.NormalizeWeights
	s.eps = MultiSlerpEps
	if p.Eps != nil {
		s.eps = *p.Eps
		if math.IsNaN(s.eps) || s.eps < 0 || math.IsInf(s.eps, 0) {
			return nil, fmt.Errorf("blend: multislerp eps must be a finite non-negative number, got %v", s.eps)
		}
	}

	var err error
	mk := func(param string, v *Value, def float64) *valueResolver {
		if err != nil {
			return nil
		}
		var vr *valueResolver
		vr, err = newValueResolver(param, v, def)
		return vr
	}
	for _, mp := range models {
		s.weight = append(s.weight, mk("weight", mp.Weight, 1))
		s.density = append(s.density, mk("density", mp.Density, DefaultDensity))
		s.epsilon = append(s.epsilon, mk("epsilon", mp.Epsilon, DefaultEpsilon))
		s.gamma = append(s.gamma, mk("gamma", mp.Gamma, DefaultGamma))
	}
	s.lambda = mk("lambda", p.Lambda, DefaultLambda)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func sortedUnique(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	// Stable, readable order.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// tensorParams are a method's parameters resolved for one tensor.
type tensorParams struct {
	weight, density, epsilon, gamma []float64
	lambda                          float64
}

// resolve returns the parameters of one tensor, checking their ranges.
func (s *mergeSetup) resolve(name string) (tensorParams, error) {
	var tp tensorParams
	for i := 0; i < s.nModels; i++ {
		tp.weight = append(tp.weight, s.weight[i].at(name, s.nLayers))
		tp.density = append(tp.density, s.density[i].at(name, s.nLayers))
		tp.epsilon = append(tp.epsilon, s.epsilon[i].at(name, s.nLayers))
		tp.gamma = append(tp.gamma, s.gamma[i].at(name, s.nLayers))
	}
	tp.lambda = s.lambda.at(name, s.nLayers)
	if !s.isGTA {
		return tp, nil
	}
	for i := range tp.density {
		d, e, g := tp.density[i], tp.epsilon[i], tp.gamma[i]
		if s.gta.sparse != sparseNone && (d < 0 || d > 1) {
			return tp, fmt.Errorf("blend: tensor %q: density %v for model %d is outside [0, 1]", name, d, i+1)
		}
		if s.gta.sparse == sparseOutliers && (g < 0 || g > 1) {
			return tp, fmt.Errorf("blend: tensor %q: gamma %v for model %d is outside [0, 1]", name, g, i+1)
		}
		// mergekit's della_magprune requires density-epsilon and density+epsilon inside
		// (0, 1) whenever it drops anything (0 < density < 1).
		if s.gta.sparse == sparseDella && d > 0 && d < 1 && (e < 0 || d-e <= 0 || d+e >= 1) {
			return tp, fmt.Errorf("blend: tensor %q: della's epsilon %v with density %v for model %d: density-epsilon and density+epsilon must lie in (0, 1)", name, e, d, i+1)
		}
	}
	return tp, nil
}

// describe formats a tensor's parameters for plans.
func (s *mergeSetup) describe(tp tensorParams) string {
	list := func(v []float64) string {
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = strconv.FormatFloat(x, 'g', -1, 64)
		}
		return strings.Join(parts, ",")
	}
	var b strings.Builder
	if s.method != ModelStock {
		fmt.Fprintf(&b, " weight=%s", list(tp.weight))
	}
	if s.isGTA {
		if s.gta.sparse != sparseNone {
			fmt.Fprintf(&b, " density=%s", list(tp.density))
		}
		if s.gta.sparse == sparseDella {
			fmt.Fprintf(&b, " epsilon=%s", list(tp.epsilon))
		}
		if s.gta.sparse == sparseOutliers {
			fmt.Fprintf(&b, " gamma=%s", list(tp.gamma))
		}
		fmt.Fprintf(&b, " lambda=%g", tp.lambda)
	}
	return strings.TrimSpace(b.String())
}

// checkUsed fails when a rule of any parameter applied to no tensor.
func (s *mergeSetup) checkUsed() error {
	var unused []string
	add := func(vr *valueResolver) {
		if vr == nil {
			return
		}
		for i, u := range vr.used {
			if !u {
				unused = append(unused, fmt.Sprintf("%s rule %q", vr.param, vr.v.For[i].Pattern))
			}
		}
	}
	for i := range s.weight {
		add(s.weight[i])
		add(s.density[i])
		add(s.epsilon[i])
		add(s.gamma[i])
	}
	add(s.lambda)
	if len(unused) > 0 {
		u := sortedUnique(unused)
		param, _, _ := strings.Cut(u[0], " ")
		return weft.Optionf(param+"_for", "%s %w of the base (or every match taken by an earlier rule; globs match whole names, e.g. \"*self_attn*\"; groups are %s)", strings.Join(u, ", "), ops.ErrUnmatchedRule, ops.GroupNames())
	}
	return nil
}

// identity returns the input a tensor's output equals without arithmetic (as Identity
// does), or -1: lambda 0 leaves the base (task-vector methods), and multislerp of a single
// tuned model is that model, as in mergekit.
func (s *mergeSetup) identity(tp tensorParams) int {
	switch {
	case s.isGTA && tp.lambda == 0:
		return 0
	case s.method == MultiSlerp && !s.p.NoBase && s.nModels == 1:
		return 1
	}
	return -1
}

// random reports whether the method draws random masks (and records its seed).
func (s *mergeSetup) random() bool {
	return s.isGTA && (s.gta.sparse == sparseRandom || s.gta.sparse == sparseDella)
}
