package main

import (
	"context"
	"flag"
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

func ablateCmd() *command {
	return &command{
		name:    "ablate",
		summary: "drop, duplicate, zero, scale, perturb or replace layers; zero heads; project out a direction",
		usage: `Usage: weft ablate IN -o OUT [--drop SPEC] [--duplicate SPEC] [--zero attn|mlp|layer]
                  [--scale attn=F,mlp=F] [--heads L:H,...] [--noise STD [--seed N]]
                  [--replace-from OTHER] [--project-out FILE [--weight W] [--embeddings]]
                  [--layers SPEC] [--dry-run [--json]] [--threads N] [--force]

Edits the layers (blocks) of IN, any checkpoint weft reads (safetensors, Hugging Face
directory, .bin, GGUF including quantized GGUF), and writes OUT (.safetensors, .gguf or a
directory). Layers are numbered from 0 and always named by their number in IN. A layer SPEC
is a list such as 1-3,7 (ranges inclusive) or "all".

Structure (the config's num_hidden_layers or GGUF {arch}.block_count, and every per-layer
list or array, such as layer_types or head_count_kv arrays, follow):
  --drop SPEC          remove these layers; the others are renumbered contiguously;
                       --drop each writes one output per layer, each without that layer,
                       together, to -o's template: -o 'out/drop-{layer}.gguf'
  --duplicate SPEC     repeat blocks of layers right after themselves (a passthrough
                       "frankenmerge"): 2-3 gives layers 0,1,2,3,2,3,4,...; an item may end in
                       :K, the number of times the block appears in all (default 2):
                       1:3 gives 0,1,1,1,2,...; 2-3:3 gives 0,1,2,3,2,3,2,3,4,...

Edits of the layers in --layers SPEC (applied to a layer's every copy; --layers each writes
one output per layer, each with the edits on that layer alone, to -o's template {layer}):
  --zero attn|mlp|layer   zero the projection that writes to the residual stream (o_proj /
                       attn_output, down_proj / ffn_down, with biases): the sublayer then adds
                       exactly nothing; layer = both
  --scale attn=F,mlp=F multiply those projections (either may be left out; layer=F sets both)
  --noise STD          add Gaussian noise to every floating-point weight of the layers:
                       w + STD * std(w) * N(0,1), std(w) the tensor's own standard deviation;
                       --seed N (default 0) fixes the noise, whatever --threads is
  --replace-from OTHER take the layers from OTHER, a checkpoint with the same architecture and
                       tensor names (e.g. the base's layers into a tuned model); names and
                       shapes must match; types are converted to IN's
  --project-out FILE   remove the direction r in FILE (a .npy file or a safetensors file
                       holding one vector [hidden], or one per layer [layers, hidden]; r is
                       normalised) from what the layers write: M' = M - W r (r^T M) for each
                       residual-writing matrix, b' = b - W r (r.b) for its bias; --weight W
                       (default 1); --embeddings also projects r out of every embedding row
                       (then --layers may be left out)
  --heads L:H,...      zero attention heads: head H of layer L is its slice of the output
                       projection's input (columns h*hd..(h+1)*hd); 3:0-1,5:2 zeroes heads 0
                       and 1 of layer 3 and head 2 of layer 5; an item without a colon adds a
                       head to the layer before it (3:0,2). Takes no --layers.

Edits combine per tensor in this order: --replace-from, --heads, --scale, --noise,
--project-out; --zero overrides them. Tensors nothing touches are copied byte for byte
(renumbered ones too). Quantized GGUF tensors that are edited are dequantized, edited in
float64 and quantized again in their own type (zeroed ones are that type's zeros; for
--heads only the blocks holding the heads are requantized).

Output:
  --dry-run            print, for each output tensor, its source (input layer -> output
                       layer) and what happens to it (copy, zero, scale 0.5, noise, project,
                       from OTHER), and the config or GGUF keys that change; write nothing
                       (-o may then be left out)
  --json               print that plan as JSON (with or without --dry-run)
  --threads N, --max-shard-size S, --split-max-size S, --force, --quiet: as in convert
` + typesUsage + inputUsage + `
Example:
  weft ablate Llama-3.1-8B -o llama-no-20-23 --drop 20-23
  weft ablate model.gguf -o deeper.gguf --duplicate 8-15
  weft ablate model -o probe --zero mlp --layers 10-12 --dry-run
  weft ablate model.gguf --drop each -o 'out/drop-{layer}.gguf'    # one output per layer
  weft ablate chat -o chat-abl --project-out refusal.npy --layers all --embeddings
`,
		run: runAblate,
	}
}

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

func runAblate(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("ablate", flag.ContinueOnError)
	var of outFlags
	of.add(fs)
	of.addTypes(fs)
	drop := fs.String("drop", "", "")
	dup := fs.String("duplicate", "", "")
	zero := fs.String("zero", "", "")
	scale := fs.String("scale", "", "")
	heads := fs.String("heads", "", "")
	noise := fs.Float64("noise", 0, "")
	seed := fs.Int64("seed", 0, "")
	replace := fs.String("replace-from", "", "")
	project := fs.String("project-out", "", "")
	weight := fs.Float64("weight", 1, "")
	embeddings := fs.Bool("embeddings", false, "")
	layers := fs.String("layers", "", "")
	jsonOut := fs.Bool("json", false, "")
	var inp inputFlags
	inp.add(ctx, fs, e)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	needLayers := *zero != "" || *scale != "" || set["noise"] || *replace != "" || (*project != "" && !*embeddings)
	usesLayers := *zero != "" || *scale != "" || set["noise"] || *replace != "" || *project != ""
	switch {
	case !usesLayers && *drop == "" && *dup == "" && *heads == "":
		return usagef("nothing to do: give --drop, --duplicate, --zero, --scale, --heads, --noise, --replace-from or --project-out")
	case needLayers && *layers == "":
		return usagef("--zero, --scale, --noise, --replace-from and --project-out act on the layers given by --layers SPEC")
	case *layers != "" && !usesLayers:
		return usagef("--layers is for --zero, --scale, --noise, --replace-from and --project-out")
	case set["seed"] && !set["noise"]:
		return usagef("--seed is for --noise")
	case (set["weight"] || *embeddings) && *project == "":
		return usagef("--weight and --embeddings are for --project-out")
	case !of.dryRun && of.out == "":
		return usagef("an output is required: -o PATH")
	}
	if *zero != "" {
		switch ablate.Sublayer(*zero) {
		case ablate.Attn, ablate.MLP, ablate.Layer:
		default:
			return usagef("--zero %q: want attn, mlp or layer", *zero)
		}
	}
	var sa, sm float64
	if *scale != "" {
		if sa, sm, err = parseScale(*scale); err != nil {
			return usagef("%v", err)
		}
	}
	if set["noise"] && !(*noise > 0) {
		return usagef("--noise %v: want a positive standard deviation (relative to each tensor's)", *noise)
	}
	if *seed < 0 {
		return usagef("--seed %d: want a non-negative number", *seed)
	}

	in, err := inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	n, err := ablate.NumLayers(in)
	if err != nil {
		return err
	}
	opts := &ablate.Options{}
	if opts.Types, err = of.outputTypes(); err != nil {
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
	if *drop == "each" && *layers == "each" {
		return usagef("--drop each and --layers each: sweep one of them at a time")
	}
	if *drop == "each" {
		sweeps = append(sweeps, recipe.Sweep{Name: "layer", Paths: [][]string{{"drop"}}, Each: true})
	} else if *drop != "" {
		if opts.Drop, err = spec("drop", *drop); err != nil {
			return err
		}
	}
	if *dup != "" {
		if opts.Duplicate, err = ablate.ParseBlocks(*dup, n); err != nil {
			return usagef("--duplicate: %s", strings.TrimPrefix(err.Error(), "ablate: "))
		}
	}
	if *heads != "" {
		if opts.Heads, err = ablate.ParseHeads(*heads, n); err != nil {
			return usagef("--heads: %s", strings.TrimPrefix(err.Error(), "ablate: "))
		}
	}
	var sel []int
	each := *layers == "each"
	if *layers != "" && !each {
		if sel, err = spec("layers", *layers); err != nil {
			return err
		}
	}
	if *zero != "" {
		opts.Zero = &ablate.Zero{What: ablate.Sublayer(*zero), Layers: sel}
	}
	if *scale != "" {
		opts.Scale = &ablate.Scale{Attn: sa, MLP: sm, Layers: sel}
	}
	if set["noise"] {
		opts.Noise = &ablate.Noise{Std: *noise, Seed: *seed, Layers: sel}
	}
	inputs := []*weft.Checkpoint{in}
	opIn := ops.Inputs{Checkpoints: inputs}
	if *replace != "" {
		other, err := inp.open(*replace)
		if err != nil {
			return err
		}
		defer other.Close()
		opts.Replace = &ablate.Replace{Layers: sel}
		inputs = append(inputs, other)
		opIn.Checkpoints = inputs
	}
	if *project != "" {
		opts.Project = &ablate.Project{Source: filepath.Base(*project), Layers: sel, Weight: *weight, Embeddings: *embeddings}
		opIn.Files = []string{*project}
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
	if err := of.check(in); err != nil {
		return err
	}
	if templated(of.out, sweeps) {
		if of.out == "" {
			return usagef("a sweep (each) needs -o, a template such as 'out/drop-{layer}.gguf'")
		}
		return writeSweep(ctx, e, &of, opts, inputs, opIn.Files, sweeps)
	}
	r, err := ops.Run(opts, opIn, targetFormat(of.out, in))
	if err != nil {
		return flagErr(err)
	}
	if err := of.check(r.Out); err != nil {
		return err
	}
	plan := r.Report.(*ablate.Plan)
	if of.dryRun {
		if of.out != "" {
			wo, err := of.options(e, inputs...)
			if err != nil {
				return err
			}
			if _, err := ckpt.MakePlan(r.Out, of.out, wo); err != nil {
				return err
			}
		}
		if *jsonOut {
			return plan.WriteJSON(e.stdout)
		}
		return plan.WriteText(e.stdout)
	}
	if !of.quiet {
		for _, note := range r.Notes {
			fmt.Fprintf(e.stderr, "note: %s\n", note)
		}
	}
	if err := of.write(ctx, e, r.Out, describeWith(r), inputs...); err != nil {
		return err
	}
	if *jsonOut {
		return plan.WriteJSON(e.stdout)
	}
	return nil
}
