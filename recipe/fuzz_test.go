package recipe

import (
	"errors"
	"testing"
)

// FuzzParse: no recipe, however malformed, makes Parse panic, and every mistake is an
// *Error (a file, and a line when it has one).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"inputs: {base: a, chat: b}\nsteps:\n  - op: blend\n    inputs: [base, chat]\n    alpha: {sweep: [0.1, 0.3]}\n  - op: noise\n    seed: {sweep: [1, 2], name: s}\n    std: 0.01\noutputs:\n  - path: out/{alpha}-{s}.gguf\n    dtype: q8_0\n    split_max_size: 2GB\n",
		"inputs: {m: a}\nsteps:\n  - op: ablate\n    drop: {sweep: each}\n    zero: {what: mlp, layers: all}\noutputs: [{path: 'd-{layer}', format: gguf}]\n",
		`{"inputs": {"m": "a"}, "steps": [{"op": "convert", "dtype": "f16"}], "outputs": [{"path": "x"}]}`,
		"merge_method: slerp\nbase_model: a\nmodels:\n  - model: a\n  - model: b\nparameters:\n  t:\n    - filter: self_attn\n      value: [0, 0.5, 1]\n    - value: 0.5\ndtype: bfloat16\n",
		"merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n        layer_range: [0, 2]\n  - sources:\n      - model: b\n        layer_range: [1, 3]\n",
		"merge_method: ties\nbase_model: a\nmodels:\n  - model: b\n    parameters:\n      weight: [0.2, 0.8]\n      density:\n        - filter: mlp\n          value: 0.5\n        - value: 1\nparameters: {lambda: 0.9, normalize: true}\n",
		"merge_method: multislerp\nmodels:\n  - model: a\n    parameters: {weight: 1}\n  - model: b\n    parameters: {weight: 2}\nparameters: {eps: 1e-6, normalize_weights: false}\n",
		"a: &x [*x]\n", "- [", "inputs: {a: b}\nsteps: [{op: blend, alpha: !!binary AAAA}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse("f.yaml", "", data)
		if err != nil {
			var re *Error
			if !errors.As(err, &re) || re.File != "f.yaml" || re.Line < 0 || re.Column < 0 {
				t.Fatalf("not an *Error: %T %v", err, err)
			}
			return
		}
		if len(r.Steps) == 0 {
			t.Fatal("a recipe without steps parsed")
		}
		for _, o := range r.Outputs {
			if _, _, err := parseTemplate(o.Path); err != nil {
				t.Fatalf("output %q: %v", o.Path, err)
			}
		}
	})
}
