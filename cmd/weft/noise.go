package main

import (
	"context"
	"encoding/json"
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
		synopsis: []string{`noise IN -o OUT --seed N (--std S | --relative K [--scale-by row|tensor] |
                  --neftune ALPHA --seq-len L) [--tokens SPEC] [--tensor PATTERN ...]
                  [--dist gaussian|uniform] [--dry-run] [--json] [--threads N] [--force]`},
		about: `Adds noise to rows of IN (any checkpoint weft reads) and writes OUT. By default the noise
goes on every row of the input token embedding (model.embed_tokens.weight, token_embd.weight,
...). With tied embeddings the output head is the same matrix, so it changes too (a note
says so on stderr; a head tensor stored separately gets the very same noise).

Rows that are not chosen keep their bytes exactly, even in quantized GGUF tensors; chosen
rows are decoded, noised in float64 and encoded once in the tensor's own type (unless the
output types below say otherwise).`,
		examples: []example{
			{line: "weft noise base -o base-noisy --seed 1 --std 0.01"},
			{line: "weft noise model.gguf -o noisy.gguf --seed 7 --relative 0.1 --tokens 100-199"},
			{line: "weft noise base -o neft --seed 3 --neftune 5 --seq-len 512"},
			{line: "weft noise base --seed 1,2,3 --std 0.01 -o 'noisy-{seed}'   # three outputs, one read",
				outputs: []string{"noisy-1", "noisy-2", "noisy-3"}},
		},
		newOptions: func() options { return &noiseOptions{} },
	}
}

// noiseOptions are weft noise's options.
type noiseOptions struct {
	seedS, stdS, scaleBy, dist, tokens string
	rel, neft                          float64
	seqLen                             int64
	asJSON                             bool
	tensors                            stringList
	of                                 outFlags
	inp                                inputFlags

	// set by validate
	fs     *flagSet
	sweeps []recipe.Sweep
	op     *noise.Options
	tl     *tokenList
}

func (o *noiseOptions) addFlags(fs *flagSet) {
	o.fs = fs
	fs.StringVar(&o.seedS, "seed", "", "required: the noise of row r of tensor T depends only on (`N`, T, r), so the output is the same at any --threads; several seeds (--seed 1,2,3) write one output each, together, to -o's template (-o 'noisy-{seed}')")
	fs.StringVar(&o.stdS, "std", "", "the standard deviation `S` of the noise; several values (--std 0.01,0.02) write one output each to -o's template ({std})")
	fs.Float64Var(&o.rel, "relative", 0, "the standard deviation is `K` x the row's own standard deviation, or with --scale-by tensor K x the whole tensor's")
	fs.StringVar(&o.scaleBy, "scale-by", "", "what --relative is relative to (`HOW`): row (default) or tensor")
	fs.Float64Var(&o.neft, "neftune", 0, "NEFTune's noise: uniform in [-m, m], m = `ALPHA` / sqrt(L x d), L from --seq-len, d the hidden size (the row length)")
	fs.Int64Var(&o.seqLen, "seq-len", 0, "the sequence length `L` of --neftune")
	fs.StringVar(&o.dist, "dist", "", "the noise's distribution `D`: gaussian (default) or uniform (uniform of standard deviation S is uniform in [-S sqrt(3), S sqrt(3)])")
	fs.StringVar(&o.tokens, "tokens", "", "only the rows of these tokens (`LIST`): "+tokensUsage)
	fs.Var(&o.tensors, "tensor", "noise these tensors instead of the embedding: a name, a glob (blk.*.attn_q.weight) or a group (embed, head, attn, mlp, norms) (`PATTERN`); repeatable")
	fs.BoolVar(&o.asJSON, "json", false, "print the report as JSON on stdout (with --dry-run: the plan alone)")
	o.of.add(fs)
	o.of.addTypes(fs)
	o.inp.add(fs)
}

func (o *noiseOptions) validate(e *env, pos []string) error {
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	e.spell("neftune_alpha", "neftune")
	e.spell("tensors", "tensor")
	if err := positive(o.fs.FlagSet, map[string]string{"std": "the standard deviation", "relative": "the relative standard deviation", "neftune": "NEFTune's alpha", "seq-len": "the sequence length"}); err != nil {
		return err
	}
	if o.seedS == "" {
		return usagef("--seed N (N >= 0) is required: it fixes the noise")
	}
	seed, sw, err := sweepList("seed", "seed", o.seedS, []string{"seed"}, func(s string) (any, error) {
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
		o.sweeps = append(o.sweeps, *sw)
	}
	std := any(0.0)
	if o.stdS != "" {
		if std, sw, err = sweepList("std", "std", o.stdS, []string{"std"}, func(s string) (any, error) {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%q: the standard deviation must be a positive number", s)
			}
			return v, nil
		}); err != nil {
			return err
		}
		if sw != nil {
			o.sweeps = append(o.sweeps, *sw)
		}
	}
	if o.of.out == "" && !o.of.dryRun {
		return usagef("an output is required: -o PATH")
	}
	if o.scaleBy != "" && o.rel == 0 {
		return usagef("--scale-by goes with --relative")
	}
	o.op = &noise.Options{Seed: seed.(int64), Std: std.(float64), Relative: o.rel, ScaleBy: o.scaleBy, Dist: o.dist,
		NEFTuneAlpha: o.neft, SeqLen: o.seqLen, Tensors: o.tensors}
	if o.op.Types, err = o.of.outputTypes(); err != nil {
		return err
	}
	if o.tokens != "" {
		if o.tl, err = parseTokenList("tokens", o.tokens); err != nil {
			return err
		}
	}
	return nil
}

func (o *noiseOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	var err error
	in, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	if o.op.Tokens, err = o.tl.resolve(in); err != nil {
		return err
	}
	if err := o.of.check(in); err != nil {
		return err
	}
	if templated(o.of.out, o.sweeps) {
		return writeSweep(ctx, e, &o.of, o.op, []*weft.Checkpoint{in}, nil, o.sweeps)
	}
	res, err := runOp(e, &o.of, o.op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}})
	if err != nil {
		return err
	}
	rep := res.Report.(*noise.Report)
	switch {
	case o.asJSON:
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	case o.of.dryRun:
		fmt.Fprint(e.stdout, rep.Describe())
	case !o.of.quiet:
		fmt.Fprint(e.stderr, rep.Describe())
	}
	if o.of.out == "" || (o.of.dryRun && o.asJSON) {
		return nil
	}
	return o.of.write(ctx, e, res.Out, describeWith(res), in)
}
