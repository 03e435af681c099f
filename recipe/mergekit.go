package recipe

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/ablate"
	"github.com/weft-ml/weft/ops/blend"
)

// mergekit configurations (github.com/arcee-ai/mergekit, mergekit/config.py and
// merge_methods/), run with mergekit's definitions through weft's ops: linear, slerp and
// task_arithmetic as blends; ties, dare_*, breadcrumbs*, della*, model_stock, nuslerp and
// multislerp as blends configured by blend.MergeParams (mkmerge.go); passthrough as a stack
// of layers. A parameter's value for a tensor follows mergekit's evaluate_setting: a number,
// a gradient (a list of numbers interpolated over the layers, layer i of n at t = i/(n-1),
// tensors outside the layers at t = 0), or a list of {filter, value} conditions, the first
// whose filter is a substring of the tensor's Hugging Face name (GGUF names are read as
// their Hugging Face names) giving the value. A model's parameters come first, then the
// slice's, then the configuration's.

// mkMethod is one mergekit method weft runs: its global and per-model parameters
// (mergekit's registry: parameters() and tensor_parameters()), whether it needs a base
// model, and, for the methods blend.MergeParams configures, the blend method.
type mkMethod struct {
	global, perModel []string
	base             mkBase
	merge            blend.Method
}

// mkBase is how a method uses base_model.
type mkBase int

const (
	mkBaseNone     mkBase = iota // linear, passthrough: the checks are the method's own
	mkBaseRequired               // the task-vector methods, slerp, model_stock
	mkBaseOptional               // nuslerp, multislerp: task vectors with one, the models without
)

// mkGTA are the global and per-model parameters of mergekit's generalized task arithmetic
// methods (GeneralizedTaskArithmeticMerge): every one has weight and density; breadcrumbs
// adds gamma, della epsilon.
var (
	mkGTAGlobal = []string{"normalize", "rescale", "lambda", "int8_mask"}
	mkGTAModel  = []string{"weight", "density"}
)

// mkMethods are the methods weft runs, by mergekit's name. A parameter's default is
// mergekit's, which is blend's (ops/blend's defaults are mergekit's; see blend.MergeParams).
var mkMethods = map[string]mkMethod{
	"linear":           {global: []string{"normalize"}, perModel: []string{"weight"}},
	"slerp":            {global: []string{"t"}, base: mkBaseRequired},
	"task_arithmetic":  {global: mkGTAGlobal, perModel: mkGTAModel, base: mkBaseRequired},
	"passthrough":      {perModel: []string{"scale"}},
	"ties":             {global: mkGTAGlobal, perModel: mkGTAModel, base: mkBaseRequired, merge: blend.TIES},
	"dare_ties":        {global: mkGTAGlobal, perModel: mkGTAModel, base: mkBaseRequired, merge: blend.DARETIES},
	"dare_linear":      {global: mkGTAGlobal, perModel: mkGTAModel, base: mkBaseRequired, merge: blend.DARELinear},
	"breadcrumbs":      {global: mkGTAGlobal, perModel: []string{"weight", "density", "gamma"}, base: mkBaseRequired, merge: blend.Breadcrumbs},
	"breadcrumbs_ties": {global: mkGTAGlobal, perModel: []string{"weight", "density", "gamma"}, base: mkBaseRequired, merge: blend.BreadcrumbsTIES},
	"della":            {global: mkGTAGlobal, perModel: []string{"weight", "density", "epsilon"}, base: mkBaseRequired, merge: blend.DELLA},
	"della_linear":     {global: mkGTAGlobal, perModel: []string{"weight", "density", "epsilon"}, base: mkBaseRequired, merge: blend.DELLALinear},
	"model_stock":      {global: []string{"filter_wise"}, base: mkBaseRequired, merge: blend.ModelStock},
	"nuslerp":          {global: []string{"nuslerp_row_wise", "nuslerp_flatten"}, perModel: []string{"weight"}, base: mkBaseOptional, merge: blend.NuSlerp},
	"multislerp":       {global: []string{"normalize_weights", "eps"}, perModel: []string{"weight"}, base: mkBaseOptional, merge: blend.MultiSlerp},
}

// mkKnownMethods are mergekit's other methods, refused by name.
var mkKnownMethods = []string{"karcher", "arcee_fusion", "nearswap", "sce", "ram"}

// mkKind is what values a parameter takes.
type mkKind int

const (
	mkNumber   mkKind = iota // any finite number (a gradient, conditions)
	mkFraction               // a number in [0, 1]
	mkNonNeg                 // a number >= 0
	mkBool                   // true or false (conditions; no lists: mergekit reads those as numbers)
)

// mkKinds are the kinds of the parameters of the methods weft runs.
var mkKinds = map[string]mkKind{
	"weight": mkNumber, "t": mkNumber, "lambda": mkNumber, "scale": mkNumber, "epsilon": mkNumber,
	"density": mkFraction, "gamma": mkFraction, "eps": mkNonNeg,
	"normalize": mkBool, "rescale": mkBool, "int8_mask": mkBool, "filter_wise": mkBool,
	"nuslerp_row_wise": mkBool, "nuslerp_flatten": mkBool, "normalize_weights": mkBool,
}

// mkSetting is a parameter's setting (mergekit's ParameterSetting).
type mkSetting struct {
	node  *yaml.Node
	val   *mkValue  // a scalar
	grad  []float64 // a gradient
	steps []mkValue // a list of non-numeric scalars (picked by t)
	conds []mkCond  // conditions
	p     pos
}

type mkValue struct {
	num    float64
	isBool bool
	b      bool
	isStr  bool
	str    string
}

type mkCond struct {
	filter string // "" or "*": every tensor
	value  *mkSetting
}

// mkParams are a parameters mapping, by name.
type mkParams map[string]*mkSetting

type mkSource struct {
	input  int
	lo, hi int // layer_range [lo, hi); hi < 0: the whole model
	params mkParams
	p      pos
}

type mkSlice struct {
	sources []mkSource
	params  mkParams
	p       pos
}

type mkConfig struct {
	r       *Recipe
	method  string
	methodP pos
	base    int // input index of base_model, or -1
	basep   pos
	// slices are the configuration's slices, or its models as one slice of whole models.
	slices     []mkSlice
	modelsForm bool
	params     mkParams
}

var mkTopKeys = []string{"merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype", "tokenizer_source"}

func (r *Recipe) parseMergekit(top []kv) error {
	mk := &mkConfig{r: r, base: -1}
	var modelsN, slicesN, dtypeN, outDtypeN, tokN, methodN *yaml.Node
	var baseRef string
	for _, e := range top {
		switch e.key {
		case "merge_method":
			methodN = e.v
		case "base_model":
			s, err := str(r.File, e.v, "base_model")
			if err != nil {
				return err
			}
			baseRef, mk.basep = s, posOf(e.v)
		case "models":
			modelsN = e.v
		case "slices":
			slicesN = e.v
		case "parameters":
			p, err := r.mkParams(e.v)
			if err != nil {
				return err
			}
			mk.params = p
		case "dtype":
			dtypeN = e.v
		case "out_dtype":
			outDtypeN = e.v
		case "tokenizer_source":
			tokN = e.v
		case "tokenizer", "chat_template", "modules":
			return errAt(r.File, posOf(e.k), "mergekit's %s is not supported by weft", e.key)
		default:
			return errAt(r.File, posOf(e.k), "a mergekit configuration has no field %q%s (weft reads: %s)", e.key, suggest(e.key, mkTopKeys), strings.Join(mkTopKeys, ", "))
		}
	}
	method, err := str(r.File, methodN, "merge_method")
	if err != nil {
		return err
	}
	if _, ok := mkMethods[method]; !ok {
		var known []string
		for m := range mkMethods {
			known = append(known, m)
		}
		for _, m := range mkKnownMethods {
			if m == method {
				return errAt(r.File, posOf(methodN), "merge_method %s is not one weft runs (it runs %s)", method, knownList(known))
			}
		}
		return errAt(r.File, posOf(methodN), "merge_method %q is no mergekit method weft knows%s (it runs %s)", method, suggest(method, known), knownList(known))
	}
	mk.method, mk.methodP = method, posOf(methodN)
	r.mergeMethod = method
	if baseRef != "" {
		if mk.base, err = r.mkModel(baseRef, mk.basep); err != nil {
			return err
		}
	}
	switch {
	case (modelsN == nil) == (slicesN == nil):
		return errAt(r.File, posOf(methodN), "a mergekit configuration gives exactly one of models and slices")
	case modelsN != nil:
		if err := mk.parseModels(modelsN); err != nil {
			return err
		}
	default:
		if err := mk.parseSlices(slicesN); err != nil {
			return err
		}
	}
	if err := mk.checkParams(); err != nil {
		return err
	}
	outType := ""
	for _, n := range []*yaml.Node{outDtypeN, dtypeN} {
		if n == nil || isNull(n) {
			continue
		}
		s, err := str(r.File, n, "dtype")
		if err != nil {
			return err
		}
		dt, ok := mkDType(s)
		if !ok {
			return errAt(r.File, posOf(n), "dtype %q: weft writes float32, float16 or bfloat16 (or keep the inputs' types by leaving dtype out)", s)
		}
		if outType == "" {
			outType = dt.String()
		}
	}
	if outType != "" {
		b, _ := json.Marshal(map[string]string{"dtype": outType})
		r.outTypes = b
	}
	if err := mk.tokenizerSource(tokN); err != nil {
		return err
	}
	return mk.step()
}

// mkDType maps mergekit's (torch's) dtype names to weft's.
func mkDType(s string) (weft.DType, bool) {
	switch strings.ToLower(s) {
	case "float32", "fp32", "f32", "float":
		return weft.F32, true
	case "float16", "fp16", "f16", "half":
		return weft.F16, true
	case "bfloat16", "bf16":
		return weft.BF16, true
	}
	return weft.Invalid, false
}

// mkModel adds a model reference as an input (once per reference) and returns its index.
// A reference is a local path (relative to the configuration's directory) or a Hugging Face
// Hub name, ORG/NAME[@REVISION].
func (r *Recipe) mkModel(ref string, p pos) (int, error) {
	if strings.Contains(ref, "+") {
		return 0, errAt(r.File, p, "model %q names a LoRA adapter (+): weft merges full models; merge the adapter into its model first", ref)
	}
	for i, in := range r.Inputs {
		if in.Name == ref {
			return i, nil
		}
	}
	path, rev, hasRev := strings.Cut(ref, "@")
	var where string
	if _, err := os.Stat(r.Resolve(path)); err == nil {
		if hasRev {
			return 0, errAt(r.File, p, "model %q: a local path has no revision", ref)
		}
		where = path
	} else {
		parts := strings.Split(path, "/")
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" || parts[0] == "." || parts[0] == ".." || strings.HasPrefix(path, "/") {
			return 0, errAt(r.File, p, "model %q: no such local path, and not a Hugging Face Hub name (ORG/NAME)", ref)
		}
		where = "hf://" + path
		if hasRev {
			where += "@" + rev
		}
	}
	r.Inputs = append(r.Inputs, &Input{Name: ref, Path: where, p: p})
	return len(r.Inputs) - 1, nil
}

// mkModelRef reads a model: field (a string; the mapping forms are refused).
func (r *Recipe) mkModelRef(n *yaml.Node) (int, error) {
	if n.Kind == yaml.MappingNode {
		return 0, errAt(r.File, posOf(n), "model given as a mapping: write it as a string, ORG/NAME[@REVISION] or a path")
	}
	s, err := str(r.File, n, "model")
	if err != nil {
		return 0, err
	}
	return r.mkModel(s, posOf(n))
}

func (mk *mkConfig) parseModels(n *yaml.Node) error {
	r := mk.r
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return errAt(r.File, posOf(n), "models: want a list of {model: ..., parameters: ...}, got %s", describe(n))
	}
	mk.modelsForm = true
	sl := mkSlice{p: posOf(n)}
	for _, mn := range n.Content {
		entries, err := pairs(r.File, mn)
		if err != nil {
			return err
		}
		src := mkSource{input: -1, hi: -1, p: posOf(mn)}
		for _, e := range entries {
			switch e.key {
			case "model":
				if src.input, err = r.mkModelRef(e.v); err != nil {
					return err
				}
			case "parameters":
				if src.params, err = r.mkParams(e.v); err != nil {
					return err
				}
			default:
				return errAt(r.File, posOf(e.k), "a model entry has no field %q (it has model and parameters)", e.key)
			}
		}
		if src.input < 0 {
			return errAt(r.File, posOf(mn), "a model entry without model:")
		}
		for _, o := range sl.sources {
			if o.input == src.input {
				return errAt(r.File, posOf(mn), "model %s is listed twice", r.Inputs[src.input].Name)
			}
		}
		sl.sources = append(sl.sources, src)
	}
	mk.slices = []mkSlice{sl}
	return nil
}

func (mk *mkConfig) parseSlices(n *yaml.Node) error {
	r := mk.r
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return errAt(r.File, posOf(n), "slices: want a list of {sources: [...]}, got %s", describe(n))
	}
	for _, sn := range n.Content {
		entries, err := pairs(r.File, sn)
		if err != nil {
			return err
		}
		sl := mkSlice{p: posOf(sn)}
		var sources *yaml.Node
		for _, e := range entries {
			switch e.key {
			case "sources":
				sources = e.v
			case "parameters":
				if sl.params, err = r.mkParams(e.v); err != nil {
					return err
				}
			case "base_model", "residual_weight":
				return errAt(r.File, posOf(e.k), "a slice's %s is not supported by weft", e.key)
			default:
				return errAt(r.File, posOf(e.k), "a slice has no field %q (it has sources and parameters)", e.key)
			}
		}
		if sources == nil || sources.Kind != yaml.SequenceNode || len(sources.Content) == 0 {
			return errAt(r.File, posOf(sn), "a slice needs sources: [{model: ..., layer_range: [a, b]}, ...]")
		}
		for _, srcN := range sources.Content {
			entries, err := pairs(r.File, srcN)
			if err != nil {
				return err
			}
			src := mkSource{input: -1, hi: -2, p: posOf(srcN)}
			for _, e := range entries {
				switch e.key {
				case "model":
					if src.input, err = r.mkModelRef(e.v); err != nil {
						return err
					}
				case "layer_range":
					var lr []int
					if e.v.Kind != yaml.SequenceNode || len(e.v.Content) != 2 || e.v.Decode(&lr) != nil || lr[0] < 0 || lr[1] <= lr[0] {
						return errAt(r.File, posOf(e.v), "layer_range: want [first, end) with 0 <= first < end, got %s", describe(e.v))
					}
					src.lo, src.hi = lr[0], lr[1]
				case "parameters":
					if src.params, err = r.mkParams(e.v); err != nil {
						return err
					}
				default:
					return errAt(r.File, posOf(e.k), "a source has no field %q (it has model, layer_range and parameters)", e.key)
				}
			}
			if src.input < 0 || src.hi == -2 {
				return errAt(r.File, posOf(srcN), "a source needs model and layer_range")
			}
			sl.sources = append(sl.sources, src)
		}
		mk.slices = append(mk.slices, sl)
	}
	return nil
}

// mkParams reads a parameters mapping.
func (r *Recipe) mkParams(n *yaml.Node) (mkParams, error) {
	if isNull(n) {
		return nil, nil
	}
	entries, err := pairs(r.File, n)
	if err != nil {
		return nil, err
	}
	out := mkParams{}
	for _, e := range entries {
		s, err := r.mkSetting(e.v, true)
		if err != nil {
			return nil, err
		}
		s.p = posOf(e.k)
		out[e.key] = s
	}
	return out, nil
}

// mkSetting reads a ParameterSetting: a scalar, a gradient, a list of scalars, a condition
// or a list of conditions (conds false: a condition's value, a scalar or a gradient).
func (r *Recipe) mkSetting(n *yaml.Node, conds bool) (*mkSetting, error) {
	s := &mkSetting{node: n, p: posOf(n)}
	scalar := func(n *yaml.Node) (mkValue, error) {
		var v mkValue
		switch n.Tag {
		case "!!int", "!!float":
			if err := n.Decode(&v.num); err != nil || math.IsNaN(v.num) || math.IsInf(v.num, 0) {
				return v, errAt(r.File, posOf(n), "%s is not a finite number", n.Value)
			}
		case "!!bool":
			v.isBool = true
			v.b = n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
		case "!!str":
			v.isStr, v.str = true, n.Value
		default:
			return v, errAt(r.File, posOf(n), "want a number, got %s", describe(n))
		}
		return v, nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := scalar(n)
		if err != nil {
			return nil, err
		}
		s.val = &v
		return s, nil
	case yaml.MappingNode:
		if !conds {
			return nil, errAt(r.File, posOf(n), "a condition's value is a number or a gradient, got %s", describe(n))
		}
		c, err := r.mkCond(n)
		if err != nil {
			return nil, err
		}
		s.conds = []mkCond{c}
		return s, nil
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			return nil, errAt(r.File, posOf(n), "an empty list is no parameter value")
		}
		numeric, scalars := true, true
		for _, c := range n.Content {
			numeric = numeric && c.Kind == yaml.ScalarNode && (c.Tag == "!!int" || c.Tag == "!!float")
			scalars = scalars && c.Kind == yaml.ScalarNode
		}
		switch {
		case numeric:
			for _, c := range n.Content {
				v, err := scalar(c)
				if err != nil {
					return nil, err
				}
				s.grad = append(s.grad, v.num)
			}
		case scalars:
			for _, c := range n.Content {
				v, err := scalar(c)
				if err != nil {
					return nil, err
				}
				s.steps = append(s.steps, v)
			}
		case !conds:
			return nil, errAt(r.File, posOf(n), "a condition's value is a number or a gradient, got %s", describe(n))
		default:
			for _, c := range n.Content {
				if c.Kind != yaml.MappingNode {
					return nil, errAt(r.File, posOf(c), "want {filter: ..., value: ...}, got %s", describe(c))
				}
				cd, err := r.mkCond(c)
				if err != nil {
					return nil, err
				}
				s.conds = append(s.conds, cd)
			}
		}
		return s, nil
	}
	return nil, errAt(r.File, posOf(n), "want a parameter value, got %s", describe(n))
}

func (r *Recipe) mkCond(n *yaml.Node) (mkCond, error) {
	entries, err := pairs(r.File, n)
	if err != nil {
		return mkCond{}, err
	}
	var c mkCond
	for _, e := range entries {
		switch e.key {
		case "filter":
			if !isNull(e.v) {
				if c.filter, err = str(r.File, e.v, "filter"); err != nil {
					return c, err
				}
			}
		case "value":
			if c.value, err = r.mkSetting(e.v, false); err != nil {
				return c, err
			}
		default:
			return c, errAt(r.File, posOf(e.k), "a condition has no field %q (it has filter and value)", e.key)
		}
	}
	if c.value == nil {
		return c, errAt(r.File, posOf(n), "a condition without value:")
	}
	return c, nil
}

// evalAt is mergekit's evaluate_setting: the setting's value for the tensor named name (its
// Hugging Face name) at position t, where it is written (the number, the gradient or
// the list it comes from), and whether it has one.
func (s *mkSetting) evalAt(name string, t float64) (mkValue, pos, bool) {
	switch {
	case s.val != nil:
		return *s.val, posOf(s.node), true
	case s.grad != nil:
		return mkValue{num: gradientAt(s.grad, t)}, posOf(s.node), true
	case s.steps != nil:
		return s.steps[int(t*float64(len(s.steps)-1))], posOf(s.node), true
	}
	for _, c := range s.conds {
		if c.filter == "" || c.filter == "*" || strings.Contains(name, c.filter) {
			return c.value.evalAt(name, t)
		}
	}
	return mkValue{}, pos{}, false
}

// gradientAt interpolates a gradient at t as mergekit does: t*(len-1) falls between entries
// i0 = floor and i1 = i0+1, weighted (1-frac) and frac, each product rounded (no fused
// multiply-add, as Python computes it).
func gradientAt(g []float64, t float64) float64 {
	scaled := t * float64(len(g)-1)
	i0 := int(scaled)
	i1 := min(len(g)-1, i0+1)
	frac := scaled - float64(i0)
	return float64((1-frac)*g[i0]) + float64(frac*g[i1])
}

// filters lists the substrings a setting's conditions test.
func (s *mkSetting) filters(out map[string]bool) {
	if s == nil {
		return
	}
	for _, c := range s.conds {
		if c.filter != "" && c.filter != "*" {
			out[c.filter] = true
		}
	}
}

// checkParams refuses parameters the method does not have, and global parameters given to
// one model.
func (mk *mkConfig) checkParams() error {
	r := mk.r
	m := mkMethods[mk.method]
	known := append(append([]string(nil), m.global...), m.perModel...)
	isIn := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	check := func(p mkParams, perModelOnly bool) error {
		names := make([]string, 0, len(p))
		for k := range p {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			s := p[k]
			switch {
			case !isIn(known, k):
				if len(known) == 0 {
					return errAt(r.File, s.p, "%s takes no parameter %q", mk.method, k)
				}
				return errAt(r.File, s.p, "%s has no parameter %q%s (it has %s)", mk.method, k, suggest(k, known), knownList(known))
			case perModelOnly && isIn(m.global, k):
				return errAt(r.File, s.p, "%s is a global parameter of %s: give it under the configuration's (or the slice's) parameters, not a model's", k, mk.method)
			case k == "scale":
				return errAt(r.File, s.p, "passthrough's scale parameter is not supported by weft")
			}
			if err := mk.checkKind(k, s); err != nil {
				return err
			}
		}
		return nil
	}
	if err := check(mk.params, false); err != nil {
		return err
	}
	for _, sl := range mk.slices {
		if err := check(sl.params, false); err != nil {
			return err
		}
		for _, src := range sl.sources {
			if err := check(src.params, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkKind checks every value a setting of parameter name can give against the
// parameter's kind, naming the value at fault. A gradient's values lie between its entries,
// so checking the entries checks them all.
func (mk *mkConfig) checkKind(name string, s *mkSetting) error {
	r := mk.r
	kind := mkKinds[name]
	num := func(x float64, p pos) error {
		switch {
		case kind == mkFraction && (x < 0 || x > 1):
			return errAt(r.File, p, "%s %v is outside [0, 1]", name, x)
		case kind == mkNonNeg && x < 0:
			return errAt(r.File, p, "%s %v is negative", name, x)
		}
		return nil
	}
	switch {
	case s.val != nil:
		v, p := s.val, posOf(s.node)
		switch {
		case kind == mkBool && !v.isBool:
			return errAt(r.File, p, "%s: want true or false, got %s", name, describe(s.node))
		case kind != mkBool && (v.isBool || v.isStr):
			return errAt(r.File, p, "%s: want a number, got %s", name, describe(s.node))
		case kind != mkBool:
			return num(v.num, p)
		}
	case s.grad != nil:
		if kind == mkBool {
			return errAt(r.File, posOf(s.node), "%s: want true or false (or conditions), got a list of numbers", name)
		}
		for i, x := range s.grad {
			if err := num(x, posOf(s.node.Content[i])); err != nil {
				return err
			}
		}
	case s.steps != nil:
		if kind == mkBool {
			return errAt(r.File, posOf(s.node), "%s: a list of true/false is not supported by weft (mergekit reads it as numbers interpolated over the layers): give true, false or conditions", name)
		}
		return errAt(r.File, posOf(s.node), "%s: want a number or a list of numbers, got %s", name, describe(s.node))
	}
	for _, c := range s.conds {
		if err := mk.checkKind(name, c.value); err != nil {
			return err
		}
	}
	return nil
}

// tokenizerSource accepts the tokenizer sources weft's blend matches: none, or the base's
// tokenizer with every model's vocabulary of the same size (checked when the models are
// open: weft blends rows by index, where mergekit aligns rows by token).
func (mk *mkConfig) tokenizerSource(n *yaml.Node) error {
	if n == nil || isNull(n) {
		return nil
	}
	r := mk.r
	s, err := str(r.File, n, "tokenizer_source")
	if err != nil {
		return err
	}
	switch {
	case s == "base":
	case s == "union":
		return errAt(r.File, posOf(n), "tokenizer_source: union is not supported by weft (mergekit builds a union vocabulary by token; weft blends embedding rows by index)")
	case mk.base >= 0 && s == r.Inputs[mk.base].Name:
	default:
		return errAt(r.File, posOf(n), "tokenizer_source: %q is not supported by weft: only base (the base model's tokenizer, with vocabularies of one size)", s)
	}
	mk.r.tokBase = true
	return nil
}

// param returns the value of parameter name for a tensor: the model's (model >= 0), the
// slice's, then the configuration's.
func (mk *mkConfig) param(name string, model int, sl *mkSlice, tensor string, t float64) (mkValue, bool) {
	v, _, ok := mk.paramAt(name, model, sl, tensor, t)
	return v, ok
}

// paramAt is param that also returns where the value is written.
func (mk *mkConfig) paramAt(name string, model int, sl *mkSlice, tensor string, t float64) (mkValue, pos, bool) {
	if model >= 0 {
		for _, src := range sl.sources {
			if src.input == model && src.params[name] != nil {
				if v, p, ok := src.params[name].evalAt(tensor, t); ok {
					return v, p, true
				}
			}
		}
	}
	for _, p := range []mkParams{sl.params, mk.params} {
		if s := p[name]; s != nil {
			if v, at, ok := s.evalAt(tensor, t); ok {
				return v, at, true
			}
		}
	}
	return mkValue{}, pos{}, false
}

// given reports whether parameter name has a setting that may apply to the model (model >=
// 0) or to the merge (model < 0): the model's own, the slice's or the configuration's.
func (mk *mkConfig) given(name string, model int, sl *mkSlice) bool {
	if model >= 0 {
		for _, src := range sl.sources {
			if src.input == model && src.params[name] != nil {
				return true
			}
		}
	}
	return sl.params[name] != nil || mk.params[name] != nil
}

// step turns the configuration into the recipe's one step.
func (mk *mkConfig) step() error {
	r := mk.r
	st := &Step{Name: "1", p: mk.methodP}
	if mk.method == "passthrough" {
		return mk.stackStep(st)
	}
	if len(mk.slices) != 1 {
		return errAt(r.File, mk.slices[1].p, "%s with several slices: weft merges whole models (one slice whose sources each cover every layer); passthrough stacks slices", mk.method)
	}
	sl := &mk.slices[0]
	inSlice := func(i int) bool {
		for _, s := range sl.sources {
			if s.input == i {
				return true
			}
		}
		return false
	}
	base := mk.base
	m := mkMethods[mk.method]
	switch {
	case m.base == mkBaseRequired || (m.base == mkBaseOptional && base >= 0):
		if base < 0 {
			return errAt(r.File, mk.methodP, "%s needs a base_model", mk.method)
		}
		if !inSlice(base) {
			sl.sources = append(sl.sources, mkSource{input: base, hi: -1, p: mk.basep})
		}
	case mk.method == "linear":
		if base >= 0 && !inSlice(base) {
			return errAt(r.File, mk.basep, "linear: base_model %s is not among the models (mergekit would give it no weight)", r.Inputs[base].Name)
		}
		if base < 0 {
			base = sl.sources[0].input
		}
	}
	// nuslerp and multislerp without a base_model merge the models themselves; blend takes
	// the first as its first input (no_base).
	noBase := m.base == mkBaseOptional && base < 0
	if noBase {
		base = sl.sources[0].input
	}
	switch {
	case mk.method == "slerp" && len(sl.sources) != 2:
		return errAt(r.File, sl.p, "slerp merges exactly two models (the base_model and one other), got %d", len(sl.sources))
	case mk.method == "model_stock" && len(sl.sources) < 3:
		return errAt(r.File, sl.p, "model_stock needs the base_model and at least two other models, got %d other", len(sl.sources)-1)
	case mk.method == "nuslerp" && !noBase && len(sl.sources) != 3:
		return errAt(r.File, sl.p, "nuslerp with a base_model merges exactly two other models, got %d", len(sl.sources)-1)
	case mk.method == "nuslerp" && noBase && len(sl.sources) != 2:
		return errAt(r.File, sl.p, "nuslerp merges exactly two models (plus an optional base_model), got %d", len(sl.sources))
	case len(sl.sources) < 2:
		return errAt(r.File, sl.p, "%s needs at least two models", mk.method)
	}
	order := []int{base}
	for _, s := range sl.sources {
		if s.input != base {
			order = append(order, s.input)
		}
	}
	if m.merge != "" {
		// mergekit requires every merged model's weight (ConfigParameterDef weight,
		// required; the base model's is not read).
		for _, src := range sl.sources {
			if src.input == base && !noBase {
				continue
			}
			for _, p := range m.perModel {
				if p == "weight" && !mk.given(p, src.input, sl) {
					which := "every model merged"
					if !noBase {
						which += " but the base_model"
					}
					return errAt(r.File, src.p, "%s: model %s has no weight (mergekit requires one for %s)", mk.method, r.Inputs[src.input].Name, which)
				}
			}
		}
	}
	for _, i := range order {
		st.Inputs = append(st.Inputs, Ref{Input: i, Step: -1})
	}
	st.Op = "blend"
	st.make = func(_ Variant, in ops.Inputs) (ops.Op, error) {
		if m.merge != "" {
			return mk.mergeOp(sl, order, noBase, in)
		}
		return mk.blendOp(sl, order, in)
	}
	r.Steps = []*Step{st}
	return nil
}

// stackStep makes a passthrough configuration a stack of its slices.
func (mk *mkConfig) stackStep(st *Step) error {
	r := mk.r
	var order []int
	index := map[int]int{}
	add := func(i int) {
		if _, ok := index[i]; !ok {
			index[i] = len(order)
			order = append(order, i)
		}
	}
	if mk.base >= 0 {
		add(mk.base)
	}
	for _, sl := range mk.slices {
		if len(sl.sources) != 1 {
			return errAt(r.File, sl.p, "passthrough takes one source per slice, got %d", len(sl.sources))
		}
		add(sl.sources[0].input)
	}
	if mk.base >= 0 {
		used := false
		for _, sl := range mk.slices {
			used = used || sl.sources[0].input == mk.base
		}
		if !used {
			return errAt(r.File, mk.basep, "passthrough: base_model %s is in no slice (weft takes the output's configuration from the first slice's model: leave base_model out)", r.Inputs[mk.base].Name)
		}
	}
	for _, i := range order {
		st.Inputs = append(st.Inputs, Ref{Input: i, Step: -1})
	}
	slices := mk.slices
	st.Op = "stack"
	st.make = func(_ Variant, in ops.Inputs) (ops.Op, error) {
		op := &ablate.StackOptions{}
		for _, sl := range slices {
			src := sl.sources[0]
			k := index[src.input]
			n, err := ablate.NumLayers(in.Checkpoints[k])
			if err != nil {
				return nil, err
			}
			lo, hi := src.lo, src.hi
			if hi < 0 {
				lo, hi = 0, n
			}
			if hi > n {
				return nil, errAt(r.File, src.p, "layer_range [%d, %d) of %s: it has %d layers", lo, hi, r.Inputs[src.input].Name, n)
			}
			op.Slices = append(op.Slices, ablate.Slice{Input: k, First: lo, Last: hi - 1})
		}
		return op, nil
	}
	r.Steps = []*Step{st}
	return nil
}

// checkModels checks, from the models' headers, that the models merged are whole models
// with the base's number of layers (and, with tokenizer_source: base, vocabularies of its
// size), and returns that number of layers.
func (mk *mkConfig) checkModels(sl *mkSlice, order []int, in ops.Inputs) (int, error) {
	r := mk.r
	baseC := in.Checkpoints[0]
	n, err := ablate.NumLayers(baseC)
	if err != nil {
		return 0, err
	}
	for k, i := range order {
		for _, s := range sl.sources {
			if s.input != i || s.hi < 0 {
				continue
			}
			ni, err := ablate.NumLayers(in.Checkpoints[k])
			if err != nil {
				return 0, err
			}
			if s.lo != 0 || s.hi != ni {
				return 0, errAt(r.File, s.p, "layer_range [%d, %d) of %s: %s merges whole models (layer_range [0, %d))", s.lo, s.hi, r.Inputs[i].Name, mk.method, ni)
			}
			if ni != n {
				return 0, errAt(r.File, s.p, "%s has %d layers, the base %d", r.Inputs[i].Name, ni, n)
			}
		}
	}
	if r.tokBase {
		rows := func(c *weft.Checkpoint) int64 {
			for _, t := range c.Tensors {
				if arch.RoleOf(t.Name) == arch.RoleEmbedding && len(t.Shape) > 0 {
					return t.Shape[0]
				}
			}
			return -1
		}
		for k := 1; k < len(in.Checkpoints); k++ {
			if a, b := rows(baseC), rows(in.Checkpoints[k]); a != b {
				return 0, &Error{File: r.File, Msg: fmt.Sprintf("tokenizer_source: base with vocabularies of %d and %d rows: mergekit aligns embedding rows by token, weft blends them by index: unsupported", a, b)}
			}
		}
	}
	return n, nil
}

// blendOp computes, from the models' headers, the blend that is the configuration's merge:
// each tensor's weight by mergekit's definitions, as the blend's weight for that tensor.
func (mk *mkConfig) blendOp(sl *mkSlice, order []int, in ops.Inputs) (ops.Op, error) {
	r := mk.r
	baseC := in.Checkpoints[0]
	n, err := mk.checkModels(sl, order, in)
	if err != nil {
		return nil, err
	}
	filters := map[string]bool{}
	for _, name := range []string{"t", "weight", "lambda", "normalize"} {
		mk.params[name].filters(filters)
		sl.params[name].filters(filters)
		for _, s := range sl.sources {
			s.params[name].filters(filters)
		}
	}
	names := make([]string, len(baseC.Tensors))
	alphas := make([]float64, len(baseC.Tensors))
	var weights []float64 // constant per-model weights (linear, task_arithmetic)
	// coeffs are each tensor's per-model coefficients (several tuned models), varying
	// whether they differ between tensors.
	coeffs := make([][]float64, len(baseC.Tensors))
	varying := false
	tuned := order[1:]
	num := func(name string, v mkValue, ok bool, what string) (float64, error) {
		if !ok {
			return 0, fmt.Errorf("%s: no value of %s for tensor %s", mk.method, what, name)
		}
		if v.isBool || v.isStr {
			return 0, fmt.Errorf("%s: %s for tensor %s is not a number", mk.method, what, name)
		}
		return v.num, nil
	}
	for ti, t := range baseC.Tensors {
		names[ti] = t.Name
		pt := 0.0
		if l, _, ok := arch.Layer(t.Name); ok && l < n {
			if n > 1 {
				pt = float64(l) / float64(n-1)
			} else {
				pt = 1
			}
		}
		hf, _ := arch.HFName(t.Name)
		switch mk.method {
		case "slerp":
			v, ok := mk.param("t", -1, sl, hf, pt)
			if alphas[ti], err = num(t.Name, v, ok, "t"); err != nil {
				return nil, err
			}
		case "linear", "task_arithmetic":
			w := make([]float64, len(order))
			for k, i := range order {
				if mk.method == "task_arithmetic" && k == 0 {
					continue // the base has no task vector
				}
				v, ok := mk.param("weight", i, sl, hf, pt)
				if w[k], err = num(t.Name, v, ok, "weight of "+r.Inputs[i].Name); err != nil {
					return nil, err
				}
			}
			normalize := mk.method == "linear"
			if v, ok := mk.param("normalize", -1, sl, hf, pt); ok {
				if !v.isBool {
					return nil, fmt.Errorf("%s: normalize for tensor %s is not true or false", mk.method, t.Name)
				}
				normalize = v.b
			}
			// The blend is base + alpha * sum_k c_k (x_k - base) over the tuned models.
			c := make([]float64, len(tuned))
			alpha := 1.0
			if mk.method == "linear" {
				var sum float64
				for _, x := range w {
					sum += x
				}
				switch {
				case normalize && sum == 0:
					return nil, fmt.Errorf("linear: the weights of tensor %s sum to 0", t.Name)
				case !normalize && sum != 1:
					return nil, fmt.Errorf("linear with normalize: false and weights summing to %v (tensor %s) scales the model; weft's blends keep the weights' sum at 1", sum, t.Name)
				case !normalize:
					sum = 1
				}
				for k := range tuned {
					c[k] = w[k+1] / sum
				}
			} else {
				div := 1.0
				if normalize {
					var sum float64
					for _, x := range w[1:] {
						sum += x
					}
					if math.Abs(sum) >= 1e-8 {
						div = sum
					}
				}
				for k := range tuned {
					c[k] = w[k+1] / div
				}
				lambda := 1.0
				if v, ok := mk.param("lambda", -1, sl, hf, pt); ok {
					if lambda, err = num(t.Name, v, ok, "lambda"); err != nil {
						return nil, err
					}
				}
				alpha = lambda
			}
			if len(tuned) == 1 {
				alphas[ti] = alpha * c[0]
				continue
			}
			coeffs[ti] = c
			if weights == nil {
				weights = c
			} else {
				for k := range c {
					varying = varying || c[k] != weights[k]
				}
			}
			alphas[ti] = alpha
		}
	}
	if varying {
		return mk.varyingOp(baseC, names, coeffs, alphas, filters)
	}
	op := &blend.Options{Method: blend.Linear, Weights: weights}
	if mk.method == "slerp" {
		op.Method = blend.Slerp
	}
	alpha, rules, err := compileAlphas(names, alphas, filters)
	if err != nil {
		return nil, err
	}
	op.Alpha, op.AlphaFor = alpha, rules
	return op, nil
}

// varyingOp is the blend of several tuned models whose coefficients differ between tensors
// (linear or task_arithmetic with per-tensor weights): base + alpha*sum_k c_k*(x_k - base)
// with c_k and alpha per tensor, which blend's task_arithmetic computes with per-tensor
// weights c_k and lambda alpha (normalize off: c_k are already normalized).
func (mk *mkConfig) varyingOp(baseC *weft.Checkpoint, names []string, coeffs [][]float64, alphas []float64, filters map[string]bool) (ops.Op, error) {
	skip := make([]bool, len(baseC.Tensors))
	for ti, t := range baseC.Tensors {
		skip[ti] = mkUnmerged(t)
	}
	var params blend.MergeParams
	params.Models = make([]blend.ModelParams, len(coeffs[0]))
	for k := range params.Models {
		vals := make([]float64, len(names))
		for ti := range vals {
			vals[ti] = coeffs[ti][k]
		}
		v, err := mk.value(names, vals, skip, filters)
		if err != nil {
			return nil, err
		}
		params.Models[k].Weight = v
	}
	v, err := mk.value(names, alphas, skip, filters)
	if err != nil {
		return nil, err
	}
	params.Lambda = v
	return &blend.Options{Method: blend.TaskArithmetic, Params: params}, nil
}

// compileAlphas expresses one weight per tensor as a default weight and rules (see
// compileValues).
func compileAlphas(names []string, alphas []float64, filters map[string]bool) (float64, []blend.AlphaRule, error) {
	best, rules, err := compileValues(names, alphas, nil, filters)
	if err != nil {
		return 0, nil, err
	}
	out := make([]blend.AlphaRule, len(rules))
	for i, rl := range rules {
		out[i] = blend.AlphaRule{Pattern: rl.Pattern, Alpha: rl.Value}
	}
	return best, out, nil
}

// compileValues expresses one value per tensor as a default value and rules: the most
// common value is the default; the others are given by rules that match exactly their
// tensors: one per layer when a layer's tensors (or those of it whose names hold one of
// the filters) share a value, one per tensor otherwise. Tensors marked in skip (nil: none)
// take any value: the op never asks for it.
func compileValues(names []string, vals []float64, skip []bool, filters map[string]bool) (float64, []blend.ValueRule, error) {
	skipped := func(i int) bool { return skip != nil && skip[i] }
	count := map[float64]int{}
	best, bestN := 0.0, -1
	for i, a := range vals {
		if !skipped(i) {
			count[a]++
		}
	}
	for i, a := range vals { // first in tensor order among the most common
		if !skipped(i) && count[a] > bestN {
			best, bestN = a, count[a]
		}
	}
	type group struct {
		prefix string
		value  float64
		idx    []int
	}
	var groups []*group
	byKey := map[string]*group{}
	var singles []int
	for i, name := range names {
		if skipped(i) || vals[i] == best {
			continue
		}
		_, rest, ok := arch.Layer(name)
		if !ok {
			singles = append(singles, i)
			continue
		}
		prefix := name[:len(name)-len(rest)]
		k := fmt.Sprintf("%s|%v", prefix, vals[i])
		g := byKey[k]
		if g == nil {
			g = &group{prefix: prefix, value: vals[i]}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	var fl []string
	for f := range filters {
		fl = append(fl, f)
	}
	sort.Strings(fl)
	matchesExactly := func(glob string, idx []int) bool {
		p, err := ops.CompilePattern(glob)
		if err != nil {
			return false
		}
		want := map[int]bool{}
		for _, i := range idx {
			want[i] = true
		}
		for i, n := range names {
			if !skipped(i) && p.Match(n) != want[i] {
				return false
			}
		}
		return true
	}
	var rules []blend.ValueRule
	for _, g := range groups {
		cands := []string{globEscape(g.prefix) + "*"}
		for _, f := range fl {
			cands = append(cands, globEscape(g.prefix)+"*"+globEscape(f)+"*")
		}
		done := false
		for _, c := range cands {
			if matchesExactly(c, g.idx) {
				rules = append(rules, blend.ValueRule{Pattern: c, Value: g.value})
				done = true
				break
			}
		}
		if !done {
			singles = append(singles, g.idx...)
		}
	}
	sort.Ints(singles)
	for _, i := range singles {
		rules = append(rules, blend.ValueRule{Pattern: globEscape(names[i]), Value: vals[i]})
	}
	// Check: every tensor's first matching rule gives its value.
	pats := make([]*ops.Pattern, len(rules))
	for k, rl := range rules {
		p, err := ops.CompilePattern(rl.Pattern)
		if err != nil {
			return 0, nil, err
		}
		pats[k] = p
	}
	for i, n := range names {
		if skipped(i) {
			continue
		}
		got := best
		for k, p := range pats {
			if p.Match(n) {
				got = rules[k].Value
				break
			}
		}
		if got != vals[i] {
			return 0, nil, fmt.Errorf("internal: the rules give tensor %s the value %v, not %v", n, got, vals[i])
		}
	}
	return best, rules, nil
}

// globEscape quotes the characters ops.Pattern globs give a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
