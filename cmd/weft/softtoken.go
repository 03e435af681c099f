package main

import (
	"context"
	"flag"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/glitch"
)

func softTokenCmd() *command {
	return &command{
		name:    "soft-token",
		summary: "draw noise vectors in a model's embedding space, for inputs_embeds",
		usage: `Usage: weft soft-token IN -o FILE.safetensors --count N --seed N
                       [--match diag|mvn|normal:STD] [--name TENSOR] [--dtype T] [--force]

Writes a safetensors file with one F32 tensor [N, d] ("soft_tokens" unless --name says
otherwise): N vectors in the space of IN's input embedding, matched to the statistics of its
token rows (padding rows past the tokenizer left out), to feed a model as inputs_embeds.
  --match diag         each dimension's mean and standard deviation (default)
  --match mvn          the mean and the full covariance of the rows (drawn as
                       mean + sum_i z_i (x_i - mean) / sqrt(n), which has exactly that
                       covariance, without forming the d x d matrix)
  --match normal:STD   N(0, STD^2) in every dimension, unmatched
  --seed N             required: vector k depends only on (N, the tensor name, k)
  --dtype T            the vectors' type (F32 by default; bf16, f16, ...)
` + inputUsage + `
Example:
  weft soft-token Llama-3.1-8B -o soft.safetensors --count 16 --seed 1 --match mvn
`,
		run: runSoftToken,
	}
}

func runSoftToken(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("soft-token", flag.ContinueOnError)
	var of outFlags
	of.add(fs)
	of.addTypes(fs)
	count := fs.Int64("count", 0, "")
	seed := fs.Int64("seed", -1, "")
	match := fs.String("match", "diag", "")
	name := fs.String("name", glitch.DefaultSoftTokenName, "")
	var inp inputFlags
	inp.add(ctx, fs, e)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	if err := positive(fs, map[string]string{"count": "the number of vectors"}); err != nil {
		return err
	}
	if *count <= 0 {
		return usagef("--count N (N >= 1) is required")
	}
	if *seed < 0 {
		return usagef("--seed N (N >= 0) is required: it fixes the vectors")
	}
	if !strings.HasSuffix(strings.ToLower(of.out), ".safetensors") {
		return usagef("-o must name a .safetensors file, got %q", of.out)
	}
	if m := strings.TrimSpace(*match); m != "diag" && m != "mvn" {
		if spec, err := glitch.ParseInit(m); err != nil || spec.Kind != glitch.InitNormal || !strings.Contains(m, ":") {
			return usagef("--match %q: want diag, mvn or normal:STD", *match)
		}
	}
	in, err := inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	opts := &glitch.SoftOptions{Count: *count, Seed: *seed, Match: *match, Name: *name}
	if opts.Types, err = of.outputTypes(); err != nil {
		return err
	}
	res, err := runOp(e, &of, opts, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}})
	if err != nil {
		return err
	}
	return of.write(ctx, e, res.Out, nil, in)
}
