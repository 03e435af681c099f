package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/ablate"
	"github.com/weft-ml/weft/recipe"
)

// parseScale parses "attn=F,mlp=F" (either may be absent; "layer=F" sets both).
func parseScale(s string) (attn, mlp float64, err error) {
	attn, mlp = 1, 1
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return 0, 0, fmt.Errorf("--scale %q: item %q: want attn=F, mlp=F or layer=F", s, item)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f != f || f > 1e30 || f < -1e30 {
			return 0, 0, fmt.Errorf("--scale %q: %q is not a finite number", s, v)
		}
		if seen[k] {
			return 0, 0, fmt.Errorf("--scale %q: %s given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "attn", "attention":
			attn = f
		case "mlp", "ffn":
			mlp = f
		case "layer":
			attn, mlp = f, f
		default:
			return 0, 0, fmt.Errorf("--scale %q: %q is not attn, mlp or layer", s, k)
		}
	}
	if seen["layer"] && (seen["attn"] || seen["attention"] || seen["mlp"] || seen["ffn"]) {
		return 0, 0, fmt.Errorf("--scale %q: layer= sets both; do not combine it with attn= or mlp=", s)
	}
	return attn, mlp, nil
}

func ablateCmd() *command {
	return &command{
		name:    "ablate",
		summary: "drop, duplicate, zero, scale, perturb or replace layers; zero heads; project out a direction",
		synopsis: []string{`ablate IN -o OUT [--drop SPEC] [--duplicate SPEC] [--zero attn|mlp|layer]
                  [--scale attn=F,mlp=F] [--heads L:H,...] [--noise STD [--seed N]]
                  [--replace-from OTHER] [--project-out FILE [--weight W] [--embeddings]]
                  [--layers SPEC] [--dry-run [--json]] [--threads N] [--force]`},
		about: `Edits the layers (blocks) of IN, any checkpoint weft reads (safetensors, Hugging Face
directory, .bin, GGUF including quantized GGUF), and writes OUT (.safetensors, .gguf or a
directory). Layers are numbered from 0 and always named by their number in IN. A layer SPEC
is a list such as 1-3,7 (ranges inclusive) or "all".

--drop and --duplicate change the structure (the config's num_hidden_layers or GGUF
{arch}.block_count, and every per-layer list or array, such as layer_types or head_count_kv
arrays, follow). --zero, --scale, --noise, --replace-from and --project-out edit the layers in
--layers SPEC (applied to a layer's every copy; --layers each writes one output per layer,
each with the edits on that layer alone, to -o's template {layer}).

Edits combine per tensor in this order: --replace-from, --heads, --scale, --noise,
--project-out; --zero overrides them. Tensors nothing touches are copied byte for byte
(renumbered ones too). Quantized GGUF tensors that are edited are dequantized, edited in
float64 and quantized again in their own type (zeroed ones are that type's zeros; for
--heads only the blocks holding the heads are requantized).`,
		examples: []example{
			{line: "weft ablate base -o base-no-1-2 --drop 1-2"},
			{line: "weft ablate model.gguf -o deeper.gguf --duplicate 1-2"},
			{line: "weft ablate base -o probe --zero mlp --layers 1-2 --dry-run"},
			{line: "weft ablate model.gguf --drop each -o 'out/drop-{layer}.gguf'    # one output per layer",
				outputs: []string{"out/drop-0.gguf", "out/drop-3.gguf"}},
			{line: "weft ablate chat -o chat-abl --project-out refusal.safetensors --layers all --embeddings"},
			{line: "weft ablate chat -o chat-base-mlp --replace-from base --layers 2,3 --heads 0:1"},
		},
		newOptions: func() options { return &ablateOptions{} },
	}
}

// ablateOptions are weft ablate's options.
type ablateOptions struct {
	drop, dup, zero, scale, heads, replace, project, layers string
	noise, weight                                           float64
	seed                                                    int64
	embeddings, jsonOut                                     bool
	of                                                      outFlags
	inp                                                     inputFlags
	fs                                                      *flagSet

	// set by validate
	set    map[string]bool
	sa, sm float64
}

func (o *ablateOptions) addFlags(fs *flagSet) {
	o.fs = fs
	fs.StringVar(&o.drop, "drop", "", "remove these layers (`SPEC`); the others are renumbered contiguously; --drop each writes one output per layer, each without that layer, together, to -o's template: -o 'out/drop-{layer}.gguf'")
	fs.StringVar(&o.dup, "duplicate", "", "repeat blocks of layers right after themselves (a passthrough \"frankenmerge\", `SPEC`): 2-3 gives layers 0,1,2,3,2,3,4,...; an item may end in :K, the number of times the block appears in all (default 2): 1:3 gives 0,1,1,1,2,...; 2-3:3 gives 0,1,2,3,2,3,2,3,4,...")
	fs.StringVar(&o.zero, "zero", "", "zero the projection that writes to the residual stream (o_proj / attn_output, down_proj / ffn_down, with biases) of `attn|mlp|layer`: the sublayer then adds exactly nothing; layer = both")
	fs.StringVar(&o.scale, "scale", "", "multiply those projections, `attn=F,mlp=F` (either may be left out; layer=F sets both)")
	fs.Float64Var(&o.noise, "noise", 0, "add Gaussian noise to every floating-point weight of the layers: w + `STD` * std(w) * N(0,1), std(w) the tensor's own standard deviation")
	fs.Int64Var(&o.seed, "seed", 0, "fixes --noise's noise, whatever --threads is (`N`)")
	fs.StringVar(&o.replace, "replace-from", "", "take the layers from `OTHER`, a checkpoint with the same architecture and tensor names (e.g. the base's layers into a tuned model); names and shapes must match; types are converted to IN's")
	fs.StringVar(&o.project, "project-out", "", "remove the direction r in `FILE` (a .npy file or a safetensors file holding one vector [hidden], or one per layer [layers, hidden]; r is normalised) from what the layers write: M' = M - W r (r^T M) for each residual-writing matrix, b' = b - W r (r.b) for its bias")
	fs.Float64Var(&o.weight, "weight", 1, "the weight `W` of --project-out")
	fs.BoolVar(&o.embeddings, "embeddings", false, "--project-out also projects r out of every embedding row (then --layers may be left out)")
	fs.StringVar(&o.heads, "heads", "", "zero attention heads, `L:H,...`: head H of layer L is its slice of the output projection's input (columns h*hd..(h+1)*hd); 3:0-1,5:2 zeroes heads 0 and 1 of layer 3 and head 2 of layer 5; an item without a colon adds a head to the layer before it (3:0,2). Takes no --layers")
	fs.StringVar(&o.layers, "layers", "", "the layers (`SPEC`) that --zero, --scale, --noise, --replace-from and --project-out edit; each: one output per layer, to -o's template {layer}")
	fs.BoolVar(&o.jsonOut, "json", false, "print the plan (each output tensor's source, input layer -> output layer, and what happens to it, and the config or GGUF keys that change) as JSON, with or without --dry-run; --dry-run alone prints it as text (-o may then be left out)")
	o.of.add(fs)
	o.of.addTypes(fs)
	o.inp.add(fs)
}

func (o *ablateOptions) validate(e *env, pos []string) error {
	var err error
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	set := setFlags(o.fs.FlagSet)
	o.set = set
	needLayers := o.zero != "" || o.scale != "" || set["noise"] || o.replace != "" || (o.project != "" && !o.embeddings)
	usesLayers := o.zero != "" || o.scale != "" || set["noise"] || o.replace != "" || o.project != ""
	switch {
	case !usesLayers && o.drop == "" && o.dup == "" && o.heads == "":
		return usagef("nothing to do: give --drop, --duplicate, --zero, --scale, --heads, --noise, --replace-from or --project-out")
	case needLayers && o.layers == "":
		return usagef("--zero, --scale, --noise, --replace-from and --project-out act on the layers given by --layers SPEC")
	case o.layers != "" && !usesLayers:
		return usagef("--layers is for --zero, --scale, --noise, --replace-from and --project-out")
	case set["seed"] && !set["noise"]:
		return usagef("--seed is for --noise")
	case (set["weight"] || o.embeddings) && o.project == "":
		return usagef("--weight and --embeddings are for --project-out")
	case !o.of.dryRun && o.of.out == "":
		return usagef("an output is required: -o PATH")
	}
	if o.zero != "" {
		switch ablate.Sublayer(o.zero) {
		case ablate.Attn, ablate.MLP, ablate.Layer:
		default:
			return usagef("--zero %q: want attn, mlp or layer", o.zero)
		}
	}
	if o.scale != "" {
		if o.sa, o.sm, err = parseScale(o.scale); err != nil {
			return usagef("%v", err)
		}
	}
	if set["noise"] && !(o.noise > 0) {
		return usagef("--noise %v: want a positive standard deviation (relative to each tensor's)", o.noise)
	}
	if o.seed < 0 {
		return usagef("--seed %d: want a non-negative number", o.seed)
	}
	if o.drop == "each" && o.layers == "each" {
		return usagef("--drop each and --layers each: sweep one of them at a time")
	}
	return nil
}

func (o *ablateOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)

	in, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	n, err := ablate.NumLayers(in)
	if err != nil {
		return err
	}
	opts := &ablate.Options{}
	if opts.Types, err = o.of.outputTypes(); err != nil {
		return err
	}
	spec := func(flagName, s string) ([]int, error) {
		l, err := ablate.ParseSpec(s, n)
		if err != nil {
			return nil, usagef("--%s: %s", flagName, strings.TrimPrefix(err.Error(), "ablate: "))
		}
		return l, nil
	}
	var sweeps []recipe.Sweep
	if o.drop == "each" {
		sweeps = append(sweeps, recipe.Sweep{Name: "layer", Paths: [][]string{{"drop"}}, Each: true})
	} else if o.drop != "" {
		if opts.Drop, err = spec("drop", o.drop); err != nil {
			return err
		}
	}
	if o.dup != "" {
		if opts.Duplicate, err = ablate.ParseBlocks(o.dup, n); err != nil {
			return usagef("--duplicate: %s", strings.TrimPrefix(err.Error(), "ablate: "))
		}
	}
	if o.heads != "" {
		if opts.Heads, err = ablate.ParseHeads(o.heads, n); err != nil {
			return usagef("--heads: %s", strings.TrimPrefix(err.Error(), "ablate: "))
		}
	}
	var sel []int
	each := o.layers == "each"
	if o.layers != "" && !each {
		if sel, err = spec("layers", o.layers); err != nil {
			return err
		}
	}
	if o.zero != "" {
		opts.Zero = &ablate.Zero{What: ablate.Sublayer(o.zero), Layers: sel}
	}
	if o.scale != "" {
		opts.Scale = &ablate.Scale{Attn: o.sa, MLP: o.sm, Layers: sel}
	}
	if o.set["noise"] {
		opts.Noise = &ablate.Noise{Std: o.noise, Seed: o.seed, Layers: sel}
	}
	inputs := []*weft.Checkpoint{in}
	opIn := ops.Inputs{Checkpoints: inputs}
	if o.replace != "" {
		other, err := o.inp.open(o.replace)
		if err != nil {
			return err
		}
		defer other.Close()
		opts.Replace = &ablate.Replace{Layers: sel}
		inputs = append(inputs, other)
		opIn.Checkpoints = inputs
	}
	if o.project != "" {
		opts.Project = &ablate.Project{Source: filepath.Base(o.project), Layers: sel, Weight: o.weight, Embeddings: o.embeddings}
		opIn.Files = []string{o.project}
	}
	if each {
		sw := recipe.Sweep{Name: "layer", Each: true}
		for _, k := range []struct {
			set  bool
			name string
		}{{opts.Zero != nil, "zero"}, {opts.Scale != nil, "scale"}, {opts.Noise != nil, "noise"}, {opts.Replace != nil, "replace_from"}, {opts.Project != nil, "project_out"}} {
			if k.set {
				sw.Paths = append(sw.Paths, []string{k.name, "layers"})
			}
		}
		sweeps = append(sweeps, sw)
	}
	if err := o.of.check(in); err != nil {
		return err
	}
	if templated(o.of.out, sweeps) {
		if o.of.out == "" {
			return usagef("a sweep (each) needs -o, a template such as 'out/drop-{layer}.gguf'")
		}
		return writeSweep(ctx, e, &o.of, opts, inputs, opIn.Files, sweeps)
	}
	r, err := ops.Run(opts, opIn, targetFormat(o.of.out, in))
	if err != nil {
		return flagErr(err)
	}
	if err := o.of.check(r.Out); err != nil {
		return err
	}
	plan := r.Report.(*ablate.Plan)
	if o.of.dryRun {
		if o.of.out != "" {
			wo, err := o.of.options(e, inputs...)
			if err != nil {
				return err
			}
			if _, err := ckpt.MakePlan(r.Out, o.of.out, wo); err != nil {
				return err
			}
		}
		if o.jsonOut {
			return plan.WriteJSON(e.stdout)
		}
		return plan.WriteText(e.stdout)
	}
	if !o.of.quiet {
		for _, note := range r.Notes {
			fmt.Fprintf(e.stderr, "note: %s\n", note)
		}
	}
	if err := o.of.write(ctx, e, r.Out, describeWith(r), inputs...); err != nil {
		return err
	}
	if o.jsonOut {
		return plan.WriteJSON(e.stdout)
	}
	return nil
}
