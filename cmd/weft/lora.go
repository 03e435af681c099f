package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/lora"
	"github.com/weft-ml/weft/remote"
)

func loraCmd() *command {
	return &command{
		name:    "lora",
		summary: "extract a LoRA adapter of tuned - base, or merge an adapter into a checkpoint",
		subs: []*command{{
			name: "extract",
			synopsis: []string{`lora extract BASE TUNED -o ADAPTER --rank R [--embeddings] [--head]
                         [--dtype f32|f16|bf16] [--type-for PATTERN=T ...] [--power-iters Q]
                         [--oversample P] [--dense-max N] [--seed N] [--base-name NAME]
                         [--json] [--dry-run] [--threads N] [--force] [--quiet]`},
			about: `Factorises each linear weight's difference D = tuned - base (the attention and MLP
matrices; the token embedding with --embeddings, the output head with --head) as D ~ B*A of
rank R by a truncated SVD: exact (gonum) for matrices of at most --dense-max elements,
otherwise randomized (a Gaussian test matrix of R + --oversample columns, --power-iters power
iterations, each product one streaming pass over the rows of D; memory about (rows +
columns) x (R + oversample) x 8 bytes per matrix being factorised). B = U*sqrt(S),
A = sqrt(S)*V^T, lora_alpha = R, so the adapter applied at scale 1 adds B*A. ADAPTER is
  a directory    a PEFT adapter: adapter_model.safetensors (base_model.model.<module>.lora_A.weight
                 and .lora_B.weight; lora_embedding_A/B for the embedding) and
                 adapter_config.json (peft_type LORA, task_type CAUSAL_LM, r, lora_alpha,
                 target_modules, base_model_name_or_path from --base-name, else BASE's
                 repository for hf:// inputs, else its file or directory name); needs
                 Hugging Face checkpoints
  NAME.gguf      llama.cpp's GGUF LoRA adapter (general.type adapter, adapter.type lora,
                 adapter.lora.alpha, <tensor>.lora_a and .lora_b), for llama.cpp's lora and
                 lora-scaled options; needs GGUF checkpoints (quantized ones too)
A matrix smaller than R in either dimension gets its own rank, its factors padded with zeros.
After writing, prints per tensor the fraction of the difference's energy (squared Frobenius
norm) the adapter keeps. Norms and biases are not matrices and stay out of the adapter
(listed in a note). The adapter records how it was made: 'weft verify ADAPTER' recomputes it
(the SVD is deterministic: same seed, same bytes at any --threads). The adapter tensors'
type (--dtype, --type-for) is f32 (default), f16 or bf16.`,
			examples: []example{
				{line: "weft lora extract base chat -o chat-lora --rank 16"},
				{line: "weft lora extract base.gguf chat.gguf -o chat-lora.gguf --rank 8 --json"},
			},
			newOptions: func() options { return &loraExtractOptions{} },
		}, {
			name:     "merge",
			synopsis: []string{"lora merge BASE ADAPTER -o OUT [--scale S] [--dtype T] [--type-for PATTERN=T ...]\n                         [--dry-run] [--threads N] [--force] [--quiet]"},
			about: `Writes BASE with the adapter added: every weight it modifies becomes
W + S*(alpha/r)*B*A (alpha/sqrt(r) for rsLoRA adapters; llama.cpp's rule for a GGUF adapter
whose alpha is 0: S*B*A), in float64, rounded once to W's output type (its own unless
--dtype or --type-for say otherwise); quantized GGUF weights are dequantized, added to and
quantized back with the reference quantizers. Other tensors are copied byte for byte (or
cast, once, when their output type differs). ADAPTER is a PEFT directory (for Hugging Face
checkpoints) or a GGUF adapter (for GGUF checkpoints). The output records the base and the
adapter: 'weft verify OUT' replays the merge.`,
			examples: []example{
				{line: "weft lora merge base adapter -o base-adapted"},
				{line: "weft lora merge base.gguf adapter.gguf -o chat-0.5.gguf --scale 0.5"},
			},
			newOptions: func() options { return &loraMergeOptions{} },
		}},
	}
}

type loraReport struct {
	Tensor string  `json:"tensor"`
	Shape  []int64 `json:"shape"`
	Rank   int     `json:"rank"`
	SVD    string  `json:"svd"`
	Kept   float64 `json:"kept_energy"`
}

// baseModelName is what a PEFT adapter names its base by default: the repository of an
// hf:// input, else the input's file or directory name.
func baseModelName(path string) string {
	if remote.IsRemote(path) {
		if n, err := remote.ParseName(path); err == nil && n.Hub && n.Path == "" {
			return n.Repo
		}
	}
	return filepath.Base(filepath.Clean(path))
}

// loraExtractOptions are weft lora extract's options.
type loraExtractOptions struct {
	opts   lora.ExtractOptions
	asJSON bool
	of     outFlags
	inp    inputFlags
}

func (o *loraExtractOptions) addFlags(fs *flagSet) {
	fs.IntVar(&o.opts.Rank, "rank", 0, "required: the adapter's rank `R`")
	fs.BoolVar(&o.opts.Embeddings, "embeddings", false, "also factorise the token embedding's difference")
	fs.BoolVar(&o.opts.Head, "head", false, "also factorise the output head's difference")
	fs.IntVar(&o.opts.PowerIters, "power-iters", lora.DefaultPowerIters, "the randomized SVD's power iterations `Q`")
	fs.IntVar(&o.opts.Oversample, "oversample", lora.DefaultOversample, "the randomized SVD's extra columns `P`")
	fs.Int64Var(&o.opts.DenseElems, "dense-max", lora.DefaultDenseElems, "matrices of at most `N` elements get the exact SVD")
	fs.Uint64Var(&o.opts.Seed, "seed", 0, "the randomized SVD's seed `N`")
	fs.StringVar(&o.opts.BaseName, "base-name", "", "base_model_name_or_path of a PEFT adapter (`NAME`)")
	fs.BoolVar(&o.asJSON, "json", false, "print the kept energy per tensor as JSON on stdout")
	o.of.add(fs)
	o.of.addTypes(fs)
	o.inp.add(fs)
}

func (o *loraExtractOptions) validate(e *env, pos []string) error {
	var err error
	if len(pos) != 2 {
		return usagef("want BASE and TUNED, got %d arguments", len(pos))
	}
	if o.of.out == "" {
		return usagef("an output is required: -o ADAPTER (a directory, or a .gguf file)")
	}
	if o.opts.Rank < 1 {
		return usagef("--rank R is required (a positive integer)")
	}
	if o.opts.PowerIters == 0 {
		o.opts.PowerIters = -1 // the library's 0 means its default; the flag's 0 means none
	}
	if o.opts.Oversample < 0 {
		return usagef("--oversample must not be negative")
	}
	if o.opts.DenseElems == 0 {
		o.opts.DenseElems = -1
	}
	if o.opts.Seed > 1<<63-1 {
		return usagef("--seed %d: at most %d", o.opts.Seed, int64(1<<63-1))
	}
	if o.opts.Types, err = o.of.outputTypes(); err != nil {
		return err
	}
	switch o.opts.DType {
	case weft.Invalid, weft.F32, weft.F16, weft.BF16:
	default:
		return usagef("--dtype %v: an adapter's tensors are f32, f16 or bf16", o.opts.DType)
	}
	if o.opts.Quant != nil {
		return usagef("an adapter takes none of llama-quantize's options (--dtype with a mixture, --imatrix, --override-kv, --prune-layers, ...)")
	}
	low := strings.ToLower(o.of.out)
	switch {
	case strings.HasSuffix(low, ".gguf"):
	case strings.HasSuffix(low, ".safetensors"), strings.HasSuffix(low, ".bin"), strings.HasSuffix(low, ".pt"), strings.HasSuffix(low, ".pth"):
		return usagef("-o %s: a PEFT adapter is a directory (adapter_model.safetensors and adapter_config.json inside); name a directory, or a .gguf file for llama.cpp", o.of.out)
	default:
		o.of.dirName = "adapter_model"
		if o.opts.BaseName == "" {
			// Recorded, so that a replay writes the same adapter_config.json wherever it
			// finds the base.
			o.opts.BaseName = baseModelName(pos[0])
		}
	}

	return nil
}

func (o *loraExtractOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	inputs, closeInputs, err := o.inp.openAll(pos)
	defer closeInputs()
	if err != nil {
		return err
	}
	res, err := runOp(e, &o.of, &o.opts, ops.Inputs{Checkpoints: inputs})
	if err != nil {
		return err
	}
	if err := o.of.write(ctx, e, res.Out, describeWith(res), inputs...); err != nil {
		return err
	}
	if o.of.dryRun {
		return nil
	}
	ex := res.Report.(*lora.Extraction)
	var rep []loraReport
	for _, m := range ex.Modules {
		k, _ := m.Kept()
		svd := "randomized"
		if m.Exact {
			svd = "exact"
		}
		rep = append(rep, loraReport{Tensor: m.Tensor, Shape: m.Shape, Rank: m.Rank, SVD: svd, Kept: k})
	}
	if o.asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\tshape\trank\tsvd\tkept energy")
	for _, r := range rep {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.6f\n", r.Tensor, shapeString(r.Shape), r.Rank, r.SVD, r.Kept)
	}
	return tw.Flush()
}

// loraMergeOptions are weft lora merge's options.
type loraMergeOptions struct {
	scale string
	of    outFlags
	inp   inputFlags
	op    *lora.MergeOptions // set by validate
}

func (o *loraMergeOptions) addFlags(fs *flagSet) {
	fs.StringVar(&o.scale, "scale", "1", "the adapter's scale `S` (0 copies the base, negative subtracts)")
	o.of.add(fs)
	o.of.addTypes(fs)
	o.inp.add(fs)
}

func (o *loraMergeOptions) validate(e *env, pos []string) error {
	if len(pos) != 2 {
		return usagef("want BASE and ADAPTER, got %d arguments", len(pos))
	}
	if o.of.out == "" {
		return usagef("an output is required: -o OUT")
	}
	o.op = &lora.MergeOptions{}
	var err error
	if o.op.Scale, err = blend.ParseReal(o.scale); err != nil {
		return usagef("--scale: %v", err)
	}
	if o.op.Types, err = o.of.outputTypes(); err != nil {
		return err
	}
	return nil
}

func (o *loraMergeOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	base, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer base.Close()
	var adapter *weft.Checkpoint
	if remote.IsRemote(pos[1]) {
		if adapter, err = o.inp.open(pos[1]); err != nil {
			return err
		}
	} else {
		ad, err := lora.OpenAdapter(pos[1])
		if err != nil {
			return err
		}
		adapter = ad.Checkpoint
	}
	defer adapter.Close()
	if err := o.of.check(base); err != nil {
		return err
	}
	res, err := runOp(e, &o.of, o.op, ops.Inputs{Checkpoints: []*weft.Checkpoint{base, adapter}})
	if err != nil {
		return err
	}
	return o.of.write(ctx, e, res.Out, describeWith(res), base, adapter)
}
