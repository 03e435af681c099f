package main

import (
	"context"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/glitch"
)

func softTokenCmd() *command {
	return &command{
		name:     "soft-token",
		summary:  "draw noise vectors in a model's embedding space, for inputs_embeds",
		synopsis: []string{"soft-token IN -o FILE.safetensors --count N --seed N\n                       [--match diag|mvn|normal:STD] [--name TENSOR] [--dtype T] [--force]"},
		about: `Writes a safetensors file with one F32 tensor [N, d] ("soft_tokens" unless --name says
otherwise): N vectors in the space of IN's input embedding, matched to the statistics of its
token rows (padding rows past the tokenizer left out), to feed a model as inputs_embeds.`,
		examples: []example{
			{line: "weft soft-token base -o soft.safetensors --count 16 --seed 1 --match mvn"},
			{line: "weft soft-token model.gguf -o soft-bf16.safetensors --count 4 --seed 2 --dtype bf16"},
		},
		newOptions: func() options { return &softTokenOptions{} },
	}
}

// softTokenOptions are weft soft-token's options.
type softTokenOptions struct {
	count, seed int64
	match, name string
	of          outFlags
	inp         inputFlags
	fs          *flagSet
}

func (o *softTokenOptions) addFlags(fs *flagSet) {
	o.fs = fs
	fs.Int64Var(&o.count, "count", 0, "required: the number `N` of vectors")
	fs.Int64Var(&o.seed, "seed", -1, "required: vector k depends only on (`N`, the tensor name, k)")
	fs.StringVar(&o.match, "match", "diag", "what the vectors match (`HOW`):\ndiag: each dimension's mean and standard deviation;\nmvn: the mean and the full covariance of the rows (drawn as mean + sum_i z_i (x_i - mean) / sqrt(n), which has exactly that covariance, without forming the d x d matrix);\nnormal:STD: N(0, STD^2) in every dimension, unmatched")
	fs.StringVar(&o.name, "name", glitch.DefaultSoftTokenName, "the output tensor's `NAME`")
	o.of.add(fs)
	o.of.addTypes(fs)
	o.inp.add(fs)
}

func (o *softTokenOptions) validate(e *env, pos []string) error {
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	if err := positive(o.fs.FlagSet, map[string]string{"count": "the number of vectors"}); err != nil {
		return err
	}
	if o.count <= 0 {
		return usagef("--count N (N >= 1) is required")
	}
	if o.seed < 0 {
		return usagef("--seed N (N >= 0) is required: it fixes the vectors")
	}
	if !strings.HasSuffix(strings.ToLower(o.of.out), ".safetensors") {
		return usagef("-o must name a .safetensors file, got %q", o.of.out)
	}
	if m := strings.TrimSpace(o.match); m != "diag" && m != "mvn" {
		if spec, err := glitch.ParseInit(m); err != nil || spec.Kind != glitch.InitNormal || !strings.Contains(m, ":") {
			return usagef("--match %q: want diag, mvn or normal:STD", o.match)
		}
	}
	return nil
}

func (o *softTokenOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	in, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	opts := &glitch.SoftOptions{Count: o.count, Seed: o.seed, Match: o.match, Name: o.name}
	if opts.Types, err = o.of.outputTypes(); err != nil {
		return err
	}
	res, err := runOp(e, &o.of, opts, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}})
	if err != nil {
		return err
	}
	return o.of.write(ctx, e, res.Out, nil, in)
}
