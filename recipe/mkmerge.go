package recipe

import (
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
)

// The mergekit methods blend.MergeParams configures (ties, dare_*, della*, breadcrumbs*,
// model_stock, nuslerp, multislerp): each parameter is evaluated for every tensor as
// mergekit's ConfigReader does (a model's setting, then the slice's, then the
// configuration's; evaluate_setting for numbers, gradients and conditions; t = layer/(n-1)
// inside the layers, t = 0 outside), and the values are carried into blend.MergeParams as a
// default and per-tensor rules (blend.Value) that give every tensor exactly its value.
// Parameters weft holds once per merge (normalize, rescale, eps, the nuslerp and model_stock
// switches) must evaluate to one value over the tensors, else the configuration is refused
// at the setting's line.

// mkDefaults are mergekit's defaults of the numeric parameters that have one (the
// registry's default_value; blend's defaults are the same).
var mkDefaults = map[string]float64{
	"density": blend.DefaultDensity,
	"gamma":   blend.DefaultGamma,
	"epsilon": blend.DefaultEpsilon,
	"lambda":  blend.DefaultLambda,
}

// mkOnce is a global parameter that weft holds once per merge: its value over the tensors.
type mkOnce struct {
	v      mkValue
	tensor string // the first tensor it was evaluated for
	set    bool   // false: no condition matched (mergekit's default)
}

// mergeOp computes, from the models' headers, the blend.Options of a merge method:
// order[0] is the base (with noBase, the first model), order[1:] the other models.
func (mk *mkConfig) mergeOp(sl *mkSlice, order []int, noBase bool, in ops.Inputs) (ops.Op, error) {
	r := mk.r
	m := mkMethods[mk.method]
	n, err := mk.checkModels(sl, order, in)
	if err != nil {
		return nil, err
	}
	baseC := in.Checkpoints[0]
	models := order[1:]
	if noBase {
		models = order
	}
	srcPos := func(input int) pos {
		for _, s := range sl.sources {
			if s.input == input {
				return s.p
			}
		}
		return mk.methodP
	}
	filters := map[string]bool{}
	for _, list := range [][]string{m.global, m.perModel} {
		for _, name := range list {
			mk.params[name].filters(filters)
			sl.params[name].filters(filters)
			for _, s := range sl.sources {
				s.params[name].filters(filters)
			}
		}
	}

	nt := len(baseC.Tensors)
	names := make([]string, nt)
	// skip marks the tensors blend copies without asking for their parameters.
	skip := make([]bool, nt)
	// vals[p][k][ti] is per-model parameter p of model k for tensor ti.
	vals := map[string][][]float64{}
	for _, p := range m.perModel {
		vals[p] = make([][]float64, len(models))
		for k := range models {
			vals[p][k] = make([]float64, nt)
		}
	}
	var lambda []float64
	if mk.given("lambda", -1, sl) {
		lambda = make([]float64, nt)
	}
	once := map[string]*mkOnce{}
	for ti, t := range baseC.Tensors {
		names[ti] = t.Name
		if skip[ti] = mkUnmerged(t); skip[ti] {
			continue
		}
		pt := 0.0
		if l, _, ok := arch.Layer(t.Name); ok && l < n {
			if n > 1 {
				pt = float64(l) / float64(n-1)
			} else {
				pt = 1
			}
		}
		hf, _ := arch.HFName(t.Name)
		at := map[string][]pos{} // where each model's value of a parameter is written
		for _, p := range m.perModel {
			at[p] = make([]pos, len(models))
			for k, i := range models {
				v, vp, ok := mk.paramAt(p, i, sl, hf, pt)
				if !ok {
					def, has := mkDefaults[p]
					if !has {
						return nil, errAt(r.File, srcPos(i), "%s: no %s of model %s for tensor %s (%s): mergekit requires one, and no condition matches it", mk.method, p, r.Inputs[i].Name, t.Name, hf)
					}
					v = mkValue{num: def}
				}
				vals[p][k][ti], at[p][k] = v.num, vp
			}
		}
		if vals["epsilon"] != nil {
			// mergekit's della_magprune: density-epsilon and density+epsilon in (0, 1)
			// whenever it drops anything (0 < density < 1).
			for k, i := range models {
				d, e := vals["density"][k][ti], vals["epsilon"][k][ti]
				if d > 0 && d < 1 && (e < 0 || d-e <= 0 || d+e >= 1) {
					p := at["epsilon"][k]
					if p.line == 0 {
						p = at["density"][k]
					}
					return nil, errAt(r.File, p, "%s: epsilon %v with density %v (model %s, tensor %s): density-epsilon and density+epsilon must lie in (0, 1)", mk.method, e, d, r.Inputs[i].Name, t.Name)
				}
			}
		}
		if lambda != nil {
			lambda[ti] = mkDefaults["lambda"]
			if v, ok := mk.param("lambda", -1, sl, hf, pt); ok {
				lambda[ti] = v.num
			}
		}
		for _, p := range m.global {
			if p == "lambda" || !mk.given(p, -1, sl) {
				continue
			}
			v, vp, ok := mk.paramAt(p, -1, sl, hf, pt)
			o := once[p]
			if o == nil {
				once[p] = &mkOnce{v: v, tensor: t.Name, set: ok}
				continue
			}
			if ok != o.set || v.isBool != o.v.isBool || v.b != o.v.b || v.num != o.v.num {
				if vp.line == 0 {
					vp = mk.settingPos(p, sl)
				}
				text := func(v mkValue, ok bool) string {
					if !ok {
						return "unset (no condition matches)"
					}
					return v.text()
				}
				return nil, errAt(r.File, vp, "%s: %s is %s for tensor %s but %s for tensor %s: weft holds one %s per merge", mk.method, p, text(v, ok), t.Name, text(o.v, o.set), o.tensor, p)
			}
		}
	}

	var params blend.MergeParams
	params.NoBase = noBase
	if len(m.perModel) > 0 {
		params.Models = make([]blend.ModelParams, len(models))
	}
	for _, p := range m.perModel {
		for k, i := range models {
			if !mk.given(p, i, sl) {
				continue // mergekit's default, blend's
			}
			v, err := mk.value(names, vals[p][k], skip, filters)
			if err != nil {
				return nil, err
			}
			mp := &params.Models[k]
			switch p {
			case "weight":
				mp.Weight = v
			case "density":
				mp.Density = v
			case "gamma":
				mp.Gamma = v
			case "epsilon":
				mp.Epsilon = v
			}
		}
	}
	if lambda != nil {
		if params.Lambda, err = mk.value(names, lambda, skip, filters); err != nil {
			return nil, err
		}
	}
	for p, o := range once {
		if !o.set {
			continue // no condition matches any tensor: mergekit's default, blend's
		}
		v := o.v
		b := &v.b
		switch p {
		case "normalize":
			params.Normalize = b
		case "rescale":
			params.Rescale = b
		case "int8_mask":
			// mergekit's int8_mask only changes the type of its sign mask, which holds
			// 0 and 1 either way: no effect on the numbers.
		case "filter_wise":
			params.FilterWise = v.b
		case "nuslerp_flatten":
			params.NuSlerpFlatten = b
		case "nuslerp_row_wise":
			params.NuSlerpRowWise = v.b
		case "normalize_weights":
			params.NormalizeWeights = b
		case "eps":
			x := v.num
			params.Eps = &x
		}
	}
	return &blend.Options{Method: m.merge, Params: params}, nil
}

// mkUnmerged reports whether blend copies tensor t of the base without asking for its
// parameters: integer and boolean tensors, and empty ones.
func mkUnmerged(t *weft.Tensor) bool {
	ne, _ := t.NumElements()
	return !(t.DType.Float() || t.DType.Quantized()) || ne == 0
}

// value compiles one value per tensor into a blend.Value.
func (mk *mkConfig) value(names []string, vals []float64, skip []bool, filters map[string]bool) (*blend.Value, error) {
	def, rules, err := compileValues(names, vals, skip, filters)
	if err != nil {
		return nil, err
	}
	return &blend.Value{Default: def, For: rules}, nil
}

// settingPos returns where global parameter p is set: the slice's setting, else the
// configuration's.
func (mk *mkConfig) settingPos(p string, sl *mkSlice) pos {
	if s := sl.params[p]; s != nil {
		return s.p
	}
	if s := mk.params[p]; s != nil {
		return s.p
	}
	return mk.methodP
}

// text formats a value for messages.
func (v mkValue) text() string {
	switch {
	case v.isBool:
		if v.b {
			return "true"
		}
		return "false"
	case v.isStr:
		return v.str
	}
	return FormatNumber(v.num)
}
