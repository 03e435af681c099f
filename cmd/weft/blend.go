package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/recipe"
)

// alphaRules is a repeatable --alpha-for flag.
type alphaRules []blend.AlphaRule

func (r *alphaRules) String() string { return fmt.Sprint(*r) }
func (r *alphaRules) Set(v string) error {
	rule, err := blend.ParseAlphaRule(v)
	if err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "blend: "))
	}
	*r = append(*r, rule)
	return nil
}

func blendCmd() *command {
	return &command{
		name:    "blend",
		summary: "interpolate or merge a base and tuned models (weights, schedules, slerp, ties, dare, della, ...)",
		synopsis: []string{`blend BASE TUNED [TUNED2 ...] -o OUT --alpha A [--alpha-for PATTERN=A ...]
                  [--alpha-schedule a,b,...] [--weights w1,w2,...] [--method M]
                  [--missing base] [--vocab base|tuned|union] [--dtype T]
                  [--type-for PATTERN=T ...] [--dry-run] [--threads N] [--force]`},
		about: `Writes OUT with every tensor base + A*(tuned - base), computed in float64 and rounded once
to the output type. A = 0 reproduces the base's bytes, 1 the tuned model's, A > 1
extrapolates past the tuned model, A < 0 moves away from it. Inputs are any checkpoints
weft reads (safetensors files or Hugging Face directories, .bin, GGUF including quantized
GGUF), all in the same naming (Hugging Face or GGUF, not mixed). The output has the base's
tensors, order, shards, metadata and side files; config.json's torch_dtype follows --dtype.

The weight of a tensor is the first that applies of --alpha-for, --alpha-schedule and
--alpha. Mismatched tensor sets or vocabularies are an error listing the tensors, unless
--missing or --vocab says what to do. By default each tensor keeps the base's type;
quantized GGUF tensors are dequantized, blended and quantized back to their own type; a
changed type is rounded to once.`,
		examples: []example{
			{line: "weft blend base chat -o blend-0.3 --alpha 0.3"},
			{line: "weft blend base.gguf chat.gguf -o mix.gguf --alpha 0.5 --alpha-for mlp=0.8 --alpha-schedule 0,1"},
			{line: "weft blend base math code -o merged --weights 0.7,0.5"},
			{line: "weft blend base math code -o merged-ties --method ties --density 0.5 --weights 1,0.6"},
			{line: "weft blend base chat -o sparse --method dare_linear --density 0.3 --seed 7"},
			{line: "weft blend base chat --alpha 0.1,0.3,0.5 -o 'out/blend-{alpha}'   # three outputs, one read",
				outputs: []string{"out/blend-0.1", "out/blend-0.3", "out/blend-0.5"}},
		},
		newOptions: func() options { return &blendOptions{} },
	}
}

// blendOptions are weft blend's options.
type blendOptions struct {
	alpha, schedule, weights, method, missing, vocab string
	aRules                                           alphaRules
	mf                                               *mergeFlags
	of                                               outFlags
	inp                                              inputFlags

	// set by validate
	op     *blend.Options
	sweeps []recipe.Sweep
}

func (o *blendOptions) addFlags(fs *flagSet) {
	fs.StringVar(&o.alpha, "alpha", "", "the weight `A` of every tensor no rule below gives one (0 = base, 1 = tuned); required, except with --weights where it defaults to 1; several values, --alpha 0.1,0.3,0.5, write one output each, together (one read of the inputs), to -o's template: -o 'out/blend-{alpha}' ({{ and }} are literal braces)")
	fs.Var(&o.aRules, "alpha-for", "`P=A`: tensors matching P get A; repeatable, the first matching rule wins. P is a group, the same in Hugging Face and GGUF naming: embeddings, head, attention (attn), mlp (ffn), norms (norm); or a glob over whole tensor names: * matches any characters INCLUDING dots, ? one character, [a-z] a class, \\* a literal *, as in \"model.layers.*.self_attn.*=0.2\". A rule that applies to no tensor is an error (patterns match whole names: write \"*self_attn*\", not \"self_attn\")")
	fs.StringVar(&o.schedule, "alpha-schedule", "", "per-layer weights `a,b,...` interpolated linearly over the layers (layer i of n sits at i/(n-1) along the list), as mergekit gradients; tensors outside the layers (embeddings, head, final norm) get --alpha")
	fs.StringVar(&o.weights, "weights", "", "task arithmetic with several tuned models, `w1,w2,...`: base + A * sum_i w_i*(tuned_i - base), summed in input order, one rounding at the end; A and the rules above scale all the w_i. With a merge method: the per-model weight (default 1 each; one value applies to every model)")
	fs.StringVar(&o.method, "method", "linear", "`M`: linear; slerp, spherical interpolation of two models, each tensor one flat vector: s0*base + s1*tuned with s0 = sin((1-A)θ)/sinθ, s1 = sin(Aθ)/sinθ, θ the angle between them, linear when |cos θ| > 0.9995 (nearly colinear, mergekit's DOT_THRESHOLD); or a merge method: task_arithmetic, ties, dare_linear, dare_ties, della, della_linear, breadcrumbs, breadcrumbs_ties (task vectors tuned_i - base, sparsified, sign-elected for the *ties and della, summed with the weights, scaled by lambda); model_stock (base + 2 or more tuned); nuslerp (2 tuned, or 2 models with --no-base); multislerp (1 or more tuned, or 2 or more models with --no-base). The merge methods take --lambda and --weights, not --alpha")
	fs.StringVar(&o.missing, "missing", "", "tensors not in every input: `base` keeps the base's tensor set (tensors only the base has are copied, tensors only a tuned model has are left out); by default an error listing them")
	fs.StringVar(&o.vocab, "vocab", "", "embeddings and heads whose vocabulary sizes differ (`WHICH`): blend the rows all inputs have and copy the others; the output has the base's rows (base), the tuned model's (tuned, taking its tokenizer files and vocab_size too) or the most (union, rows copied from the larger); by default an error")
	o.mf = addMergeFlags(fs)
	o.of.add(fs)
	o.of.addTypes(fs)
	o.inp.add(fs)
}

func (o *blendOptions) validate(e *env, pos []string) error {
	var err error

	if len(pos) < 2 {
		return usagef("want a base and at least one tuned model, got %d arguments", len(pos))
	}
	if o.of.out == "" {
		return usagef("an output is required: -o PATH")
	}
	opts := &blend.Options{Method: blend.Method(o.method), AlphaFor: o.aRules, Missing: o.missing, Vocab: o.vocab}
	if opts.Types, err = o.of.outputTypes(); err != nil {
		return err
	}
	if opts.Method != blend.Linear && opts.Method != blend.Slerp && !isMerge(opts.Method) {
		return usagef("--method %q: want one of %s", o.method, methodNames())
	}
	o.mf.afterParse(o.weights)
	merging := isMerge(opts.Method)
	if !merging && o.mf.anyMergeFlags {
		return usagef("%s is for the merge methods (--method ties, dare_linear, ...), not %s", o.mf.firstMergeFlag(), opts.Method)
	}
	if merging {
		if o.alpha != "" || o.schedule != "" || len(o.aRules) > 0 {
			return usagef("--alpha, --alpha-for and --alpha-schedule are for linear and slerp; %s scales with --lambda (--lambda-for, --lambda-schedule) and --weights", opts.Method)
		}
		nModels := len(pos) - 1
		if *o.mf.noBase {
			nModels = len(pos)
		}
		if opts.Params, err = o.mf.params(opts.Method, nModels); err != nil {
			return err
		}
	}
	switch opts.Missing {
	case blend.MissingError, blend.MissingBase:
	default:
		return usagef("--missing %q: want base", o.missing)
	}
	switch opts.Vocab {
	case blend.VocabError, blend.VocabBase, blend.VocabTuned, blend.VocabUnion:
	default:
		return usagef("--vocab %q: want base, tuned or union", o.vocab)
	}
	if merging {
		// The method's parameters are set above.
	} else if o.weights != "" {
		if opts.Weights, err = blend.ParseList(o.weights); err != nil {
			return usagef("--weights: %v", err)
		}
		if len(opts.Weights) != len(pos)-1 {
			return usagef("--weights has %d values for %d tuned models", len(opts.Weights), len(pos)-1)
		}
	} else if len(pos) > 2 {
		return usagef("%d tuned models need --weights w1,...,w%d (task arithmetic)", len(pos)-1, len(pos)-1)
	}
	var sweeps []recipe.Sweep
	switch {
	case merging:
	case o.alpha != "":
		first, sw, err := sweepList("alpha", "alpha", o.alpha, []string{"alpha"}, func(s string) (any, error) { return blend.ParseReal(s) })
		if err != nil {
			return err
		}
		opts.Alpha = first.(float64)
		if sw != nil {
			sweeps = append(sweeps, *sw)
		}
	case opts.Weights != nil:
		opts.Alpha = 1
	case o.schedule != "":
		return usagef("--alpha is required: it weights the tensors outside the layers (embeddings, head, final norm), which --alpha-schedule does not cover")
	default:
		return usagef("--alpha is required (0 = base, 1 = tuned)")
	}
	if o.schedule != "" {
		if opts.Schedule, err = blend.ParseList(o.schedule); err != nil {
			return usagef("--alpha-schedule: %v", err)
		}
	}

	o.op, o.sweeps = opts, sweeps
	return nil
}

func (o *blendOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	inputs, closeInputs, err := o.inp.openAll(pos)
	defer closeInputs()
	if err != nil {
		return err
	}
	if err := o.of.check(inputs[0]); err != nil {
		return err
	}
	if templated(o.of.out, o.sweeps) {
		return writeSweep(ctx, e, &o.of, o.op, inputs, nil, o.sweeps)
	}
	res, err := runOp(e, &o.of, o.op, ops.Inputs{Checkpoints: inputs})
	if err != nil {
		return err
	}
	return o.of.write(ctx, e, res.Out, describeWith(res), inputs...)
}
