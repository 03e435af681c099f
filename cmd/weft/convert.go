package main

import (
	"context"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/convert"
)

func convertCmd() *command {
	return &command{
		name:     "convert",
		summary:  "cast dtypes, quantize GGUF, turn .bin into safetensors, reshard, change formats",
		synopsis: []string{"convert IN -o OUT [--dtype T] [--type-for PATTERN=T ...] [--max-shard-size S]\n                    [--split-max-size S] [--split-max-tensors N] [--keep-tied] [--dry-run]\n                    [--threads N] [--force]"},
		about: `Writes IN in the format OUT names: a .safetensors file, a .gguf file, or a directory
(a Hugging Face directory: safetensors shards, index, and IN's side files, with config.json's
torch_dtype updated). IN is any checkpoint weft reads.`,
		examples: []example{
			{line: "weft convert pytorch_model.bin -o model-bf16.safetensors --dtype bf16"},
			{line: "weft convert model.gguf -o model-Q4_K_M.gguf --dtype Q4_K_M"},
			{line: "weft convert base -o base-sharded --max-shard-size 100KB"},
			{line: "weft convert model.gguf -o split.gguf --split-max-tensors 10",
				outputs: []string{"split-00001-of-00004.gguf", "split-00004-of-00004.gguf"}},
		},
		newOptions: func() options { return &convertOptions{} },
	}
}

// convertOptions are weft convert's options.
type convertOptions struct {
	keepTied bool
	of       outFlags
	inp      inputFlags
	op       *convert.Options // set by validate
}

func (o *convertOptions) addFlags(fs *flagSet) {
	fs.BoolVar(&o.keepTied, "keep-tied", false, "keep both names of tensors sharing a storage in a .bin (by default the duplicate is dropped as transformers' save_pretrained does: the output head is dropped and tie_word_embeddings restores it on load)")
	o.of.add(fs)
	o.of.addTypes(fs)
	o.inp.add(fs)
}

func (o *convertOptions) validate(e *env, pos []string) error {
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	if o.of.out == "" {
		return usagef("an output is required: -o PATH")
	}
	o.op = &convert.Options{KeepTied: o.keepTied}
	var err error
	o.op.Types, err = o.of.outputTypes()
	return err
}

func (o *convertOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	in, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	if _, err := ckpt.OutputKind(o.of.out); err != nil {
		return err
	}
	if err := o.of.check(in); err != nil {
		return err
	}
	res, err := runOp(e, &o.of, o.op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}})
	if err != nil {
		return err
	}
	return o.of.write(ctx, e, res.Out, describeWith(res), in)
}
