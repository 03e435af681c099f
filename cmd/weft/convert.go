package main

import (
	"context"
	"flag"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/convert"
)

func convertCmd() *command {
	return &command{
		name:    "convert",
		summary: "cast dtypes, quantize GGUF, turn .bin into safetensors, reshard, change formats",
		usage: `Usage: weft convert IN -o OUT [--dtype T] [--type-for PATTERN=T ...] [--max-shard-size S]
                    [--split-max-size S] [--split-max-tensors N] [--keep-tied] [--dry-run]
                    [--threads N] [--force]

Writes IN in the format OUT names: a .safetensors file, a .gguf file, or a directory
(a Hugging Face directory: safetensors shards, index, and IN's side files, with config.json's
torch_dtype updated). IN is any checkpoint weft reads.

` + typesUsage + `  --max-shard-size S   shard safetensors output into files of at most S
  --split-max-size S   split GGUF output into parts of at most S, as gguf-split does
                       (NAME-00001-of-0000N.gguf)
  --split-max-tensors N  split GGUF output into parts of at most N tensors (gguf-split's
                       option; with --split-max-size a part ends at the first limit)
  --keep-tied          keep both names of tensors sharing a storage in a .bin (by default
                       the duplicate is dropped as transformers' save_pretrained does: the
                       output head is dropped and tie_word_embeddings restores it on load)
Sizes are written as gguf-split and Hugging Face write them, in any case: 2G and 500M
(gguf-split: M = 10^6 bytes, G = 10^9), 5GB and 500MB (powers of 1000), 2GiB and 512MiB
(powers of 1024), 1.5GB, or a number of bytes.
` + inputUsage + `
Example:
  weft convert pytorch_model.bin -o model.safetensors --dtype bf16
  weft convert model-f16.gguf -o model-Q4_K_M.gguf --dtype Q4_K_M --imatrix imatrix.gguf
`,
		run: runConvert,
	}
}

func runConvert(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	var of outFlags
	of.add(fs)
	of.addTypes(fs)
	keepTied := fs.Bool("keep-tied", false, "")
	var inp inputFlags
	inp.add(ctx, fs, e)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	if of.out == "" {
		return usagef("an output is required: -o PATH")
	}
	opts := &convert.Options{KeepTied: *keepTied}
	if opts.Types, err = of.outputTypes(); err != nil {
		return err
	}
	in, err := inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	if _, err := ckpt.OutputKind(of.out); err != nil {
		return err
	}
	if err := of.check(in); err != nil {
		return err
	}
	res, err := runOp(e, &of, opts, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}})
	if err != nil {
		return err
	}
	return of.write(ctx, e, res.Out, describeWith(res), in)
}
