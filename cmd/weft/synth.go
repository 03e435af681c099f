package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/internal/text"
)

func synthCmd() *command {
	return &command{
		name:     "synth",
		summary:  "write a synthetic Llama-style checkpoint (for demos, tests and benchmarks)",
		synopsis: []string{"synth -o OUT [--size S | --tiny] [--seed N] [--related-to SEED] [--dtype T]\n                  [--max-shard-size S] [--force] [--quiet]"},
		about: `Writes a deterministic random Llama-shaped model: a Hugging Face directory (config.json,
word-level tokenizer.json, safetensors) or, with a .safetensors name, a single file, or with a
.gguf name a GGUF file with llama.cpp tensor names and llama key-values.`,
		examples: []example{
			{line: "weft synth --tiny --seed 1 -o demo/base"},
			{line: "weft synth --tiny --seed 2 --related-to 1 -o demo/tuned"},
			{line: "weft synth --tiny -o demo.gguf"},
			{line: "weft synth --tiny --dtype f16 --max-shard-size 100KB -o demo/sharded"},
		},
		newOptions: func() options { return &synthOptions{} },
	}
}

// synthOptions are weft synth's options.
type synthOptions struct {
	out, size, dtype, shard string
	tiny, force, quiet      bool
	seed, related           uint64
	dt                      weft.DType // set by validate
}

func (o *synthOptions) addFlags(fs *flagSet) {
	fs.StringVar(&o.out, "o", "", "the output `PATH`: a directory (Hugging Face layout), a .safetensors file or a .gguf file")
	fs.StringVar(&o.size, "size", "", "make the weights about `S` bytes (5GB, 500MB, 2GiB, ...): a 2048-wide model with as many layers as that takes")
	fs.BoolVar(&o.tiny, "tiny", false, "a tiny model: 4 layers, hidden size 64, a 256-word vocabulary")
	fs.Uint64Var(&o.seed, "seed", 1, "the random weights' seed `N`: the same seed, the same bytes")
	fs.Uint64Var(&o.related, "related-to", 0, "make a \"tuned\" model: the model of seed `SEED` plus small noise from --seed")
	fs.StringVar(&o.dtype, "dtype", "bf16", "the weights' type `T`: f32, f16 or bf16")
	fs.StringVar(&o.shard, "max-shard-size", "", "shard safetensors output into files of at most `S` bytes")
	fs.BoolVar(&o.force, "force", false, "replace an existing output that weft wrote")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar and no summary on stderr")
}

func (o *synthOptions) validate(e *env, pos []string) error {
	if len(pos) != 0 || o.out == "" {
		return usagef("want -o OUT and no positional arguments")
	}
	dt, err := weft.ParseDType(o.dtype)
	if err != nil || !dt.Float() {
		return usagef("--dtype %s: want f32, f16 or bf16", quoteArg(o.dtype))
	}
	o.dt = dt
	if o.tiny == (o.size != "") {
		return usagef("give exactly one of --tiny and --size")
	}
	if o.size != "" {
		if _, err := sizeFlag("size", o.size); err != nil {
			return err
		}
	}
	if o.shard != "" {
		if _, err := sizeFlag("max-shard-size", o.shard); err != nil {
			return err
		}
	}
	return nil
}

func (o *synthOptions) run(ctx context.Context, e *env, pos []string) error {
	var err error
	var s synth.Spec
	switch {
	case o.tiny:
		s = synth.Tiny(o.seed)
		s.DType = o.dt
	default:
		n, err := sizeFlag("size", o.size)
		if err != nil {
			return err
		}
		s = synth.Sized(n, o.dt, o.seed)
	}
	s.Related = o.related
	s.GGUF = strings.HasSuffix(strings.ToLower(o.out), ".gguf")
	if o.shard != "" {
		if s.MaxShardSize, err = sizeFlag("max-shard-size", o.shard); err != nil {
			return err
		}
	}
	kind, err := ckpt.OutputKind(o.out)
	if err != nil {
		return err
	}
	c := s.Checkpoint()
	if kind != ckpt.KindHFDir {
		c.SideFiles = nil // a lone file is the weights alone: no config or tokenizer is made for it
	}
	plan, err := ckpt.MakePlan(c, o.out, ckpt.WriteOptions{MaxShardSize: s.MaxShardSize})
	if err != nil {
		return err
	}
	bar := e.newProgress("writing", o.quiet)
	defer bar.finish()
	opts := ckpt.WriteOptions{MaxShardSize: s.MaxShardSize, Force: o.force, Progress: bar.fn(), Note: func(msg string) { fmt.Fprintf(e.stderr, "note: %s\n", msg) }}
	e.writing = true
	if err := ckpt.Execute(ctx, c, plan, opts); err != nil {
		return err
	}
	if !o.quiet {
		fmt.Fprintf(e.stderr, "wrote %s (%d tensors, %s)\n", plan.Written(), len(c.Tensors), text.Bytes(plan.Total))
	}
	return nil
}
