package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/synth"
)

func synthCmd() *command {
	return &command{
		name:    "synth",
		summary: "write a synthetic Llama-style checkpoint (for demos, tests and benchmarks)",
		usage: `Usage: weft synth -o OUT [--size S | --tiny] [--seed N] [--related-to SEED] [--dtype T]
                  [--max-shard-size S] [--force] [--quiet]

Writes a deterministic random Llama-shaped model: a Hugging Face directory (config.json,
word-level tokenizer.json, safetensors) or, with a .safetensors name, a single file, or with a
.gguf name a GGUF file with llama.cpp tensor names and llama key-values.
--related-to SEED makes a "tuned" model: the model of SEED plus small noise from --seed.

Example:
  weft synth --tiny --seed 1 -o demo/base
  weft synth --tiny --seed 2 --related-to 1 -o demo/tuned
  weft synth --size 2GB --dtype bf16 -o /tmp/big
`,
		run: runSynth,
	}
}

func runSynth(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("synth", flag.ContinueOnError)
	out := fs.String("o", "", "")
	size := fs.String("size", "", "")
	tiny := fs.Bool("tiny", false, "")
	seed := fs.Uint64("seed", 1, "")
	related := fs.Uint64("related-to", 0, "")
	dtype := fs.String("dtype", "bf16", "")
	shard := fs.String("max-shard-size", "", "")
	force := fs.Bool("force", false, "")
	quiet := fs.Bool("quiet", false, "")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *out == "" {
		return usagef("want -o OUT and no positional arguments")
	}
	dt, err := weft.ParseDType(*dtype)
	if err != nil || !dt.Float() {
		return usagef("--dtype %s: want f32, f16 or bf16", quoteArg(*dtype))
	}
	var s synth.Spec
	switch {
	case *tiny == (*size != ""):
		return usagef("give exactly one of --tiny and --size")
	case *tiny:
		s = synth.Tiny(*seed)
		s.DType = dt
	default:
		n, err := sizeFlag("size", *size)
		if err != nil {
			return err
		}
		s = synth.Sized(n, dt, *seed)
	}
	s.Related = *related
	s.GGUF = strings.HasSuffix(strings.ToLower(*out), ".gguf")
	if *shard != "" {
		if s.MaxShardSize, err = sizeFlag("max-shard-size", *shard); err != nil {
			return err
		}
	}
	kind, err := ckpt.OutputKind(*out)
	if err != nil {
		return err
	}
	c := s.Checkpoint()
	if kind != ckpt.KindHFDir {
		c.SideFiles = nil // a lone file is the weights alone: no config or tokenizer is made for it
	}
	plan, err := ckpt.MakePlan(c, *out, ckpt.WriteOptions{MaxShardSize: s.MaxShardSize})
	if err != nil {
		return err
	}
	bar := e.newProgress("writing", *quiet)
	defer bar.finish()
	opts := ckpt.WriteOptions{MaxShardSize: s.MaxShardSize, Force: *force, Progress: bar.fn(), Note: func(msg string) { fmt.Fprintf(e.stderr, "note: %s\n", msg) }}
	e.writing = true
	if err := ckpt.Execute(ctx, c, plan, opts); err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintf(e.stderr, "wrote %s (%d tensors, %s)\n", plan.Written(), len(c.Tensors), humanBytes(plan.Total))
	}
	return nil
}
