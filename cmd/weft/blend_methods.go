package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/weft-ml/weft/ops/blend"
)

// mergeFlags are blend's flags for the merge methods.
type mergeFlags struct {
	fs                        *flagSet
	lists                     map[string]*string // weight lists: density, epsilon, gamma, lambda
	rules                     map[string]*valueRules
	schedules                 map[string]*string
	normalize, rescale        *bool
	consensus                 *string
	seed                      *uint64
	filterWise                *bool
	nuFlatten, nuRowWise      *bool
	normalizeWeights, noBase  *bool
	eps                       *float64
	set                       map[string]bool
	names                     map[string]bool // the flags addMergeFlags registers
	weights                   string          // --weights, shared with linear's task arithmetic
	weightsSet, anyMergeFlags bool
}

// mergeParamNames are the per-tensor parameters with -for and -schedule flags.
var mergeParamNames = []string{"weight", "density", "epsilon", "gamma", "lambda"}

// valueRules is a repeatable --P-for flag.
type valueRules struct {
	flag  string
	rules []blend.ValueRule
}

func (r *valueRules) String() string { return fmt.Sprint(r.rules) }
func (r *valueRules) Set(v string) error {
	rule, err := blend.ParseValueRule(v)
	if err != nil {
		return err
	}
	r.rules = append(r.rules, rule)
	return nil
}

// mergeParamHelp says what each per-tensor parameter of the merge methods is.
var mergeParamHelp = map[string]string{
	"weight":  "the per-model weight",
	"density": "the fraction of each task vector kept",
	"epsilon": "della's epsilon",
	"gamma":   "breadcrumbs' gamma",
	"lambda":  "the scale of the merged task vector",
}

// addMergeFlags registers the merge methods' flags, under their own section of the help.
func addMergeFlags(fs *flagSet) *mergeFlags {
	fs.section("Merge methods (mergekit's definitions and parameter names; float64, one rounding)")
	m := &mergeFlags{fs: fs, lists: map[string]*string{}, rules: map[string]*valueRules{}, schedules: map[string]*string{}}
	before := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
	lists := map[string]string{
		"density": "the fraction of each task vector kept (ties, dare_*, della*, breadcrumbs*), `d1,...`: one value for every model, or one per model",
		"epsilon": "della: keep probabilities range over density±epsilon, `e1,...` (default 0.15)",
		"gamma":   "breadcrumbs: the fraction of largest magnitudes dropped, `g1,...` (default 0.01)",
		"lambda":  "the scale `L` of the merged task vector (default 1)",
	}
	for _, p := range mergeParamNames {
		if p != "weight" {
			m.lists[p] = fs.String(p, "", lists[p])
		}
		m.rules[p] = &valueRules{flag: "--" + p + "-for"}
		fs.Var(m.rules[p], p+"-for", mergeParamHelp[p]+" of the tensors matching a pattern, `PATTERN=V`, for every model; patterns as in --alpha-for; first matching rule wins; repeatable")
		m.schedules[p] = fs.String(p+"-schedule", "", mergeParamHelp[p]+" per layer, `a,b,...`, interpolated as --alpha-schedule")
	}
	m.normalize = fs.Bool("normalize", false, "divide by the weights that contributed (default: on for ties, della)")
	m.rescale = fs.Bool("rescale", false, "rescale sparsified task vectors to their L1 norm (default: on for dare_*, della*)")
	m.consensus = fs.String("consensus", "", "the sign election of the *ties methods and della, `sum` or count (default sum)")
	m.seed = fs.Uint64("seed", 0, "the seed `N` of the dare and della drops (counter-based: the same bytes at any --threads)")
	m.filterWise = fs.Bool("filter-wise", false, "model_stock: one interpolation weight per row")
	m.nuFlatten = fs.Bool("nuslerp-flatten", true, "nuslerp: each tensor one flat vector; --nuslerp-flatten=false interpolates per row, or with --nuslerp-row-wise per column")
	m.nuRowWise = fs.Bool("nuslerp-row-wise", false, "nuslerp with --nuslerp-flatten=false: per column instead of per row")
	m.normalizeWeights = fs.Bool("normalize-weights", true, "multislerp: make the weights sum to 1 (--normalize-weights=false: as given)")
	m.eps = fs.Float64("eps", blend.MultiSlerpEps, "multislerp's stabilising constant `E`")
	m.noBase = fs.Bool("no-base", false, "nuslerp, multislerp: merge the inputs themselves, not their task vectors (the output still takes the first input's layout)")
	m.names = map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if !before[f.Name] {
			m.names[f.Name] = true
		}
	})
	return m
}

// afterParse records which flags were given. --weights is shared with linear's task
// arithmetic and is not a merge flag.
func (m *mergeFlags) afterParse(weights string) {
	m.set = map[string]bool{}
	m.fs.Visit(func(f *flag.Flag) { m.set[f.Name] = true })
	m.weights = weights
	m.weightsSet = m.set["weights"]
	for name := range m.set {
		if m.names[name] {
			m.anyMergeFlags = true
		}
	}
}

// firstMergeFlag names one merge flag that was given, for messages.
func (m *mergeFlags) firstMergeFlag() string {
	for _, f := range []string{"density", "epsilon", "gamma", "lambda", "normalize", "rescale", "consensus", "seed", "filter-wise",
		"nuslerp-flatten", "nuslerp-row-wise", "normalize-weights", "eps", "no-base"} {
		if m.set[f] {
			return "--" + f
		}
	}
	for _, p := range mergeParamNames {
		if m.set[p+"-for"] {
			return "--" + p + "-for"
		}
		if m.set[p+"-schedule"] {
			return "--" + p + "-schedule"
		}
	}
	return "a merge flag"
}

// params builds the method's parameters for nModels models.
func (m *mergeFlags) params(method blend.Method, nModels int) (blend.MergeParams, error) {
	var p blend.MergeParams
	perModel := map[string][]float64{}
	lists := map[string]string{"weight": m.weights}
	for k, v := range m.lists {
		lists[k] = *v
	}
	for name, s := range lists {
		if s == "" || name == "lambda" {
			continue
		}
		flagName := "--" + name
		if name == "weight" {
			flagName = "--weights"
		}
		v, err := blend.ParseList(s)
		if err != nil {
			return p, usagef("%s: %v", flagName, err)
		}
		switch len(v) {
		case 1:
			for len(v) < nModels {
				v = append(v, v[0])
			}
		case nModels:
		default:
			return p, usagef("%s has %d values for %d models (give one for all, or one per model)", flagName, len(v), nModels)
		}
		perModel[name] = v
	}
	schedule := func(name string) ([]float64, error) {
		s := *m.schedules[name]
		if s == "" {
			return nil, nil
		}
		v, err := blend.ParseList(s)
		if err != nil {
			return nil, usagef("--%s-schedule: %v", name, err)
		}
		return v, nil
	}
	value := func(name string, def float64, k int) (*blend.Value, error) {
		sched, err := schedule(name)
		if err != nil {
			return nil, err
		}
		given := m.rules[name].rules != nil || sched != nil
		v := blend.Value{Default: def, For: m.rules[name].rules, Schedule: sched}
		if name == "lambda" {
			if s := *m.lists["lambda"]; s != "" {
				x, err := blend.ParseReal(s)
				if err != nil {
					return nil, usagef("--lambda: %v", err)
				}
				v.Default, given = x, true
			}
		} else if l, ok := perModel[name]; ok {
			v.Default, given = l[k], true
		}
		if !given {
			return nil, nil
		}
		return &v, nil
	}
	defaults := map[string]float64{"weight": 1, "density": blend.DefaultDensity, "epsilon": blend.DefaultEpsilon, "gamma": blend.DefaultGamma}
	any := false
	models := make([]blend.ModelParams, nModels)
	for k := range models {
		fields := map[string]**blend.Value{"weight": &models[k].Weight, "density": &models[k].Density, "epsilon": &models[k].Epsilon, "gamma": &models[k].Gamma}
		for name, dst := range fields {
			v, err := value(name, defaults[name], k)
			if err != nil {
				return p, err
			}
			if v != nil {
				*dst, any = v, true
			}
		}
	}
	if any {
		p.Models = models
	}
	lam, err := value("lambda", blend.DefaultLambda, 0)
	if err != nil {
		return p, err
	}
	p.Lambda = lam
	if m.set["normalize"] {
		p.Normalize = m.normalize
	}
	if m.set["rescale"] {
		p.Rescale = m.rescale
	}
	p.ConsensusMethod = *m.consensus
	if p.ConsensusMethod != "" && p.ConsensusMethod != "sum" && p.ConsensusMethod != "count" {
		return p, usagef("--consensus %q: want sum or count", p.ConsensusMethod)
	}
	p.Seed = *m.seed
	if p.Seed > 1<<63-1 {
		return p, usagef("--seed %d: at most %d", p.Seed, int64(1<<63-1))
	}
	p.FilterWise = *m.filterWise
	if m.set["nuslerp-flatten"] {
		p.NuSlerpFlatten = m.nuFlatten
	}
	p.NuSlerpRowWise = *m.nuRowWise
	if m.set["normalize-weights"] {
		p.NormalizeWeights = m.normalizeWeights
	}
	if m.set["eps"] {
		p.Eps = m.eps
	}
	p.NoBase = *m.noBase
	return p, nil
}

// methodNames lists the methods for messages.
func methodNames() string {
	var s []string
	for _, m := range blend.Methods() {
		s = append(s, string(m))
	}
	return strings.Join(s, ", ")
}

// isMerge reports whether a method is configured by the merge flags.
func isMerge(m blend.Method) bool { return blend.IsMergeMethod(m) }
