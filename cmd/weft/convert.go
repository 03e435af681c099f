package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops/convert"
)

func init() {
	register(&command{
		name:    "convert",
		summary: "cast dtypes, quantize GGUF, turn .bin into safetensors, reshard, change formats",
		usage: `Usage: weft convert IN -o OUT [--dtype T] [--type-for PATTERN=T ...] [--max-shard-size S]
                    [--split-max-size S] [--keep-tied] [--dry-run] [--threads N] [--force]

Writes IN in the format OUT names: a .safetensors file, a .gguf file, or a directory
(a Hugging Face directory: safetensors shards, index, and IN's side files, with config.json's
torch_dtype updated). IN is any checkpoint weft reads.

  --dtype T            cast floating-point tensors to T (f32, f16, bf16, f8_e4m3, f8_e5m2; for
                       .gguf output also q8_0, q4_0, q4_k, q6_k, ...: every tensor of two or
                       more dimensions is quantized, 1-D tensors stay F32, like
                       llama-quantize --pure); integer and bool tensors keep their type
  --type-for P=T       per-tensor type (glob over names where * crosses dots, or a group:
                       embeddings, head, attention, mlp, norms); first match wins
  --max-shard-size S   shard safetensors output (5GB, 500MB, 2GiB)
  --split-max-size S   split GGUF output like gguf-split (-00001-of-0000N.gguf)
  --keep-tied          keep both names of tensors sharing a storage in a .bin (by default
                       the duplicate is dropped as transformers' save_pretrained does: the
                       output head is dropped and tie_word_embeddings restores it on load)
` + inputUsage + `
Example:
  weft convert pytorch_model.bin -o model.safetensors --dtype bf16
  weft convert model-f16.gguf -o model-q4_k.gguf --dtype q4_k
`,
		run: runConvert,
	})
}

// typeRules is a repeatable PATTERN=T flag.
type typeRules []convert.TypeRule

func (r *typeRules) String() string { return fmt.Sprint(*r) }
func (r *typeRules) Set(v string) error {
	i := strings.LastIndex(v, "=")
	if i <= 0 {
		return fmt.Errorf("want PATTERN=TYPE, got %q", v)
	}
	dt, err := weft.ParseDType(v[i+1:])
	if err != nil {
		return err
	}
	*r = append(*r, convert.TypeRule{Pattern: v[:i], DType: dt})
	return nil
}

func runConvert(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	var of outFlags
	of.add(fs)
	dtype := fs.String("dtype", "", "")
	keepTied := fs.Bool("keep-tied", false, "")
	var rules typeRules
	fs.Var(&rules, "type-for", "")
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
	opts := convert.Options{KeepTied: *keepTied, TypeFor: rules}
	if *dtype != "" {
		if opts.DType, err = weft.ParseDType(*dtype); err != nil {
			return usagef("--dtype: %v", err)
		}
	}
	in, err := inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	if opts.Kind, err = ckpt.OutputKind(of.out, in); err != nil {
		return err
	}
	res, err := convert.Convert(in, opts)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	return of.write(ctx, e, res.Out, func(t *weft.Tensor) string { return res.Actions[t.Name] }, in)
}
