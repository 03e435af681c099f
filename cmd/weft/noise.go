package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"strconv"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
	"github.com/weft-ml/weft/recipe"
)

func noiseCmd() *command {
	return &command{
		name:    "noise",
		summary: "add Gaussian, uniform or NEFTune noise to embedding rows (or other tensors)",
		usage: `Usage: weft noise IN -o OUT --seed N (--std S | --relative K [--scale-by row|tensor] |
                  --neftune ALPHA --seq-len L) [--tokens SPEC] [--tensor PATTERN ...]
                  [--dist gaussian|uniform] [--dry-run] [--json] [--threads N] [--force]

Adds noise to rows of IN (any checkpoint weft reads) and writes OUT. By default the noise
goes on every row of the input token embedding (model.embed_tokens.weight, token_embd.weight,
...). With tied embeddings the output head is the same matrix, so it changes too (a note
says so on stderr; a head tensor stored separately gets the very same noise).

  --seed N             required: the noise of row r of tensor T depends only on (N, T, r),
                       so the output is the same at any --threads; several seeds
                       (--seed 1,2,3) write one output each, together, to -o's template
                       (-o 'noisy-{seed}'); --std takes several values likewise ({std})
  --std S              standard deviation of the noise
  --relative K         standard deviation K x the row's own standard deviation, or with
                       --scale-by tensor K x the whole tensor's
  --neftune ALPHA      NEFTune's noise: uniform in [-m, m], m = ALPHA / sqrt(L x d), d the
  --seq-len L          hidden size (the row length)
  --dist D             gaussian (default) or uniform (uniform of standard deviation S is
                       uniform in [-S sqrt(3), S sqrt(3)])
  --tokens LIST        only the rows of these tokens: ` + tokensUsage + `
  --tensor PATTERN     noise these tensors instead of the embedding: a name, a glob
                       (blk.*.attn_q.weight) or a group (embed, head, attn, mlp, norms);
                       repeatable
  --dry-run            print the plan and write nothing; --json prints the report as JSON
  --threads N, --max-shard-size S, --split-max-size S, --force, --quiet: as in convert
` + typesUsage + `
Rows that are not chosen keep their bytes exactly, even in quantized GGUF tensors; chosen
rows are decoded, noised in float64 and encoded once in the tensor's own type.
` + inputUsage + `
Example:
  weft noise Llama-3.1-8B -o llama-noisy --seed 1 --std 0.01
  weft noise model.gguf -o noisy.gguf --seed 7 --relative 0.1 --tokens 100-199
  weft noise model -o neft --seed 3 --neftune 5 --seq-len 512
`,
		run: runNoise,
	}
}

func runNoise(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("noise", flag.ContinueOnError)
	var of outFlags
	of.add(fs)
	of.addTypes(fs)
	seedS := fs.String("seed", "", "")
	stdS := fs.String("std", "", "")
	rel := fs.Float64("relative", 0, "")
	scaleBy := fs.String("scale-by", "", "")
	neft := fs.Float64("neftune", 0, "")
	seqLen := fs.Int64("seq-len", 0, "")
	dist := fs.String("dist", "", "")
	tokens := fs.String("tokens", "", "")
	asJSON := fs.Bool("json", false, "")
	var tensors stringList
	fs.Var(&tensors, "tensor", "")
	var inp inputFlags
	inp.add(ctx, fs, e)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	e.spell("neftune_alpha", "neftune")
	e.spell("tensors", "tensor")
	if err := positive(fs, map[string]string{"std": "the standard deviation", "relative": "the relative standard deviation", "neftune": "NEFTune's alpha", "seq-len": "the sequence length"}); err != nil {
		return err
	}
	if *seedS == "" {
		return usagef("--seed N (N >= 0) is required: it fixes the noise")
	}
	var sweeps []recipe.Sweep
	seed, sw, err := sweepList("seed", "seed", *seedS, []string{"seed"}, func(s string) (any, error) {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q: want N >= 0", s)
		}
		return v, nil
	})
	if err != nil {
		return err
	}
	if sw != nil {
		sweeps = append(sweeps, *sw)
	}
	std := any(0.0)
	if *stdS != "" {
		if std, sw, err = sweepList("std", "std", *stdS, []string{"std"}, func(s string) (any, error) {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%q: the standard deviation must be a positive number", s)
			}
			return v, nil
		}); err != nil {
			return err
		}
		if sw != nil {
			sweeps = append(sweeps, *sw)
		}
	}
	if of.out == "" && !of.dryRun {
		return usagef("an output is required: -o PATH")
	}
	if *scaleBy != "" && *rel == 0 {
		return usagef("--scale-by goes with --relative")
	}
	opts := &noise.Options{Seed: seed.(int64), Std: std.(float64), Relative: *rel, ScaleBy: *scaleBy, Dist: *dist,
		NEFTuneAlpha: *neft, SeqLen: *seqLen, Tensors: tensors}
	if opts.Types, err = of.outputTypes(); err != nil {
		return err
	}
	var tl *tokenList
	if *tokens != "" {
		if tl, err = parseTokenList("tokens", *tokens); err != nil {
			return err
		}
	}
	in, err := inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	if opts.Tokens, err = tl.resolve(in); err != nil {
		return err
	}
	if err := of.check(in); err != nil {
		return err
	}
	if templated(of.out, sweeps) {
		return writeSweep(ctx, e, &of, opts, []*weft.Checkpoint{in}, nil, sweeps)
	}
	res, err := runOp(e, &of, opts, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}})
	if err != nil {
		return err
	}
	rep := res.Report.(*noise.Report)
	switch {
	case *asJSON:
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	case of.dryRun:
		fmt.Fprint(e.stdout, rep.Describe())
	case !of.quiet:
		fmt.Fprint(e.stderr, rep.Describe())
	}
	if of.out == "" || (of.dryRun && *asJSON) {
		return nil
	}
	return of.write(ctx, e, res.Out, describeWith(res), in)
}
